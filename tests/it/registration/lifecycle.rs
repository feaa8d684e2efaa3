//! Register, update and deregister against a real etcd.

use std::time::Duration;

use crate::support;
use crate::support::kv::get;
use crate::support::{wait_until, Etcd};
use tonic_etcd::codec::{Codec, Native};
use tonic_etcd::{Error, Instance, Registrar, RegistrationState};

#[tokio::test]
async fn register_writes_the_key_with_a_kept_lease() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("svc");
    let instance = Instance::new(&service, "127.0.0.1:50051")
        .unwrap()
        .with_version("1.2.0")
        .with_weight(3);
    let registration = Registrar::new(client.clone())
        .ttl(Duration::from_secs(2))
        .register(instance.clone())
        .await
        .unwrap();
    let key = format!("/services/{service}/127.0.0.1:50051");
    assert_eq!(registration.key(), key);

    let (value, lease) = get(&client, &key).await.expect("key written");
    assert_ne!(lease, 0, "key must carry a lease");
    assert_eq!(registration.lease_id(), Some(lease));
    assert_eq!(Native.decode(&service, &key, &value).unwrap(), instance);
    let ttl = client.lease_time_to_live(lease, None).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 2);

    // Outlive the TTL several times: the keepalive keeps the same lease.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(4500) {
        let (_, now) = get(&client, &key).await.expect("key still there");
        assert_eq!(now, lease, "lease must not change while etcd is healthy");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        *registration.state().borrow(),
        RegistrationState::Registered { lease_id: lease }
    );
    registration.deregister().await.unwrap();
}

#[tokio::test]
async fn deregister_removes_the_key_at_once_and_revokes_the_lease() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("svc");
    let registration = Registrar::new(client.clone())
        .ttl(Duration::from_secs(30))
        .register(Instance::new(&service, "127.0.0.1:1").unwrap())
        .await
        .unwrap();
    let key = registration.key().to_owned();
    let lease = registration.lease_id().unwrap();
    let state = registration.state();

    registration.deregister().await.unwrap();
    // No waiting: when deregister returns, the key is gone.
    assert_eq!(get(&client, &key).await, None);
    let ttl = client.lease_time_to_live(lease, None).await.unwrap();
    assert!(ttl.ttl() <= 0, "lease must be revoked, ttl {}", ttl.ttl());
    assert_eq!(*state.borrow(), RegistrationState::Deregistered);
}

#[tokio::test]
async fn update_rewrites_the_value_on_the_same_lease() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("svc");
    let registration = Registrar::new(client.clone())
        .register(Instance::new(&service, "127.0.0.1:2").unwrap())
        .await
        .unwrap();
    let key = registration.key().to_owned();
    let lease = registration.lease_id().unwrap();

    registration
        .update(|i| {
            i.weight = 7;
            i.metadata.insert("zone".into(), "b".into());
        })
        .await
        .unwrap();
    let (value, now) = get(&client, &key).await.unwrap();
    assert_eq!(now, lease);
    let decoded = Native.decode(&service, &key, &value).unwrap();
    assert_eq!(decoded.weight, 7);
    assert_eq!(decoded.metadata.get("zone").map(String::as_str), Some("b"));
    assert_eq!(registration.instance().weight, 7);

    // Invalid changes are refused and change nothing.
    let err = registration.update(|i| i.weight = 0).await.unwrap_err();
    assert!(matches!(err, Error::InvalidWeight { .. }), "{err}");
    let err = registration
        .update(|i| i.id = "other".into())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Immutable { field: "id", .. }), "{err}");
    assert_eq!(registration.instance().weight, 7);
    registration.deregister().await.unwrap();
}

#[tokio::test]
async fn dropping_the_guard_removes_the_key() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("svc");
    let registration = Registrar::new(client.clone())
        .ttl(Duration::from_secs(30))
        .register(Instance::new(&service, "127.0.0.1:3").unwrap())
        .await
        .unwrap();
    let key = registration.key().to_owned();
    drop(registration);
    // TTL is 30 s: only the dropped guard's task can remove the key this fast.
    wait_until(Duration::from_secs(3), "key removed after drop", || async {
        get(&client, &key).await.is_none()
    })
    .await;
}

#[tokio::test]
async fn register_fails_at_once_when_etcd_is_down() {
    let mut etcd = Etcd::start().await;
    let client = etcd.client().await;
    etcd.kill().await;
    let started = std::time::Instant::now();
    let err = Registrar::new(client)
        .register(Instance::new("svc", "127.0.0.1:4").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Etcd(_) | Error::Timeout(_)), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn register_waits_for_etcd_within_the_startup_timeout() {
    let mut etcd = Etcd::start().await;
    let client = etcd.client().await;
    etcd.kill().await;
    let registrar = Registrar::new(client.clone()).startup_timeout(Duration::from_secs(20));
    let service = support::unique("svc");
    let pending = tokio::spawn(async move {
        registrar
            .register(Instance::new(&service, "127.0.0.1:5").unwrap())
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!pending.is_finished(), "register must wait for etcd");
    etcd.restart().await;
    let registration = pending.await.unwrap().unwrap();
    assert!(get(&client, registration.key()).await.is_some());
    registration.deregister().await.unwrap();
}
