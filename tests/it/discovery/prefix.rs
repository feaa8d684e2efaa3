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
