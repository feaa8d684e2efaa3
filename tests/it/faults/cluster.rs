//! A three-member etcd cluster loses its leader, gets it back, then loses a
//! follower. Registrations over all three endpoints keep their key (on the same
//! lease or a fresh one), a discovery over all three endpoints never misses a
//! live instance, and a client balanced over real servers never fails.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support;
use crate::support::balancer::{hello, Greeter};
use crate::support::changes::wait_instances;
use crate::support::kv;
use crate::support::{wait_until, Cluster, Result};
use etcd_client::Client;
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic_etcd::{balance, Discovery, Instance, Registrar, Registration, RegistrationState};

/// Lease TTL of the registrations: short, so that a lease lost for good would
/// show within the faults' hold time.
const TTL: Duration = Duration::from_secs(2);
/// How long each fault is held: longer than the TTL.
const HOLD: Duration = Duration::from_millis(3000);

/// Records, for one registration, how long it spent not `Registered` at most,
/// and how many leases it went through.
#[derive(Debug, Default)]
struct Outages {
    longest: Mutex<Duration>,
    leases: AtomicU64,
}

impl Outages {
    /// The longest outage since the last call.
    fn take(&self) -> Duration {
        std::mem::take(&mut *self.longest.lock().unwrap())
    }
}

/// The longest outage of any registration since the last call.
fn longest(outages: &[Arc<Outages>]) -> Duration {
    outages.iter().map(|o| o.take()).max().unwrap_or_default()
}

fn track(mut state: watch::Receiver<RegistrationState>) -> Arc<Outages> {
    let outages = Arc::new(Outages::default());
    let record = outages.clone();
    tokio::spawn(async move {
        let mut down_since: Option<Instant> = None;
        let mut last_lease = None;
        loop {
            match &*state.borrow_and_update() {
                RegistrationState::Registered { lease_id } => {
                    if let Some(since) = down_since.take() {
                        let mut longest = record.longest.lock().unwrap();
                        *longest = (*longest).max(since.elapsed());
                    }
                    if last_lease != Some(*lease_id) {
                        last_lease = Some(*lease_id);
                        record.leases.fetch_add(1, Ordering::SeqCst);
                    }
                }
                RegistrationState::Reconnecting { .. } => {
                    down_since.get_or_insert_with(Instant::now);
                }
                _ => return,
            }
            if state.changed().await.is_err() {
                return;
            }
        }
    });
    outages
}

/// The keys under `prefix` with their leases, read through any live member
/// within 2 s.
async fn keys(client: &Client, prefix: &str) -> Option<Vec<(String, i64)>> {
    let read = kv::keys(client, prefix);
    tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .ok()?
        .ok()
}

