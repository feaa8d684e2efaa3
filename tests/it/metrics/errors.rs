//! Failures in the client's metrics: a server that fails every request (run
//! here, in the test) counts `UNAVAILABLE` on its endpoint; an instance that
//! cannot be reached counts `UNAVAILABLE` for the attempt and one ejection.

use std::net::SocketAddr;
use std::time::Duration;

use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use tonic_etcd::{Instance, Registrar};

use crate::support;
use crate::support::balancer::hello::greeter_server::{Greeter, GreeterServer};
use crate::support::balancer::hello::{HelloReply, HelloRequest};
use crate::support::examples::Cmd;
use crate::support::scrape::wait_samples;
use crate::support::Etcd;

use super::metrics_addr;

const WITHIN: Duration = Duration::from_secs(20);

/// Fails every request with `UNAVAILABLE`, as `--error-rate 1.0` would.
struct Failing;

#[tonic::async_trait]
impl Greeter for Failing {
    async fn say_hello(&self, _: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Err(Status::unavailable("injected failure"))
    }
}

/// Serves [`Failing`] on a free port of 127.0.0.1 until the runtime ends.
fn failing_server() -> SocketAddr {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = incoming.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(GreeterServer::new(Failing))
            .serve_with_incoming(incoming),
    );
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_count_unavailable_and_an_unreachable_instance_an_ejection() {
    let etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let service = support::unique("metrics-fail");
    let failing = failing_server().to_string();
    // Nothing listens there.
    let dead = format!("127.0.0.1:{}", support::free_port());
    let mut registrations = Vec::new();
    for addr in [&failing, &dead] {
        let instance = Instance::new(service.as_str(), addr.as_str()).unwrap();
        registrations.push(
            Registrar::new(etcd.client().await)
                .register(instance)
                .await
                .unwrap(),
        );
    }

    let metrics = metrics_addr();
    let proc = Cmd::client()
        .args([
            "--etcd",
            &endpoint,
            "--service",
            &service,
            "--requests",
            "10",
        ])
        .args(["--metrics-listen", metrics.to_string().as_str()])
        .args(["--linger-ms", "30000"])
        .spawn();
    let unavailable = |s: &support::scrape::Samples, addr: &str| {
        s.value(
            "tonic_etcd_client_requests_total",
            &[
                ("service", &service),
                ("endpoint", addr),
                ("code", "UNAVAILABLE"),
            ],
        )
    };
    // Every request reaches the failing server, the first one after trying
    // the dead instance (or not, if the round robin starts with the other).
    let samples = wait_samples(
        metrics,
        WITHIN,
        "10 UNAVAILABLE from the failing server",
        |s| unavailable(s, &failing) == Some(10.0),
    )
    .await;
    assert_eq!(
        unavailable(&samples, &dead),
        Some(1.0),
        "one attempt on the dead instance"
    );
    assert_eq!(
        samples.value(
            "tonic_etcd_balancer_ejections_total",
            &[
                ("service", &service),
                ("endpoint", &dead),
                ("reason", "connect_error")
            ]
        ),
        Some(1.0)
    );
    // The dead one is being probed (connecting); the failing one was ejected
    // by outlier detection after 5 failures in a row (and served anyway, in
    // panic mode, as nothing else is ready).
    assert_eq!(
        samples.value(
            "tonic_etcd_balancer_ejections_total",
            &[
                ("service", &service),
                ("endpoint", &failing),
                ("reason", "consecutive_failures")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        samples.value(
            "tonic_etcd_balancer_endpoints",
            &[("service", &service), ("state", "connecting")]
        ),
        Some(1.0)
    );
    assert_eq!(
        samples.value(
            "tonic_etcd_balancer_endpoints",
            &[("service", &service), ("state", "ejected")]
        ),
        Some(1.0)
    );
    assert!(
        samples
            .find("tonic_etcd_client_requests_total", &[("code", "OK")])
            .next()
            .is_none(),
        "no OK"
    );
    // The client saw each failure (it prints it after the metric counts it).
    support::wait_until(WITHIN, "10 failures on stderr", || {
        let seen = proc.stderr().contains("request 10: failed: Unavailable");
        async move { seen }
    })
    .await;
    drop(proc);
    drop(registrations);
}
