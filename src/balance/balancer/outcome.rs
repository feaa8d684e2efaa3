//! The outcome of one attempt ([`Outcome`]) and the one place where it is
//! taken in ([`finished`]): the endpoint's counters, its peak-EWMA sample,
//! outlier detection, and the logs.
//!
//! An attempt is tracked by a [`Pending`] guard from its pick to its response
//! head. Dropped without an outcome (the caller's deadline, or any other
//! cancellation), it reports [`Outcome::Cancelled`] with the time waited.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use tonic::Code;
use tracing::debug;

use super::failure::Failure;
use super::load::InFlight;
use super::outlier::OutlierDetection;
use super::shared::Shared;
use super::target::Target;

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// A response head, with the gRPC code it carries (`OK` unless the
    /// answer is trailers-only with another code; a non-200 HTTP status is
    /// read as gRPC reads it).
    Answered(Code),
    /// No connection could be made: the endpoint is ejected and probed.
    Unreachable,
    /// The connection closed before the request was written: sent again.
    NotSent,
    /// The connection failed after the request was written.
    Connection,
    /// tonic's own timeout (`Endpoint::timeout`) expired.
    Timeout,
    /// The request's future was dropped before its response head.
    Cancelled,
}

impl Outcome {
    pub(super) fn of_response<B>(response: &http::Response<B>) -> Outcome {
        let status = response.status();
        if status != http::StatusCode::OK {
            // As gRPC's HTTP-to-code mapping: a proxy's "no backend".
            return Outcome::Answered(match status.as_u16() {
                502..=504 | 429 => Code::Unavailable,
                _ => Code::Unknown,
            });
        }
        let code = response
            .headers()
            .get("grpc-status")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<i32>().ok())
            .map_or(Code::Ok, Code::from_i32);
        Outcome::Answered(code)
    }

    pub(super) fn of_error(error: &(dyn StdError + 'static)) -> Outcome {
        match Failure::of(error) {
            Failure::Unreachable => Outcome::Unreachable,
            Failure::NotSent => Outcome::NotSent,
            Failure::Other => {
                let mut source = Some(error);
                while let Some(error) = source {
                    if error.is::<tonic::TimeoutExpired>() {
                        return Outcome::Timeout;
                    }
                    source = error.source();
                }
                Outcome::Connection
            }
        }
    }

    /// Whether it counts against the endpoint for outlier detection.
    pub(super) fn is_failure(self, settings: &OutlierDetection) -> bool {
        match self {
            Outcome::Answered(code) => settings.failure_codes.contains(&code),
            Outcome::Connection => settings.count_connection_errors,
            Outcome::Timeout | Outcome::Cancelled => settings.count_timeouts,
            Outcome::Unreachable | Outcome::NotSent => false,
        }
    }

    /// Whether it tells anything about the endpoint's answers: the
    /// endpoint's request and failure counts leave out the attempts that
    /// never reached it.
    fn reached(self) -> bool {
        !matches!(self, Outcome::Unreachable | Outcome::NotSent)
    }
}

/// One attempt on `target`, from its pick to its outcome.
pub(super) struct Pending {
    shared: Arc<Shared>,
    target: Arc<Target>,
    in_flight: Option<InFlight>,
}

impl Pending {
    pub(super) fn start(shared: &Arc<Shared>, target: &Arc<Target>) -> Pending {
        Pending {
            shared: shared.clone(),
            target: target.clone(),
            in_flight: Some(target.load.start()),
        }
    }

    /// The attempt ended with `outcome`.
    pub(super) fn finish(mut self, outcome: Outcome) {
        if let Some(in_flight) = self.in_flight.take() {
            let elapsed = in_flight.finish();
            finished(&self.shared, &self.target, outcome, elapsed);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(in_flight) = self.in_flight.take() {
            let elapsed = in_flight.finish();
            finished(&self.shared, &self.target, Outcome::Cancelled, elapsed);
        }
    }
}

/// Where every attempt's outcome is taken in: its endpoint `target`, its
/// `outcome` (and gRPC code), and its `elapsed` time, already in the
/// endpoint's peak-EWMA estimate. Counts it, and feeds outlier detection.
fn finished(shared: &Arc<Shared>, target: &Arc<Target>, outcome: Outcome, elapsed: Duration) {
    if !outcome.reached() {
        return;
    }
    let settings = shared.outlier();
    let failed = outcome.is_failure(settings);
    debug!(endpoint = %target.key, ?outcome, failed, elapsed_ms = elapsed.as_millis() as u64, "attempt ended");
    if let Some(cause) = target.health.record(settings, failed) {
        shared.outlier_eject(target, cause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16, grpc: Option<&str>) -> Outcome {
        let mut response = http::Response::builder().status(status);
        if let Some(code) = grpc {
            response = response.header("grpc-status", code);
        }
        Outcome::of_response(&response.body(()).unwrap())
    }

    #[test]
    fn response_heads_are_read_as_grpc_codes() {
        assert_eq!(answered(200, None), Outcome::Answered(Code::Ok));
        assert_eq!(
            answered(200, Some("14")),
            Outcome::Answered(Code::Unavailable)
        );
        assert_eq!(answered(200, Some("5")), Outcome::Answered(Code::NotFound));
        assert_eq!(answered(503, None), Outcome::Answered(Code::Unavailable));
        assert_eq!(answered(404, None), Outcome::Answered(Code::Unknown));
    }

    #[test]
    fn the_default_failure_set() {
        let settings = OutlierDetection::new();
        let failures: Vec<Outcome> = [
            Outcome::Answered(Code::Ok),
            Outcome::Answered(Code::Unavailable),
            Outcome::Answered(Code::NotFound),
            Outcome::Answered(Code::InvalidArgument),
            Outcome::Answered(Code::AlreadyExists),
            Outcome::Answered(Code::DeadlineExceeded),
            Outcome::Unreachable,
            Outcome::NotSent,
            Outcome::Connection,
            Outcome::Timeout,
            Outcome::Cancelled,
        ]
        .into_iter()
        .filter(|outcome| outcome.is_failure(&settings))
        .collect();
        assert_eq!(
            failures,
            [
                Outcome::Answered(Code::Unavailable),
                Outcome::Connection,
                Outcome::Timeout,
                Outcome::Cancelled
            ]
        );
        let lenient = settings
            .count_timeouts(false)
            .count_connection_errors(false);
        assert!(!Outcome::Cancelled.is_failure(&lenient));
        assert!(!Outcome::Connection.is_failure(&lenient));
    }

    #[test]
    fn tonic_timeouts_are_told_from_connection_errors() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(Outcome::of_error(&reset), Outcome::Connection);
        let expired = tonic::TimeoutExpired(());
        assert_eq!(Outcome::of_error(&expired), Outcome::Timeout);
    }
}
