//! A member that hangs with its sockets open (black-holed link, SIGSTOPped
//! process) among members that answer, and a slow link: no registration
//! lost, no discovered instance dropped, every start within about 2 s.
//! Each test prints its measured figures (`--nocapture`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::Client;

use crate::support;
use crate::support::proxy::Proxy;
use crate::support::{wait_until, Cluster, Etcd, Result};
use tonic_etcd::{Discovery, Instance, Registrar};

const TTL: Duration = Duration::from_secs(3);

/// Samples, every 50 ms until stopped, whether all of `keys` are in etcd
/// (read through `client`, a direct connection): (samples, samples with all).
struct Sampler {
    stop: Arc<AtomicBool>,
    total: Arc<AtomicU64>,
    present: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(client: Client, keys: Vec<String>) -> Sampler {
        let (stop, total, present) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, t, p) = (stop.clone(), total.clone(), present.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                let mut all = true;
                for key in &keys {
                    let mut client = client.clone();
                    let found = client.get(key.as_str(), None).await;
                    all &= found.is_ok_and(|r| !r.kvs().is_empty());
                }
                t.fetch_add(1, Ordering::Relaxed);
                if all {
                    p.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Sampler {
            stop,
            total,
            present,
            task,
        }
    }

    /// Stops; returns (samples, samples with every key present).
    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        (
            self.total.load(Ordering::Relaxed),
            self.present.load(Ordering::Relaxed),
        )
    }
}

fn instance(service: &str, id: &str) -> Instance {
    Instance::new(service, "127.0.0.1:7200")
        .unwrap()
        .with_id(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_endpoint_among_two_loses_nothing() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let direct = etcd.client().await;
    let (p1, p2) = (
        Proxy::start(etcd.addr()).await,
        Proxy::start(etcd.addr()).await,
    );
    let endpoints = [p1.endpoint(), p2.endpoint()];
    let service = support::unique("hung");
    let prefix = format!("/services/{service}/");

    // Several clients, as several servers would have: whichever member each
    // pins, some use the one that will hang.
    let mut registrations = Vec::new();
    for id in ["a", "b", "c", "d"] {
        // Alternate the order so that half pin P2 first.
        let order: Vec<String> = if id == "a" || id == "c" {
            vec![endpoints[1].clone(), endpoints[0].clone()]
        } else {
            endpoints.to_vec()
        };
        let client = tonic_etcd::connect(&order).await?;
        let r = Registrar::new(client)
            .ttl(TTL)
            .register(instance(&service, id))
            .await?;
        registrations.push(r);
    }
    let keys: Vec<String> = registrations.iter().map(|r| r.key().to_owned()).collect();
    let client = tonic_etcd::connect(&[endpoints[1].clone(), endpoints[0].clone()]).await?;
    let discovery = Discovery::new(client, &service).changes().await?;
    let view = discovery.view();
    let log = support::changes::record(discovery, prefix);
    assert_eq!(view.snapshot().len(), 4);

    let sampler = Sampler::start(direct.clone(), keys.clone());
    let started = Instant::now();
    p2.blackhole();
    // During: a registration started while P2 hangs (listed first).
    let late_client = tonic_etcd::connect(&[endpoints[1].clone(), endpoints[0].clone()]).await?;
    let t = Instant::now();
    let late = Registrar::new(late_client)
        .ttl(TTL)
        .register(instance(&service, "e"))
        .await?;
    let late_start = t.elapsed();
    wait_until(Duration::from_secs(10), "the discovery sees e", || {
        let n = view.snapshot().len();
        async move { n == 5 }
    })
    .await;
    let seen_after = started.elapsed();
    let mut min_set = usize::MAX;
    while started.elapsed() < TTL * 4 {
        min_set = min_set.min(view.snapshot().len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p2.pass();
    tokio::time::sleep(TTL).await;
    let (total, present) = sampler.finish().await;
    eprintln!(
        "black-holed endpoint of two for {:?}: keys present in {present}/{total} samples; \
         registration while hung took {late_start:?}; discovery saw it {seen_after:?} \
         after the hang began; smallest discovered set {min_set} (of 5)",
        TTL * 4
    );
    assert_eq!(present, total, "every key present in every sample");
    assert!(late_start < Duration::from_millis(2500), "{late_start:?}");
    assert!(min_set >= 4, "the set never shrank: {min_set}");
    let removed = log
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.starts_with('-'))
        .count();
    assert_eq!(removed, 0, "no removal: {:?}", log.lock().unwrap());
    for r in registrations.into_iter().chain([late]) {
        assert!(r.lease_id().is_some());
        r.deregister().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_member_listed_first_delays_no_start() -> Result {
    support::init_tracing();
    let cluster = Cluster::start().await;
    let service = support::unique("frozen");
    let frozen = cluster.member(0).freeze();
    let endpoints = [cluster.member(0).endpoint(), cluster.member(1).endpoint()];
    let mut server_starts = Vec::new();
    let mut registrations = Vec::new();
    for id in ["a", "b", "c"] {
        let t = Instant::now();
        let client = tonic_etcd::connect(&endpoints).await?;
        let r = Registrar::new(client)
            .ttl(TTL)
            .register(instance(&service, id))
            .await?;
        server_starts.push(t.elapsed());
        registrations.push(r);
    }
    let mut client_starts = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let client = tonic_etcd::connect(&endpoints).await?;
        let discovery = Discovery::new(client, &service).changes().await?;
        client_starts.push(t.elapsed());
        assert_eq!(discovery.view().snapshot().len(), 3);
    }
    eprintln!("FROZEN,LIVE: server starts {server_starts:?}, client starts {client_starts:?}");
    for start in server_starts.iter().chain(&client_starts) {
        assert!(*start < Duration::from_millis(2500), "{start:?}");
    }
    frozen.thaw();
    for r in registrations {
        r.deregister().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_trip_of_a_third_of_the_ttl_keeps_the_key() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let proxy = Proxy::start(etcd.addr()).await;
    proxy.delay(Duration::from_secs(1));
    let service = support::unique("slow");
    let client = tonic_etcd::connect([proxy.endpoint()]).await?;
    let t = Instant::now();
    let registration = Registrar::new(client)
        .ttl(TTL)
        .register(instance(&service, "a"))
        .await?;
    let start = t.elapsed();
    let lease = registration.lease_id();
    let sampler = Sampler::start(etcd.client().await, vec![registration.key().to_owned()]);
    tokio::time::sleep(TTL * 3).await;
    let (total, present) = sampler.finish().await;
    eprintln!(
        "RTT 1.0 s, TTL 3 s: registered in {start:?}; key present in {present}/{total} samples over {:?}",
        TTL * 3
    );
    assert_eq!(present, total);
    assert_eq!(registration.lease_id(), lease, "the same lease throughout");
    Ok(())
}
