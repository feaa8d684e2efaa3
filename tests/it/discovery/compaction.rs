//! A watch that must resume from a compacted revision resyncs and reports only
//! the difference.
//!
//! The discovery talks to etcd through a TCP proxy (`support::proxy`). Cutting the
//! proxy breaks its watch while etcd keeps running; the test then changes keys
//! and compacts at the current revision, so that the watch can no longer
//! resume from where it was. When the proxy comes back, the discovery must
//! notice the compaction, read the prefix again and emit only what changed.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support;
use crate::support::changes::{etcd_state, instance, next, put};
use crate::support::proxy::Proxy;
use crate::support::{wait_until, Etcd};
use futures_util::Stream;
use tonic_etcd::{Discovery, Health, Instance, InstanceChanges};
use tower::discover::Change;

/// Every change queued in the stream, rendered as `+key@addr` / `-key`.
async fn drain(discovered: &mut InstanceChanges, prefix: &str) -> BTreeSet<String> {
    let mut shown = BTreeSet::new();
    for _ in 0..discovered.size_hint().0 {
        let line = match next(discovered).await {
            Change::Insert(key, i) => format!("+{}@{}", key.trim_start_matches(prefix), i.addr),
            Change::Remove(key) => format!("-{}", key.trim_start_matches(prefix)),
        };
        assert!(shown.insert(line.clone()), "{line} reported twice");
    }
    shown
}

#[tokio::test]
async fn resume_from_a_compacted_revision_resyncs_with_a_diff() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("compacted");
    let prefix = format!("/services/{service}/");

    for (id, port) in [
        ("keep1", 1),
        ("keep2", 2),
        ("change1", 3),
        ("gone1", 4),
        ("gone2", 5),
    ] {
        put(&mut client, &instance(&service, id, port)).await;
    }

    let proxy = Proxy::start(etcd.addr()).await;
    let through_proxy = tonic_etcd::connect([format!("http://{}", proxy.addr())])
        .await
        .unwrap();
    let mut discovered = Discovery::new(through_proxy, &service)
        .changes()
        .await
        .unwrap();
    let initial = drain(&mut discovered, &prefix).await;
    assert_eq!(initial.len(), 5, "{initial:?}");
    let mut health = discovered.health();

    // Break the watch while etcd lives on.
    proxy.refuse();
    wait_until(Duration::from_secs(10), "health Reconnecting", || {
        let reconnecting = matches!(*health.borrow_and_update(), Health::Reconnecting { .. });
        async move { reconnecting }
    })
    .await;
    assert_eq!(
        discovered.snapshot().len(),
        5,
        "the set is kept while cut off"
    );

    // Meanwhile: one change, two deletes, one new key, one key that comes and
    // goes, then a compaction that erases the history of all of it.
    put(&mut client, &instance(&service, "change1", 33)).await;
    client.delete(format!("{prefix}gone1"), None).await.unwrap();
    client.delete(format!("{prefix}gone2"), None).await.unwrap();
    put(&mut client, &instance(&service, "new1", 6)).await;
    put(&mut client, &instance(&service, "transient", 7)).await;
    client
        .delete(format!("{prefix}transient"), None)
        .await
        .unwrap();
    let compacted = etcd.compact().await;
    assert!(compacted > 0);

    proxy.restore();
    let expected: Vec<Instance> = etcd_state(&client, &service).await.into_values().collect();
    assert_eq!(expected.len(), 4);
    wait_until(Duration::from_secs(15), "discovery to converge", || {
        let converged = discovered.snapshot() == expected;
        async move { converged }
    })
    .await;
    wait_until(Duration::from_secs(10), "health Connected", || {
        let connected = health.borrow_and_update().is_connected();
        async move { connected }
    })
    .await;

    // Only the difference: unchanged keys are not inserted again, removed keys
    // are removed once, the transient key never shows.
    let diff = drain(&mut discovered, &prefix).await;
    let expected_diff: BTreeSet<String> = [
        "+change1@127.0.0.1:33",
        "+new1@127.0.0.1:6",
        "-gone1",
        "-gone2",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(diff, expected_diff);

    // And the watch runs again from the resynced revision.
    let key = put(&mut client, &instance(&service, "after", 8)).await;
    match next(&mut discovered).await {
        Change::Insert(k, _) => assert_eq!(k, key),
        other => panic!("expected the insert of {key}, got {other:?}"),
    }
}
