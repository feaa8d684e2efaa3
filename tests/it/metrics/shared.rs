//! Two balancers of one service in one process: `tonic_etcd_balancer_endpoints`
//! is the sum of their endpoints, and a dropped balancer leaves the sum. The
//! recorder is a Prometheus one installed for this test's thread only (the
//! runtime is single-threaded, so the balancers' tasks record into it too).

use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tonic_etcd::{Discovery, Policy};

use crate::support;
use crate::support::balancer::{register, Greeter};
use crate::support::scrape::Samples;
use crate::support::{wait_until, Etcd};

const WITHIN: Duration = Duration::from_secs(10);

fn ready(handle: &PrometheusHandle, service: &str) -> Option<f64> {
    Samples::parse(&handle.render()).value(
        "tonic_etcd_balancer_endpoints",
        &[("service", service), ("state", "ready")],
    )
}

#[tokio::test]
async fn two_balancers_of_a_service_show_the_sum_of_their_endpoints() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("metrics-two-balancers");
    let greeters = [Greeter::start(), Greeter::start()];
    let mut registrations = Vec::new();
    for greeter in &greeters {
        registrations.push(register(&client, &service, greeter, 1).await);
    }
    let balancer = |policy| {
        let discovery = Discovery::new(client.clone(), service.as_str());
        async move { discovery.balancer(policy).await.unwrap() }
    };
    let first = balancer(Policy::RoundRobin).await;
    let second = balancer(Policy::P2c).await;
    wait_until(WITHIN, "4 ready endpoints, 2 per balancer", || {
        let sum = ready(&handle, &service);
        async move { sum == Some(4.0) }
    })
    .await;

    drop(second);
    wait_until(WITHIN, "2 ready endpoints, the first balancer's", || {
        let sum = ready(&handle, &service);
        async move { sum == Some(2.0) }
    })
    .await;
    // The first one goes on counting alone: one of its endpoints leaves.
    registrations.pop().unwrap().deregister().await.unwrap();
    wait_until(WITHIN, "1 ready endpoint", || {
        let sum = ready(&handle, &service);
        async move { sum == Some(1.0) }
    })
    .await;
    drop(first);
}
