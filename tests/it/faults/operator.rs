//! Operator actions with `etcdctl` on a live registration, seen from both
//! sides: the key deleted, overwritten, or its lease revoked, comes back by
//! itself (within a second; a revoked lease within the TTL), and a discovery
//! sees the instance leave and return once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support;
use crate::support::kv::lease_of;
use crate::support::{wait_for, wait_until, Etcd, Result};
use etcd_client::Client;
use futures_util::StreamExt;
use tonic_etcd::{Discovery, Instance, Registrar, Registration};
use tower::discover::Change;

const TTL: Duration = Duration::from_secs(3);

/// Waits until `key` is back on a lease that `accept`s (the garbage that
/// `etcdctl put` writes has none: lease 0); returns the lease and how long it
/// took from `since`.
async fn back(
    client: &Client,
    key: &str,
    since: Instant,
    within: Duration,
    accept: impl Fn(i64) -> bool,
) -> (i64, Duration) {
    let lease = wait_for(within, "the key back", || async {
        lease_of(client, key).await.filter(|l| accept(*l))
    })
    .await;
    (lease, since.elapsed())
}

/// Waits until the recorded changes are exactly `-key`, `+key` after `from`.
async fn left_and_returned(log: &Mutex<Vec<String>>, from: usize, key: &str) {
    let want = [format!("-{key}"), format!("+{key}")];
    wait_until(Duration::from_secs(2), "discovery to see -key +key", || {
        let now = log.lock().unwrap()[from..].to_vec();
        let done = now == want;
        async move { done }
    })
    .await;
}

#[tokio::test]
async fn etcdctl_del_put_and_lease_revoke_are_undone() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("operator");
    let registration: Registration = Registrar::new(client.clone())
        .ttl(TTL)
        .register(Instance::new(&service, "127.0.0.1:7500")?)
        .await?;
    let key = registration.key().to_owned();

    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut discovered = Discovery::new(client.clone(), &service).changes().await?;
    let handle = discovered.view();
    {
        let log = log.clone();
        tokio::spawn(async move {
            while let Some(change) = discovered.next().await {
                log.lock().unwrap().push(match change {
                    Change::Insert(key, _) => format!("+{key}"),
                    Change::Remove(key) => format!("-{key}"),
                });
            }
        });
    }
    wait_until(Duration::from_secs(2), "the initial insert", || {
        let n = log.lock().unwrap().len();
        async move { n == 1 }
    })
    .await;

    // etcdctl del: put back at once, on the same lease.
    let lease = registration.lease_id().unwrap();
    let from = log.lock().unwrap().len();
    let t = Instant::now();
    etcd.etcdctl(&["del", &key]);
    let (now, took) = back(&client, &key, t, Duration::from_secs(1), |_| true).await;
    assert_eq!(now, lease, "same lease");
    left_and_returned(&log, from, &key).await;
    eprintln!("etcdctl del: back after {took:?}, same lease");

    // etcdctl put garbage (no lease): our value put back at once, same lease.
    let from = log.lock().unwrap().len();
    let t = Instant::now();
    etcd.etcdctl(&["put", &key, "garbage"]);
    let (now, took) = back(&client, &key, t, Duration::from_secs(1), |l| l != 0).await;
    assert_eq!(now, lease, "same lease");
    left_and_returned(&log, from, &key).await;
    eprintln!("etcdctl put garbage: back after {took:?}, same lease");

    // etcdctl lease revoke: the key goes with the lease; back on a fresh one
    // well within the TTL.
    let from = log.lock().unwrap().len();
    let t = Instant::now();
    etcd.etcdctl(&["lease", "revoke", &format!("{lease:x}")]);
    let (fresh, took) = back(&client, &key, t, TTL, |l| l != lease && l != 0).await;
    left_and_returned(&log, from, &key).await;
    wait_until(
        Duration::from_secs(2),
        "the state to show the fresh lease",
        || {
            let shown = registration.lease_id() == Some(fresh);
            async move { shown }
        },
    )
    .await;
    eprintln!("etcdctl lease revoke: back after {took:?} on a fresh lease");
    assert!(took < Duration::from_secs(1), "took {took:?}");

    assert_eq!(handle.snapshot().len(), 1);
    registration.deregister().await?;
    Ok(())
}
