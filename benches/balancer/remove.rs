//! Row 2: how fast an idle client drops a deregistered server.

use std::time::{Duration, Instant};

use etcd_client::{EventType, WatchOptions};
use tokio::sync::oneshot;
use tonic_etcd::codec::{Codec, Native};
use tonic_etcd::{Balancer, Discovery, Policy};

use crate::clients::{reach, register, wait_until, Client};
use crate::common::{ms, quantile, Met, Row};
use crate::servers::{Server, Servers};
use crate::support;

/// What the observer thread saw after a deregistration, measured from its
/// start.
#[derive(Default)]
struct Seen {
    gone: Option<Duration>,
    closed: Option<Duration>,
}

/// Polls, every ~100 µs from a thread of its own (so that the client runtime
/// is left idle), until `key` has left the balancer's endpoints (if a balancer
/// is given) and the server's connections are closed, or `limit` passes.
fn observe(
    start: Instant,
    balancer: Option<Balancer>,
    key: String,
    server: Server,
    limit: Duration,
) -> oneshot::Receiver<Seen> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let mut seen = Seen::default();
        loop {
            let now = start.elapsed();
            if seen.gone.is_none() {
                match &balancer {
                    Some(b) if b.endpoints().iter().any(|e| e.key == key) => {}
                    _ => seen.gone = Some(now),
                }
            }
            if seen.closed.is_none() && server.open_connections() == 0 {
                seen.closed = Some(now);
            }
            if (seen.gone.is_some() && seen.closed.is_some()) || now > limit {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        let _ = tx.send(seen);
    });
    rx
}

/// Waits for an event of type `kind` on a raw etcd watch.
async fn next_event(stream: &mut etcd_client::WatchStream, kind: EventType) {
    loop {
        let response = stream.message().await.unwrap().expect("watch ended");
        if response.events().iter().any(|e| e.event_type() == kind) {
            return;
        }
    }
}

