//! 100 in-process clients with explicit ids, `K = 10` of `N = 100` instances:
//! every client gets exactly 10, no server more than 1.2× the mean, and one
//! server leaving moves few clients.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::{Stream, StreamExt};
use tonic_etcd::discovery::Subset;
use tonic_etcd::{Change, Discovery, InstanceChanges};

use crate::support::{self, changes, Etcd};

type Current = Arc<Mutex<BTreeSet<String>>>;

/// Follows a subset stream in the background; the set it holds now.
fn follow(mut changes: InstanceChanges) -> Current {
    let current = Current::default();
    let set = current.clone();
    tokio::spawn(async move {
        while let Some(change) = changes.next().await {
            let mut set = set.lock().unwrap();
            match change {
                Change::Insert(key, _) => set.insert(key),
                Change::Remove(key) => set.remove(&key),
            };
        }
    });
    current
}

fn sets(clients: &[Current]) -> Vec<BTreeSet<String>> {
    clients.iter().map(|c| c.lock().unwrap().clone()).collect()
}

fn loads(sets: &[BTreeSet<String>]) -> BTreeMap<String, usize> {
    let mut loads = BTreeMap::new();
    for key in sets.iter().flatten() {
        *loads.entry(key.clone()).or_insert(0) += 1;
    }
    loads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_clients_get_ten_each_evenly_and_a_leave_moves_few() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("spread");
    let (n, c, k) = (100, 100, 10);
    let mut keys = Vec::new();
    for i in 0..n {
        let instance = changes::instance(&service, &format!("s{i:03}"), 20_000 + i as u16);
        keys.push(changes::put(&mut client, &instance).await);
    }

    let starts = (0..c).map(|i| {
        let subset = Subset::new(k)
            .client_id(format!("client-{i:03}"))
            .settle(Duration::from_millis(500));
        Discovery::new(client.clone(), &service)
            .subset(subset)
            .startup_timeout(Duration::from_secs(20))
            .changes()
    });
    let clients: Vec<Current> = join_all(starts)
        .await
        .into_iter()
        .map(|started| follow(started.expect("subset discovery starts")))
        .collect();

    // Every client has seen the 100 others once its settle period is over.
    let mean = (c * k) as f64 / n as f64;
    support::wait_until(Duration::from_secs(30), "even subsets of 10", || {
        let sets = sets(&clients);
        let loads = loads(&sets);
        async move {
            sets.iter().all(|s| s.len() == k)
                && loads.len() == n
                && loads.values().all(|&l| l as f64 <= 1.2 * mean)
        }
    })
    .await;
    let before = sets(&clients);
    let loads = loads(&before);
    let max = *loads.values().max().unwrap();
    eprintln!(
        "spread: max {max}, mean {mean}, max/mean {:.2}",
        max as f64 / mean
    );
    assert!(before.iter().all(|s| s.len() == k), "exactly K each");
    assert!(
        max as f64 <= 1.2 * mean,
        "busiest server {max} > 1.2 × {mean}"
    );

    // One server leaves: every client still has 10, none holds it.
    let gone = keys[37].clone();
    client.delete(gone.clone(), None).await.unwrap();
    support::wait_until(
        Duration::from_secs(10),
        "subsets without the server gone",
        || {
            let sets = sets(&clients);
            let gone = gone.clone();
            async move { sets.iter().all(|s| s.len() == k && !s.contains(&gone)) }
        },
    )
    .await;
    let after = sets(&clients);
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    let connections: usize = before
        .iter()
        .zip(&after)
        .map(|(b, a)| b.difference(a).count())
        .sum();
    let necessary = before.iter().filter(|s| s.contains(&gone)).count();
    eprintln!(
        "leave: {moved} of {c} clients moved ({connections} connections), {necessary} had to"
    );
    assert_eq!(necessary, k, "the server gone had K·C/N clients");
    assert!(moved >= necessary);
    assert!(
        moved <= c * 6 / 10,
        "{moved} clients moved for one server leaving"
    );
    assert_eq!(connections, moved, "each moved client changed one server");
    let loads = self::loads(&after);
    assert!(
        loads.values().all(|&l| l <= 11),
        "still even after the leave: {loads:?}"
    );
}

