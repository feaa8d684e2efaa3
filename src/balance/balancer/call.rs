//! One request through the balancer: pick, send, and on a connection that
//! could not be made, eject the endpoint and send again elsewhere.
//!
//! An `http::Request` cannot be cloned, and tonic's channel drops the request
//! when it cannot connect. The body is therefore lent to each attempt through
//! a shared slot ([`Lent`]): the attempt takes it out on its first read. When
//! an attempt fails before anything was sent (see [`Failure`]) and the body is
//! still in the slot, the request's head (copied, see [`Head`]) and the body
//! make the same request again: on another endpoint if no connection could be made (the endpoint is
//! ejected), on the same one first if its connection had just closed (the
//! channel opens a new one). Each connection of an endpoint gets at most one
//! attempt per request, plus that one reopening; an endpoint that comes back
//! from an ejection has a new one.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};

use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::{Extensions, HeaderMap, Method, Uri, Version};
use http_body::{Frame, SizeHint};
use tokio::time::Instant;
use tonic::body::Body;
use tonic::codegen::Bytes;
use tonic::transport::Channel;
use tonic::{ConnectError, Status};
use tower::{Service, ServiceExt};
use tracing::debug;

use super::endpoints::{chain, Shared, Target};
use super::load::InFlight;
use super::{BoxError, Policy};

type Response = Result<http::Response<Body>, BoxError>;
type ChannelFuture = <Channel as Service<http::Request<Body>>>::Future;

/// One request through the balancer, from its first attempt to its response.
///
/// The first attempt runs inline, without boxing a future: that is the path of
/// nearly every request. A request that
/// must be sent again, or must wait for an endpoint, continues in a boxed
/// [`retry`] loop.
pub(super) struct Call {
    state: State,
}

// The first attempt is the large variant on purpose: boxing it would cost
// every request an allocation.
#[allow(clippy::large_enum_variant)]
enum State {
    /// The first attempt, on its way to the endpoint's channel or waiting for
    /// its response.
    First(First),
    /// Sent again, or waiting for an endpoint.
    Retrying(Pin<Box<dyn Future<Output = Response> + Send>>),
    /// Failed before any attempt.
    Failed(Option<BoxError>),
}

struct First {
    shared: Arc<Shared>,
    target: Arc<Target>,
    /// The request's head for another attempt.
    head: Head,
    slot: Slot,
    attempt: Attempt,
    in_flight: Option<InFlight>,
    /// Until when the request may wait for an endpoint, counted from its
    /// start; `None` without a wait.
    deadline: Option<Instant>,
}

// Waiting is the large variant on purpose, as in `State`.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    /// The request, until the channel has room for it.
    Waiting(Channel, http::Request<Body>),
    /// The channel's response, once it has the request.
    Sent(ChannelFuture),
    /// Between the two.
    Moving,
}

impl Call {
    /// Starts `request` towards an endpoint picked by the policy; see the
    /// module docs.
    pub(super) fn start(shared: Arc<Shared>, request: http::Request<Body>) -> Call {
        // Only a request that may wait for an endpoint reads the clock.
        let deadline = (!shared.wait().is_zero()).then(|| Instant::now() + shared.wait());
        let Some(target) = shared.pick(&[]) else {
            let state = if deadline.is_none() {
                State::Failed(Some(unavailable(&shared, None).into()))
            } else {
                let (mut parts, body) = request.into_parts();
                let extensions = std::mem::take(&mut parts.extensions);
                State::Retrying(Box::pin(retry(
                    shared,
                    Head::of(&parts),
                    extensions,
                    Slot::new(body),
                    Retry::default(),
                    deadline,
                )))
            };
            return Call { state };
        };
        let (parts, body) = request.into_parts();
        let head = Head::of(&parts);
        let slot = Slot::new(body);
        let request = http::Request::from_parts(parts, Body::new(slot.lend()));
        let channel = target.borrow_channel();
        // Only p2c reads the load; the request counts from its pick, as a
        // retried one does.
        let in_flight = (shared.policy() == Policy::P2c).then(|| target.load.start());
        Call {
            state: State::First(First {
                shared,
                target,
                head,
                slot,
                attempt: Attempt::Waiting(channel, request),
                in_flight,
                deadline,
            }),
        }
    }
}

