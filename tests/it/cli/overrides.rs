//! `drain` / `undrain` and `weight` in running clients: every policy of the
//! crate's balancer and tonic's balanced channel.

use std::time::{Duration, Instant};

use tonic_etcd::{Discovery, Policy};

use super::run;
use crate::support::balancer::{answering, hello, register, split, wait_endpoints, Greeter};
use crate::support::kv::get;
use crate::support::{unique, Etcd};

/// How soon a drain must take effect in a running client.
const WITHIN: Duration = Duration::from_secs(1);

#[tokio::test]
async fn drain_and_undrain_take_effect_in_every_client_within_a_second() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = unique("cli-drain");
    let greeters = [Greeter::start(), Greeter::start(), Greeter::start()];
    let mut registrations = Vec::new();
    for greeter in &greeters {
        registrations.push(register(&client, &service, greeter, 1).await);
    }
    let drained = greeters[0].addr.to_string();
    let instance_key = registrations[0].key().to_owned();

    let mut balancers = Vec::new();
    for policy in Policy::ALL {
        let balancer = Discovery::new(client.clone(), service.as_str())
            .balancer(policy)
            .await
            .unwrap();
        assert_eq!(answering(&balancer, 3).await.len(), 3, "{policy}");
        balancers.push((policy, balancer));
    }
    let channel = Discovery::new(client.clone(), service.as_str())
        .tonic_channel()
        .await
        .unwrap();
    assert_eq!(answering(&channel, 3).await.len(), 3, "tonic channel");

    let ran = run(&etcd.endpoint(), &["drain", &service, &drained, "--json"]).await;
    ran.assert_ok();
    let done = Instant::now();
    assert_eq!(ran.json()["drained"], true, "{ran:?}");
    // Within a second, every balancer has dropped it...
    for (policy, balancer) in &balancers {
        wait_endpoints(balancer, "the drained instance gone", |endpoints| {
            endpoints.len() == 2 && endpoints.iter().all(|e| e.instance.addr != drained)
        })
        .await;
        assert!(
            done.elapsed() < WITHIN,
            "{policy}: {:?} after drain",
            done.elapsed()
        );
    }
    // ...and from then on no request of any client reaches it (tonic's
    // channel has no endpoint list to look at: the second is waited out).
    tokio::time::sleep(WITHIN.saturating_sub(done.elapsed())).await;
    let before = greeters[0].served();
    for (policy, balancer) in &balancers {
        for _ in 0..12 {
            assert_ne!(hello(balancer).await.unwrap(), drained, "{policy}");
        }
    }
    for _ in 0..24 {
        assert_ne!(hello(&channel).await.unwrap(), drained, "tonic channel");
    }
    assert_eq!(
        greeters[0].served(),
        before,
        "no request reached the drained one"
    );
    // It stays registered, and `ls` says drained.
    assert!(
        get(&client, &instance_key).await.is_some(),
        "its key remains"
    );
    let rows = run(&etcd.endpoint(), &["ls", &service, "--json"])
        .await
        .json();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["addr"] == drained.as_str())
        .cloned()
        .expect("listed");
    assert_eq!(row["drained"], true);
    let view = balancers[0].1.discovery().unwrap();
    assert!(view
        .registered()
        .iter()
        .any(|r| r.drained && r.instance.addr == drained));

    run(&etcd.endpoint(), &["undrain", &service, &drained])
        .await
        .assert_ok();
    for (policy, balancer) in &balancers {
        wait_endpoints(balancer, "the instance back", |endpoints| {
            endpoints.len() == 3
        })
        .await;
        assert!(answering(balancer, 3).await.contains(&drained), "{policy}");
    }
    assert!(
        answering(&channel, 3).await.contains(&drained),
        "tonic channel"
    );
    // Undrained with no weight override left: the key is gone.
    let override_key = format!("/services/{service}/.overrides/{drained}");
    assert!(get(&client, &override_key).await.is_none());
}

