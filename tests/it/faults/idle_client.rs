//! An idle client: every change made while it sends nothing is applied before
//! its next request is routed, and no request reaches an instance removed
//! while it was idle. The removed servers keep running, so that a request
//! routed to one would succeed and be counted, not merely fail.
//!
//! Each scenario runs with tonic's `balance_channel` fed by discovery (built as
//! `Discovery::balance_channel` builds it, with the handle kept to know when
//! discovery has seen the changes) and with the crate's `Balancer`.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support;
use crate::support::balancer::{hello, Greeter};
use crate::support::changes::{self, instance};
use crate::support::{wait_until, Etcd, Result};
use etcd_client::Client;
use tonic::transport::Channel;
use tonic_etcd::codec::{Codec, Native};
use tonic_etcd::{balance, Balancer, Discovery, DiscoveryView, Instance, Policy};

/// How long the client stays idle before its next requests: long enough for
/// tonic's connections to settle, well under any keepalive timeout.
const IDLE: Duration = Duration::from_millis(500);

/// Registers `addr` under `id` (a plain put, as a registration would).
async fn put(client: &mut Client, service: &str, id: &str, addr: SocketAddr) -> String {
    changes::put(client, &instance(service, id, addr.port())).await
}

/// The client side under test.
#[derive(Clone)]
enum Side {
    Tonic(Channel),
    Balancer(Balancer),
}

/// Which client side a scenario runs with.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Tonic,
    Balancer,
}

impl Side {
    async fn new(kind: Kind, client: &Client, service: &str) -> (Side, DiscoveryView) {
        let discovered = Discovery::new(client.clone(), service)
            .changes()
            .await
            .unwrap();
        let handle = discovered.view();
        let client = match kind {
            Kind::Tonic => Side::Tonic(balance::tonic_channel(
                discovered,
                tonic_etcd::endpoint::default_endpoint,
            )),
            Kind::Balancer => {
                Side::Balancer(Balancer::builder(Policy::RoundRobin).build(discovered))
            }
        };
        (client, handle)
    }
}

/// Sends `n` requests one after the other; every one must succeed.
async fn send(side: &Side, n: usize) {
    for _ in 0..n {
        let answered = match side {
            Side::Tonic(channel) => hello(channel).await,
            Side::Balancer(balancer) => hello(balancer).await,
        };
        answered.expect("SayHello succeeds within 5 s");
    }
}

/// Waits until discovery reports exactly the instances with these ids.
async fn discovered(handle: &DiscoveryView, ids: &[&str]) {
    let mut want: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    wait_until(
        Duration::from_secs(5),
        "discovery to see the changes",
        || {
            let now: Vec<String> = handle.snapshot().into_iter().map(|i| i.id).collect();
            let done = now == want;
            async move { done }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_idle_apply_before_the_next_request() -> Result {
    changes_made_while_idle(Kind::Tonic).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_idle_apply_before_the_next_request_balancer() -> Result {
    changes_made_while_idle(Kind::Balancer).await
}

async fn changes_made_while_idle(kind: Kind) -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("idle");
    let servers = [
        Greeter::start(),
        Greeter::start(),
        Greeter::start(),
        Greeter::start(),
    ];
    let [a, b, c, d] = &servers;
    let key_a = put(&mut client, &service, "a", a.addr).await;
    let key_b = put(&mut client, &service, "b", b.addr).await;
    put(&mut client, &service, "c", c.addr).await;
    let (channel, handle) = Side::new(kind, &client, &service).await;

    // Warm up until all three have served.
    wait_until(Duration::from_secs(10), "a, b and c to serve", || {
        let channel = channel.clone();
        let all = a.served() > 0 && b.served() > 0 && c.served() > 0;
        async move {
            send(&channel, 5).await;
            all
        }
    })
    .await;

    // Idle: a is removed. Its server keeps running.
    tokio::time::sleep(IDLE).await;
    client.delete(key_a.clone(), None).await?;
    discovered(&handle, &["b", "c"]).await;
    tokio::time::sleep(IDLE).await;
    let a_before = a.served();
    send(&channel, 60).await;
    assert_eq!(
        a.served(),
        a_before,
        "a request reached a, removed while idle"
    );

    // Idle: d is added, b removed, c changes weight, a comes and goes again.
    tokio::time::sleep(IDLE).await;
    put(&mut client, &service, "d", d.addr).await;
    client.delete(key_b.clone(), None).await?;
    let c_heavier = Instance::new(&service, c.addr.to_string())?
        .with_id("c")
        .with_weight(5);
    client
        .put(
            Native.key("/services", &c_heavier),
            Native.encode(&c_heavier)?,
            None,
        )
        .await?;
    put(&mut client, &service, "a", a.addr).await;
    client.delete(key_a.clone(), None).await?;
    discovered(&handle, &["c", "d"]).await;
    tokio::time::sleep(IDLE).await;
    let (a_before, b_before, d_before) = (a.served(), b.served(), d.served());
    send(&channel, 60).await;
    assert_eq!(a.served(), a_before, "a request reached a");
    assert_eq!(
        b.served(),
        b_before,
        "a request reached b, removed while idle"
    );
    // d was inserted while idle; it serves once tonic has connected to it.
    wait_until(Duration::from_secs(5), "d to serve", || {
        let channel = channel.clone();
        let served = d.served() > d_before;
        async move {
            send(&channel, 5).await;
            served
        }
    })
    .await;
    Ok(())
}

/// Many changes while idle: the removal of c comes after 100 other changes.
///
/// tonic's balanced channel applies queued changes only while it routes a
/// request, and only those already in its queue; the driver's queue to tonic
/// holds 1024 changes, so all 101 are there before the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_changes_while_idle_than_tonic_queues() -> Result {
    more_changes_while_idle(Kind::Tonic).await
}

/// The crate's balancer applies every change as it arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_changes_while_idle_than_tonic_queues_balancer() -> Result {
    more_changes_while_idle(Kind::Balancer).await
}

async fn more_changes_while_idle(kind: Kind) -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("idle-many");
    let [b, c] = [Greeter::start(), Greeter::start()];
    put(&mut client, &service, "b", b.addr).await;
    let key_c = put(&mut client, &service, "c", c.addr).await;
    let (channel, handle) = Side::new(kind, &client, &service).await;
    wait_until(Duration::from_secs(10), "b and c to serve", || {
        let channel = channel.clone();
        let all = b.served() > 0 && c.served() > 0;
        async move {
            send(&channel, 5).await;
            all
        }
    })
    .await;

    // Idle: 100 more instances of b appear, then c goes.
    tokio::time::sleep(IDLE).await;
    let mut ids = vec!["b".to_owned()];
    for n in 0..100 {
        let id = format!("b{n:03}");
        put(&mut client, &service, &id, b.addr).await;
        ids.push(id);
    }
    client.delete(key_c, None).await?;
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    discovered(&handle, &ids).await;
    tokio::time::sleep(IDLE).await;

    let c_before = c.served();
    send(&channel, 60).await;
    let misrouted = c.served() - c_before;
    assert_eq!(
        misrouted, 0,
        "{misrouted} of 60 requests reached c, removed while idle behind 100 other changes"
    );
    Ok(())
}
