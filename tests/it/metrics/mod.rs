//! The metrics of `tonic_etcd::observe`, scraped over HTTP from the example
//! binaries' `--metrics-listen` (`support::scrape`), with the values checked
//! against what the test made happen.
//!
//! - `requests`: 30 requests over three servers count 10 `OK` each, with their
//!   durations, no request left in flight, the endpoint gauges, and each
//!   server's `registration_up`.
//! - `instances`: a SIGTERM moves `discovery_instances` from 3 to 2; an etcd
//!   restart counts a watch restart.
//! - `registration`: `registration_up` is 1 while registered, 0 while etcd is
//!   down, 1 again after, with the lost lease and the re-registration counted.
//! - `errors`: a `helloworld-server --error-rate 1.0` counts `UNAVAILABLE`
//!   and an outlier ejection; an instance that cannot be reached counts a
//!   `connect_error` ejection.
//! - `outside`: the outside check, end to end: three servers and a
//!   client; the `OK` counts add up, a SIGTERM moves the instances gauge
//!   from 3 to 2, and every metric of the table is there with its labels
//!   (with a watch restart and a resync made to happen).
//! - `shared`: two balancers of one service in one process: the endpoint
//!   gauges are the sum of theirs.
//! - `dashboard`: the Grafana dashboard of `contrib/` covers the table.
//! - `format`: the scrape helper's parser, on synthetic input.

mod dashboard;
mod errors;
mod format;
mod instances;
mod outside;
mod registration;
mod requests;
#[cfg(feature = "metrics")]
mod shared;

use std::net::SocketAddr;

use crate::support;
use crate::support::examples::{Cmd, Server};

/// A fresh `127.0.0.1` address for a `--metrics-listen`.
fn metrics_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], support::free_port()))
}

/// A `helloworld-server` of `service` that serves its metrics at the address
/// returned with it.
fn server(etcd: &str, service: &str, extra: &[&str]) -> (Server, SocketAddr) {
    let metrics = metrics_addr();
    let server = Server::start(
        Cmd::server()
            .args(["--etcd", etcd, "--service", service])
            .args(["--metrics-listen", &metrics.to_string()])
            .args(extra),
    );
    (server, metrics)
}
