//! 30 requests over three servers: 10 `OK` each, as the client's metrics say.

use std::time::Duration;

use crate::support;
use crate::support::examples::Cmd;
use crate::support::scrape::{wait_samples, Samples};
use crate::support::{wait_until, Etcd};

use super::{metrics_addr, server};

const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_requests_over_three_servers_count_ten_ok_each() {
    let etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let client = etcd.client().await;
    let service = support::unique("metrics-ok");
    let servers: Vec<_> = (0..3).map(|_| server(&endpoint, &service, &[])).collect();
    let prefix = format!("/services/{service}/");
    wait_until(WITHIN, "three servers registered", || async {
        support::kv::keys(&client, &prefix)
            .await
            .is_ok_and(|keys| keys.len() == 3)
    })
    .await;

    // Each server: registered, and says so.
    for (server, metrics) in &servers {
        let labels = [("service", service.as_str()), ("id", server.addr.as_str())];
        wait_samples(*metrics, WITHIN, "registration_up = 1", |s| {
            s.value("tonic_etcd_registration_up", &labels) == Some(1.0)
        })
        .await;
    }

    let client_metrics = metrics_addr();
    let mut proc = Cmd::client()
        .args(["--etcd", &endpoint, "--service", &service])
        .args(["--requests", "30", "--metrics-listen"])
        .args([client_metrics.to_string().as_str(), "--linger-ms", "30000"])
        .spawn();
    wait_until(WITHIN, "30 replies", || {
        let replies = proc.stdout().lines().count();
        async move { replies == 30 }
    })
    .await;
    assert!(proc.running(), "the client lingers\n{}", proc.output());

    let samples = wait_samples(client_metrics, WITHIN, "30 requests counted", |s| {
        s.find("tonic_etcd_client_requests_total", &[("service", &service)])
            .map(|s| s.value)
            .sum::<f64>()
            == 30.0
    })
    .await;
    let addrs: Vec<&str> = servers.iter().map(|(s, _)| s.addr.as_str()).collect();
    let ok: Vec<Option<f64>> = addrs
        .iter()
        .map(|addr| ok_count(&samples, &service, addr))
        .collect();
    assert_eq!(ok, [Some(10.0); 3], "OK per endpoint {addrs:?}");
    for addr in &addrs {
        let labels = [("service", service.as_str()), ("endpoint", *addr)];
        assert_eq!(
            samples.value("tonic_etcd_client_request_duration_seconds_count", &labels),
            Some(10.0),
            "durations of {addr}"
        );
        assert!(
            samples
                .value("tonic_etcd_client_request_duration_seconds_sum", &labels)
                .is_some_and(|sum| sum > 0.0),
            "duration sum of {addr}"
        );
        assert_eq!(
            samples.value("tonic_etcd_client_requests_in_flight", &labels),
            Some(0.0),
            "in flight on {addr}"
        );
    }
    for (state, n) in [
        ("ready", 3.0),
        ("connecting", 0.0),
        ("ejected", 0.0),
        ("unhealthy", 0.0),
    ] {
        assert_eq!(
            samples.value(
                "tonic_etcd_balancer_endpoints",
                &[("service", &service), ("state", state)]
            ),
            Some(n),
            "{state} endpoints"
        );
    }
    assert_eq!(
        samples.value("tonic_etcd_discovery_instances", &[("service", &service)]),
        Some(3.0)
    );
    drop(proc);
}

/// `tonic_etcd_client_requests_total{code="OK"}` of `endpoint`.
fn ok_count(samples: &Samples, service: &str, endpoint: &str) -> Option<f64> {
    samples.value(
        "tonic_etcd_client_requests_total",
        &[("service", service), ("endpoint", endpoint), ("code", "OK")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_serves_its_metrics_for_the_linger_then_exits() {
    let etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let service = support::unique("metrics-linger");
    let (mut server, _) = server(&endpoint, &service, &[]);
    server
        .wait_registered(
            &etcd.client().await,
            &format!("/services/{service}/{}", server.addr),
            WITHIN,
        )
        .await;
    let client_metrics = metrics_addr();
    let mut proc = Cmd::client()
        .args([
            "--etcd",
            &endpoint,
            "--service",
            &service,
            "--requests",
            "3",
        ])
        .args(["--metrics-listen", client_metrics.to_string().as_str()])
        .args(["--linger-ms", "1500"])
        .spawn();
    // Scraped after the last reply: the final values.
    wait_until(WITHIN, "3 replies", || {
        let replies = proc.stdout().lines().count();
        async move { replies == 3 }
    })
    .await;
    let samples = wait_samples(client_metrics, WITHIN, "3 OK", |s| {
        ok_count(s, &service, &server.addr) == Some(3.0)
    })
    .await;
    assert!(samples.value("tonic_etcd_discovery_instances", &[("service", &service)]) == Some(1.0));
    let status = proc.wait_exit(WITHIN).await;
    assert!(status.success(), "{}", proc.output());
    assert!(
        proc.elapsed() >= Duration::from_millis(1500),
        "lingered {:?}",
        proc.elapsed()
    );
    assert!(
        proc.stderr().trim_end().ends_with("summary: ok=3 failed=0"),
        "the summary stays last\n{}",
        proc.output()
    );
}
