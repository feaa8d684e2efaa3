//! The names of the crate's metrics: a public contract (see the table in
//! [`observe`](super)), so that dashboards and tests need not spell them.

/// Counter of requests through a [`Balancer`](crate::Balancer), one per
/// attempt on an endpoint; labels `service`, `endpoint`, `code`.
///
/// ```
/// assert_eq!(tonic_etcd::observe::CLIENT_REQUESTS_TOTAL, "tonic_etcd_client_requests_total");
/// ```
pub const CLIENT_REQUESTS_TOTAL: &str = "tonic_etcd_client_requests_total";

/// Histogram of the duration of those requests, from the pick to the end of
/// the response (its trailers), in seconds; labels `service`, `endpoint`.
///
/// ```
/// assert!(tonic_etcd::observe::CLIENT_REQUEST_DURATION_SECONDS.ends_with("_seconds"));
/// ```
pub const CLIENT_REQUEST_DURATION_SECONDS: &str = "tonic_etcd_client_request_duration_seconds";

/// Gauge of the requests in flight on an endpoint; labels `service`,
/// `endpoint`.
///
/// ```
/// assert!(tonic_etcd::observe::CLIENT_REQUESTS_IN_FLIGHT.starts_with("tonic_etcd_"));
/// ```
pub const CLIENT_REQUESTS_IN_FLIGHT: &str = "tonic_etcd_client_requests_in_flight";

/// Gauge of a balancer's endpoints per state; labels `service`, `state`
/// (one of [`ENDPOINT_STATES`]).
///
/// ```
/// assert!(tonic_etcd::observe::BALANCER_ENDPOINTS.starts_with("tonic_etcd_balancer"));
/// ```
pub const BALANCER_ENDPOINTS: &str = "tonic_etcd_balancer_endpoints";

/// The values of the `state` label of [`BALANCER_ENDPOINTS`].
///
/// ```
/// assert!(tonic_etcd::observe::ENDPOINT_STATES.contains(&"ejected"));
/// ```
pub const ENDPOINT_STATES: [&str; 4] = ["ready", "connecting", "ejected", "unhealthy"];

/// Counter of ejections from a balancer's ready set; labels `service`,
/// `endpoint`, `reason`.
///
/// ```
/// assert!(tonic_etcd::observe::BALANCER_EJECTIONS_TOTAL.ends_with("_total"));
/// ```
pub const BALANCER_EJECTIONS_TOTAL: &str = "tonic_etcd_balancer_ejections_total";

/// Gauge of the instances a discovery sees; label `service`.
///
/// ```
/// assert!(tonic_etcd::observe::DISCOVERY_INSTANCES.contains("discovery"));
/// ```
pub const DISCOVERY_INSTANCES: &str = "tonic_etcd_discovery_instances";

/// Counter of the discovery watches lost and started again; label `service`.
///
/// ```
/// assert!(tonic_etcd::observe::DISCOVERY_WATCH_RESTARTS_TOTAL.ends_with("_total"));
/// ```
pub const DISCOVERY_WATCH_RESTARTS_TOTAL: &str = "tonic_etcd_discovery_watch_restarts_total";

/// Counter of the discovery resyncs (a Get of the whole prefix after a
/// compaction or an etcd behind the revision seen); label `service`.
///
/// ```
/// assert!(tonic_etcd::observe::DISCOVERY_RESYNCS_TOTAL.ends_with("_total"));
/// ```
pub const DISCOVERY_RESYNCS_TOTAL: &str = "tonic_etcd_discovery_resyncs_total";

/// Gauge, 1 while a registration's key is held by a live lease, else 0;
/// labels `service`, `id`.
///
/// ```
/// assert!(tonic_etcd::observe::REGISTRATION_UP.ends_with("_up"));
/// ```
pub const REGISTRATION_UP: &str = "tonic_etcd_registration_up";

/// Counter of re-registrations: the key put again with a fresh lease after
/// the previous one was lost; labels `service`, `id`.
///
/// ```
/// assert!(tonic_etcd::observe::REGISTRATION_REREGISTRATIONS_TOTAL.ends_with("_total"));
/// ```
pub const REGISTRATION_REREGISTRATIONS_TOTAL: &str =
    "tonic_etcd_registration_reregistrations_total";

/// Counter of the leases a registration lost while holding its key (a
/// keepalive answered with TTL 0 or not at all, its stream closed or failed,
/// the watch of the own key lost); labels `service`, `id`.
///
/// ```
/// assert!(tonic_etcd::observe::REGISTRATION_KEEPALIVE_FAILURES_TOTAL.ends_with("_total"));
/// ```
pub const REGISTRATION_KEEPALIVE_FAILURES_TOTAL: &str =
    "tonic_etcd_registration_keepalive_failures_total";

/// Every metric name above, in the order of the table.
///
/// ```
/// assert_eq!(tonic_etcd::observe::ALL.len(), 11);
/// ```
pub const ALL: [&str; 11] = [
    CLIENT_REQUESTS_TOTAL,
    CLIENT_REQUEST_DURATION_SECONDS,
    CLIENT_REQUESTS_IN_FLIGHT,
    BALANCER_ENDPOINTS,
    BALANCER_EJECTIONS_TOTAL,
    DISCOVERY_INSTANCES,
    DISCOVERY_WATCH_RESTARTS_TOTAL,
    DISCOVERY_RESYNCS_TOTAL,
    REGISTRATION_UP,
    REGISTRATION_REREGISTRATIONS_TOTAL,
    REGISTRATION_KEEPALIVE_FAILURES_TOTAL,
];
