//! One attempt of a request on an endpoint, as the metrics see it
//! ([`Attempt`]), and the response body that ends it ([`Observed`]).
//!
//! An attempt counts as in flight from its pick until its response ends: at
//! its trailers, at the end of its body, at an error, or when the caller
//! drops it. Its code is the response's `grpc-status` (in the headers of a
//! trailers-only response, else in the trailers), `UNAVAILABLE` for a
//! transport error, `CANCELLED` for an attempt or body dropped before its end.
//!
//! Generic over `http_body`: no tonic here; the balancer passes tonic's
//! `Body::new` to box the observed body again.
//!
//! (Over 400 lines with its tests: the attempt, its lazily made metric
//! handles and the body that ends it are one lifetime, tested together.)
//!
//! An attempt records through its endpoint's handles ([`EndpointMetrics`]),
//! asked of the recorder by the endpoint's first request and again once a
//! minute after: the labels are built then, not per request. So with no
//! recorder installed an attempt costs a clock read and the box of its
//! response body, no allocation for its labels. The price: a recorder
//! installed after an endpoint's first request sees that endpoint only from
//! the renewal of its handles, up to a minute later (install the recorder
//! before building the balancer).

use std::pin::Pin;
use std::task::{Context, Poll};

use http::StatusCode;
use http_body::{Body, Frame, SizeHint};

#[cfg(feature = "metrics")]
use super::code::{self, CANCELLED, UNAVAILABLE};

/// One attempt of a request on an endpoint; see the module docs. Without the
/// `metrics` feature, an empty value whose methods do nothing.
#[derive(Debug)]
pub(crate) struct Attempt {
    #[cfg(feature = "metrics")]
    live: Option<live::Live>,
}

/// The metric handles of one endpoint, kept by the balancer's target and
/// filled by its first request (see the module docs). Without the `metrics`
/// feature, empty.
#[derive(Debug, Default)]
pub(crate) struct EndpointMetrics {
    #[cfg(feature = "metrics")]
    cell: live::Cell,
}

impl Attempt {
    /// An attempt on `endpoint` of `service`, whose handles are in `metrics`,
    /// starts: one more in flight.
    #[inline]
    pub(crate) fn start(metrics: &EndpointMetrics, service: &str, endpoint: &str) -> Attempt {
        #[cfg(not(feature = "metrics"))]
        let _ = (metrics, service, endpoint);
        Attempt {
            #[cfg(feature = "metrics")]
            live: Some(live::Live::start(&metrics.cell, service, endpoint)),
        }
    }

