//! The services `foo` and `foobar` share a key prefix but never see each other.

use std::time::Duration;

use crate::support;
use crate::support::changes::{instance, next, put};
use crate::support::Etcd;
use futures_util::Stream;
use tonic_etcd::{Discovery, InstanceChanges};
use tower::discover::Change;

async fn next_key(discovered: &mut InstanceChanges) -> String {
    match next(discovered).await {
        Change::Insert(key, _) => key,
        Change::Remove(key) => panic!("unexpected remove of {key}"),
    }
}

#[tokio::test]
async fn foo_never_sees_foobar() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let foo = support::unique("foo");
    let foobar = format!("{foo}bar");

    let foo_1 = put(&mut client, &instance(&foo, "1", 1)).await;
    let foobar_1 = put(&mut client, &instance(&foobar, "2", 2)).await;
    // A key that is a prefix match without the slash.
    client
        .put(format!("/services/{foo}"), "not an instance", None)
        .await
        .unwrap();

    let mut foo_d = Discovery::new(client.clone(), &foo)
        .changes()
        .await
        .unwrap();
    let mut foobar_d = Discovery::new(client.clone(), &foobar)
        .changes()
        .await
        .unwrap();
    assert_eq!(foo_d.size_hint().0, 1);
    assert_eq!(foobar_d.size_hint().0, 1);
    assert_eq!(next_key(&mut foo_d).await, foo_1);
    assert_eq!(next_key(&mut foobar_d).await, foobar_1);

    // Watch: writes to foobar reach only foobar. foo's next change is its own
    // key written last, so nothing of foobar came before it.
    let foobar_2 = put(&mut client, &instance(&foobar, "3", 3)).await;
    client.delete(foobar_1.clone(), None).await.unwrap();
    let foo_2 = put(&mut client, &instance(&foo, "4", 4)).await;
    assert_eq!(next_key(&mut foo_d).await, foo_2);
    assert_eq!(next_key(&mut foobar_d).await, foobar_2);

    let foo_addrs: Vec<String> = foo_d.snapshot().into_iter().map(|i| i.addr).collect();
    assert_eq!(foo_addrs, ["127.0.0.1:1", "127.0.0.1:4"]);
    support::wait_until(Duration::from_secs(5), "foobar to see its delete", || {
        let snapshot = foobar_d.snapshot();
        async move { snapshot.len() == 1 }
    })
    .await;
    let foobar_addrs: Vec<String> = foobar_d.snapshot().into_iter().map(|i| i.addr).collect();
    assert_eq!(foobar_addrs, ["127.0.0.1:3"]);
    assert!(foo_d.snapshot().iter().all(|i| i.service == foo));
}

/// A custom codec whose default namespace ends in `/`: the native layout
/// under `/custom/`.
#[derive(Debug)]
struct SlashDefault;

impl tonic_etcd::Codec for SlashDefault {
    fn name(&self) -> &'static str {
        "slash-default"
    }
    fn default_namespace(&self) -> &'static str {
        "/custom/"
    }
    fn key(&self, namespace: &str, instance: &tonic_etcd::Instance) -> String {
        tonic_etcd::codec::Native.key(namespace, instance)
    }
    fn encode(&self, instance: &tonic_etcd::Instance) -> tonic_etcd::Result<Vec<u8>> {
        tonic_etcd::codec::Native.encode(instance)
    }
    fn decode(
        &self,
        service: &str,
        key: &str,
        value: &[u8],
    ) -> tonic_etcd::Result<tonic_etcd::Instance> {
        tonic_etcd::codec::Native.decode(service, key, value)
    }
}

/// Registration and discovery resolve a namespace through one rule: a codec's
/// default namespace with a trailing `/` registers under `/custom/svc/id` (not
/// `/custom//svc/id`), where discovery finds it.
#[tokio::test]
async fn a_default_namespace_ending_in_a_slash_is_found() {
    use tonic_etcd::{Codec, Instance, Registrar};
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("slash");
    let registrar = Registrar::new(client.clone()).codec(SlashDefault);
    let instance = Instance::new(&service, "127.0.0.1:7").unwrap();
    let key = registrar.key_of(&instance).unwrap();
    assert_eq!(key, format!("/custom/{service}/127.0.0.1:7"));
    assert_eq!(SlashDefault.name(), "slash-default");
    let registration = registrar.register(instance).await.unwrap();

    let mut changes = Discovery::new(client, &service)
        .codec(SlashDefault)
        .changes()
        .await
        .unwrap();
    assert_eq!(next_key(&mut changes).await, key);
    assert_eq!(changes.view().prefix(), format!("/custom/{service}/"));
    registration.deregister().await.unwrap();
}
