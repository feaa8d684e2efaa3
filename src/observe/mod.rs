//! What the crate tells operators: metrics through the
//! [`metrics`](https://docs.rs/metrics) facade (feature `metrics`, on by
//! default), and `tracing` events at info level for the state changes of
//! registrations and discoveries.
//!
//! # Metrics
//!
//! Install any `metrics` recorder (Prometheus, OpenTelemetry, statsd…),
//! before building the balancers, and the crate records into it; without
//! one, nothing is kept. The names, labels and types are a public contract
//! ([`ALL`] lists the names):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `tonic_etcd_client_requests_total` | counter | `service`, `endpoint`, `code` |
//! | `tonic_etcd_client_request_duration_seconds` | histogram | `service`, `endpoint` |
//! | `tonic_etcd_client_requests_in_flight` | gauge | `service`, `endpoint` |
//! | `tonic_etcd_balancer_endpoints` | gauge | `service`, `state` |
//! | `tonic_etcd_balancer_ejections_total` | counter | `service`, `endpoint`, `reason` |
//! | `tonic_etcd_discovery_instances` | gauge | `service` |
//! | `tonic_etcd_discovery_watch_restarts_total` | counter | `service` |
//! | `tonic_etcd_discovery_resyncs_total` | counter | `service` |
//! | `tonic_etcd_registration_up` | gauge (1 or 0) | `service`, `id` |
//! | `tonic_etcd_registration_reregistrations_total` | counter | `service`, `id` |
//! | `tonic_etcd_registration_keepalive_failures_total` | counter | `service`, `id` |
//!
//! - `endpoint` is the instance's address; `code` the gRPC code's name
//!   (`OK`, `UNAVAILABLE`…), read from the response's `grpc-status`; a
//!   transport error counts as `UNAVAILABLE`, a request dropped by its caller
//!   before its response ended as `CANCELLED`. Each attempt of a request on an
//!   endpoint counts once (a request retried elsewhere counts on both); a
//!   request that found no ready endpoint counts nowhere (its caller gets
//!   `UNAVAILABLE`, "no ready endpoint").
//! - The duration runs from the pick to the end of the response (its
//!   trailers), in seconds.
//! - `state` is one of [`ENDPOINT_STATES`]; the gauge of a service sums the
//!   endpoints of the process's balancers of that service (a dropped
//!   balancer's share leaves the sum).
//! - Counters whose labels are known early show as 0 until their first
//!   increment: a discovery's watch restarts and resyncs, a registration's
//!   re-registrations and keepalive failures, an endpoint's `OK` and
//!   `UNAVAILABLE` requests from its first request.
//!
//! **Handles.** An endpoint's first request asks the recorder for the
//! endpoint's handles (in-flight gauge, duration histogram, `OK` and
//! `UNAVAILABLE` counters), and its later requests only touch them; they
//! are asked for again once a minute. A recorder installed after an
//! endpoint's first request therefore sees that endpoint only from the next
//! renewal, up to a minute later: install it first.
//!
//! **Cardinality.** The per-endpoint series are created by the first request
//! to an endpoint and never deleted by the crate (the facade has no way to):
//! once an endpoint leaves the registry, its counters and histogram keep
//! their last values and its in-flight gauge reads 0 after its last request.
//! A client that sees many addresses come and go should let its exporter
//! forget idle series, as the examples do with
//! `PrometheusBuilder::idle_timeout(MetricKindMask::COUNTER |
//! MetricKindMask::HISTOGRAM, Some(10 min))`: a gone endpoint's series then
//! disappear 10 minutes after its last request (a live but idle one's too,
//! to come back from 0 with its next request, which Prometheus' `rate`
//! reads as a counter reset). That timeout must exceed a minute: a series
//! the exporter forgets leaves its held handles recording into nothing until
//! their renewal. The other gauges are set on changes only, so they must not
//! be given an idle timeout.
//!
//! # Events
//!
//! At info level, with the fields `service`, `endpoint` (where there is
//! one), `id` for registrations, and `reason`:
//!
//! - `registration up` (`reason`: `registered` or `re-registered`),
//!   `registration down` (`reason`: the error), `registration ended`
//!   (`reason`: `deregistered` or `displaced`);
//! - `discovery reconnecting` (`reason`: the error) and `discovery
//!   connected`.
//!
//! ```
//! use tonic_etcd::observe;
//!
//! assert!(observe::ALL.contains(&observe::REGISTRATION_UP));
//! observe::describe(); // help texts, for the recorder installed before
//! ```

mod attempt;
mod balancers;
#[cfg(feature = "metrics")]
mod code;
mod discovery;
mod metrics;
mod names;
mod registration;

pub(crate) use attempt::{Attempt, EndpointMetrics};
pub(crate) use balancers::BalancerGauges;
pub(crate) use discovery::discovery_health;
pub use metrics::describe;
// The hooks of the other modules: each a one-line call. Some are there for
// the hooks to come (one state at a time, attempts recorded by hand).
#[allow(unused_imports)]
pub(crate) use metrics::{
    discovery_instances, ejected, endpoints, in_flight, keepalive_failed, registration_up,
    request_finished, reregistered, resynced, watch_restarted,
};
pub use names::*;
pub(crate) use registration::follow_registration;
