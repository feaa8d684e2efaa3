//! tonic's balanced channel fed by discovery: requests reach every discovered
//! server, stop reaching a removed one, and the driver stops with the channel.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support;
use crate::support::balancer::{self, Greeter};
use crate::support::changes::{instance, put, wait_ended};
use crate::support::{wait_for, wait_until, Etcd};
use tonic::transport::Channel;
use tonic_etcd::{balance, Discovery};

/// One SayHello; the address of the server that answered.
async fn hello(channel: &Channel) -> String {
    balancer::hello(channel).await.expect("SayHello succeeds")
}

#[tokio::test]
async fn requests_follow_discovery() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("greeter");
    let a = Greeter::start();
    let addr_a = a.addr;
    let b = Greeter::start();
    let addr_b = b.addr;
    let key_a = put(&mut client, &instance(&service, "a", addr_a.port())).await;
    put(&mut client, &instance(&service, "b", addr_b.port())).await;

    let channel = Discovery::new(client.clone(), &service)
        .tonic_channel()
        .await
        .unwrap();

    // Both servers answer.
    assert_eq!(
        balancer::answering(&channel, 2).await,
        HashSet::from([addr_a.to_string(), addr_b.to_string()])
    );
    assert!(a.served() > 0 && b.served() > 0);

    // Remove a: once tonic has applied the change, a gets nothing more.
    client.delete(key_a, None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut streak = 0;
    while streak < 20 {
        assert!(
            Instant::now() < deadline,
            "a still answers after its removal"
        );
        if hello(&channel).await == addr_b.to_string() {
            streak += 1;
        } else {
            streak = 0;
        }
    }
    let a_before = a.served();
    for _ in 0..30 {
        assert_eq!(hello(&channel).await, addr_b.to_string());
    }
    assert_eq!(a.served(), a_before, "a still got requests");

    // A new instance is picked up as requests flow.
    let c = Greeter::start();
    let addr_c = c.addr;
    put(&mut client, &instance(&service, "c", addr_c.port())).await;
    wait_for(Duration::from_secs(10), "c to answer", || {
        let channel = channel.clone();
        let c = addr_c.to_string();
        async move { (hello(&channel).await == c).then_some(()) }
    })
    .await;
    assert!(c.served() > 0);
}

#[tokio::test]
async fn driver_and_discovery_stop_when_the_channel_is_dropped() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("dropped");
    let server = Greeter::start();
    let addr = server.addr;
    put(&mut client, &instance(&service, "a", addr.port())).await;

    let discovered = Discovery::new(client.clone(), &service)
        .changes()
        .await
        .unwrap();
    let handle = discovered.view();
    let templated = Arc::new(AtomicUsize::new(0));
    let counter = templated.clone();
    let channel = balance::tonic_channel(discovered, move |instance| {
        counter.fetch_add(1, Ordering::SeqCst);
        tonic_etcd::endpoint::default_endpoint(instance)
    });
    assert_eq!(hello(&channel).await, addr.to_string());
    assert_eq!(templated.load(Ordering::SeqCst), 1);

    let clone = channel.clone();
    drop(channel);
    // One clone left: the driver keeps going.
    let server2 = Greeter::start();
    let addr2 = server2.addr;
    put(&mut client, &instance(&service, "b", addr2.port())).await;
    wait_until(
        Duration::from_secs(10),
        "the driver to see a second instance",
        || {
            let n = templated.load(Ordering::SeqCst);
            async move { n == 2 }
        },
    )
    .await;
    assert!(
        handle.health().has_changed().is_ok(),
        "discovery still runs"
    );

    // The last clone goes: the driver ends and drops the discovery, whose task
    // ends too (its health sender is dropped).
    drop(clone);
    wait_ended(&handle).await;
    // The health sender goes only after the driver dropped the stream, so
    // nothing can call the template any more; the snapshot stays as it was.
    assert_eq!(templated.load(Ordering::SeqCst), 2);
    assert_eq!(
        handle.snapshot().len(),
        2,
        "the snapshot is frozen, not cleared"
    );
}
