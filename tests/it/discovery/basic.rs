//! Discovery against a real etcd: the paginated initial Get, then the watch
//! (put, identical put, changed put, delete).

use std::collections::HashSet;
use std::time::Duration;

use crate::support;
use crate::support::changes::{self, next};
use crate::support::Etcd;
use etcd_client::{Client, PutOptions, Txn, TxnOp};
use futures_util::Stream;
use tonic_etcd::codec::{Codec, Native};
use tonic_etcd::{Discovery, Instance, InstanceChanges};
use tower::discover::Change;

fn instance(service: &str, port: u16) -> Instance {
    changes::instance(service, &format!("i{port:05}"), port)
}

async fn put(client: &mut Client, instance: &Instance, lease: i64) -> String {
    let key = Native.key("/services", instance);
    client
        .put(
            key.clone(),
            Native.encode(instance).unwrap(),
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();
    key
}

/// How many changes are queued in the stream, not yet read.
fn queued(discovered: &InstanceChanges) -> usize {
    discovered.size_hint().0
}

#[tokio::test]
async fn initial_get_reads_every_page_exactly_once() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("paged");

    // 2500 instances: three pages of 1000, written 125 per transaction.
    let instances: Vec<Instance> = (1..=2500).map(|p| instance(&service, p)).collect();
    for chunk in instances.chunks(125) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|i| TxnOp::put(Native.key("/services", i), Native.encode(i).unwrap(), None))
            .collect();
        client.txn(Txn::new().and_then(ops)).await.unwrap();
    }

    let mut discovered = Discovery::new(client.clone(), &service)
        .changes()
        .await
        .unwrap();

    // Already queued when start() returns.
    assert_eq!(queued(&discovered), 2500);
    let mut changes = Vec::new();
    while changes.len() < 2500 {
        changes.push(next(&mut discovered).await);
    }
    let mut keys = HashSet::new();
    for change in &changes {
        match change {
            Change::Insert(key, instance) => {
                assert!(keys.insert(key.clone()), "{key} inserted twice");
                assert_eq!(key, &Native.key("/services", instance));
            }
            Change::Remove(key) => panic!("unexpected remove of {key}"),
        }
    }
    let snapshot = discovered.snapshot();
    assert_eq!(snapshot.len(), 2500);
    let mut expected = instances.clone();
    expected.sort_by_key(|i| Native.key("/services", i));
    assert_eq!(snapshot, expected, "snapshot sorted by identity (the key)");
    assert!(discovered.health().borrow().is_connected());

    // The watch starts right after the Get: one more instance is one insert.
    let extra = instance(&service, 2501);
    let key = put(&mut client, &extra, 0).await;
    match next(&mut discovered).await {
        Change::Insert(k, i) => {
            assert_eq!(k, key);
            assert_eq!(i, extra);
        }
        other => panic!("expected the insert of {key}, got {other:?}"),
    }
    assert_eq!(queued(&discovered), 0);
}

#[tokio::test]
async fn watch_reports_puts_and_deletes() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("watched");
    let lease = client.lease_grant(30, None).await.unwrap().id();

    let mut discovered = Discovery::new(client.clone(), &service)
        .changes()
        .await
        .unwrap();
    assert_eq!(queued(&discovered), 0, "nothing registered yet");

    // A new key: one insert.
    let a = instance(&service, 1);
    let key_a = put(&mut client, &a, lease).await;
    match next(&mut discovered).await {
        Change::Insert(k, i) => assert_eq!((k, i), (key_a.clone(), a.clone())),
        other => panic!("expected insert of a, got {other:?}"),
    }

    // The same value again (as a keepalive re-put would): nothing. The insert
    // of b, written afterwards, must be the very next change.
    put(&mut client, &a, lease).await;
    let b = instance(&service, 2);
    let key_b = put(&mut client, &b, lease).await;
    match next(&mut discovered).await {
        Change::Insert(k, _) => assert_eq!(k, key_b, "identical put must be ignored"),
        other => panic!("expected insert of b, got {other:?}"),
    }

    // A changed value: an insert of the same key, replacing.
    let a2 = a.clone().with_weight(7).with_metadata("zone", "z");
    put(&mut client, &a2, lease).await;
    match next(&mut discovered).await {
        Change::Insert(k, i) => assert_eq!((k, i), (key_a.clone(), a2.clone())),
        other => panic!("expected replacing insert of a, got {other:?}"),
    }
    assert_eq!(discovered.snapshot(), vec![a2.clone(), b.clone()]);

    // A delete: a remove.
    client.delete(key_a.clone(), None).await.unwrap();
    match next(&mut discovered).await {
        Change::Remove(k) => assert_eq!(k, key_a),
        other => panic!("expected remove of a, got {other:?}"),
    }

    // Revoking the lease deletes b: a remove too.
    client.lease_revoke(lease).await.unwrap();
    match next(&mut discovered).await {
        Change::Remove(k) => assert_eq!(k, key_b),
        other => panic!("expected remove of b, got {other:?}"),
    }
    assert!(discovered.snapshot().is_empty());
    assert_eq!(queued(&discovered), 0);

    // The handle sees what the stream says.
    let handle = discovered.view();
    put(&mut client, &a, 0).await;
    next(&mut discovered).await;
    assert_eq!(handle.snapshot(), vec![a]);
    assert_eq!(handle.service(), service);
    assert_eq!(handle.prefix(), format!("/services/{service}/"));
}

#[tokio::test]
async fn start_fails_clearly_without_etcd_or_with_bad_input() {
    support::init_tracing();
    let mut etcd = Etcd::start().await;
    let client = etcd.client().await;

    let error = Discovery::new(client.clone(), "a/b")
        .changes()
        .await
        .unwrap_err();
    assert!(
        matches!(error, tonic_etcd::Error::InvalidServiceName { .. }),
        "{error}"
    );
    let error = Discovery::new(client.clone(), "ok")
        .namespace("no-slash")
        .changes()
        .await
        .unwrap_err();
    assert!(
        matches!(error, tonic_etcd::Error::InvalidNamespace { .. }),
        "{error}"
    );

    etcd.kill().await;
    let started = tokio::time::timeout(
        Duration::from_secs(10),
        Discovery::new(client, "down").changes(),
    )
    .await
    .expect("start fails within the connect timeout");
    let error = started.unwrap_err();
    assert!(matches!(error, tonic_etcd::Error::Etcd(_)), "{error}");
}

/// etcd's count of open watchers, from its Prometheus metrics.
async fn etcd_watchers(etcd: &Etcd) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = etcd.endpoint().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body.lines()
        .find_map(|line| line.strip_prefix("etcd_debugging_mvcc_watcher_total "))
        .expect("etcd reports etcd_debugging_mvcc_watcher_total")
        .trim()
        .parse::<f64>()
        .unwrap() as u64
}

#[tokio::test]
async fn dropping_the_stream_stops_the_task_and_the_watch() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("dropped");
    let before = etcd_watchers(&etcd).await;

    let discovered = Discovery::new(client, &service).changes().await.unwrap();
    let handle = discovered.view();
    support::wait_until(
        Duration::from_secs(10),
        "the watch to be created",
        || async { etcd_watchers(&etcd).await == before + 1 },
    )
    .await;

    drop(discovered);
    let health = handle.health();
    support::wait_until(Duration::from_secs(10), "the task to end", || {
        let ended = health.has_changed().is_err();
        async move { ended }
    })
    .await;
    support::wait_until(
        Duration::from_secs(10),
        "etcd to drop the watch",
        || async { etcd_watchers(&etcd).await == before },
    )
    .await;
}
