//! [`OutlierDetection`]: the settings of passive outlier detection, which
//! takes out of rotation an endpoint whose requests fail (gRPC's A50, Envoy's
//! outlier detection).

use std::time::Duration;

use tonic::Code;

/// The settings of passive outlier detection, set with
/// [`BalancerBuilder::outlier_detection`](crate::BalancerBuilder::outlier_detection).
/// On by default, with conservative settings.
///
/// Every attempt's outcome is watched. An endpoint is **ejected** (taken out
/// of rotation, its connection kept) when
///
/// - its last [`consecutive_failures`](Self::consecutive_failures) attempts
///   all failed (default 5), or
/// - at least [`failure_rate`](Self::failure_rate)'s share of its attempts
///   failed within the current [`interval`](Self::interval), once it has
///   seen the minimum number of requests (default: 50 % of at least 20
///   requests within 10 s).
///
/// It stays out for the base ejection time times the number of times it was
/// ejected, capped ([`ejection_time`](Self::ejection_time): 30 s, 60 s, …
/// up to 300 s); the count goes down by one for each interval it then spends
/// in rotation. It comes back **on probation**: until it answers once, one
/// more failure ejects it again. At most
/// [`max_ejected_percent`](Self::max_ejected_percent) of the endpoints are
/// ejected at once (default 10 %), but always at least one may be.
///
/// What counts as a failure (the defaults):
///
/// - a connection error after the request was sent (connection reset, closed,
///   HTTP/2 error, a keepalive ping unanswered);
/// - an answer with a gRPC code of [`failure_codes`](Self::failure_codes)
///   (default: `UNAVAILABLE`), read from the response head (a trailers-only
///   answer, which is how servers answer a failed unary call);
/// - a deadline that expired while waiting for the endpoint's answer: tonic's
///   `TimeoutExpired`, or the request's future dropped before the response
///   head arrived (a caller's `tokio::time::timeout`); see
///   [`count_timeouts`](Self::count_timeouts).
///
/// Application answers (`NOT_FOUND`, `INVALID_ARGUMENT`, `ALREADY_EXISTS`,
/// `PERMISSION_DENIED`, `FAILED_PRECONDITION`, …) never count, whatever the
/// settings. Connection refusals are not counted here: they eject the
/// endpoint at once, until it can be connected to again.
///
/// ```
/// use std::time::Duration;
/// use tonic_etcd::{Balancer, OutlierDetection, Policy};
///
/// let detection = OutlierDetection::new()
///     .consecutive_failures(3)
///     .failure_rate(30, 50)
///     .ejection_time(Duration::from_secs(10), Duration::from_secs(120))
///     .failure_codes([tonic::Code::Unavailable, tonic::Code::ResourceExhausted]);
/// let builder = Balancer::builder(Policy::P2c).outlier_detection(detection);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierDetection {
    pub(super) enabled: bool,
    pub(super) consecutive_failures: u32,
    /// `(percent, minimum requests)`.
    pub(super) failure_rate: Option<(u32, u32)>,
    pub(super) interval: Duration,
    pub(super) base_ejection_time: Duration,
    pub(super) max_ejection_time: Duration,
    pub(super) max_ejected_percent: u32,
    pub(super) failure_codes: Vec<Code>,
    pub(super) count_timeouts: bool,
    pub(super) count_connection_errors: bool,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self::new()
    }
}

/// The codes that are an application's answer, never an endpoint's failure.
const APPLICATION_CODES: [Code; 10] = [
    Code::Ok,
    Code::Cancelled,
    Code::InvalidArgument,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::FailedPrecondition,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unauthenticated,
];

impl OutlierDetection {
    /// The defaults: see [`OutlierDetection`].
    ///
    /// ```
    /// let detection = tonic_etcd::OutlierDetection::new();
    /// assert!(detection.is_enabled());
    /// ```
    pub fn new() -> Self {
        Self {
            enabled: true,
            consecutive_failures: 5,
            failure_rate: Some((50, 20)),
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejected_percent: 10,
            failure_codes: vec![Code::Unavailable],
            count_timeouts: true,
            count_connection_errors: true,
        }
    }

