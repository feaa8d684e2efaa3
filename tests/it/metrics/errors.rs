//! Failures in the client's metrics: a `helloworld-server --error-rate 1.0`
//! (a real process, failing every request with `UNAVAILABLE`) counts
//! `UNAVAILABLE` on its endpoint and an outlier ejection; an instance that
//! cannot be reached counts `UNAVAILABLE` for the attempt and a
//! `connect_error` ejection.

use std::time::Duration;

use tonic_etcd::{Instance, Registrar};

use crate::support;
use crate::support::examples::Cmd;
use crate::support::scrape::wait_samples;
use crate::support::Etcd;

use super::{metrics_addr, server};

const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_count_unavailable_and_an_unreachable_instance_an_ejection() {
    let etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let service = support::unique("metrics-fail");
    let (mut failing_server, _) = server(&endpoint, &service, &["--error-rate", "1.0"]);
    let failing = failing_server.addr.clone();
    failing_server
        .wait_registered(
            &etcd.client().await,
            &format!("/services/{service}/{failing}"),
            WITHIN,
        )
        .await;
    // Nothing listens there.
    let dead = format!("127.0.0.1:{}", support::free_port());
    let registration = Registrar::new(etcd.client().await)
        .register(Instance::new(service.as_str(), dead.as_str()).unwrap())
        .await
        .unwrap();

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
    // Its OK series is there from its first request, at 0.
    assert_eq!(
        samples.value(
            "tonic_etcd_client_requests_total",
            &[
                ("service", &service),
                ("endpoint", &failing),
                ("code", "OK")
            ]
        ),
        Some(0.0),
        "no OK"
    );
    // The client saw each failure (it prints it after the metric counts it).
    support::wait_until(WITHIN, "10 failures on stderr", || {
        let seen = proc.stderr().contains("request 10: failed: Unavailable");
        async move { seen }
    })
    .await;
    drop(proc);
    drop(registration);
    drop(failing_server);
}
