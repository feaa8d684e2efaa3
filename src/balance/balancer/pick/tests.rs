//! Consistent hashing through the balancer's shared state: the key read from
//! the request, the ring, the load bound over real in-flight counts, the
//! retries and the keyless turns.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tower::discover::Change;

use super::super::hash_key::HashKey;
use super::super::policy::Policy;
use super::super::shared::{Options, Shared};
use super::*;
use crate::endpoint::default_endpoint;
use crate::instance::Instance;

fn shared(n: u16) -> Arc<Shared> {
    let shared = Arc::new(Shared::with_options(
        "svc".into(),
        Policy::ConsistentHash,
        Arc::new(default_endpoint),
        Duration::ZERO,
        Options::default(),
    ));
    // Ports nothing listens on: the channels are lazy, nothing connects.
    shared.apply_batch(
        (1..=n)
            .map(|port| {
                let instance = Instance::new("svc", format!("127.0.0.1:{port}")).unwrap();
                Change::Insert(format!("k{port:03}"), instance)
            })
            .collect(),
    );
    shared
}

fn keyed(key: &str) -> Pick {
    Pick::keyed(Some(HashKey::new(key).hash()))
}

fn pick(shared: &Shared, key: &str) -> String {
    shared.pick_with(keyed(key), &[]).unwrap().key.clone()
}

#[tokio::test]
async fn keyed_requests_stay_on_one_endpoint_and_keyless_ones_take_turns() {
    let shared = shared(4);
    let mut homes = BTreeMap::<String, usize>::new();
    for i in 0..200 {
        let key = format!("user-{i}");
        let home = pick(&shared, &key);
        for _ in 0..5 {
            assert_eq!(pick(&shared, &key), home, "{key}");
        }
        *homes.entry(home).or_default() += 1;
    }
    assert_eq!(homes.len(), 4, "200 keys reach every endpoint: {homes:?}");

    let mut turns = BTreeMap::<String, usize>::new();
    for _ in 0..400 {
        let target = shared.pick_with(Pick::default(), &[]).unwrap();
        *turns.entry(target.key.clone()).or_default() += 1;
    }
    assert!(turns.values().all(|&n| n == 100), "{turns:?}");
}

#[tokio::test]
async fn the_key_is_read_from_the_request_under_consistent_hashing_only() {
    let shared = shared(3);
    let mut request = http::Request::new(());
    request
        .headers_mut()
        .insert("x-hash-key", "user-42".parse().unwrap());
    let pick = shared.request_pick(&request);
    assert_eq!(pick.key, Some(HashKey::new("user-42").hash()));
    assert_eq!(
        shared.pick_with(pick, &[]).unwrap().key,
        self::pick(&shared, "user-42")
    );
    let round_robin = Shared::new(
        "svc".into(),
        Policy::RoundRobin,
        Arc::new(default_endpoint),
        Duration::ZERO,
    );
    assert_eq!(round_robin.request_pick(&request).key, None);
    assert!(round_robin.flight().is_none());
}

#[tokio::test]
async fn a_hot_key_spills_to_the_next_endpoints_within_the_load_bound() {
    let shared = shared(3);
    let home = pick(&shared, "hot");
    // Twelve concurrent requests of one key, each held in flight as a
    // request is (the endpoint's count and the balancer's).
    let mut held = Vec::new();
    let mut counts = BTreeMap::<String, usize>::new();
    for i in 0..12 {
        let target = shared.pick_with(keyed("hot"), &[]).unwrap();
        if i == 0 {
            assert_eq!(target.key, home, "an idle home takes its key");
        }
        *counts.entry(target.key.clone()).or_default() += 1;
        held.push((target.load.start(), shared.flight().unwrap()));
    }
    assert_eq!(shared.in_flight(), 12);
    // ⌈1.25 × 12 / 3⌉ = 5 at most on any endpoint; the home one is full.
    assert!(counts.values().all(|&n| n <= 5), "{counts:?}");
    assert_eq!(counts[&home], 5, "{counts:?}");
    assert_eq!(counts.len(), 3, "{counts:?}");
    // A cool key whose home has room stays there.
    let cool = (0..100)
        .map(|i| format!("cool-{i}"))
        .find(|key| {
            let home_of_key = pick(&shared, key);
            counts[&home_of_key] < 5
        })
        .unwrap();
    let cool_home = pick(&shared, &cool);
    held.clear();
    assert_eq!(shared.in_flight(), 0);
    assert_eq!(pick(&shared, &cool), cool_home);
    assert_eq!(
        pick(&shared, "hot"),
        home,
        "back home once the load is gone"
    );
}

#[tokio::test]
async fn a_retry_goes_to_the_next_endpoint_on_the_ring() {
    let shared = shared(5);
    let home = shared.pick_with(keyed("user-7"), &[]).unwrap();
    let next = shared.pick_with(keyed("user-7"), &[home.epoch]).unwrap();
    assert_ne!(next.key, home.key);
    // The same next one every time: the ring's order, not a draw.
    for _ in 0..10 {
        let again = shared.pick_with(keyed("user-7"), &[home.epoch]).unwrap();
        assert_eq!(again.key, next.key);
    }
    let third = shared
        .pick_with(keyed("user-7"), &[home.epoch, next.epoch])
        .unwrap();
    assert!(third.key != home.key && third.key != next.key);
    let all: Vec<u64> = shared
        .lock()
        .entries
        .values()
        .map(|entry| entry.target.epoch)
        .collect();
    assert!(shared.pick_with(keyed("user-7"), &all).is_none());
    assert!(shared.pick_with(Pick::default(), &all).is_none());
}

#[tokio::test]
async fn a_leave_moves_only_the_keys_of_the_endpoint_that_left() {
    let shared = shared(10);
    let keys: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
    let before: Vec<String> = keys.iter().map(|key| pick(&shared, key)).collect();
    shared.apply(Change::Remove("k004".into()));
    let after: Vec<String> = keys.iter().map(|key| pick(&shared, key)).collect();
    let moved = (0..keys.len()).filter(|&i| before[i] != after[i]);
    assert!(moved.clone().all(|i| before[i] == "k004"));
    assert_eq!(
        moved.count(),
        before.iter().filter(|home| *home == "k004").count()
    );
}

#[tokio::test]
async fn the_mapping_is_fixed_across_versions() {
    // The whole scheme (key hash, endpoint seeds, points, ring order) is a
    // contract between the clients of a fleet, whatever their versions: a
    // change here sends keys to other servers.
    let shared = shared(3);
    let homes: Vec<String> = [
        "user-1", "user-2", "user-3", "user-42", "cart/7", "a", "b", "c",
    ]
    .iter()
    .map(|key| pick(&shared, key))
    .collect();
    assert_eq!(
        homes,
        ["k002", "k003", "k002", "k003", "k003", "k003", "k001", "k001"]
    );
}