/// Row 2: deregister → the endpoint gone from an idle client's balancer, next
/// to etcd's own delete → watch event and to tonic's balance_channel.
pub(crate) async fn remove_latency(
    etcd: &support::Etcd,
    rounds: usize,
    tonic_rounds: usize,
) -> Row {
    let client = etcd.client().await;
    let servers = Servers::start(&[Duration::ZERO, Duration::ZERO]);
    let (stays, leaves) = (&servers.list[0], &servers.list[1]);
    let service = support::unique("remove");
    let _stays = register(&client, stays.instance(&service)).await;
    let leaving = leaves.instance(&service);
    let key = Native.key("/services", &leaving);

    // Raw: delete → watch event with etcd-client alone.
    let mut raw = Vec::with_capacity(rounds);
    {
        let raw_key = format!("/services/{service}-raw/x");
        let mut watcher = client.clone();
        let mut stream = watcher
            .watch(raw_key.clone(), Some(WatchOptions::new()))
            .await
            .unwrap();
        let mut kv = client.clone();
        for _ in 0..rounds {
            kv.put(raw_key.clone(), Native.encode(&leaving).unwrap(), None)
                .await
                .unwrap();
            next_event(&mut stream, EventType::Put).await;
            let t = Instant::now();
            kv.delete(raw_key.clone(), None).await.unwrap();
            next_event(&mut stream, EventType::Delete).await;
            raw.push(t.elapsed());
        }
    }

    // Ours: an idle round-robin balancer over both servers; the leaving one
    // is registered, reached, left idle, then deregistered.
    let balancer = Discovery::new(client.clone(), service.as_str())
        .balancer(Policy::RoundRobin)
        .await
        .unwrap();
    let mut ours = Client::balancer(balancer.clone());
    let mut gone = Vec::with_capacity(rounds);
    let mut closed = Vec::with_capacity(rounds);
    let mut misrouted = 0;
    let mut checked = 0;
    for _ in 0..rounds {
        let registration = register(&client, leaving.clone()).await;
        wait_until("the insert", || {
            balancer.endpoints().iter().any(|e| e.key == key)
        })
        .await;
        reach(&mut ours, leaves, 4).await;
        wait_until("a connection", || leaves.open_connections() > 0).await;
        // Idle: no request in flight from here on.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let start = Instant::now();
        let seen = observe(
            start,
            Some(balancer.clone()),
            key.clone(),
            leaves.clone(),
            Duration::from_secs(5),
        );
        registration.deregister().await.unwrap();
        let seen = seen.await.unwrap();
        gone.push(seen.gone.expect("the endpoint was not removed within 5 s"));
        closed.push(seen.closed.expect("the connection stayed open for 5 s"));
        // Nothing goes to the removed server any more.
        let before = leaves.served();
        for _ in 0..4 {
            ours.hello_within(Duration::from_secs(5))
                .await
                .expect("call failed");
            checked += 1;
        }
        misrouted += leaves.served() - before;
    }
    drop(ours);
    drop(balancer);
    wait_until("the balancer's connections to close", || {
        leaves.open_connections() == 0 && stays.open_connections() == 0
    })
    .await;

    // tonic's balance_channel, idle the same way: does it let go of the
    // removed server without traffic, and does the next request go there?
    let window = Duration::from_millis(100);
    let channel = Discovery::new(client.clone(), service.as_str())
        .tonic_channel()
        .await
        .unwrap();
    let mut theirs = Client::channel(channel);
    let mut idle_closed = 0;
    let mut after_request = Vec::new();
    let mut tonic_misrouted = 0;
    for _ in 0..tonic_rounds {
        let registration = register(&client, leaving.clone()).await;
        // Random picks: keep calling until the new server answers one.
        reach(&mut theirs, leaves, 1000).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
        let start = Instant::now();
        let seen = observe(start, None, key.clone(), leaves.clone(), window);
        registration.deregister().await.unwrap();
        let seen = seen.await.unwrap();
        if seen.closed.is_some() {
            idle_closed += 1;
            continue;
        }
        let before = leaves.served();
        let start = Instant::now();
        let seen = observe(
            start,
            None,
            key.clone(),
            leaves.clone(),
            Duration::from_secs(5),
        );
        theirs
            .hello_within(Duration::from_secs(5))
            .await
            .expect("call failed");
        tonic_misrouted += leaves.served() - before;
        if let Some(closed) = seen.await.unwrap().closed {
            after_request.push(closed);
        }
    }
    drop(theirs);

    let (rp50, rp99) = (quantile(&mut raw, 0.5), quantile(&mut raw, 0.99));
    let (gp50, gp99) = (quantile(&mut gone, 0.5), quantile(&mut gone, 0.99));
    let (cp50, cp99) = (quantile(&mut closed, 0.5), quantile(&mut closed, 0.99));
    let ap50 = quantile(&mut after_request, 0.5);
    Row {
        name: format!("2. remove latency, idle client, {rounds} deregistrations"),
        ours: format!(
            "gone from `endpoints()` p50 {} / p99 {}; connection closed p50 {} / p99 {}; \
             {misrouted} of {checked} later requests reached the removed server",
            ms(gp50),
            ms(gp99),
            ms(cp50),
            ms(cp99)
        ),
        baseline: format!(
            "raw delete → watch event p50 {} / p99 {}; balance_channel: connection closed \
             while idle in {idle_closed} of {tonic_rounds} ({} window), closed {} after the \
             next request, {tonic_misrouted} requests reached the removed server",
            ms(rp50),
            ms(rp99),
            ms(window),
            ms(ap50),
        ),
        goal: "p99 ≤ 5 ms, no request routed there afterwards".into(),
        met: Met::from(gp99 <= Duration::from_millis(5) && misrouted == 0),
        reading: format!(
            "the clock starts when `deregister()` is called (it stops the keepalive task, \
             then revokes the lease, which deletes the key with it in one request); the \
             endpoint leaves the balancer {} (p50) later than etcd's own delete → watch \
             delivery, with no request in flight, and its connection closes with it. tonic's \
             balanced channel applies changes only inside `poll_ready`: while idle it keeps \
             the removed server's connection open; the next request applies the queued \
             removal before it is routed, so it is not misrouted either",
            ms(gp50.saturating_sub(rp50))
        ),
    }
}
