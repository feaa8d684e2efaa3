//! Active health checks of the crate's balancer (`.health_check(…)`)
//! against in-process servers whose `tonic-health` reporter says
//! `NOT_SERVING`, with every policy. (tonic's balanced channel has no health
//! checking to compare with.)

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use tonic_etcd::{Balancer, EndpointState, Policy};

use super::outliers::run;
use crate::support;
use crate::support::balancer::hello::greeter_server::GreeterServer;
use crate::support::balancer::{wait_endpoints, Fault, Faulty, FaultyHello};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_not_serving_leaves_rotation_until_serving() {
    support::init_tracing();
    for policy in Policy::ALL {
        let (a, _ra) = Faulty::with_health(Fault::None).await;
        let (b, rb) = Faulty::with_health(Fault::None).await;
        // A server without a health service counts as healthy.
        let c = Faulty::start(Fault::None).await;
        let changes: Vec<_> = [&a, &b, &c].iter().map(|s| s.change("svc")).collect();
        let balancer = Balancer::builder(policy)
            .service("svc")
            .health_check("helloworld.Greeter")
            .build(stream::iter(changes).chain(stream::pending()));
        assert_eq!(run(&balancer, 30, Duration::from_secs(2)).await.0, 0);

        rb.set_not_serving::<GreeterServer<FaultyHello>>().await;
        let addr = b.addr.to_string();
        wait_endpoints(&balancer, "b unhealthy", |e| {
            e.iter().any(|e| {
                e.instance.addr == addr
                    && e.state == EndpointState::Unhealthy
                    && !e.ready
                    && e.reason
                        .as_deref()
                        .is_some_and(|r| r.contains("NOT_SERVING"))
            })
        })
        .await;
        let before = b.received();
        assert_eq!(run(&balancer, 30, Duration::from_secs(2)).await.0, 0);
        assert_eq!(b.received(), before, "{policy}: no request reaches it");
        assert!(
            c.received() > 0,
            "{policy}: the server without health is used"
        );

        rb.set_serving::<GreeterServer<FaultyHello>>().await;
        wait_endpoints(&balancer, "b back", |e| {
            e.iter().all(|e| e.state == EndpointState::Ready)
        })
        .await;
        run(&balancer, 30, Duration::from_secs(2)).await;
        assert!(b.received() > before, "{policy}: it is back in rotation");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_option_no_health_stream_is_opened() {
    support::init_tracing();
    let (a, ra) = Faulty::with_health(Fault::None).await;
    let balancer = Balancer::builder(Policy::RoundRobin)
        .build(stream::iter([a.change("svc")]).chain(stream::pending()));
    ra.set_not_serving::<GreeterServer<FaultyHello>>().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(run(&balancer, 5, Duration::from_secs(2)).await.0, 0);
    assert_eq!(balancer.endpoints()[0].state, EndpointState::Ready);
}