    /// The attempt `this` got `result` from the channel (the result comes
    /// first, so that a call can borrow the attempt after making it): an
    /// error ends it as
    /// `UNAVAILABLE`, a response with a `grpc-status` in its headers ends it
    /// with that code, any other response ends with its body, which is
    /// wrapped in an [`Observed`] and boxed again by `rebox`.
    #[inline]
    pub(crate) fn finish<B, E>(
        result: Result<http::Response<B>, E>,
        this: &mut Attempt,
        rebox: impl FnOnce(Observed<B>) -> B,
    ) -> Result<http::Response<B>, E> {
        #[cfg(not(feature = "metrics"))]
        {
            let _ = (this, rebox);
            result
        }
        #[cfg(feature = "metrics")]
        {
            let Some(live) = this.live.take() else {
                return result;
            };
            let response = match result {
                Err(error) => {
                    live.finish(UNAVAILABLE);
                    return Err(error);
                }
                Ok(response) => response,
            };
            if let Some(code) = code::of_headers(response.headers()) {
                live.finish(code);
                return Ok(response);
            }
            let status = response.status();
            Ok(response.map(|body| {
                rebox(Observed {
                    body,
                    status,
                    live: Some(live),
                })
            }))
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some(live) = self.live.take() {
            live.finish(CANCELLED);
        }
    }
}

/// A response body that ends its attempt: at its trailers (with their
/// `grpc-status`), at its end without trailers (with the code of its HTTP
/// status), at an error (`UNAVAILABLE`), or when dropped before (`CANCELLED`).
#[derive(Debug)]
pub(crate) struct Observed<B> {
    body: B,
    #[allow(dead_code)] // Read with the `metrics` feature only.
    status: StatusCode,
    #[cfg(feature = "metrics")]
    live: Option<live::Live>,
}

impl<B: Body + Unpin> Body for Observed<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        #[cfg(feature = "metrics")]
        if let Poll::Ready(frame) = &polled {
            let code = match frame {
                Some(Ok(frame)) => frame.trailers_ref().map(|trailers| {
                    code::of_headers(trailers).unwrap_or(code::of_http(this.status))
                }),
                Some(Err(_)) => Some(UNAVAILABLE),
                None => Some(code::of_http(this.status)),
            };
            // Only a frame that ends the response ends the attempt.
            if let Some(code) = code {
                if let Some(live) = this.live.take() {
                    live.finish(code);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(feature = "metrics")]
impl<B> Drop for Observed<B> {
    fn drop(&mut self) {
        if let Some(live) = self.live.take() {
            live.finish(CANCELLED);
        }
    }
}

#[cfg(feature = "metrics")]
mod live {
    use std::sync::{Arc, PoisonError, RwLock};
    use std::time::{Duration, Instant};

    use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram, SharedString};

    use crate::observe::code::{OK, UNAVAILABLE};
    use crate::observe::names::{
        CLIENT_REQUESTS_IN_FLIGHT, CLIENT_REQUESTS_TOTAL, CLIENT_REQUEST_DURATION_SECONDS,
    };

    /// How long an endpoint's handles are used before they are asked of the
    /// recorder again. An exporter that forgets idle series (the Prometheus
    /// one's `idle_timeout`) deletes the series but not the storage a handle
    /// holds: a handle kept for longer than that timeout would record into
    /// nothing. Asked again, the recorder hands out the live series, or a
    /// new one. It is also how a recorder installed after the endpoint's first
    /// request comes to see it.
    pub(crate) const RENEW: Duration = Duration::from_secs(60);

    /// The handles of one endpoint's metrics, asked of the recorder once (per
    /// [`RENEW`]) so that a request only touches them: with no recorder, they
    /// are no-ops and a request allocates nothing for its metrics.
    #[derive(Debug)]
    pub(super) struct Handles {
        service: SharedString,
        endpoint: SharedString,
        in_flight: Gauge,
        duration: Histogram,
        /// The codes of nearly every attempt; the others are asked for
        /// when they happen.
        ok: Counter,
        unavailable: Counter,
        born: Instant,
    }

    impl Handles {
        fn register(service: SharedString, endpoint: SharedString, born: Instant) -> Handles {
            let code = |code: &'static str| counter!(CLIENT_REQUESTS_TOTAL, "service" => service.clone(), "endpoint" => endpoint.clone(), "code" => code);
            Handles {
                in_flight: gauge!(CLIENT_REQUESTS_IN_FLIGHT, "service" => service.clone(), "endpoint" => endpoint.clone()),
                duration: histogram!(CLIENT_REQUEST_DURATION_SECONDS, "service" => service.clone(), "endpoint" => endpoint.clone()),
                ok: code(OK),
                unavailable: code(UNAVAILABLE),
                service,
                endpoint,
                born,
            }
        }

        pub(super) fn count(&self, code: &'static str) {
            match code {
                OK => self.ok.increment(1),
                UNAVAILABLE => self.unavailable.increment(1),
                _ => counter!(CLIENT_REQUESTS_TOTAL, "service" => self.service.clone(), "endpoint" => self.endpoint.clone(), "code" => code)
                    .increment(1),
            }
        }
    }

    /// The handles of one endpoint, filled by its first request (an endpoint
    /// never picked holds only an empty lock).
    #[derive(Debug, Default)]
    pub(crate) struct Cell(RwLock<Option<Arc<Handles>>>);

    impl Cell {
        /// The handles for a request starting `now`: those in the cell, or,
        /// on the first request and once per [`RENEW`], fresh ones.
        pub(super) fn handles(&self, now: Instant, service: &str, endpoint: &str) -> Arc<Handles> {
            let current = self.0.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(handles) = &*current {
                if now.saturating_duration_since(handles.born) < RENEW {
                    return handles.clone();
                }
            }
            // Labels are kept across renewals: only the handles are new.
            let (service, endpoint) = match &*current {
                Some(old) => (old.service.clone(), old.endpoint.clone()),
                None => (
                    SharedString::from(Arc::<str>::from(service)),
                    SharedString::from(Arc::<str>::from(endpoint)),
                ),
            };
            drop(current);
            let fresh = Arc::new(Handles::register(service, endpoint, now));
            *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(fresh.clone());
            fresh
        }
    }

    /// An attempt in flight: its endpoint's handles, and its start.
    #[derive(Debug)]
    pub(super) struct Live {
        handles: Arc<Handles>,
        start: Instant,
    }

    impl Live {
        pub(super) fn start(cell: &Cell, service: &str, endpoint: &str) -> Live {
            let start = Instant::now();
            let handles = cell.handles(start, service, endpoint);
            handles.in_flight.increment(1.0);
            Live { handles, start }
        }

        pub(super) fn finish(self, code: &'static str) {
            let elapsed = self.start.elapsed();
            let handles = &self.handles;
            handles.count(code);
            handles.duration.record(elapsed.as_secs_f64());
            handles.in_flight.decrement(1.0);
        }
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use std::future::poll_fn;

    use http::HeaderMap;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    /// A body of one data frame and, optionally, trailers.
    struct Reply(Vec<Frame<&'static [u8]>>);

    impl Body for Reply {
        type Data = &'static [u8];
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            Poll::Ready((!self.0.is_empty()).then(|| Ok(self.0.remove(0))))
        }
    }

    fn trailers(status: &'static str) -> Frame<&'static [u8]> {
        let mut map = HeaderMap::new();
        map.insert("grpc-status", status.parse().unwrap());
        Frame::trailers(map)
    }

    /// Runs `f` with a recorder of its own; the counts of
    /// `tonic_etcd_client_requests_total` by code, and the in-flight gauge.
    fn recorded(f: impl FnOnce()) -> (Vec<(String, u64)>, f64) {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, f);
        let mut counts = Vec::new();
        let mut in_flight = f64::NAN;
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            match (key.name(), value) {
                (CLIENT_REQUESTS_TOTAL, DebugValue::Counter(n)) => {
                    let code = key.labels().find(|l| l.key() == "code").unwrap();
                    counts.push((code.value().to_owned(), n));
                }
                (CLIENT_REQUESTS_IN_FLIGHT, DebugValue::Gauge(g)) => in_flight = g.into_inner(),
                _ => {}
            }
        }
        counts.sort();
        (counts, in_flight)
    }

    use crate::observe::names::{CLIENT_REQUESTS_IN_FLIGHT, CLIENT_REQUESTS_TOTAL};

    async fn drain<B: Body + Unpin>(mut body: B) {
        while poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
            .await
            .is_some()
        {}
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn observed(
        attempt: &mut Attempt,
        frames: Vec<Frame<&'static [u8]>>,
    ) -> Option<Observed<Reply>> {
        let mut out = None;
        let response = Attempt::finish(
            Ok::<_, ()>(http::Response::new(Reply(frames))),
            attempt,
            |o| {
                out = Some(o);
                Reply(Vec::new())
            },
        )
        .unwrap();
        drop(response);
        out
    }

    #[test]
    fn an_attempt_ends_with_the_code_of_its_trailers() {
        let (counts, in_flight) = recorded(|| {
            let endpoint = EndpointMetrics::default();
            let mut attempt = Attempt::start(&endpoint, "s", "127.0.0.1:1");
            let body = observed(&mut attempt, vec![Frame::data(&b"x"[..]), trailers("0")]).unwrap();
            block_on(drain(body));
            let mut attempt = Attempt::start(&endpoint, "s", "127.0.0.1:1");
            let body = observed(&mut attempt, vec![trailers("14")]).unwrap();
            block_on(drain(body));
        });
        assert_eq!(counts, [("OK".into(), 1), ("UNAVAILABLE".into(), 1)]);
        assert_eq!(in_flight, 0.0);
    }

    #[test]
    fn errors_drops_and_trailers_only_responses_have_their_codes() {
        let (counts, in_flight) = recorded(|| {
            let endpoint = EndpointMetrics::default();
            // A transport error.
            let mut attempt = Attempt::start(&endpoint, "s", "e");
            let _ = Attempt::finish(
                Err::<http::Response<Reply>, _>(()),
                &mut attempt,
                |_| unreachable!(),
            );
            // A trailers-only response: its status is in the headers.
            let mut attempt = Attempt::start(&endpoint, "s", "e");
            let mut response = http::Response::new(Reply(Vec::new()));
            response
                .headers_mut()
                .insert("grpc-status", "5".parse().unwrap());
            let _ = Attempt::finish(Ok::<_, ()>(response), &mut attempt, |_| unreachable!());
            // Dropped by the caller before any response, and in its body.
            drop(Attempt::start(&endpoint, "s", "e"));
            let mut attempt = Attempt::start(&endpoint, "s", "e");
            drop(observed(&mut attempt, vec![Frame::data(&b"x"[..])]));
            // One in flight, still.
            std::mem::forget(Attempt::start(&endpoint, "s", "e"));
        });
        assert_eq!(
            counts,
            [
                ("CANCELLED".into(), 2),
                ("NOT_FOUND".into(), 1),
                // Asked for with the endpoint's handles: there, as 0.
                ("OK".into(), 0),
                ("UNAVAILABLE".into(), 1)
            ]
        );
        assert_eq!(in_flight, 1.0);
    }

    #[test]
    fn an_endpoints_handles_are_asked_again_after_a_minute() {
        let endpoint = EndpointMetrics::default();
        let now = std::time::Instant::now();
        // Filled before the recorder below is there: no-ops for it.
        drop(endpoint.cell.handles(now, "s", "e"));
        let (counts, _) = recorded(|| {
            let within = now + live::RENEW - std::time::Duration::from_millis(1);
            endpoint.cell.handles(within, "s", "e").count("OK");
            endpoint
                .cell
                .handles(now + live::RENEW, "s", "e")
                .count("OK");
        });
        assert_eq!(
            counts,
            [("OK".into(), 1), ("UNAVAILABLE".into(), 0)],
            "only the renewed handles record (and show UNAVAILABLE as 0)"
        );
    }
}
