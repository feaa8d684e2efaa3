//! Discoveries of one `DiscoveryHub` share one etcd watch (the process-wide
//! sharing of `Discovery::new` is in `it::discovery::sharing`), counted by etcd
//! itself (its `etcd_debugging_mvcc_watcher_total` gauge: each test has its
//! own etcd, so the count is ours alone).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic_etcd::discovery::{DiscoveryHub, InstanceFilter};
use tonic_etcd::{Change, Policy};

use crate::support::changes::{self, next};
use crate::support::{self, Etcd};

/// The number of watchers etcd holds now, read from its metrics.
async fn etcd_watchers(etcd: &Etcd) -> u64 {
    let mut stream = TcpStream::connect(etcd.addr()).await.expect("etcd metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("etcd_debugging_mvcc_watcher_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .expect("etcd reports its watchers") as u64
}

async fn wait_watchers(etcd: &Etcd, n: u64) {
    support::wait_until(
        Duration::from_secs(10),
        &format!("{n} etcd watchers"),
        || async move { etcd_watchers(etcd).await == n },
    )
    .await;
}

fn key_of(change: &Change<String, tonic_etcd::Instance>) -> &str {
    match change {
        Change::Insert(key, _) | Change::Remove(key) => key,
    }
}

#[tokio::test]
async fn two_discoveries_of_one_service_share_one_watch_until_both_go() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("shared");
    let first = changes::put(&mut client, &changes::instance(&service, "a", 22_001)).await;
    let baseline = etcd_watchers(&etcd).await;

    let hub = DiscoveryHub::new(client.clone());
    let mut one = hub.discovery(&service).changes().await.unwrap();
    let mut two = hub.discovery(&service).changes().await.unwrap();
    assert_eq!(hub.watches(), 1);
    wait_watchers(&etcd, baseline + 1).await;

    // The late one gets the current set first, as the first did.
    assert!(matches!(next(&mut one).await, Change::Insert(k, _) if k == first));
    assert!(matches!(next(&mut two).await, Change::Insert(k, _) if k == first));

    // Both see the same changes.
    let second = changes::put(&mut client, &changes::instance(&service, "b", 22_002)).await;
    assert_eq!(key_of(&next(&mut one).await), second);
    assert_eq!(key_of(&next(&mut two).await), second);
    client.delete(first.clone(), None).await.unwrap();
    assert!(matches!(next(&mut one).await, Change::Remove(k) if k == first));
    assert!(matches!(next(&mut two).await, Change::Remove(k) if k == first));

    // Dropping one keeps the other going, on the same watch.
    drop(one);
    let third = changes::put(&mut client, &changes::instance(&service, "c", 22_003)).await;
    assert!(matches!(next(&mut two).await, Change::Insert(k, _) if k == third));
    assert_eq!(two.snapshot().len(), 2);
    assert_eq!(hub.watches(), 1);
    assert_eq!(etcd_watchers(&etcd).await, baseline + 1);

    // Dropping both stops the watch.
    drop(two);
    wait_watchers(&etcd, baseline).await;
    support::wait_until(Duration::from_secs(5), "the hub's watch gone", || {
        let watches = hub.watches();
        async move { watches == 0 }
    })
    .await;

    // A discovery after that starts a new watch, from a new Get.
    let mut again = hub.discovery(&service).changes().await.unwrap();
    assert_eq!(again.snapshot().len(), 2);
    assert!(matches!(next(&mut again).await, Change::Insert(..)));
    wait_watchers(&etcd, baseline + 1).await;
}

#[tokio::test]
async fn a_balancer_and_a_tonic_channel_side_by_side_share_one_watch() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("sidebyside");
    changes::put(&mut client, &changes::instance(&service, "a", 22_011)).await;
    let baseline = etcd_watchers(&etcd).await;

    let hub = DiscoveryHub::new(client.clone());
    let balancer = hub
        .discovery(&service)
        .balancer(Policy::RoundRobin)
        .await
        .unwrap();
    let channel = hub.discovery(&service).tonic_channel().await.unwrap();
    assert_eq!(hub.watches(), 1);
    wait_watchers(&etcd, baseline + 1).await;
    support::balancer::wait_endpoints(&balancer, "one endpoint", |e| e.len() == 1).await;
    drop((balancer, channel));
    wait_watchers(&etcd, baseline).await;
}

#[tokio::test]
async fn only_the_same_filter_shares() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("filters");
    let hub = DiscoveryHub::new(client.clone());
    let zone: InstanceFilter = Arc::new(|i| i.metadata.contains_key("zone"));

    let _plain = hub.discovery(&service).changes().await.unwrap();
    let _one = hub
        .discovery(&service)
        .filter_arc(zone.clone())
        .changes()
        .await
        .unwrap();
    let _same = hub
        .discovery(&service)
        .filter_arc(zone)
        .changes()
        .await
        .unwrap();
    assert_eq!(hub.watches(), 2, "no filter, and one Arc");
    let _closure = hub
        .discovery(&service)
        .filter(|_| true)
        .changes()
        .await
        .unwrap();
    let _version = hub
        .discovery(&service)
        .version("2")
        .changes()
        .await
        .unwrap();
    assert_eq!(
        hub.watches(),
        4,
        "a closure and a version are watches of their own"
    );

    // A discovery made with Discovery::new shares process-wide with the
    // discoveries of its connection, never with a hub's.
    let _alone = tonic_etcd::Discovery::new(client, &service)
        .changes()
        .await
        .unwrap();
    assert_eq!(hub.watches(), 4);
}
