//! Two servers given the same address: the newer registration holds the key,
//! the older stands by, and takes the key back once the holder deregisters.

use std::time::{Duration, Instant};

use crate::support;
use crate::support::kv::lease_of;
use crate::support::{wait_until, Etcd, Result};
use tonic_etcd::codec::{Codec, Native};
use tonic_etcd::{Error, Instance, Registrar, RegistrationState};

const TTL: Duration = Duration::from_secs(3);

#[tokio::test]
async fn the_displaced_registration_takes_the_key_back_once_free() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let instance = Instance::new(support::unique("dup"), "127.0.0.1:9100")?;
    let registrar = Registrar::new(client.clone()).ttl(TTL);
    let older = registrar.register(instance.clone()).await?;
    let newer = registrar.register(instance.clone().with_weight(2)).await?;
    let key = newer.key().to_owned();
    let newer_lease = newer.lease_id().unwrap();
    wait_until(Duration::from_secs(3), "the older one stands by", || {
        let state = older.state().borrow().clone();
        async move {
            state
                == RegistrationState::Displaced {
                    by_lease: newer_lease,
                }
        }
    })
    .await;
    // Standing by: it does not fight for the key.
    let err = older.update(|i| i.weight = 7).await.unwrap_err();
    assert!(matches!(err, Error::Displaced { .. }), "{err}");
    tokio::time::sleep(TTL).await;
    assert_eq!(lease_of(&client, &key).await, Some(newer_lease));

    newer.deregister().await?;
    let freed = Instant::now();
    wait_until(TTL * 2, "the older one takes the key back", || {
        let lease = older.lease_id();
        let client = client.clone();
        let key = key.clone();
        async move { lease.is_some() && lease_of(&client, &key).await == lease }
    })
    .await;
    eprintln!(
        "duplicate address: the displaced registration held the key again {:?} after the holder deregistered",
        freed.elapsed()
    );
    assert!(matches!(
        *older.state().borrow(),
        RegistrationState::Registered { .. }
    ));
    // With the value it was given while standing by.
    let value = support::kv::get(&client, &key).await.unwrap().0;
    let back = Native.decode(&instance.service, &key, &value)?;
    assert_eq!(back.weight, 7);
    older.deregister().await?;
    assert_eq!(lease_of(&client, &key).await, None);
    Ok(())
}