#[tokio::test]
async fn a_weight_override_changes_the_weighted_split() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = unique("cli-weight");
    let greeters = [Greeter::start(), Greeter::start(), Greeter::start()];
    let mut _registrations = Vec::new();
    for greeter in &greeters {
        _registrations.push(register(&client, &service, greeter, 1).await);
    }
    let balancer = Discovery::new(client.clone(), service.as_str())
        .balancer(Policy::Weighted)
        .await
        .unwrap();
    answering(&balancer, 3).await;
    let heavy = greeters[2].addr.to_string();

    run(&etcd.endpoint(), &["weight", &service, &heavy, "4"])
        .await
        .assert_ok();
    wait_endpoints(&balancer, "weight 4", |endpoints| {
        endpoints
            .iter()
            .any(|e| e.instance.addr == heavy && e.instance.weight == 4)
    })
    .await;
    // Smooth weighted round robin: 1:1:4 over 60 requests.
    let counts = split(&balancer, 60).await;
    // (Exact but for the cycle the weight change fell in.)
    let heavy_share = counts.get(&heavy).copied().unwrap_or_default();
    assert!((38..=42).contains(&heavy_share), "{counts:?}");
    for greeter in &greeters[..2] {
        let share = counts
            .get(&greeter.addr.to_string())
            .copied()
            .unwrap_or_default();
        assert!((8..=12).contains(&share), "{counts:?}");
    }
    let rows = run(&etcd.endpoint(), &["ls", &service, "--json"])
        .await
        .json();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["addr"] == heavy.as_str())
        .cloned()
        .unwrap();
    assert_eq!(
        (row["weight"].clone(), row["weight_overridden"].clone()),
        (4.into(), true.into())
    );

    // The instance restarts (deregisters, registers again under a new
    // lease): the override still holds.
    let old = _registrations.pop().unwrap();
    old.deregister().await.unwrap();
    wait_endpoints(&balancer, "the instance gone", |endpoints| {
        endpoints.len() == 2
    })
    .await;
    _registrations.push(register(&client, &service, &greeters[2], 1).await);
    wait_endpoints(
        &balancer,
        "the instance back, still weighing 4",
        |endpoints| {
            endpoints
                .iter()
                .any(|e| e.instance.addr == heavy && e.instance.weight == 4)
        },
    )
    .await;

    run(&etcd.endpoint(), &["weight", &service, &heavy, "--clear"])
        .await
        .assert_ok();
    wait_endpoints(&balancer, "weight back to 1", |endpoints| {
        endpoints.iter().all(|e| e.instance.weight == 1)
    })
    .await;
    let counts = split(&balancer, 30).await;
    assert!(counts.values().all(|n| (8..=12).contains(n)), "{counts:?}");
}

#[tokio::test]
async fn requests_in_flight_finish_when_their_instance_is_drained() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = unique("cli-inflight");
    let slow = Greeter::with_delay(Duration::from_millis(1500));
    let _registration = register(&client, &service, &slow, 1).await;
    let addr = slow.addr.to_string();
    let balancer = Discovery::new(client.clone(), service.as_str())
        .balancer(Policy::RoundRobin)
        .await
        .unwrap();
    let channel = Discovery::new(client.clone(), service.as_str())
        .tonic_channel()
        .await
        .unwrap();
    // Connected first, so that the requests below are on their way at once.
    assert_eq!(hello(&balancer).await.unwrap(), addr);
    assert_eq!(hello(&channel).await.unwrap(), addr);

    let in_flight = [
        tokio::spawn({
            let balancer = balancer.clone();
            async move { hello(&balancer).await }
        }),
        tokio::spawn({
            let channel = channel.clone();
            async move { hello(&channel).await }
        }),
    ];
    run(&etcd.endpoint(), &["drain", &service, &addr])
        .await
        .assert_ok();
    wait_endpoints(&balancer, "the instance drained", |endpoints| {
        endpoints.is_empty()
    })
    .await;
    assert!(
        in_flight.iter().all(|request| !request.is_finished()),
        "the drain landed while the requests were in flight"
    );
    for request in in_flight {
        assert_eq!(
            request
                .await
                .unwrap()
                .expect("an in-flight request finishes"),
            addr
        );
    }
}