#[tokio::test]
async fn a_subset_of_zero_or_a_bad_client_id_is_refused() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("badsubset");
    let zero = Discovery::new(client.clone(), &service)
        .subset(Subset::new(0))
        .changes()
        .await;
    assert!(
        matches!(zero, Err(tonic_etcd::Error::Config { .. })),
        "{zero:?}"
    );
    let bad = Discovery::new(client, &service)
        .subset(Subset::new(3).client_id("a/b"))
        .changes()
        .await;
    assert!(
        matches!(bad, Err(tonic_etcd::Error::InvalidId { .. })),
        "{bad:?}"
    );
}

#[tokio::test]
async fn a_client_registers_under_the_crate_prefix_and_takes_k() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("onesubset");
    for i in 0..5u16 {
        changes::put(
            &mut client,
            &changes::instance(&service, &format!("s{i}"), 21_000 + i),
        )
        .await;
    }
    let subset = Subset::new(3).client_id("solo").settle(Duration::ZERO);
    let changes = Discovery::new(client.clone(), &service)
        .subset(subset)
        .changes()
        .await
        .unwrap();
    assert_eq!(changes.size_hint().0, 3, "three inserts queued at start");
    let key = format!("/tonic-etcd/subset/services/{service}/solo");
    let (value, lease) = support::kv::get(&client, &key)
        .await
        .expect("client key written");
    assert_eq!(value, b"solo");
    assert!(lease > 0, "with a lease");
    // The instances' prefix holds only the instances.
    let under = support::kv::keys(&client, &format!("/services/{service}/"))
        .await
        .unwrap();
    assert_eq!(under.len(), 5);
}

#[tokio::test]
async fn a_client_key_that_cannot_be_written_falls_back_to_rendezvous() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("fallback");
    for i in 0..5u16 {
        changes::put(
            &mut client,
            &changes::instance(&service, &format!("s{i}"), 23_000 + i),
        )
        .await;
    }
    // etcd refuses a request over 1.5 MiB: this client's key cannot be written.
    let id = "x".repeat(2_000_000);
    let subset = Subset::new(3).client_id(id).settle(Duration::ZERO);
    let changes = Discovery::new(client.clone(), &service)
        .subset(subset)
        .changes()
        .await
        .expect("subsetting falls back instead of failing");
    assert_eq!(changes.size_hint().0, 3, "still K servers");
    let members = format!("/tonic-etcd/subset/services/{service}/");
    assert!(support::kv::keys(&client, &members)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn the_view_lists_every_instance_and_says_which_are_the_subset() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("subsetview");
    for i in 0..5u16 {
        changes::put(
            &mut client,
            &changes::instance(&service, &format!("s{i}"), 24_000 + i),
        )
        .await;
    }
    let subset = Subset::new(3).client_id("viewer").settle(Duration::ZERO);
    let changes = Discovery::new(client.clone(), &service)
        .subset(subset)
        .changes()
        .await
        .unwrap();
    let view = changes.view();
    assert_eq!(view.snapshot().len(), 5, "the snapshot: every instance");
    let chosen = |view: &tonic_etcd::DiscoveryView| -> BTreeSet<String> {
        view.subset()
            .expect("subsetting on")
            .into_iter()
            .map(|i| format!("/services/{service}/{}", i.id))
            .collect()
    };
    let carried = follow(changes);
    support::wait_until(Duration::from_secs(5), "three carried", || {
        let n = carried.lock().unwrap().len();
        async move { n == 3 }
    })
    .await;
    assert_eq!(
        chosen(&view),
        *carried.lock().unwrap(),
        "the view's subset is the stream's"
    );

    // A server of the subset leaves: the view follows the stream.
    let gone = chosen(&view).into_iter().next().unwrap();
    client.delete(gone.clone(), None).await.unwrap();
    support::wait_until(Duration::from_secs(5), "the subset to move", || {
        let now = chosen(&view);
        let carried = carried.lock().unwrap().clone();
        let gone = gone.clone();
        async move { now.len() == 3 && !now.contains(&gone) && now == carried }
    })
    .await;
    assert_eq!(view.snapshot().len(), 4);

    // Without subsetting there is no subset to show.
    let all = Discovery::new(client, &service).changes().await.unwrap();
    assert_eq!(all.view().subset(), None);
}
