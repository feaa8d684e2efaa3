//! tonic's balanced channel fed by discovery: requests reach every discovered
//! server, stop reaching a removed one, and the driver stops with the channel.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support;
use crate::support::balancer::Greeter;
use crate::support::{wait_for, wait_until, Etcd};
use etcd_client::Client;
use tonic::transport::Channel;
use tonic_etcd::codec::{Codec, Native};
use tonic_etcd::{balance, Discovery, Instance};

pub mod hello {
    tonic::include_proto!("helloworld");
}

use hello::greeter_client::GreeterClient;
use hello::HelloRequest;

async fn register(client: &mut Client, service: &str, addr: SocketAddr) -> String {
    let instance = Instance::new(service, addr.to_string()).unwrap();
    let key = Native.key("/services", &instance);
    client
        .put(key.clone(), Native.encode(&instance).unwrap(), None)
        .await
        .unwrap();
    key
}

/// One SayHello; the address of the server that answered.
async fn hello(channel: &Channel) -> String {
    let mut client = GreeterClient::new(channel.clone());
    let request = HelloRequest {
        name: "test".into(),
    };
    // A balanced channel with no ready endpoint waits forever: bound it.
    let reply = tokio::time::timeout(Duration::from_secs(5), client.say_hello(request))
        .await
        .expect("an answer within 5 s")
        .expect("SayHello succeeds");
    let message = reply.into_inner().message;
    message
        .rsplit(' ')
        .next()
        .expect("reply ends with the address")
        .to_owned()
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
    let key_a = register(&mut client, &service, addr_a).await;
    register(&mut client, &service, addr_b).await;

    let channel = Discovery::new(client.clone(), &service)
        .balance_channel()
        .await
        .unwrap();

    // Both servers answer (tonic picks at random; poll until both are seen).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = HashSet::new();
    while seen.len() < 2 {
        assert!(Instant::now() < deadline, "only {seen:?} answered");
        seen.insert(hello(&channel).await);
    }
    assert_eq!(
        seen,
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
    register(&mut client, &service, addr_c).await;
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
    register(&mut client, &service, addr).await;

    let discovered = Discovery::new(client.clone(), &service)
        .start()
        .await
        .unwrap();
    let handle = discovered.handle();
    let templated = Arc::new(AtomicUsize::new(0));
    let counter = templated.clone();
    let channel = balance::channel(discovered, move |instance| {
        counter.fetch_add(1, Ordering::SeqCst);
        balance::default_endpoint(instance)
    });
    assert_eq!(hello(&channel).await, addr.to_string());
    assert_eq!(templated.load(Ordering::SeqCst), 1);

    let clone = channel.clone();
    drop(channel);
    // One clone left: the driver keeps going.
    let server2 = Greeter::start();
    let addr2 = server2.addr;
    register(&mut client, &service, addr2).await;
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
    let health = handle.health();
    wait_until(Duration::from_secs(10), "the discovery task to end", || {
        let ended = health.has_changed().is_err();
        async move { ended }
    })
    .await;
    // The health sender goes only after the driver dropped the stream, so
    // nothing can call the template any more; the snapshot stays as it was.
    assert_eq!(templated.load(Ordering::SeqCst), 2);
    assert_eq!(
        handle.snapshot().len(),
        2,
        "the snapshot is frozen, not cleared"
    );
}
