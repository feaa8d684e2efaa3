//! Tests of the real-etcd fixture in `tests/support`, so that the other tests can
//! trust it.

use std::time::Duration;

use crate::support;
use crate::support::{unique, wait_for, wait_until, Cluster, Etcd, Result};
use etcd_client::{Client, WatchOptions};

const PATIENCE: Duration = Duration::from_secs(15);

/// The value of `key`, retrying while etcd is (re)starting.
async fn get_eventually(client: &Client, key: &str) -> Option<String> {
    wait_for(PATIENCE, "etcd to answer a get", move || {
        let mut client = client.clone();
        let key = key.to_owned();
        async move {
            let response = client.get(key, None).await.ok()?;
            Some(
                response
                    .kvs()
                    .first()
                    .map(|kv| kv.value_str().unwrap().to_owned()),
            )
        }
    })
    .await
}

/// Puts `key`, retrying while etcd is (re)starting or electing a leader.
async fn put_eventually(client: &Client, key: &str, value: &str) {
    wait_until(PATIENCE, "etcd to accept a put", move || {
        let mut client = client.clone();
        let (key, value) = (key.to_owned(), value.to_owned());
        async move { client.put(key, value, None).await.is_ok() }
    })
    .await
}

#[tokio::test]
async fn start_put_get() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    assert!(etcd.endpoint().starts_with("http://127.0.0.1:"));
    assert!(etcd.pid().is_some());

    let mut client = etcd.client().await;
    client.put("greeting", "hello", None).await?;
    let response = client.get("greeting", None).await?;
    assert_eq!(response.kvs()[0].value_str()?, "hello");

    let listed = etcd.etcdctl(&["get", "greeting", "--print-value-only"]);
    assert_eq!(listed.trim(), "hello");
    Ok(())
}

#[tokio::test]
async fn kill_and_restart_keep_data() -> Result {
    let mut etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let mut client = etcd.client().await;
    client.put("kept", "after kill", None).await?;

    let before = etcd.pid();
    etcd.kill().await;
    assert_eq!(etcd.pid(), None);
    assert!(client.get("kept", None).await.is_err(), "etcd is down");

    etcd.restart().await;
    assert_eq!(etcd.endpoint(), endpoint, "same port after restart");
    assert_ne!(etcd.pid(), before);
    // The old client reconnects by itself.
    assert_eq!(
        get_eventually(&client, "kept").await.as_deref(),
        Some("after kill")
    );

    // A graceful stop keeps the data too; restart works after stop as well.
    client.put("kept", "after stop", None).await?;
    etcd.stop().await;
    assert_eq!(etcd.pid(), None);
    etcd.restart().await;
    assert_eq!(
        get_eventually(&client, "kept").await.as_deref(),
        Some("after stop")
    );

    // Restart of a running member kills it first.
    etcd.restart().await;
    assert_eq!(
        get_eventually(&client, "kept").await.as_deref(),
        Some("after stop")
    );
    Ok(())
}

#[tokio::test]
async fn wipe_and_restart_loses_data() -> Result {
    let mut etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    for _ in 0..5 {
        client.put("wiped", "soon gone", None).await?;
    }
    let revision = client
        .get("wiped", None)
        .await?
        .header()
        .unwrap()
        .revision();
    assert!(revision >= 6);

    etcd.wipe_and_restart().await;
    assert_eq!(get_eventually(&client, "wiped").await, None);
    let fresh = client
        .get("wiped", None)
        .await?
        .header()
        .unwrap()
        .revision();
    assert!(fresh < revision, "a fresh cluster starts from revision 1");
    Ok(())
}

#[tokio::test]
async fn compaction_cancels_old_watches() -> Result {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let key = unique("compacted");
    let first = client
        .put(key.as_str(), "v0", None)
        .await?
        .header()
        .unwrap()
        .revision();
    for i in 1..5 {
        client.put(key.as_str(), format!("v{i}"), None).await?;
    }

    let compacted = etcd.compact().await;
    assert!(compacted >= first + 4, "compacted at {compacted}");

    let mut watch = client
        .watch(
            key.as_str(),
            Some(WatchOptions::new().with_start_revision(first)),
        )
        .await?;
    let canceled = tokio::time::timeout(PATIENCE, async {
        while let Some(response) = watch.message().await? {
            assert!(response.events().is_empty(), "no event below compaction");
            if response.canceled() {
                return Ok::<_, etcd_client::Error>(Some(response.compact_revision()));
            }
        }
        Ok(None)
    })
    .await??;
    assert_eq!(canceled, Some(compacted));

    // Revisions from the compaction on are still watchable.
    let mut watch = client
        .watch(
            key.as_str(),
            Some(WatchOptions::new().with_start_revision(compacted)),
        )
        .await?;
    let value = tokio::time::timeout(PATIENCE, async {
        loop {
            let response = watch.message().await?.expect("watch stream open");
            assert!(!response.canceled(), "{}", response.cancel_reason());
            if let Some(event) = response.events().first() {
                let value = event.kv().unwrap().value_str()?.to_owned();
                return Ok::<_, etcd_client::Error>(value);
            }
        }
    })
    .await??;
    assert_eq!(value, "v4");
    Ok(())
}

#[tokio::test]
async fn cluster_survives_leader_kill() -> Result {
    support::init_tracing();
    let mut cluster = Cluster::start().await;
    assert_eq!(cluster.endpoints().len(), 3);
    let client = cluster.client().await;
    put_eventually(&client, "before", "1").await;

    let leader = cluster.leader().await;
    cluster.kill(leader).await;
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    put_eventually(&client, "after", "2").await;

    cluster.restart(leader).await;
    let rejoined = tonic_etcd::connect([cluster.member(leader).endpoint()]).await?;
    assert_eq!(
        get_eventually(&rejoined, "after").await.as_deref(),
        Some("2"),
        "the restarted member caught up"
    );
    Ok(())
}