impl Future for Call {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let this = self.get_mut();
        loop {
            let error = match &mut this.state {
                State::Retrying(future) => return future.as_mut().poll(cx),
                State::Failed(error) => {
                    return Poll::Ready(Err(error
                        .take()
                        .expect("balancer response future polled after completion")))
                }
                State::First(first) => match ready!(first.poll(cx)) {
                    Ok(response) => return Poll::Ready(Ok(response)),
                    Err(error) => error,
                },
            };
            let State::First(first) = std::mem::replace(&mut this.state, State::Failed(None))
            else {
                unreachable!("only the first attempt fails here");
            };
            let First {
                shared,
                target,
                head,
                slot,
                deadline,
                ..
            } = first;
            let mut retry_state = Retry::default();
            match retry_state.failed(&shared, target, error, &slot) {
                Err(error) => return Poll::Ready(Err(error)),
                Ok(()) => {
                    this.state = State::Retrying(Box::pin(retry(
                        shared,
                        head,
                        Extensions::new(),
                        slot,
                        retry_state,
                        deadline,
                    )))
                }
            }
        }
    }
}

impl First {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<http::Response<Body>, tonic::transport::Error>> {
        if let Attempt::Waiting(channel, _) = &mut self.attempt {
            ready!(channel.poll_ready(cx))?;
            let Attempt::Waiting(mut channel, request) =
                std::mem::replace(&mut self.attempt, Attempt::Moving)
            else {
                unreachable!("checked above");
            };
            self.attempt = Attempt::Sent(channel.call(request));
            self.target.return_channel(channel);
        }
        let Attempt::Sent(response) = &mut self.attempt else {
            unreachable!("the channel has the request");
        };
        let result = ready!(Pin::new(response).poll(cx));
        if let (Ok(_), Some(in_flight)) = (&result, self.in_flight.take()) {
            in_flight.finish();
        }
        Poll::Ready(result)
    }
}

/// What the attempts so far left for the next ones.
#[derive(Default)]
struct Retry {
    /// Epochs of the targets that failed: an endpoint that comes back after
    /// an ejection is a new target, worth a new attempt.
    tried: Vec<u64>,
    /// A connection that closed under a request is reopened by the channel:
    /// the same endpoint gets one more attempt before the others.
    again: Option<Arc<Target>>,
    reopened: bool,
    last_error: Option<tonic::transport::Error>,
}

impl Retry {
    /// Takes in a failed attempt on `target`: `Ok` if the request can go
    /// again, else the error for the caller.
    fn failed(
        &mut self,
        shared: &Arc<Shared>,
        target: Arc<Target>,
        error: tonic::transport::Error,
        slot: &Slot,
    ) -> Result<(), BoxError> {
        if !self.tried.contains(&target.epoch) {
            self.tried.push(target.epoch);
        }
        let failure = Failure::of(&error);
        if failure == Failure::Unreachable {
            shared.eject(&target, &error);
        }
        if failure == Failure::Other || !slot.is_full() {
            debug!(key = %target.key, error = %chain(&error), "request failed; not retried");
            return Err(error.into());
        }
        debug!(key = %target.key, error = %chain(&error), "request not sent; retrying");
        if failure == Failure::NotSent && !self.reopened {
            self.reopened = true;
            self.again = Some(target);
        }
        self.last_error = Some(error);
        Ok(())
    }
}

/// Sends the request again, or for the first time once an endpoint is ready,
/// until an attempt gets a response or fails after sending, or no endpoint is
/// left to try.
///
/// The first attempt made here carries `extensions`; later ones go without.
async fn retry(
    shared: Arc<Shared>,
    head: Head,
    mut extensions: Extensions,
    slot: Slot,
    mut state: Retry,
    deadline: Option<Instant>,
) -> Response {
    // Only a request that may wait for an endpoint follows the changes.
    let mut changes = deadline.map(|deadline| (deadline, shared.changes()));
    loop {
        let target = match state.again.take() {
            Some(target) => target,
            None => match shared.pick(&state.tried) {
                Some(target) => target,
                None => {
                    if let Some((deadline, changes)) = &mut changes {
                        if tokio::time::timeout_at(*deadline, changes.changed())
                            .await
                            .is_ok_and(|changed| changed.is_ok())
                        {
                            continue;
                        }
                    }
                    return Err(unavailable(&shared, state.last_error.as_ref()).into());
                }
            },
        };
        let mut request = head.request(Body::new(slot.lend()));
        *request.extensions_mut() = std::mem::take(&mut extensions);
        let in_flight = (shared.policy() == Policy::P2c).then(|| target.load.start());
        match target.channel.clone().oneshot(request).await {
            Ok(response) => {
                if let Some(in_flight) = in_flight {
                    in_flight.finish();
                }
                return Ok(response);
            }
            Err(error) => {
                drop(in_flight);
                state.failed(&shared, target, error, &slot)?;
            }
        }
    }
}

