//! [`EndpointStatus`] and [`EndpointState`]: one endpoint of a balancer, as an
//! operator sees it.

use std::time::Duration;

use crate::instance::Instance;

/// Where an endpoint stands, in [`EndpointStatus::state`].
///
/// ```
/// use tonic_etcd::EndpointState;
///
/// assert_eq!(EndpointState::Ejected.to_string(), "ejected");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndpointState {
    /// In rotation.
    Ready,
    /// Out of rotation because it could not be connected to; a background
    /// probe reconnects it.
    Connecting,
    /// Out of rotation by outlier detection, until its ejection time is over.
    Ejected,
    /// Out of rotation because its health service does not report `SERVING`.
    Unhealthy,
}

impl std::fmt::Display for EndpointState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EndpointState::Ready => "ready",
            EndpointState::Connecting => "connecting",
            EndpointState::Ejected => "ejected",
            EndpointState::Unhealthy => "unhealthy",
        })
    }
}

/// One endpoint of a [`Balancer`](crate::Balancer), from
/// [`Balancer::endpoints`](crate::Balancer::endpoints).
///
/// ```no_run
/// # fn f(balancer: tonic_etcd::Balancer) {
/// for endpoint in balancer.endpoints() {
///     println!(
///         "{} at {}: {} {} ({} requests, {} failed, {} in flight, ~{:?})",
///         endpoint.key,
///         endpoint.instance.addr,
///         endpoint.state,
///         endpoint.reason.as_deref().unwrap_or(""),
///         endpoint.requests,
///         endpoint.failures,
///         endpoint.in_flight,
///         endpoint.latency,
///     );
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStatus {
    /// The key of the instance in the change stream (for a discovery, the
    /// instance's identity).
    pub key: String,
    /// The instance as last inserted (its address is `instance.addr`).
    pub instance: Instance,
    /// Whether requests may go to it: its state is
    /// [`Ready`](EndpointState::Ready), or every endpoint is out for its
    /// answers and panic mode routes to them all.
    pub ready: bool,
    /// Where it stands.
    pub state: EndpointState,
    /// Why it is out of rotation, e.g. "ejected after 5 consecutive
    /// failures, for 30s (29.1s left)", "NOT_SERVING", or the connection
    /// error; "panic mode" is added when it is routed to anyway. `None`
    /// while ready.
    pub reason: Option<String>,
    /// The attempts that reached it on its current connection (answered,
    /// failed or cancelled).
    pub requests: u64,
    /// How many of them counted as failures for outlier detection.
    pub failures: u64,
    /// Requests on their way to it or waiting for its answer now.
    pub in_flight: usize,
    /// The peak-EWMA estimate of its response time (what p2c compares).
    pub latency: Duration,
}