/// Waits until every registration is `Registered` and etcd holds exactly its
/// keys, each on the lease the registration reports.
async fn settled(client: &Client, prefix: &str, registrations: &[Registration]) {
    wait_until(
        Duration::from_secs(15),
        "every registration settled",
        || async move {
            let Some(found) = keys(client, prefix).await else {
                return false;
            };
            let mut expected: Vec<(String, i64)> = Vec::new();
            for registration in registrations {
                let Some(lease) = registration.lease_id() else {
                    return false;
                };
                expected.push((registration.key().to_owned(), lease));
            }
            expected.sort();
            found == expected
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_and_follower_faults_lose_nothing() -> Result {
    support::init_tracing();
    let mut cluster = Cluster::start().await;
    let client = cluster.client().await;
    let service = support::unique("cluster");
    let prefix = format!("/services/{service}/");

    let mut registrations = Vec::new();
    let mut outages = Vec::new();
    let servers = [Greeter::start(), Greeter::start(), Greeter::start()];
    for server in &servers {
        let addr = server.addr;
        let registration = Registrar::new(cluster.client().await)
            .ttl(TTL)
            .register(Instance::new(&service, addr.to_string())?)
            .await?;
        outages.push(track(registration.state()));
        registrations.push(registration);
    }
    let expected: Vec<String> = {
        let mut keys: Vec<String> = registrations.iter().map(|r| r.key().to_owned()).collect();
        keys.sort();
        keys
    };

    let discovered = Discovery::new(cluster.client().await, &service)
        .changes()
        .await?;
    let handle = discovered.view();
    assert_eq!(handle.snapshot().len(), 3);
    let channel = balance::tonic_channel(discovered, tonic_etcd::endpoint::default_endpoint);

    // Sample the discovered set every 5 ms during the faults.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (handle, stop, expected) = (handle.clone(), stop.clone(), expected.clone());
        tokio::spawn(async move {
            let (mut samples, mut misses) = (0u64, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let mut seen: Vec<String> = handle
                    .snapshot()
                    .into_iter()
                    .map(|i| format!("/services/{}/{}", i.service, i.id))
                    .collect();
                seen.sort();
                if seen != expected && misses.len() < 10 {
                    misses.push(seen);
                }
                samples += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (samples, misses)
        })
    };
    // A client sending continuously.
    let load = {
        let (channel, stop) = (channel.clone(), stop.clone());
        tokio::spawn(async move { send_until(channel, stop).await })
    };

    // The leader dies; a new one is elected; the old one comes back.
    let leader = cluster.leader().await;
    let t = Instant::now();
    cluster.kill(leader).await;
    let new_leader = cluster.leader().await;
    eprintln!(
        "leader m{leader} killed; m{new_leader} leads after {:?}",
        t.elapsed()
    );
    assert_ne!(new_leader, leader);
    tokio::time::sleep(HOLD.saturating_sub(t.elapsed())).await;
    settled(&client, &prefix, &registrations).await;
    let leader_outage = longest(&outages);
    eprintln!(
        "leader kill: settled {:?} after; longest time a registration was not registered {leader_outage:?}",
        t.elapsed()
    );
    cluster.restart(leader).await;
    settled(&client, &prefix, &registrations).await;
    eprintln!("leader back: longest outage {:?}", longest(&outages));

    // A follower dies and comes back.
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let t = Instant::now();
    cluster.kill(follower).await;
    tokio::time::sleep(HOLD).await;
    settled(&client, &prefix, &registrations).await;
    assert_eq!(
        cluster.leader().await,
        leader,
        "a follower's loss keeps the leader"
    );
    cluster.restart(follower).await;
    settled(&client, &prefix, &registrations).await;
    eprintln!(
        "follower m{follower}: settled {:?} after its kill; longest outage {:?}",
        t.elapsed(),
        longest(&outages)
    );

    // Let the load run a little more against the healed cluster.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let (samples, misses) = sampler.await?;
    let (ok, failures) = load.await?;
    for (i, outage) in outages.iter().enumerate() {
        eprintln!(
            "registration {i}: {} lease(s)",
            outage.leases.load(Ordering::SeqCst)
        );
    }
    // Re-registered right after the election, within the fault's hold time.
    assert!(leader_outage < HOLD, "{leader_outage:?}");
    eprintln!("{samples} samples of the discovered set; {ok} requests succeeded");
    assert!(misses.is_empty(), "discovered set differed: {misses:?}");
    assert!(failures.is_empty(), "requests failed: {failures:?}");
    assert!(ok > 100, "only {ok} requests were sent");
    assert_eq!(handle.snapshot().len(), 3);
    assert!(handle.health().borrow().is_connected());

    // The watch resumed after the faults: a deregistration is seen at once.
    let t = Instant::now();
    let mut registrations = registrations.into_iter();
    registrations.next().unwrap().deregister().await?;
    wait_instances(&handle, 2, Duration::from_secs(2)).await;
    eprintln!("a deregistration seen by discovery after {:?}", t.elapsed());
    for registration in registrations {
        registration.deregister().await?;
    }
    wait_until(Duration::from_secs(5), "every key deleted", || async {
        keys(&client, &prefix).await == Some(Vec::new())
    })
    .await;
    Ok(())
}

/// Sends SayHello every 5 ms until `stop`; returns the successes and the errors.
async fn send_until(channel: Channel, stop: Arc<AtomicBool>) -> (u64, Vec<String>) {
    let (mut ok, mut failures) = (0, Vec::new());
    while !stop.load(Ordering::SeqCst) {
        match tokio::time::timeout(Duration::from_secs(2), hello(&channel)).await {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(status)) => failures.push(status.to_string()),
            Err(_) => failures.push("timed out".into()),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (ok, failures)
}
