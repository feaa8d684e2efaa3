//! Request-level health of the crate's balancer against real (in-process)
//! servers, with every policy and tonic's balanced channel for comparison:
//! a server that fails every request, one that accepts requests and never
//! answers, every server failing (panic mode), and a set that empties for a
//! moment.

use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;
use tonic_etcd::{Balancer, Change, EndpointState, Instance, OutlierDetection, Policy};

use crate::support;
use crate::support::balancer::hello::greeter_client::GreeterClient;
use crate::support::balancer::hello::HelloRequest;
use crate::support::balancer::{wait_endpoints, Fault, Faulty};

/// A balancer with `policy` over `servers`, a static list that never ends.
fn balancer(policy: Policy, servers: &[&Faulty], detection: OutlierDetection) -> Balancer {
    let changes: Vec<_> = servers.iter().map(|s| s.change("svc")).collect();
    Balancer::builder(policy)
        .service("svc")
        .outlier_detection(detection)
        .build(stream::iter(changes).chain(stream::pending()))
}

/// tonic's balanced channel over the same list.
fn tonic_channel(servers: &[&Faulty]) -> Channel {
    let changes: Vec<_> = servers.iter().map(|s| s.change("svc")).collect();
    tonic_etcd::balance::tonic_channel(
        stream::iter(changes).chain(stream::pending()),
        tonic_etcd::endpoint::default_endpoint,
    )
}

/// `n` requests one after the other, each given up (its future dropped)
/// after `timeout`: how many failed.
pub(super) async fn run<S>(service: &S, n: usize, timeout: Duration) -> (usize, Vec<String>)
where
    S: tonic::client::GrpcService<tonic::body::Body> + Clone,
    S::Error: Into<tonic::codegen::StdError>,
    S::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <S::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut client = GreeterClient::new(service.clone());
    let mut errors = Vec::new();
    for i in 0..n {
        let request = HelloRequest { name: "t".into() };
        match tokio::time::timeout(timeout, client.say_hello(request)).await {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => {
                errors.push(format!("{i}: {:?} {}", status.code(), status.message()))
            }
            Err(_) => errors.push(format!("{i}: timed out")),
        }
    }
    (errors.len(), errors)
}

