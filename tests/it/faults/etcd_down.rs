//! etcd is down for longer than the lease TTL, then comes back with its data:
//! the registrations come back on fresh leases, a registration ended during
//! the outage expires one TTL after etcd's return, the discovery resumes, and
//! its set ends equal to etcd's state, with no instance lost or repeated on
//! the way.

use std::time::{Duration, Instant};

use crate::support;
use crate::support::changes::{etcd_state, record};
use crate::support::{wait_for, wait_until, Etcd, Result};
use tonic_etcd::codec::{Codec, Native};
use tonic_etcd::{Discovery, Instance, Registrar};

const TTL: Duration = Duration::from_secs(2);
/// How long etcd stays down: well past the TTL.
const OUTAGE: Duration = Duration::from_millis(3500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_past_the_ttl_then_back_with_its_data() -> Result {
    support::init_tracing();
    let mut etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("down");
    let prefix = format!("/services/{service}/");

    let mut registrations = Vec::new();
    for id in ["a", "b", "c"] {
        let instance = Instance::new(&service, "127.0.0.1:7100")?.with_id(id);
        let registration = Registrar::new(client.clone())
            .ttl(TTL)
            .register(instance)
            .await?;
        registrations.push(registration);
    }
    let old_leases: Vec<i64> = registrations
        .iter()
        .map(|r| r.lease_id().unwrap())
        .collect();
    let c = registrations.pop().unwrap();

    let discovered = Discovery::new(client.clone(), &service).changes().await?;
    let handle = discovered.view();
    let log = record(discovered, prefix.clone());
    let ids = || -> Vec<String> { handle.snapshot().into_iter().map(|i| i.id).collect() };
    assert_eq!(ids(), ["a", "b", "c"]);

    etcd.kill().await;
    let down = Instant::now();
    wait_until(Duration::from_secs(5), "registrations notice", || {
        let noticed = registrations.iter().all(|r| r.lease_id().is_none());
        async move { noticed }
    })
    .await;
    eprintln!(
        "registrations reconnecting {:?} after the kill",
        down.elapsed()
    );

    // Ending a registration while etcd is down cannot delete its key: an error
    // says so, and the key will expire with its lease.
    let t = Instant::now();
    let error = c.deregister().await.expect_err("etcd is down");
    eprintln!(
        "deregister during the outage failed after {:?}: {error}",
        t.elapsed()
    );

    // The set is kept whole through the outage.
    while down.elapsed() < OUTAGE {
        assert_eq!(ids(), ["a", "b", "c"], "the set shrank during the outage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    etcd.restart().await;
    let up = Instant::now();
    // Written as soon as etcd is back, before discovery has reconnected.
    let x = Instance::new(&service, "127.0.0.1:7101")?.with_id("x");
    wait_until(Duration::from_secs(5), "the put of x", || {
        let mut client = client.clone();
        let (key, value) = (Native.key("/services", &x), Native.encode(&x).unwrap());
        async move { client.put(key, value, None).await.is_ok() }
    })
    .await;

    for (registration, old) in registrations.iter().zip(&old_leases) {
        let lease = wait_for(Duration::from_secs(5), "registered again", || {
            let lease = registration.lease_id();
            async move { lease }
        })
        .await;
        assert_ne!(lease, *old, "a fresh lease after the loss");
    }
    eprintln!("registered again {:?} after etcd's return", up.elapsed());

    // c's key outlives etcd's return by about one TTL (etcd renews every lease
    // when it elects a leader), then expires.
    let c_key = format!("{prefix}c");
    wait_until(Duration::from_secs(6), "c's key to expire", || {
        let mut client = client.clone();
        let key = c_key.clone();
        async move { matches!(client.get(key, None).await, Ok(resp) if resp.kvs().is_empty()) }
    })
    .await;
    eprintln!("c's key expired {:?} after etcd's return", up.elapsed());

    let expected = etcd_state(&client, &service).await;
    assert_eq!(
        expected.values().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["a", "b", "x"],
        "etcd's own state"
    );
    wait_until(Duration::from_secs(5), "discovery equal to etcd", || {
        let now = ids();
        async move { now == ["a", "b", "x"] }
    })
    .await;
    eprintln!(
        "discovery equal to etcd {:?} after etcd's return",
        up.elapsed()
    );
    // The instances themselves, not only their ids.
    let etcd_instances: Vec<Instance> = expected.into_values().collect();
    assert_eq!(handle.snapshot(), etcd_instances);
    assert!(handle.health().borrow().is_connected());

    // a and b were re-put with the same value on fresh leases: nothing to see.
    // c left once, x arrived once.
    let log = log.lock().unwrap().clone();
    assert_eq!(&log[..3], ["+a", "+b", "+c"], "{log:?}");
    let mut rest = log[3..].to_vec();
    rest.sort();
    assert_eq!(rest, ["+x", "-c"], "{log:?}");

    for registration in registrations {
        registration.deregister().await?;
    }
    Ok(())
}
