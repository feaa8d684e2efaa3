//! Values that do not decode are skipped without harm; a known key overwritten
//! with garbage is removed, and comes back with a valid value.

use crate::support;
use crate::support::changes::next;
use crate::support::Etcd;
use etcd_client::Client;
use futures_util::Stream;
use tonic_etcd::codec::{Codec, Native};
use tonic_etcd::{Discovery, Instance};
use tower::discover::Change;

async fn put_raw(client: &mut Client, key: &str, value: impl Into<Vec<u8>>) {
    client.put(key, value, None).await.unwrap();
}

#[tokio::test]
async fn garbage_is_skipped_and_removes_known_keys() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("malformed");
    let prefix = format!("/services/{service}/");
    let good = Instance::new(&service, "127.0.0.1:7001").unwrap();
    let good_key = Native.key("/services", &good);
    let good_value = Native.encode(&good).unwrap();

    // Before start: garbage of several kinds next to one valid instance.
    put_raw(&mut client, &format!("{prefix}junk"), "not json").await;
    put_raw(&mut client, &format!("{prefix}noaddr"), "{}").await;
    put_raw(
        &mut client,
        &format!("{prefix}badaddr"),
        r#"{"addr":"nope"}"#,
    )
    .await;
    put_raw(
        &mut client,
        &format!("{prefix}binary"),
        vec![0xff, 0x00, 0xfe],
    )
    .await;
    put_raw(
        &mut client,
        &format!("{prefix}other"),
        r#"{"name":"someone-else","addr":"127.0.0.1:1"}"#,
    )
    .await;
    put_raw(&mut client, &good_key, good_value.clone()).await;

    let mut discovered = Discovery::new(client.clone(), &service)
        .changes()
        .await
        .unwrap();
    assert_eq!(discovered.size_hint().0, 1, "only the valid instance");
    match next(&mut discovered).await {
        Change::Insert(key, instance) => {
            assert_eq!((key, instance), (good_key.clone(), good.clone()))
        }
        other => panic!("expected the valid instance, got {other:?}"),
    }

    // Garbage under a new key while watching: nothing, and the task lives on.
    put_raw(&mut client, &format!("{prefix}junk2"), "{{{{").await;
    // The known key overwritten with garbage: removed.
    put_raw(&mut client, &good_key, "garbage").await;
    match next(&mut discovered).await {
        Change::Remove(key) => assert_eq!(key, good_key),
        other => panic!("expected the remove of {good_key}, got {other:?}"),
    }
    assert!(discovered.snapshot().is_empty());

    // Deleting garbage that was never an instance: nothing. A valid value
    // again: inserted again.
    client.delete(format!("{prefix}junk"), None).await.unwrap();
    client.delete(good_key.clone(), None).await.unwrap();
    put_raw(&mut client, &good_key, good_value).await;
    match next(&mut discovered).await {
        Change::Insert(key, instance) => {
            assert_eq!((key, instance), (good_key.clone(), good.clone()))
        }
        other => panic!("expected the insert of {good_key}, got {other:?}"),
    }
    assert_eq!(discovered.snapshot(), vec![good]);
    assert!(discovered.health().borrow().is_connected());
    assert_eq!(discovered.size_hint().0, 0);
}