/// How many headers a [`Head`] keeps without allocating: tonic's unary
/// requests carry two (`te` and `content-type`) plus the caller's metadata.
const INLINE_HEADERS: usize = 4;

/// The head of a request, kept for another attempt: method, URI, version and
/// headers, but not the extensions. tonic's channel hands the request to
/// hyper, which reads no extension of a gRPC request, so the first attempt
/// carries them and later ones go without, rather than every request paying
/// for their copy. A few headers are kept inline, without allocating.
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    inline: [Option<(HeaderName, HeaderValue)>; INLINE_HEADERS],
    /// The headers beyond the inline ones, in order.
    more: Vec<(HeaderName, HeaderValue)>,
}

impl Head {
    fn of(parts: &Parts) -> Head {
        let mut inline = [const { None }; INLINE_HEADERS];
        let mut more = Vec::new();
        for (index, (name, value)) in parts.headers.iter().enumerate() {
            let header = (name.clone(), value.clone());
            match inline.get_mut(index) {
                Some(slot) => *slot = Some(header),
                None => more.push(header),
            }
        }
        Head {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            inline,
            more,
        }
    }

    /// The same request again, with `body` and no extensions.
    fn request(&self, body: Body) -> http::Request<Body> {
        let mut request = http::Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        let headers: &mut HeaderMap = request.headers_mut();
        for (name, value) in self.inline.iter().flatten().chain(&self.more) {
            headers.append(name.clone(), value.clone());
        }
        request
    }
}

/// The error of a request that found no endpoint to go to.
fn unavailable(shared: &Shared, last_error: Option<&tonic::transport::Error>) -> Status {
    let (known, ejected) = shared.counts();
    let mut message = format!(
        "no ready endpoint for service {} ({known} known, {ejected} ejected)",
        shared.service()
    );
    if let Some(error) = last_error {
        message.push_str("; last error: ");
        message.push_str(&chain(error));
    }
    Status::unavailable(message)
}

/// What a failed attempt says about its request and its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// No connection could be made (tonic's [`ConnectError`]: refused, connect
    /// timeout, TLS): nothing was sent, and the endpoint is unreachable.
    Unreachable,
    /// The connection closed while the request waited for it (hyper's
    /// "canceled"): nothing was sent; the next request reconnects.
    NotSent,
    /// Anything else: the request may have reached the server.
    Other,
}

impl Failure {
    fn of(error: &(dyn StdError + 'static)) -> Failure {
        let mut source = Some(error);
        while let Some(error) = source {
            if error.is::<ConnectError>() {
                return Failure::Unreachable;
            }
            // hyper's HTTP/2 client cancels only requests that it never handed
            // to the connection.
            if error
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_canceled)
            {
                return Failure::NotSent;
            }
            source = error.source();
        }
        Failure::Other
    }
}

/// The body of a request, waiting for the attempt that reads it.
///
/// A body nobody has read does not change, so its end-of-stream flag and
/// size hint are taken once, here, and each attempt answers from them until
/// it takes the body: one lock per request rather than one per question.
#[derive(Debug, Clone)]
struct Slot {
    body: Arc<Mutex<Option<Body>>>,
    end_stream: bool,
    size_hint: SizeHint,
}

