//! `tonic_etcd_discovery_instances` follows a SIGTERM; a lost watch counts.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support;
use crate::support::examples::{Cmd, Proc};
use crate::support::scrape::wait_samples;
use crate::support::{wait_until, Etcd};

use super::{metrics_addr, server};

const WITHIN: Duration = Duration::from_secs(20);

/// A client of `service` that runs for minutes, one request every 50 ms,
/// serving its metrics at the address returned with it.
fn long_client(etcd: &str, service: &str) -> (Proc, SocketAddr) {
    let metrics = metrics_addr();
    let proc = Cmd::client()
        .args(["--etcd", etcd, "--service", service])
        .args(["--requests", "100000", "--interval-ms", "50"])
        .args(["--metrics-listen", metrics.to_string().as_str()])
        .spawn();
    (proc, metrics)
}

fn instances(service: &str) -> [(&str, &str); 1] {
    [("service", service)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_moves_the_instances_gauge_from_three_to_two() {
    let etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let client = etcd.client().await;
    let service = support::unique("metrics-sigterm");
    let mut servers: Vec<_> = (0..3).map(|_| server(&endpoint, &service, &[])).collect();
    let prefix = format!("/services/{service}/");
    wait_until(WITHIN, "three servers registered", || async {
        support::kv::keys(&client, &prefix)
            .await
            .is_ok_and(|keys| keys.len() == 3)
    })
    .await;
    let (proc, metrics) = long_client(&endpoint, &service);
    let labels = instances(&service);
    wait_samples(metrics, WITHIN, "3 instances", |s| {
        s.value("tonic_etcd_discovery_instances", &labels) == Some(3.0)
    })
    .await;

    let (gone, _) = &mut servers[0];
    let key = format!("{prefix}{}", gone.addr);
    gone.stop_gracefully(&client, &key).await;
    let samples = wait_samples(metrics, WITHIN, "2 instances", |s| {
        s.value("tonic_etcd_discovery_instances", &labels) == Some(2.0)
    })
    .await;
    assert_eq!(
        samples.value(
            "tonic_etcd_balancer_endpoints",
            &[("service", &service), ("state", "ready")]
        ),
        Some(2.0),
        "the balancer follows"
    );
    drop(proc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_restart_counts_a_watch_restart() {
    let mut etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let service = support::unique("metrics-restart");
    let (mut server, _) = server(&endpoint, &service, &["--ttl", "10"]);
    server
        .wait_registered(
            &etcd.client().await,
            &format!("/services/{service}/{}", server.addr),
            WITHIN,
        )
        .await;
    let (proc, metrics) = long_client(&endpoint, &service);
    let labels = instances(&service);
    let before = wait_samples(metrics, WITHIN, "1 instance", |s| {
        s.value("tonic_etcd_discovery_instances", &labels) == Some(1.0)
    })
    .await;
    assert_eq!(
        before.value("tonic_etcd_discovery_watch_restarts_total", &labels),
        Some(0.0),
        "no restart yet, and the counter shows as 0"
    );
    etcd.restart().await;
    let after = wait_samples(metrics, WITHIN, "a watch restart", |s| {
        s.value("tonic_etcd_discovery_watch_restarts_total", &labels)
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    // The set is kept through the restart.
    assert_eq!(
        after.value("tonic_etcd_discovery_instances", &labels),
        Some(1.0)
    );
    drop(proc);
}
