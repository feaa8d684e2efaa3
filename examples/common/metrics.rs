//! `--metrics-listen ADDR`: the crate's metrics (see `tonic_etcd::observe`)
//! in the Prometheus text format at `http://ADDR/metrics`, served by
//! `metrics-exporter-prometheus`.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use metrics_util::MetricKindMask;

/// The buckets of `tonic_etcd_client_request_duration_seconds`, in seconds:
/// from half a millisecond (a request on loopback) to 10 s.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How long a counter or histogram that no longer changes (an endpoint gone
/// from the registry, or idle) stays in the output.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// The metrics flag of both examples.
#[derive(Debug, clap::Args)]
pub struct MetricsArgs {
    /// Serve the metrics in the Prometheus text format at
    /// http://ADDR/metrics (e.g. 127.0.0.1:9100).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

impl MetricsArgs {
    /// With `--metrics-listen`, installs the Prometheus recorder and its
    /// HTTP listener on the current tokio runtime.
    pub fn install(&self) -> Result<(), String> {
        let Some(addr) = self.metrics_listen else {
            return Ok(());
        };
        PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_buckets_for_metric(
                Matcher::Full(tonic_etcd::observe::CLIENT_REQUEST_DURATION_SECONDS.into()),
                &DURATION_BUCKETS,
            )
            .and_then(|builder| {
                builder
                    .idle_timeout(
                        MetricKindMask::COUNTER | MetricKindMask::HISTOGRAM,
                        Some(IDLE_TIMEOUT),
                    )
                    .install()
            })
            .map_err(|error| format!("cannot serve metrics on {addr}: {error}"))?;
        tonic_etcd::observe::describe();
        Ok(())
    }
}
