//! Churn: 200 instances register, update and deregister concurrently while a
//! discovery watches. The discovered set ends equal to etcd's state exactly,
//! replaying the recorded changes gives that same set, and an instance that
//! never changed was inserted exactly once and never removed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support;
use crate::support::changes::{self, etcd_state};
use crate::support::{wait_until, Etcd, Result};
use futures_util::StreamExt;
use tonic_etcd::codec::{Codec, Native};
use tonic_etcd::{Discovery, Instance, Registrar, Registration};
use tower::discover::Change;

/// What each instance does; 200 in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    /// Registered before the discovery starts, untouched.
    StableBefore,
    /// Registered during the churn, untouched afterwards.
    StableDuring,
    /// Registered before, deregistered during the churn.
    LeavesDuring,
    /// Registered and deregistered during the churn.
    Flickers,
    /// Registered, updated, deregistered and registered again during the churn.
    Returns,
}

fn script(n: u16) -> Script {
    match n {
        0..=49 => Script::StableBefore,
        50..=99 => Script::StableDuring,
        100..=124 => Script::LeavesDuring,
        125..=174 => Script::Flickers,
        _ => Script::Returns,
    }
}

fn instance(service: &str, n: u16) -> Instance {
    changes::instance(service, &format!("i{n:03}"), 20_000 + n)
}

/// Sleeps 0..max ms, different for each instance, so that the scripts interleave.
async fn jitter(n: u16, step: u16, max: u64) {
    let ms = (u64::from(n) * 7919 + u64::from(step) * 104_729) % max;
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_of_200_instances_converges_exactly() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("churn");
    let registrar = Registrar::new(client.clone()).ttl(Duration::from_secs(10));

    let mut before: HashMap<u16, Registration> = HashMap::new();
    for n in (0..200).filter(|n| matches!(script(*n), Script::StableBefore | Script::LeavesDuring))
    {
        before.insert(n, registrar.register(instance(&service, n)).await?);
    }

    let discovered = Discovery::new(client.clone(), &service).changes().await?;
    let handle = discovered.view();
    let log: Arc<Mutex<Vec<Change<String, Instance>>>> = Arc::default();
    {
        let log = log.clone();
        let mut discovered = discovered;
        tokio::spawn(async move {
            while let Some(change) = discovered.next().await {
                log.lock().unwrap().push(change);
            }
        });
    }

    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut kept = Vec::new();
    for n in 0..200u16 {
        let registrar = registrar.clone();
        let service = service.clone();
        let guard = before.remove(&n);
        match script(n) {
            Script::StableBefore => kept.push(guard.unwrap()),
            Script::StableDuring => tasks.push(tokio::spawn(async move {
                jitter(n, 0, 300).await;
                Ok::<_, tonic_etcd::Error>(Some(registrar.register(instance(&service, n)).await?))
            })),
            Script::LeavesDuring => tasks.push(tokio::spawn(async move {
                jitter(n, 0, 300).await;
                guard.unwrap().deregister().await?;
                Ok(None)
            })),
            Script::Flickers => tasks.push(tokio::spawn(async move {
                jitter(n, 0, 200).await;
                let registration = registrar.register(instance(&service, n)).await?;
                jitter(n, 1, 100).await;
                registration.deregister().await?;
                Ok(None)
            })),
            Script::Returns => tasks.push(tokio::spawn(async move {
                jitter(n, 0, 200).await;
                let registration = registrar.register(instance(&service, n)).await?;
                registration.update(|i| i.weight = 2).await?;
                jitter(n, 1, 100).await;
                registration.deregister().await?;
                Ok(Some(registrar.register(instance(&service, n)).await?))
            })),
        }
    }
    for task in tasks {
        if let Some(registration) = task.await?? {
            kept.push(registration);
        }
    }
    eprintln!("churn done in {:?}", started.elapsed());

    // Converged: the discovered set is etcd's state, instance by instance.
    let expected = etcd_state(&client, &service).await;
    let expected_ids: Vec<u16> = (0..200)
        .filter(|n| {
            matches!(
                script(*n),
                Script::StableBefore | Script::StableDuring | Script::Returns
            )
        })
        .collect();
    assert_eq!(
        expected.len(),
        expected_ids.len(),
        "etcd holds the instances that stayed"
    );
    let want: Vec<Instance> = expected.values().cloned().collect();
    wait_until(Duration::from_secs(10), "discovery to equal etcd", || {
        let now = handle.snapshot();
        let want = want.clone();
        async move { now == want }
    })
    .await;
    eprintln!("converged {:?} after the churn started", started.elapsed());

    // Replaying the stream gives the same set.
    let log = log.lock().unwrap().clone();
    let mut replayed: BTreeMap<String, Instance> = BTreeMap::new();
    let mut inserts: HashMap<String, usize> = HashMap::new();
    let mut removes: HashMap<String, usize> = HashMap::new();
    for change in &log {
        match change {
            Change::Insert(key, instance) => {
                replayed.insert(key.clone(), instance.clone());
                *inserts.entry(key.clone()).or_default() += 1;
            }
            Change::Remove(key) => {
                assert!(
                    replayed.remove(key).is_some(),
                    "removal of {key}, which was not there"
                );
                *removes.entry(key.clone()).or_default() += 1;
            }
        }
    }
    assert_eq!(replayed, expected, "the stream replays to etcd's state");

    // Instances that never changed: one Insert, no Remove.
    for n in (0..200).filter(|n| matches!(script(*n), Script::StableBefore | Script::StableDuring))
    {
        let key = Native.key("/services", &instance(&service, n));
        assert_eq!(inserts.get(&key), Some(&1), "{key}: {log:?}");
        assert_eq!(removes.get(&key), None, "{key}");
    }
    // Those that went away were removed as often as inserted; those that came
    // back with an update were inserted three times (register, update, again).
    for n in 0..200 {
        let key = Native.key("/services", &instance(&service, n));
        let (i, r) = (
            inserts.get(&key).copied().unwrap_or(0),
            removes.get(&key).copied().unwrap_or(0),
        );
        match script(n) {
            Script::LeavesDuring | Script::Flickers => assert_eq!((i, r), (1, 1), "{key}"),
            Script::Returns => assert_eq!((i, r), (3, 1), "{key}"),
            _ => {}
        }
    }
    eprintln!("{} changes recorded", log.len());

    for registration in kept {
        registration.deregister().await?;
    }
    wait_until(Duration::from_secs(5), "discovery empty", || {
        let empty = handle.snapshot().is_empty();
        async move { empty }
    })
    .await;
    Ok(())
}