fn state_of(balancer: &Balancer, server: &Faulty) -> (EndpointState, Option<String>) {
    let addr = server.addr.to_string();
    let status = balancer
        .endpoints()
        .into_iter()
        .find(|e| e.instance.addr == addr)
        .expect("the server is an endpoint");
    (status.state, status.reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_sends_a_silent_server_fewer_requests_than_round_robin() {
    support::init_tracing();
    let mut received = Vec::new();
    for policy in [Policy::RoundRobin, Policy::P2c] {
        let (a, b) = (
            Faulty::start(Fault::None).await,
            Faulty::start(Fault::None).await,
        );
        let silent = Faulty::start(Fault::Silent).await;
        // Without outlier detection: p2c's load alone must keep it away.
        let balancer = balancer(policy, &[&a, &silent, &b], OutlierDetection::disabled());
        let (failed, _) = run(&balancer, 60, Duration::from_millis(200)).await;
        eprintln!(
            "{policy}: silent {}, healthy {} and {}; {failed} failed",
            silent.received(),
            a.received(),
            b.received()
        );
        received.push((silent.received(), a.received().min(b.received())));
    }
    let (rr, p2c) = (received[0], received[1]);
    assert_eq!(rr.0, 20, "round robin: a third of 60");
    assert!(
        p2c.0 < rr.0,
        "p2c sent the silent server {} requests, round robin {}",
        p2c.0,
        rr.0
    );
    assert!(
        p2c.0 < p2c.1,
        "p2c: silent {} vs the least used healthy {}",
        p2c.0,
        p2c.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_server_is_ejected_after_five_failures() {
    support::init_tracing();
    for policy in Policy::ALL {
        let (a, b) = (
            Faulty::start(Fault::None).await,
            Faulty::start(Fault::None).await,
        );
        let bad = Faulty::start(Fault::Fail).await;
        let balancer = balancer(policy, &[&a, &bad, &b], OutlierDetection::new());
        let (failed, errors) = run(&balancer, 150, Duration::from_secs(2)).await;
        eprintln!(
            "{policy}: {failed} of 150 failed; the failing server got {}",
            bad.received()
        );
        assert!(failed <= 5, "{policy}: {errors:#?}");
        // p2c may prefer the others before five failures in a row.
        if failed == 5 {
            let (state, reason) = state_of(&balancer, &bad);
            assert_eq!(state, EndpointState::Ejected, "{policy}");
            let reason = reason.unwrap();
            assert!(reason.contains("5 consecutive failures"), "{reason}");
            let status = balancer
                .endpoints()
                .into_iter()
                .find(|e| e.instance.addr == bad.addr.to_string())
                .unwrap();
            assert_eq!(
                (status.requests, status.failures, status.ready),
                (5, 5, false)
            );
        }
    }
    // Off, every third request fails, as with tonic's channel.
    let (a, b) = (
        Faulty::start(Fault::None).await,
        Faulty::start(Fault::None).await,
    );
    let bad = Faulty::start(Fault::Fail).await;
    let off = balancer(
        Policy::RoundRobin,
        &[&a, &bad, &b],
        OutlierDetection::disabled(),
    );
    assert_eq!(run(&off, 30, Duration::from_secs(2)).await.0, 10);
    let channel = tonic_channel(&[&a, &bad, &b]);
    // Let the channel see its endpoints first.
    let deadline = Instant::now() + Duration::from_secs(10);
    while run(&channel, 1, Duration::from_secs(2)).await.0 > 0 {
        assert!(Instant::now() < deadline, "tonic's channel never answered");
    }
    let (failed, _) = run(&channel, 150, Duration::from_secs(2)).await;
    eprintln!("tonic's channel: {failed} of 150 failed");
    assert!(
        failed > 15,
        "tonic's channel has no outlier detection: {failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_ejected_after_its_requests_time_out() {
    support::init_tracing();
    for policy in Policy::ALL {
        let (a, b) = (
            Faulty::start(Fault::None).await,
            Faulty::start(Fault::None).await,
        );
        let silent = Faulty::start(Fault::Silent).await;
        let balancer = balancer(policy, &[&a, &silent, &b], OutlierDetection::new());
        let (failed, errors) = run(&balancer, 100, Duration::from_millis(200)).await;
        eprintln!(
            "{policy}: {failed} of 100 timed out; the silent server got {}",
            silent.received()
        );
        assert!(failed <= 5, "{policy}: {errors:#?}");
        assert!(silent.received() <= 5, "{policy}: {}", silent.received());
        if policy != Policy::P2c {
            assert_eq!(
                state_of(&balancer, &silent).0,
                EndpointState::Ejected,
                "{policy}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_mode_routes_to_every_server_when_all_are_ejected() {
    support::init_tracing();
    let detection = OutlierDetection::new()
        .max_ejected_percent(100)
        .ejection_time(Duration::from_secs(60), Duration::from_secs(60));
    for policy in Policy::ALL {
        let (a, b) = (
            Faulty::start(Fault::Fail).await,
            Faulty::start(Fault::Fail).await,
        );
        let balancer = balancer(policy, &[&a, &b], detection.clone());
        let (failed, _) = run(&balancer, 20, Duration::from_secs(2)).await;
        assert_eq!(failed, 20);
        let endpoints = balancer.endpoints();
        assert!(
            endpoints
                .iter()
                .all(|e| e.state == EndpointState::Ejected && e.ready),
            "{policy}: both ejected, both routed: {endpoints:?}"
        );
        assert!(endpoints[0].reason.as_ref().unwrap().contains("panic mode"));
        // They recover: requests succeed at once, long before the ejection
        // time is over.
        a.set(Fault::None);
        b.set(Fault::None);
        let (failed, errors) = run(&balancer, 10, Duration::from_secs(2)).await;
        assert_eq!(failed, 0, "{policy}: {errors:?}");
    }
    // Without panic mode, every request fails fast once both are ejected.
    let (a, b) = (
        Faulty::start(Fault::Fail).await,
        Faulty::start(Fault::Fail).await,
    );
    let changes: Vec<_> = [&a, &b].iter().map(|s| s.change("svc")).collect();
    let strict = Balancer::builder(Policy::RoundRobin)
        .outlier_detection(detection)
        .panic_mode(false)
        .build(stream::iter(changes).chain(stream::pending()));
    run(&strict, 10, Duration::from_secs(2)).await;
    a.set(Fault::None);
    let (failed, errors) = run(&strict, 5, Duration::from_secs(2)).await;
    assert_eq!(failed, 5);
    assert!(errors[0].contains("no ready endpoint"), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_that_empties_for_a_moment_fails_no_request() {
    support::init_tracing();
    let (a, b) = (
        Faulty::start(Fault::None).await,
        Faulty::start(Fault::None).await,
    );
    for policy in Policy::ALL {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Change<String, Instance>>();
        tx.send(a.change("svc")).unwrap();
        tx.send(b.change("svc")).unwrap();
        let balancer = Balancer::builder(policy)
            .service("svc")
            .build(UnboundedReceiverStream::new(rx));
        let load = tokio::spawn({
            let balancer = balancer.clone();
            async move { run(&balancer, 300, Duration::from_secs(2)).await }
        });
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            // Every lease revoked at once; the servers register again 30 ms
            // later.
            tx.send(Change::Remove(a.addr.to_string())).unwrap();
            tx.send(Change::Remove(b.addr.to_string())).unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
            tx.send(a.change("svc")).unwrap();
            tx.send(b.change("svc")).unwrap();
        }
        let (failed, errors) = load.await.unwrap();
        assert_eq!(failed, 0, "{policy}: {errors:?}");
        wait_endpoints(&balancer, "both back", |e| e.len() == 2).await;

        // Empty for longer than the grace: fail fast again.
        tx.send(Change::Remove(a.addr.to_string())).unwrap();
        tx.send(Change::Remove(b.addr.to_string())).unwrap();
        wait_endpoints(&balancer, "the set to empty", |e| e.is_empty()).await;
        let started = Instant::now();
        let (failed, errors) = run(&balancer, 1, Duration::from_secs(2)).await;
        assert_eq!(failed, 1);
        assert!(errors[0].contains("no ready endpoint"), "{errors:?}");
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}
