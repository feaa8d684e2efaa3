//! Two registrations of one key do not fight: the newer wins, the older stops.

use std::time::Duration;

use crate::support;
use crate::support::{wait_until, Etcd};
use tonic_etcd::{Error, Instance, Registrar, RegistrationState};

#[tokio::test]
async fn newer_registration_wins_and_the_older_reports_it() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let instance = Instance::new(support::unique("svc"), "127.0.0.1:9000").unwrap();
    let registrar = Registrar::new(client.clone()).ttl(Duration::from_secs(2));

    let older = registrar.register(instance.clone()).await.unwrap();
    let newer = registrar
        .register(instance.clone().with_weight(2))
        .await
        .unwrap();
    let key = newer.key().to_owned();
    let newer_lease = newer.lease_id().unwrap();

    wait_until(
        Duration::from_secs(2),
        "older registration displaced",
        || {
            let state = older.state();
            async move {
                *state.borrow()
                    == RegistrationState::Displaced {
                        by_lease: newer_lease,
                    }
            }
        },
    )
    .await;
    let err = older.update(|i| i.weight = 5).await.unwrap_err();
    assert!(matches!(err, Error::Displaced { .. }), "{err}");

    // The older one neither re-puts nor deletes: over several TTLs the key keeps
    // the newer lease and value.
    older.deregister().await.unwrap();
    for _ in 0..20 {
        let resp = client.get(key.as_str(), None).await.unwrap();
        let kv = resp.kvs().first().expect("key must stay");
        assert_eq!(kv.lease(), newer_lease);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    newer.deregister().await.unwrap();
}
