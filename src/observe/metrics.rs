//! One function per recorded fact, each a call of the `metrics` facade with
//! the names and labels of the table (see [`observe`](super)). Without the
//! `metrics` feature they do nothing and compile to nothing; without a
//! recorder installed, the facade's no-op recorder drops what they record.

#[cfg(feature = "metrics")]
use metrics::{counter, gauge, histogram, SharedString};

#[cfg(feature = "metrics")]
use super::names::*;

/// A request's attempt on `endpoint` ended with the gRPC code `code` after
/// `elapsed`: counted, and its duration recorded. (The balancer records
/// through an [`Attempt`](super::Attempt), which shares its labels; this and
/// [`in_flight`] are for a call path that records by hand.)
#[cfg(feature = "metrics")]
#[allow(dead_code)]
pub(crate) fn request_finished(
    service: &str,
    endpoint: &str,
    code: &'static str,
    elapsed: std::time::Duration,
) {
    let (service, endpoint) = (service.to_owned(), endpoint.to_owned());
    counter!(CLIENT_REQUESTS_TOTAL, "service" => service.clone(), "endpoint" => endpoint.clone(), "code" => code)
        .increment(1);
    histogram!(CLIENT_REQUEST_DURATION_SECONDS, "service" => service, "endpoint" => endpoint)
        .record(elapsed.as_secs_f64());
}

/// `delta` more (or, negative, fewer) requests in flight on `endpoint`.
#[cfg(feature = "metrics")]
#[allow(dead_code)]
pub(crate) fn in_flight(service: &str, endpoint: &str, delta: f64) {
    gauge!(CLIENT_REQUESTS_IN_FLIGHT, "service" => service.to_owned(), "endpoint" => endpoint.to_owned())
        .increment(delta);
}

/// The balancers of `service` have `n` endpoints in `state` (one of
/// [`ENDPOINT_STATES`]), summed by [`BalancerGauges`](super::BalancerGauges).
#[cfg(feature = "metrics")]
pub(crate) fn endpoints(service: &str, state: &'static str, n: usize) {
    gauge!(BALANCER_ENDPOINTS, "service" => service.to_owned(), "state" => state).set(n as f64);
}

/// A balancer ejected `endpoint` for `reason` (a short, fixed word such as
/// `connect_error`: it is a label).
#[cfg(feature = "metrics")]
pub(crate) fn ejected(service: &str, endpoint: &str, reason: &'static str) {
    counter!(BALANCER_EJECTIONS_TOTAL, "service" => service.to_owned(), "endpoint" => endpoint.to_owned(), "reason" => reason)
        .increment(1);
}

/// A discovery of `service` sees `n` instances. Its two counters are touched
/// too (by 0), so that they show from the start, as 0, rather than from
/// their first increment: a `rate` over them then sees that increment.
#[cfg(feature = "metrics")]
pub(crate) fn discovery_instances(service: &str, n: usize) {
    let service = SharedString::from(service.to_owned());
    gauge!(DISCOVERY_INSTANCES, "service" => service.clone()).set(n as f64);
    counter!(DISCOVERY_WATCH_RESTARTS_TOTAL, "service" => service.clone()).increment(0);
    counter!(DISCOVERY_RESYNCS_TOTAL, "service" => service).increment(0);
}

/// A discovery of `service` lost its watch and starts another.
#[cfg(feature = "metrics")]
pub(crate) fn watch_restarted(service: &str) {
    counter!(DISCOVERY_WATCH_RESTARTS_TOTAL, "service" => service.to_owned()).increment(1);
}

/// A discovery of `service` read its whole prefix again.
#[cfg(feature = "metrics")]
pub(crate) fn resynced(service: &str) {
    counter!(DISCOVERY_RESYNCS_TOTAL, "service" => service.to_owned()).increment(1);
}

/// The registration `id` of `service` holds its key (`true`) or not.
#[cfg(feature = "metrics")]
pub(crate) fn registration_up(service: &str, id: &str, up: bool) {
    gauge!(REGISTRATION_UP, "service" => service.to_owned(), "id" => id.to_owned()).set(if up {
        1.0
    } else {
        0.0
    });
}

