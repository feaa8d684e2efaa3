//! The fault fixture itself: the proxy's modes (pass, delay, black hole,
//! reset) switched at run time, and freezing a member, against a real etcd.

use std::time::{Duration, Instant};

use etcd_client::Client;
use tokio::time::timeout;

use crate::support::proxy::Proxy;
use crate::support::{Etcd, Result};

/// A client of `endpoint` alone, without keepalive or retries of its own.
async fn plain_client(endpoint: &str) -> Client {
    Client::connect([endpoint], None)
        .await
        .expect("lazy client")
}

/// How long a Get takes, or `None` if it takes over `limit`.
async fn get_time(client: &Client, limit: Duration) -> Option<Duration> {
    let mut client = client.clone();
    let start = Instant::now();
    match timeout(limit, client.get("probe", None)).await {
        Ok(Ok(_)) => Some(start.elapsed()),
        _ => None,
    }
}

#[tokio::test]
async fn the_proxy_passes_delays_blackholes_and_resets() -> Result {
    let etcd = Etcd::start().await;
    let proxy = Proxy::start(etcd.addr()).await;
    let client = plain_client(&proxy.endpoint()).await;
    let fast = get_time(&client, Duration::from_secs(5))
        .await
        .expect("pass");
    assert!(fast < Duration::from_millis(500), "{fast:?}");

    // A fixed round trip of 400 ms on the open connection.
    proxy.delay(Duration::from_millis(400));
    let slow = get_time(&client, Duration::from_secs(5))
        .await
        .expect("delayed");
    assert!(slow >= Duration::from_millis(400), "{slow:?}");
    assert!(slow < Duration::from_millis(1500), "{slow:?}");
    // One way only.
    proxy.delay_each(Duration::ZERO, Duration::from_millis(300));
    let one_way = get_time(&client, Duration::from_secs(5))
        .await
        .expect("one way");
    assert!(one_way >= Duration::from_millis(300), "{one_way:?}");

    // Black hole: the connection stays open, nothing comes back.
    proxy.blackhole();
    assert_eq!(get_time(&client, Duration::from_millis(800)).await, None);
    // A new connection is accepted and black-holed too.
    let other = plain_client(&proxy.endpoint()).await;
    assert_eq!(get_time(&other, Duration::from_millis(800)).await, None);
    proxy.pass();
    assert!(get_time(&client, Duration::from_secs(5)).await.is_some());
    assert!(get_time(&other, Duration::from_secs(5)).await.is_some());

    // A reset breaks an open watch stream at once.
    let mut watcher = client.clone();
    let mut stream = watcher.watch("probe", None).await?;
    stream.message().await?; // created
    proxy.reset();
    let broken = timeout(Duration::from_secs(5), stream.message()).await?;
    assert!(!matches!(broken, Ok(Some(_))), "{broken:?}");
    // New connections work after a reset.
    assert!(get_time(
        &plain_client(&proxy.endpoint()).await,
        Duration::from_secs(5)
    )
    .await
    .is_some());
    Ok(())
}

#[tokio::test]
async fn a_frozen_member_accepts_but_does_not_answer_until_thawed() -> Result {
    let etcd = Etcd::start().await;
    let client = plain_client(&etcd.endpoint()).await;
    assert!(get_time(&client, Duration::from_secs(5)).await.is_some());
    let frozen = etcd.freeze();
    assert_eq!(get_time(&client, Duration::from_millis(800)).await, None);
    frozen.thaw();
    let after = get_time(&client, Duration::from_secs(5)).await;
    assert!(after.is_some(), "answers again once thawed");
    Ok(())
}