impl Slot {
    fn new(body: Body) -> Self {
        Self {
            end_stream: http_body::Body::is_end_stream(&body),
            size_hint: http_body::Body::size_hint(&body),
            body: Arc::new(Mutex::new(Some(body))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Body>> {
        self.body.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether no attempt has read the body yet.
    fn is_full(&self) -> bool {
        self.lock().is_some()
    }

    fn lend(&self) -> Lent {
        Lent {
            slot: self.clone(),
            body: None,
        }
    }
}

/// The body as one attempt sees it: taken from the [`Slot`] on the first read.
#[derive(Debug)]
struct Lent {
    slot: Slot,
    body: Option<Body>,
}

impl http_body::Body for Lent {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.body.is_none() {
            this.body = this.slot.lock().take();
        }
        match &mut this.body {
            Some(body) => Pin::new(body).poll_frame(cx),
            // Read by an earlier attempt, which cannot be: each attempt only
            // starts once the previous one has given up without reading.
            None => Poll::Ready(Some(Err(Status::internal(
                "request body already taken by another attempt",
            )))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            Some(body) => body.is_end_stream(),
            None => self.slot.end_stream,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.body {
            Some(body) => body.size_hint(),
            None => self.slot.size_hint,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use http_body::Body as _;

    use super::*;

    fn body(text: &'static str) -> Body {
        Body::new(http_body_full(text))
    }

    /// A one-frame body, built from a stream of one chunk.
    fn http_body_full(text: &'static str) -> impl http_body::Body<Data = Bytes, Error = Status> {
        struct Once(Option<Bytes>);
        impl http_body::Body for Once {
            type Data = Bytes;
            type Error = Status;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
                Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
            }
            fn is_end_stream(&self) -> bool {
                self.0.is_none()
            }
            fn size_hint(&self) -> SizeHint {
                SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
        Once(Some(Bytes::from_static(text.as_bytes())))
    }

    async fn read(mut lent: Lent) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(frame) = poll_fn(|cx| Pin::new(&mut lent).poll_frame(cx)).await {
            out.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        out
    }

    #[tokio::test]
    async fn an_unread_body_stays_for_the_next_attempt() {
        let slot = Slot::new(body("hello"));
        let first = slot.lend();
        assert!(!first.is_end_stream());
        assert_eq!(first.size_hint().exact(), Some(5));
        drop(first);
        assert!(slot.is_full(), "dropping an unread attempt keeps the body");
        assert_eq!(read(slot.lend()).await, b"hello");
        assert!(!slot.is_full(), "a read body is gone");
        // A later attempt cannot read what an earlier one took.
        let mut late = slot.lend();
        let frame = poll_fn(|cx| Pin::new(&mut late).poll_frame(cx)).await;
        assert!(matches!(frame, Some(Err(_))));
    }

    #[test]
    fn a_head_makes_the_same_request_again_without_extensions() {
        let mut request = http::Request::builder()
            .method(Method::POST)
            .uri("/helloworld.Greeter/SayHello")
            .version(Version::HTTP_2)
            .header("te", "trailers")
            .header("content-type", "application/grpc")
            .header("x-tag", "a")
            .header("x-tag", "b")
            .header("grpc-timeout", "100m")
            .header("x-last", "z")
            .body(())
            .unwrap();
        request.extensions_mut().insert(7u32);
        let (parts, ()) = request.into_parts();
        let head = Head::of(&parts);
        assert_eq!(head.more.len(), 2, "six headers: four inline, two more");
        let again = head.request(Body::empty());
        assert_eq!(again.method(), Method::POST);
        assert_eq!(again.uri(), "/helloworld.Greeter/SayHello");
        assert_eq!(again.version(), Version::HTTP_2);
        let pairs = |headers: &HeaderMap| -> Vec<(String, String)> {
            headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                .collect()
        };
        assert_eq!(pairs(again.headers()), pairs(&parts.headers));
        assert!(again.extensions().get::<u32>().is_none());
    }

    #[test]
    fn failures_are_classified_down_the_chain() {
        #[derive(Debug)]
        struct Outer(Box<dyn StdError + Send + Sync>);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("outer")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&*self.0)
            }
        }
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let connect = Outer(Box::new(ConnectError(Box::new(refused))));
        assert_eq!(Failure::of(&connect), Failure::Unreachable);
        let reset = Outer(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(Failure::of(&reset), Failure::Other);
        assert_eq!(Failure::of(&Status::unavailable("down")), Failure::Other);
    }
}
