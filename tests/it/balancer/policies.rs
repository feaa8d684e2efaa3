//! The crate's balancer against real servers and etcd: how each policy splits
//! requests, and a weight changed live with `Registration::update`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support;
use crate::support::balancer::{register, split, wait_endpoints, Greeter};
use crate::support::Etcd;
use tonic_etcd::{Discovery, Policy};

fn counts(pairs: &[(&Greeter, usize)]) -> BTreeMap<String, usize> {
    pairs
        .iter()
        .map(|(greeter, n)| (greeter.addr.to_string(), *n))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_splits_30_requests_10_10_10() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("rr");
    let greeters = [Greeter::start(), Greeter::start(), Greeter::start()];
    let mut registrations = Vec::new();
    for greeter in &greeters {
        registrations.push(register(&client, &service, greeter, 1).await);
    }

    let balancer = Discovery::new(client, &service)
        .balancer(Policy::RoundRobin)
        .await
        .unwrap();
    assert_eq!(balancer.endpoints().len(), 3, "the initial Get is applied");
    assert_eq!(
        split(&balancer, 30).await,
        counts(&[(&greeters[0], 10), (&greeters[1], 10), (&greeters[2], 10)])
    );
    // Clones share the rotation.
    let clone = balancer.clone();
    let mut both = split(&balancer, 15).await;
    for (addr, n) in split(&clone, 15).await {
        *both.entry(addr).or_default() += n;
    }
    assert!(both.values().all(|&n| n == 10), "{both:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_follows_registry_weights_and_live_changes() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("weighted");
    let greeters = [Greeter::start(), Greeter::start(), Greeter::start()];
    let mut registrations = Vec::new();
    for (greeter, weight) in greeters.iter().zip([1, 2, 3]) {
        registrations.push(register(&client, &service, greeter, weight).await);
    }

    let balancer = Discovery::new(client, &service)
        .balancer(Policy::Weighted)
        .await
        .unwrap();
    // Smooth weighted round robin is exact over whole rounds of 6.
    assert_eq!(
        split(&balancer, 600).await,
        counts(&[
            (&greeters[0], 100),
            (&greeters[1], 200),
            (&greeters[2], 300)
        ])
    );

    // 1:2:3 becomes 4:2:1, in place, on the same lease.
    registrations[0].update(|i| i.weight = 4).await.unwrap();
    registrations[2].update(|i| i.weight = 1).await.unwrap();
    let wanted: BTreeMap<String, u32> = greeters
        .iter()
        .zip([4, 2, 1])
        .map(|(greeter, weight)| (greeter.addr.to_string(), weight))
        .collect();
    wait_endpoints(&balancer, "the new weights", |endpoints| {
        let weights: BTreeMap<String, u32> = endpoints
            .iter()
            .map(|e| (e.instance.addr.clone(), e.instance.weight))
            .collect();
        weights == wanted
    })
    .await;
    assert!(balancer.endpoints().iter().all(|e| e.ready));
    assert_eq!(
        split(&balancer, 700).await,
        counts(&[
            (&greeters[0], 400),
            (&greeters[1], 200),
            (&greeters[2], 100)
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_prefers_a_fast_server_over_a_slow_one() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("p2c");
    let fast = Greeter::start();
    let slow = Greeter::with_delay(Duration::from_millis(20));
    let _fast = register(&client, &service, &fast, 1).await;
    let _slow = register(&client, &service, &slow, 1).await;

    let balancer = Discovery::new(client, &service)
        .balancer(Policy::P2c)
        .await
        .unwrap();
    let split = split(&balancer, 200).await;
    let to_fast = split.get(&fast.addr.to_string()).copied().unwrap_or(0);
    assert_eq!(split.values().sum::<usize>(), 200);
    assert!(
        to_fast >= 160,
        "the fast server got only {to_fast} of 200: {split:?}"
    );
    assert_eq!(fast.served() + slow.served(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_spreads_concurrent_requests_by_requests_in_flight() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("p2c-concurrent");
    // Equal servers, each holding a request 20 ms: with many in flight at once
    // the in-flight factor of the load sends requests to both.
    let greeters = [
        Greeter::with_delay(Duration::from_millis(20)),
        Greeter::with_delay(Duration::from_millis(20)),
    ];
    let mut registrations = Vec::new();
    for greeter in &greeters {
        registrations.push(register(&client, &service, greeter, 1).await);
    }
    let balancer = Discovery::new(client, &service)
        .balancer(Policy::P2c)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let balancer = balancer.clone();
        tasks.push(tokio::spawn(async move { split(&balancer, 25).await }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let served = [greeters[0].served(), greeters[1].served()];
    assert_eq!(served[0] + served[1], 200);
    assert!(served.iter().all(|&n| n >= 40), "{served:?}");
}
