//! Discovery across etcd outages: killed and restarted with its data (resume,
//! health, the set kept meanwhile), and wiped (revisions start again at 1:
//! detected, resynced, converged).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support;
use crate::support::changes::{instance, record};
use crate::support::{wait_until, Etcd};
use etcd_client::Client;
use tonic_etcd::codec::{Codec, Native};
use tonic_etcd::{Discovery, DiscoveryView, Health, Instance};

/// Puts `instance`, retrying while the client reconnects after a restart.
async fn put(client: &mut Client, instance: &Instance) -> String {
    let key = Native.key("/services", instance);
    let value = Native.encode(instance).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.put(key.clone(), value.clone(), None).await {
            Ok(_) => return key,
            Err(error) if Instant::now() < deadline => {
                eprintln!("put {key}: {error}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("put {key}: {error}"),
        }
    }
}

async fn delete(client: &mut Client, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(error) = client.delete(key, None).await {
        assert!(Instant::now() < deadline, "delete {key}: {error}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(handle: &DiscoveryView) -> Vec<String> {
    handle.snapshot().into_iter().map(|i| i.id).collect()
}

async fn wait_health(handle: &DiscoveryView, what: &str, f: fn(&Health) -> bool) {
    let health = handle.health();
    wait_until(Duration::from_secs(15), what, || {
        let ok = f(&health.borrow());
        async move { ok }
    })
    .await;
}

#[tokio::test]
async fn resumes_after_etcd_is_killed_and_restarted() {
    support::init_tracing();
    let mut etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("restart");
    let prefix = format!("/services/{service}/");
    put(&mut client, &instance(&service, "a", 1)).await;
    put(&mut client, &instance(&service, "b", 2)).await;

    let discovered = Discovery::new(client.clone(), &service)
        .changes()
        .await
        .unwrap();
    let handle = discovered.view();
    let log = record(discovered, prefix.clone());
    assert_eq!(ids(&handle), ["a", "b"]);

    etcd.kill().await;
    wait_health(&handle, "health Reconnecting", |h| {
        matches!(h, Health::Reconnecting { .. })
    })
    .await;
    // Through several failed reconnects (the backoff starts at 50 ms), the
    // set stays whole.
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_millis(1500) {
        assert_eq!(ids(&handle), ["a", "b"], "the set shrank during the outage");
        assert!(!handle.health().borrow().is_connected());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    etcd.restart().await;
    wait_health(&handle, "health Connected", Health::is_connected).await;

    // Changes made after the restart are seen.
    put(&mut client, &instance(&service, "c", 3)).await;
    delete(&mut client, &format!("{prefix}a")).await;
    wait_until(
        Duration::from_secs(10),
        "discovery to see c and not a",
        || {
            let now = ids(&handle);
            async move { now == ["b", "c"] }
        },
    )
    .await;
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        ["+a", "+b", "+c", "-a"],
        "nothing repeated, nothing lost"
    );
}

#[tokio::test]
async fn converges_after_etcd_is_wiped() {
    support::init_tracing();
    let mut etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("wiped");
    let prefix = format!("/services/{service}/");
    put(&mut client, &instance(&service, "a", 1)).await;
    put(&mut client, &instance(&service, "b", 2)).await;
    // Push the revision well above what the fresh etcd will reach, so that a
    // watch resumed from the old revision would wait for "future" events.
    for n in 0..30 {
        client
            .put("/elsewhere/bump", n.to_string(), None)
            .await
            .unwrap();
    }

    let discovered = Discovery::new(client.clone(), &service)
        .changes()
        .await
        .unwrap();
    let handle = discovered.view();
    let log = record(discovered, prefix.clone());
    assert_eq!(ids(&handle), ["a", "b"]);

    etcd.wipe_and_restart().await;
    // a comes back with the same value, b does not, c is new.
    put(&mut client, &instance(&service, "a", 1)).await;
    put(&mut client, &instance(&service, "c", 3)).await;

    wait_until(
        Duration::from_secs(15),
        "discovery to match the wiped etcd",
        || {
            let now = ids(&handle);
            async move { now == ["a", "c"] }
        },
    )
    .await;
    wait_health(&handle, "health Connected", Health::is_connected).await;

    // Whatever the interleaving of reconnect and re-puts, replaying the log
    // gives etcd's state, and b was removed exactly once.
    let log = log.lock().unwrap().clone();
    let mut replayed = BTreeMap::new();
    for line in &log {
        let (op, id) = line.split_at(1);
        match op {
            "+" => replayed.insert(id.to_owned(), ()),
            _ => replayed.remove(id),
        };
    }
    assert_eq!(
        replayed.into_keys().collect::<Vec<_>>(),
        ["a", "c"],
        "{log:?}"
    );
    assert_eq!(log.iter().filter(|l| *l == "-b").count(), 1, "{log:?}");

    // And the watch keeps working on the new etcd.
    put(&mut client, &instance(&service, "d", 4)).await;
    wait_until(Duration::from_secs(10), "discovery to see d", || {
        let now = ids(&handle);
        async move { now == ["a", "c", "d"] }
    })
    .await;
}
