//! `Registration::set_serving`: out of discovery and back on the same lease,
//! and what the recovery logic does (nothing) while withdrawn.

use std::time::Duration;

use etcd_client::EventType;
use tonic_etcd::{Discovery, Instance, Registrar, Registration, RegistrationState};

use crate::support;
use crate::support::changes::wait_instances;
use crate::support::kv::{get, lease_of};
use crate::support::{wait_until, Etcd};

async fn register(client: &etcd_client::Client, service: &str, ttl: u64) -> Registration {
    Registrar::new(client.clone())
        .ttl(Duration::from_secs(ttl))
        .register(Instance::new(service, "127.0.0.1:7000").unwrap())
        .await
        .unwrap()
}

async fn wait_state(
    registration: &Registration,
    what: &str,
    check: impl Fn(&RegistrationState) -> bool,
) {
    wait_until(Duration::from_secs(10), what, || {
        let holds = check(&registration.state().borrow());
        async move { holds }
    })
    .await;
}

/// Asserts that `key` stays absent for `period` (polled every 20 ms): the
/// window in which the recovery logic would have put it back.
async fn stays_absent(client: &etcd_client::Client, key: &str, period: Duration) {
    let end = std::time::Instant::now() + period;
    while std::time::Instant::now() < end {
        assert_eq!(get(client, key).await, None, "the withdrawn key came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn not_serving_leaves_discovery_within_a_second_and_serving_comes_back_on_the_same_lease() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("hsig");
    let registration = register(&client, &service, 10).await;
    let lease = registration.lease_id().unwrap();
    let changes = Discovery::new(client.clone(), &service)
        .changes()
        .await
        .unwrap();
    let view = changes.view();
    wait_instances(&view, 1, Duration::from_secs(5)).await;

    registration.set_serving(false).await.unwrap();
    assert_eq!(
        *registration.state().borrow(),
        RegistrationState::Withdrawn { lease_id: lease }
    );
    assert!(registration.is_withdrawn());
    assert_eq!(
        get(&client, registration.key()).await,
        None,
        "the key is gone when set_serving returns"
    );
    wait_instances(&view, 0, Duration::from_secs(1)).await;
    // Repeating it changes nothing.
    registration.set_serving(false).await.unwrap();

    registration.set_serving(true).await.unwrap();
    assert_eq!(
        *registration.state().borrow(),
        RegistrationState::Registered { lease_id: lease }
    );
    assert_eq!(
        lease_of(&client, registration.key()).await,
        Some(lease),
        "same lease"
    );
    wait_instances(&view, 1, Duration::from_secs(1)).await;
    registration.deregister().await.unwrap();
}

#[tokio::test]
async fn a_withdrawn_key_is_not_put_back_by_the_own_key_watch() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("hsig");
    let registration = register(&client, &service, 10).await;
    let key = registration.key().to_owned();
    registration.set_serving(false).await.unwrap();

    // What the watch of the own key answers with a put-back when serving: a
    // write by hand without a lease, then a delete by hand.
    etcd.etcdctl(&["put", &key, "by-hand"]);
    etcd.etcdctl(&["del", &key]);
    // A serving registration puts a deleted key back within a second
    // (registration::recovery); this one does not.
    stays_absent(&client, &key, Duration::from_millis(1500)).await;
    assert!(registration.is_withdrawn());

    registration.set_serving(true).await.unwrap();
    assert!(get(&client, &key).await.is_some(), "back when serving");
    registration.deregister().await.unwrap();
}

#[tokio::test]
async fn a_lease_lost_while_withdrawn_does_not_bring_the_key_back() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("hsig");
    let registration = register(&client, &service, 2).await;
    let key = registration.key().to_owned();
    let lease = registration.lease_id().unwrap();
    registration.set_serving(false).await.unwrap();

    // Every write of the key from now on.
    let mut events = client.clone().watch(key.as_str(), None).await.unwrap();
    etcd.etcdctl(&["lease", "revoke", &format!("{lease:x}")]);
    wait_state(
        &registration,
        "withdrawn on a fresh lease",
        |state| matches!(state, RegistrationState::Withdrawn { lease_id } if *lease_id != lease),
    )
    .await;
    let RegistrationState::Withdrawn { lease_id: fresh } = *registration.state().borrow() else {
        unreachable!()
    };
    assert_eq!(get(&client, &key).await, None, "no key on the fresh lease");

    registration.set_serving(true).await.unwrap();
    assert_eq!(
        lease_of(&client, &key).await,
        Some(fresh),
        "back on the fresh lease"
    );
    // The first write since the revoke is that put: the key was never back
    // in between.
    let first = loop {
        let response = tokio::time::timeout(Duration::from_secs(5), events.message())
            .await
            .expect("an event")
            .unwrap()
            .unwrap();
        // The first answer only says that the watch was created.
        if let Some(event) = response.events().first() {
            break event.clone();
        }
    };
    let event = &first;
    assert_eq!(event.event_type(), EventType::Put);
    assert_eq!(event.kv().unwrap().lease(), fresh);
    registration.deregister().await.unwrap();
}

#[tokio::test]
async fn deregister_while_withdrawn_revokes_the_lease() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("hsig");
    let registration = register(&client, &service, 10).await;
    let key = registration.key().to_owned();
    let lease = registration.lease_id().unwrap();
    registration.set_serving(false).await.unwrap();
    let state = registration.state();

    registration.deregister().await.unwrap();
    assert_eq!(*state.borrow(), RegistrationState::Deregistered);
    assert_eq!(get(&client, &key).await, None);
    let ttl = client
        .clone()
        .lease_time_to_live(lease, None)
        .await
        .unwrap()
        .ttl();
    assert!(ttl <= 0, "lease revoked, TTL {ttl}");
}

#[tokio::test]
async fn an_update_while_withdrawn_is_written_when_serving_again() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("hsig");
    let registration = register(&client, &service, 10).await;
    let key = registration.key().to_owned();
    registration.set_serving(false).await.unwrap();

    registration
        .update(|instance| instance.weight = 7)
        .await
        .unwrap();
    assert_eq!(
        get(&client, &key).await,
        None,
        "an update does not bring the key back"
    );

    registration.set_serving(true).await.unwrap();
    let changes = Discovery::new(client.clone(), &service)
        .changes()
        .await
        .unwrap();
    let instances = changes.snapshot();
    assert_eq!(instances.len(), 1);
    assert_eq!(
        instances[0].weight, 7,
        "the update was written with the key"
    );
    registration.deregister().await.unwrap();
}

#[tokio::test]
async fn not_serving_while_etcd_is_down_takes_the_key_out_once_it_is_back() {
    let mut etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("hsig");
    let registration = register(&client, &service, 2).await;
    let key = registration.key().to_owned();

    etcd.kill().await;
    wait_state(&registration, "reconnecting", |state| {
        matches!(state, RegistrationState::Reconnecting { .. })
    })
    .await;
    let pending = registration.set_serving(false).await;
    assert!(
        matches!(pending, Err(tonic_etcd::Error::UpdatePending { .. })),
        "{pending:?}"
    );

    // etcd is back with its data: the old lease still holds the key, and the
    // fresh session deletes it instead of putting it.
    etcd.restart().await;
    wait_state(&registration, "withdrawn on a fresh lease", |state| {
        matches!(state, RegistrationState::Withdrawn { .. })
    })
    .await;
    let client = etcd.client().await;
    assert_eq!(get(&client, &key).await, None, "the key was taken out");

    registration.set_serving(true).await.unwrap();
    assert!(get(&client, &key).await.is_some(), "back when serving");
    registration.deregister().await.unwrap();
}