/// The registration `id` of `service` is followed: its counters show as 0
/// until their first increment.
#[cfg(feature = "metrics")]
pub(crate) fn registration_followed(service: &str, id: &str) {
    counter!(REGISTRATION_REREGISTRATIONS_TOTAL, "service" => service.to_owned(), "id" => id.to_owned())
        .increment(0);
    counter!(REGISTRATION_KEEPALIVE_FAILURES_TOTAL, "service" => service.to_owned(), "id" => id.to_owned())
        .increment(0);
}

/// The registration `id` of `service` holds its key again, with a fresh lease.
#[cfg(feature = "metrics")]
pub(crate) fn reregistered(service: &str, id: &str) {
    counter!(REGISTRATION_REREGISTRATIONS_TOTAL, "service" => service.to_owned(), "id" => id.to_owned())
        .increment(1);
}

/// The registration `id` of `service` lost the lease that held its key.
#[cfg(feature = "metrics")]
pub(crate) fn keepalive_failed(service: &str, id: &str) {
    counter!(REGISTRATION_KEEPALIVE_FAILURES_TOTAL, "service" => service.to_owned(), "id" => id.to_owned())
        .increment(1);
}

// Without the feature: the same functions, empty.

#[cfg(not(feature = "metrics"))]
#[inline(always)]
#[allow(dead_code)]
pub(crate) fn request_finished(_: &str, _: &str, _: &'static str, _: std::time::Duration) {}
#[cfg(not(feature = "metrics"))]
#[inline(always)]
#[allow(dead_code)]
pub(crate) fn in_flight(_: &str, _: &str, _: f64) {}
#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn endpoints(_: &str, _: &'static str, _: usize) {}
#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn ejected(_: &str, _: &str, _: &'static str) {}
#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn discovery_instances(_: &str, _: usize) {}
#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn watch_restarted(_: &str) {}
#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn resynced(_: &str) {}
#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn registration_up(_: &str, _: &str, _: bool) {}
#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn registration_followed(_: &str, _: &str) {}
#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn reregistered(_: &str, _: &str) {}
#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn keepalive_failed(_: &str, _: &str) {}

/// Describes the crate's metrics to the installed recorder: their help text
/// and units (a Prometheus exporter prints them as `# HELP` lines). Call it
/// once, after installing the recorder; the metrics are recorded whether or
/// not it was called. Does nothing without the `metrics` feature.
///
/// ```
/// // With metrics_exporter_prometheus::PrometheusBuilder::new().install()? first:
/// tonic_etcd::observe::describe();
/// ```
pub fn describe() {
    #[cfg(feature = "metrics")]
    {
        use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
        describe_counter!(
            CLIENT_REQUESTS_TOTAL,
            "Requests through a balancer, one per attempt on an endpoint, by gRPC code"
        );
        describe_histogram!(
            CLIENT_REQUEST_DURATION_SECONDS,
            Unit::Seconds,
            "Duration of the requests through a balancer, to the end of the response"
        );
        describe_gauge!(
            CLIENT_REQUESTS_IN_FLIGHT,
            "Requests in flight on an endpoint of a balancer"
        );
        describe_gauge!(BALANCER_ENDPOINTS, "Endpoints of a balancer, by state");
        describe_counter!(
            BALANCER_EJECTIONS_TOTAL,
            "Endpoints ejected from a balancer's ready set, by reason"
        );
        describe_gauge!(DISCOVERY_INSTANCES, "Instances a discovery sees");
        describe_counter!(
            DISCOVERY_WATCH_RESTARTS_TOTAL,
            "Discovery watches lost and started again"
        );
        describe_counter!(
            DISCOVERY_RESYNCS_TOTAL,
            "Discovery resyncs: the whole prefix read again"
        );
        describe_gauge!(
            REGISTRATION_UP,
            "1 while a registration's key is held by a live lease, else 0"
        );
        describe_counter!(
            REGISTRATION_REREGISTRATIONS_TOTAL,
            "Registrations put again with a fresh lease after losing one"
        );
        describe_counter!(
            REGISTRATION_KEEPALIVE_FAILURES_TOTAL,
            "Leases a registration lost while holding its key"
        );
    }
}
