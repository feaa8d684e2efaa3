//! A registration comes back by itself: key deleted by hand, lease revoked,
//! etcd restarted with its data, etcd wiped.

use std::time::Duration;

use crate::support;
use crate::support::kv::lease_of;
use crate::support::{wait_for, wait_until, Etcd};
use tonic_etcd::{Instance, Registrar, Registration, RegistrationState};

async fn register(client: &etcd_client::Client, ttl: u64) -> Registration {
    let service = support::unique("svc");
    Registrar::new(client.clone())
        .ttl(Duration::from_secs(ttl))
        .register(Instance::new(service, "127.0.0.1:7000").unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn key_deleted_by_hand_comes_back_within_a_second_on_the_same_lease() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let registration = register(&client, 10).await;
    let key = registration.key().to_owned();
    let lease = registration.lease_id().unwrap();

    etcd.etcdctl(&["del", &key]);
    let back = wait_for(Duration::from_secs(1), "deleted key put back", || {
        let (client, key) = (client.clone(), key.clone());
        async move { lease_of(&client, &key).await }
    })
    .await;
    assert_eq!(back, lease, "the lease was alive, so it is reused");
    registration.deregister().await.unwrap();
}

#[tokio::test]
async fn revoked_lease_is_replaced_by_a_fresh_one_within_the_ttl() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let registration = register(&client, 2).await;
    let key = registration.key().to_owned();
    let lease = registration.lease_id().unwrap();

    etcd.etcdctl(&["lease", "revoke", &format!("{lease:x}")]);
    let fresh = wait_for(Duration::from_secs(2), "key back on a new lease", || {
        let (client, key) = (client.clone(), key.clone());
        async move { lease_of(&client, &key).await.filter(|l| *l != lease) }
    })
    .await;
    wait_until(
        Duration::from_secs(2),
        "state reports the new lease",
        || {
            let state = registration.state();
            async move { *state.borrow() == RegistrationState::Registered { lease_id: fresh } }
        },
    )
    .await;
    registration.deregister().await.unwrap();
}

#[tokio::test]
async fn etcd_restarted_with_its_data_keeps_the_registration() {
    let mut etcd = Etcd::start().await;
    let client = etcd.client().await;
    let registration = register(&client, 2).await;
    let key = registration.key().to_owned();

    etcd.kill().await;
    wait_until(
        Duration::from_secs(5),
        "registration notices etcd is gone",
        || {
            let state = registration.state();
            async move { matches!(*state.borrow(), RegistrationState::Reconnecting { .. }) }
        },
    )
    .await;
    // Down for longer than the TTL.
    tokio::time::sleep(Duration::from_secs(3)).await;
    etcd.restart().await;
    let lease = wait_for(Duration::from_secs(5), "registered again", || {
        let lease = registration.lease_id();
        async move { lease }
    })
    .await;
    wait_until(Duration::from_secs(3), "key carries the live lease", || {
        let (client, key) = (client.clone(), key.clone());
        async move { lease_of(&client, &key).await == Some(lease) }
    })
    .await;
    // And it stays: the old lease expiring must not take the key with it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(lease_of(&client, &key).await, Some(lease));
    registration.deregister().await.unwrap();
}

#[tokio::test]
async fn etcd_wiped_gets_the_instance_back_within_the_ttl() {
    let mut etcd = Etcd::start().await;
    let client = etcd.client().await;
    let registration = register(&client, 3).await;
    let key = registration.key().to_owned();

    etcd.wipe_and_restart().await;
    let started = std::time::Instant::now();
    wait_until(Duration::from_secs(6), "key back after the wipe", || {
        let (client, key) = (client.clone(), key.clone());
        async move { lease_of(&client, &key).await.is_some() }
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(6));
    registration.deregister().await.unwrap();
    assert_eq!(lease_of(&client, &key).await, None);
}