    /// No outlier detection: only unreachable endpoints leave rotation.
    ///
    /// ```
    /// let detection = tonic_etcd::OutlierDetection::disabled();
    /// assert!(!detection.is_enabled());
    /// ```
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::new()
        }
    }

    /// Whether it ejects anything.
    ///
    /// ```
    /// assert!(tonic_etcd::OutlierDetection::default().is_enabled());
    /// ```
    pub fn is_enabled(&self) -> bool {
        self.enabled && (self.consecutive_failures > 0 || self.failure_rate.is_some())
    }

    /// Ejects after `n` failures in a row (default 5); 0 turns this rule off.
    ///
    /// ```
    /// let detection = tonic_etcd::OutlierDetection::new().consecutive_failures(3);
    /// ```
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = n;
        self
    }

    /// Ejects when at least `percent` % of the attempts within the current
    /// [`interval`](Self::interval) failed, once there were at least
    /// `min_requests` of them (default: 50 %, 20 requests). `percent` is
    /// capped at 100; a `min_requests` of 0 counts as 1.
    ///
    /// ```
    /// let detection = tonic_etcd::OutlierDetection::new().failure_rate(85, 100);
    /// ```
    pub fn failure_rate(mut self, percent: u32, min_requests: u32) -> Self {
        self.failure_rate = Some((percent.clamp(1, 100), min_requests.max(1)));
        self
    }

    /// Turns the failure-rate rule off (consecutive failures still eject).
    ///
    /// ```
    /// let detection = tonic_etcd::OutlierDetection::new().no_failure_rate();
    /// ```
    pub fn no_failure_rate(mut self) -> Self {
        self.failure_rate = None;
        self
    }

    /// The window of the failure-rate rule, and the time in rotation that
    /// takes one off an endpoint's count of ejections (default 10 s; at
    /// least 1 ms).
    ///
    /// ```
    /// let detection = tonic_etcd::OutlierDetection::new()
    ///     .interval(std::time::Duration::from_secs(5));
    /// ```
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The ejection time: `base` times the number of times the endpoint was
    /// ejected, at most `max` (default 30 s and 300 s; `max` is at least
    /// `base`).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let detection = tonic_etcd::OutlierDetection::new()
    ///     .ejection_time(Duration::from_secs(5), Duration::from_secs(60));
    /// ```
    pub fn ejection_time(mut self, base: Duration, max: Duration) -> Self {
        self.base_ejection_time = base;
        self.max_ejection_time = max.max(base);
        self
    }

    /// The most endpoints ejected at once, as a percentage of the known ones
    /// (default 10, capped at 100). One endpoint may always be ejected, even
    /// when the percentage of the set rounds down to none.
    ///
    /// ```
    /// let detection = tonic_etcd::OutlierDetection::new().max_ejected_percent(50);
    /// ```
    pub fn max_ejected_percent(mut self, percent: u32) -> Self {
        self.max_ejected_percent = percent.min(100);
        self
    }

    /// The gRPC codes that count as failures (default: `UNAVAILABLE`).
    /// Application answers are left out even if listed: `OK`, `CANCELLED`,
    /// `INVALID_ARGUMENT`, `NOT_FOUND`, `ALREADY_EXISTS`,
    /// `PERMISSION_DENIED`, `FAILED_PRECONDITION`, `ABORTED`, `OUT_OF_RANGE`,
    /// `UNAUTHENTICATED`.
    ///
    /// ```
    /// use tonic::Code;
    ///
    /// let detection = tonic_etcd::OutlierDetection::new()
    ///     .failure_codes([Code::Unavailable, Code::Internal]);
    /// ```
    pub fn failure_codes(mut self, codes: impl IntoIterator<Item = Code>) -> Self {
        self.failure_codes = codes
            .into_iter()
            .filter(|code| !APPLICATION_CODES.contains(code))
            .collect();
        self
    }

    /// Whether a deadline that expired while waiting for the endpoint counts
    /// (default `true`): tonic's `TimeoutExpired`, or the request's future
    /// dropped before its response head. Turn it off if your code drops
    /// requests for other reasons (a `select!` that loses interest).
    ///
    /// ```
    /// let detection = tonic_etcd::OutlierDetection::new().count_timeouts(false);
    /// ```
    pub fn count_timeouts(mut self, count: bool) -> Self {
        self.count_timeouts = count;
        self
    }

    /// Whether a connection error after the request was sent counts (default
    /// `true`).
    ///
    /// ```
    /// let detection = tonic_etcd::OutlierDetection::new().count_connection_errors(false);
    /// ```
    pub fn count_connection_errors(mut self, count: bool) -> Self {
        self.count_connection_errors = count;
        self
    }

    /// The ejection time after `times` ejections.
    pub(super) fn ejection_for(&self, times: u32) -> Duration {
        self.base_ejection_time
            .saturating_mul(times.max(1))
            .min(self.max_ejection_time)
    }

    /// How many of `known` endpoints may be ejected at once: the percentage,
    /// but at least one.
    pub(super) fn max_ejected(&self, known: usize) -> usize {
        (known * self.max_ejected_percent as usize / 100).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_time_grows_with_each_ejection_up_to_the_cap() {
        let detection = OutlierDetection::new();
        let secs = |n| detection.ejection_for(n).as_secs();
        assert_eq!(
            (secs(0), secs(1), secs(2), secs(10), secs(11)),
            (30, 30, 60, 300, 300)
        );
    }

    #[test]
    fn one_endpoint_may_always_be_ejected() {
        let detection = OutlierDetection::new();
        assert_eq!(detection.max_ejected(3), 1);
        assert_eq!(detection.max_ejected(25), 2);
        assert_eq!(detection.max_ejected_percent(50).max_ejected(3), 1);
        assert_eq!(
            OutlierDetection::new()
                .max_ejected_percent(100)
                .max_ejected(3),
            3
        );
    }

    #[test]
    fn application_codes_never_count() {
        let detection =
            OutlierDetection::new().failure_codes([Code::NotFound, Code::Internal, Code::Ok]);
        assert_eq!(detection.failure_codes, [Code::Internal]);
        assert!(!OutlierDetection::disabled().is_enabled());
        assert!(!OutlierDetection::new()
            .consecutive_failures(0)
            .no_failure_rate()
            .is_enabled());
    }
}
