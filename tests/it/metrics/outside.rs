//! The outside check, end to end: three `helloworld-server
//! --metrics-listen` and one `helloworld-client --metrics-listen --linger-ms`,
//! scraped over HTTP. The per-endpoint `OK` counts add up to the requests
//! made; `registration_up` is 1 on each server; a SIGTERM moves the
//! instances gauge from 3 to 2; and every metric of the table is there with
//! its labels once something exercised it: an address that cannot be
//! reached (an ejection, `UNAVAILABLE`), a client cut off from etcd (a watch
//! restart) while etcd compacts (a resync).

use std::collections::BTreeSet;
use std::time::Duration;

use tonic_etcd::{Instance, Registrar};

use crate::support;
use crate::support::examples::Cmd;
use crate::support::proxy::Proxy;
use crate::support::scrape::{wait_samples, Samples};
use crate::support::{wait_until, Etcd};

use super::{metrics_addr, server};

const WITHIN: Duration = Duration::from_secs(20);
const REQUESTS: usize = 30;

/// The labels of each metric of the table; the histogram by its `_count`.
const TABLE: [(&str, &[&str]); 11] = [
    (
        "tonic_etcd_client_requests_total",
        &["service", "endpoint", "code"],
    ),
    (
        "tonic_etcd_client_request_duration_seconds_count",
        &["service", "endpoint"],
    ),
    (
        "tonic_etcd_client_requests_in_flight",
        &["service", "endpoint"],
    ),
    ("tonic_etcd_balancer_endpoints", &["service", "state"]),
    (
        "tonic_etcd_balancer_ejections_total",
        &["service", "endpoint", "reason"],
    ),
    ("tonic_etcd_discovery_instances", &["service"]),
    ("tonic_etcd_discovery_watch_restarts_total", &["service"]),
    ("tonic_etcd_discovery_resyncs_total", &["service"]),
    ("tonic_etcd_registration_up", &["service", "id"]),
    (
        "tonic_etcd_registration_reregistrations_total",
        &["service", "id"],
    ),
    (
        "tonic_etcd_registration_keepalive_failures_total",
        &["service", "id"],
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_and_a_client_show_every_metric_with_the_values_that_happened() {
    let etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let mut client = etcd.client().await;
    let service = support::unique("metrics-outside");
    let prefix = format!("/services/{service}/");
    let mut servers: Vec<_> = (0..3).map(|_| server(&endpoint, &service, &[])).collect();
    // An instance whose address nothing listens on: the client ejects it.
    let dead = format!("127.0.0.1:{}", support::free_port());
    let dead_registration = Registrar::new(client.clone())
        .register(Instance::new(service.as_str(), dead.as_str()).unwrap())
        .await
        .unwrap();
    wait_until(
        WITHIN,
        "three servers and the dead address registered",
        || async {
            support::kv::keys(&client, &prefix)
                .await
                .is_ok_and(|keys| keys.len() == 4)
        },
    )
    .await;
    let mut server_samples = Vec::new();
    for (server, metrics) in &servers {
        let labels = [("service", service.as_str()), ("id", server.addr.as_str())];
        server_samples.push(
            wait_samples(*metrics, WITHIN, "registration_up = 1", |s| {
                s.value("tonic_etcd_registration_up", &labels) == Some(1.0)
            })
            .await,
        );
    }

    // The client reaches etcd through a proxy, to be cut off later.
    let proxy = Proxy::start(etcd.addr()).await;
    let client_metrics = metrics_addr();
    let mut proc = Cmd::client()
        .args(["--etcd", &proxy.endpoint(), "--service", &service])
        .args(["--requests", &REQUESTS.to_string()])
        .args(["--metrics-listen", &client_metrics.to_string()])
        .args(["--linger-ms", "60000"])
        .spawn();
    wait_until(WITHIN, "the replies", || {
        let replies = proc.stdout().lines().count();
        async move { replies == REQUESTS }
    })
    .await;
    assert!(proc.running(), "the client lingers\n{}", proc.output());
    assert!(
        !proc.stderr().contains(": failed:"),
        "no request failed\n{}",
        proc.output()
    );
    let addrs: Vec<String> = servers.iter().map(|(s, _)| s.addr.clone()).collect();
    let ok = |s: &Samples, addr: &str| {
        s.value(
            "tonic_etcd_client_requests_total",
            &[("service", &service), ("endpoint", addr), ("code", "OK")],
        )
    };
    let after_requests = wait_samples(client_metrics, WITHIN, "the OK counts", |s| {
        addrs.iter().filter_map(|a| ok(s, a)).sum::<f64>() == REQUESTS as f64
    })
    .await;
    for addr in &addrs {
        assert!(
            ok(&after_requests, addr).is_some_and(|n| n > 0.0),
            "{addr} served"
        );
        assert_eq!(
            after_requests.value(
                "tonic_etcd_client_requests_in_flight",
                &[("service", &service), ("endpoint", addr)]
            ),
            Some(0.0)
        );
    }
    // The dead address: one attempt (the request went on elsewhere), one
    // ejection, and probed since.
    let on_dead = |name, label: (&'static str, &'static str)| {
        after_requests.value(name, &[("service", &service), ("endpoint", &dead), label])
    };
    assert_eq!(
        on_dead("tonic_etcd_client_requests_total", ("code", "UNAVAILABLE")),
        Some(1.0)
    );
    assert_eq!(
        on_dead(
            "tonic_etcd_balancer_ejections_total",
            ("reason", "connect_error")
        ),
        Some(1.0)
    );
    let states = |s: &Samples| {
        tonic_etcd::observe::ENDPOINT_STATES.map(|state| {
            s.value(
                "tonic_etcd_balancer_endpoints",
                &[("service", &service), ("state", state)],
            )
        })
    };
    assert_eq!(
        states(&after_requests),
        [Some(3.0), Some(1.0), Some(0.0), Some(0.0)],
        "ready, connecting, ejected, unhealthy"
    );
    let instances = [("service", service.as_str())];
    assert_eq!(
        after_requests.value("tonic_etcd_discovery_instances", &instances),
        Some(4.0)
    );

    // The dead instance leaves, then a server on SIGTERM: 3, then 2.
    dead_registration.deregister().await.unwrap();
    wait_samples(client_metrics, WITHIN, "3 instances", |s| {
        s.value("tonic_etcd_discovery_instances", &instances) == Some(3.0)
    })
    .await;
    let (gone, _) = &mut servers[0];
    let key = format!("{prefix}{}", gone.addr);
    gone.stop_gracefully(&client, &key).await;
    let after_sigterm = wait_samples(client_metrics, WITHIN, "2 instances", |s| {
        s.value("tonic_etcd_discovery_instances", &instances) == Some(2.0)
    })
    .await;
    assert_eq!(
        states(&after_sigterm),
        [Some(2.0), Some(0.0), Some(0.0), Some(0.0)],
        "the balancer follows"
    );

    // Cut off from etcd, the client's watch is lost; etcd meanwhile moves on
    // by two revisions and compacts them away, so that the watch cannot
    // resume where it was: the discovery reads its prefix again.
    proxy.refuse();
    wait_samples(client_metrics, WITHIN, "a watch restart", |s| {
        s.value("tonic_etcd_discovery_watch_restarts_total", &instances)
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    for value in ["1", "2"] {
        client
            .put(format!("/unrelated/{service}"), value, None)
            .await
            .unwrap();
    }
    etcd.compact().await;
    proxy.restore();
    let after_resync = wait_samples(client_metrics, WITHIN, "a resync", |s| {
        s.value("tonic_etcd_discovery_resyncs_total", &instances)
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    assert_eq!(
        after_resync.value("tonic_etcd_discovery_instances", &instances),
        Some(2.0),
        "the set is the same after the resync"
    );

    // Every metric of the table, with its labels, in the client's or a
    // server's metrics.
    let mut seen = after_resync.0.clone();
    seen.extend(server_samples.iter().flat_map(|s| s.0.iter().cloned()));
    for (name, labels) in TABLE {
        let expected: BTreeSet<&str> = labels.iter().copied().collect();
        assert!(
            seen.iter().any(|s| s.name == name
                && s.labels.get("service") == Some(&service)
                && s.labels.keys().map(String::as_str).collect::<BTreeSet<_>>() == expected),
            "{name} with the labels {labels:?}"
        );
    }
    let names: Vec<&str> = TABLE
        .iter()
        .map(|(name, _)| name.trim_end_matches("_count"))
        .collect();
    assert_eq!(names, tonic_etcd::observe::ALL, "the table is the crate's");
    drop(proc);
}
