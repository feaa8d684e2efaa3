//! The crate's balancer with a locality, in process: the zone preference
//! with every policy, and the share that spills over when a local server
//! dies, then leaves the registry.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support;
use crate::support::balancer::{split, wait_endpoints, Greeter};
use crate::support::Etcd;
use tonic_etcd::{Balancer, Discovery, Instance, Locality, Policy, Registrar, Registration};

/// Registers `greeter` in `zone`.
async fn register(
    etcd: &etcd_client::Client,
    service: &str,
    greeter: &Greeter,
    zone: &str,
) -> Registration {
    let instance = Instance::new(service, greeter.addr.to_string())
        .unwrap()
        .with_metadata(Locality::METADATA_KEY, zone);
    Registrar::new(etcd.clone())
        .ttl(Duration::from_secs(10))
        .register(instance)
        .await
        .unwrap()
}

/// Two greeters in zone `a`, two in `b`, registered.
async fn two_zones(etcd: &etcd_client::Client, service: &str) -> (Vec<Greeter>, Vec<Registration>) {
    let greeters: Vec<Greeter> = (0..4).map(|_| Greeter::start()).collect();
    let mut registrations = Vec::new();
    for (greeter, zone) in greeters.iter().zip(["a", "a", "b", "b"]) {
        registrations.push(register(etcd, service, greeter, zone).await);
    }
    (greeters, registrations)
}

fn from(counts: &BTreeMap<String, usize>, greeters: &[Greeter]) -> usize {
    greeters
        .iter()
        .map(|g| counts.get(&g.addr.to_string()).copied().unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_in_zone_a_reaches_only_zone_a_with_every_policy() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("zones");
    let (greeters, _registrations) = two_zones(&client, &service).await;
    for policy in Policy::ALL {
        let balancer = Balancer::builder(policy)
            .locality(Locality::new("a"))
            .discover(Discovery::new(client.clone(), &service))
            .await
            .unwrap();
        assert_eq!(balancer.endpoints().len(), 4);
        let counts = split(&balancer, 40).await;
        assert_eq!(from(&counts, &greeters[..2]), 40, "{policy}: {counts:?}");
        if policy != Policy::P2c {
            assert!(counts.values().all(|&n| n == 20), "{policy}: {counts:?}");
        }
    }
    // Without a locality (or from zone c), every zone alike.
    let balancer = Discovery::new(client.clone(), &service)
        .balancer(Policy::RoundRobin)
        .await
        .unwrap();
    assert!(split(&balancer, 40).await.values().all(|&n| n == 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_local_server_spills_a_share_over_then_none_once_it_leaves() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("spill");
    let (mut greeters, mut registrations) = two_zones(&client, &service).await;
    let balancer = Balancer::builder(Policy::RoundRobin)
        .locality(Locality::new("a"))
        .discover(Discovery::new(client.clone(), &service))
        .await
        .unwrap();
    // a1 dies without deregistering: the request that finds it is retried
    // elsewhere (none fails) and a1 is probed. One of a's two endpoints is
    // ready: a keeps 1 / (0.7 × 2) = 5/7 of the requests.
    greeters[0].kill();
    let dead = greeters[0].addr.to_string();
    split(&balancer, 4).await;
    wait_endpoints(&balancer, "a1 unreachable", |e| {
        e.iter().any(|s| s.key.ends_with(&dead) && !s.ready)
    })
    .await;
    let counts = split(&balancer, 70).await;
    assert_eq!(from(&counts, &greeters[1..2]), 50, "{counts:?}");
    assert_eq!(from(&counts, &greeters[2..]), 20, "{counts:?}");
    // a1 leaves the registry: one of one is enough, all local again.
    registrations.remove(0).deregister().await.unwrap();
    wait_endpoints(&balancer, "a1 removed", |e| e.len() == 3).await;
    let counts = split(&balancer, 20).await;
    assert_eq!(from(&counts, &greeters[1..2]), 20, "{counts:?}");
    // a2 leaves too: everything to b, no request failed on the way.
    registrations.remove(0).deregister().await.unwrap();
    wait_endpoints(&balancer, "a2 removed", |e| e.len() == 2).await;
    let counts = split(&balancer, 20).await;
    assert_eq!(from(&counts, &greeters[2..]), 20, "{counts:?}");
}
