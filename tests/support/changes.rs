//! Helpers over the native registry layout and a discovery's change stream
//! (`support::changes`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, GetOptions};
use futures_util::StreamExt;
use tonic_etcd::codec::{Codec, Native};
use tonic_etcd::{DiscoveryView, Instance, InstanceChanges};
use tower::discover::Change;

use super::wait_until;

/// An instance of `service` on 127.0.0.1:`port` with the given id.
pub fn instance(service: &str, id: &str, port: u16) -> Instance {
    Instance::new(service, format!("127.0.0.1:{port}"))
        .unwrap()
        .with_id(id)
}

/// Writes `instance` under `/services` in the native layout, without a
/// lease; returns its key.
pub async fn put(client: &mut Client, instance: &Instance) -> String {
    let key = Native.key("/services", instance);
    client
        .put(key.clone(), Native.encode(instance).unwrap(), None)
        .await
        .unwrap();
    key
}

/// etcd's own view of `service` in the native layout under `/services`: key
/// → instance, read with one Get, in key order (as discovery's snapshot).
pub async fn etcd_state(client: &Client, service: &str) -> BTreeMap<String, Instance> {
    let mut client = client.clone();
    let prefix = format!("/services/{service}/");
    let response = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .expect("get the prefix");
    response
        .kvs()
        .iter()
        .map(|kv| {
            let key = kv.key_str().unwrap().to_owned();
            let instance = Native.decode(service, &key, kv.value()).unwrap();
            (key, instance)
        })
        .collect()
}

/// The next change, which must come within 5 s.
pub async fn next(discovered: &mut InstanceChanges) -> Change<String, Instance> {
    tokio::time::timeout(Duration::from_secs(5), discovered.next())
        .await
        .expect("a change within 5 s")
        .expect("the stream does not end while discovery runs")
}

/// Reads the stream in the background, recording `+id` / `-id` in order.
pub fn record(mut discovered: InstanceChanges, prefix: String) -> Arc<Mutex<Vec<String>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let writer = log.clone();
    tokio::spawn(async move {
        while let Some(change) = discovered.next().await {
            let line = match change {
                Change::Insert(key, _) => format!("+{}", key.trim_start_matches(&prefix)),
                Change::Remove(key) => format!("-{}", key.trim_start_matches(&prefix)),
            };
            writer.lock().unwrap().push(line);
        }
    });
    log
}

/// Waits (10 s at most) until the discovery task behind `handle` has ended,
/// which drops its health sender.
pub async fn wait_ended(handle: &DiscoveryView) {
    let health = handle.health();
    wait_until(Duration::from_secs(10), "the discovery task to end", || {
        let ended = health.has_changed().is_err();
        async move { ended }
    })
    .await;
}

/// Waits until the discovery behind `handle` holds `n` instances, `within` at
/// most.
pub async fn wait_instances(handle: &DiscoveryView, n: usize, within: Duration) {
    let what = format!("{n} instances of {} discovered", handle.service());
    wait_until(within, &what, || {
        let now = handle.snapshot().len();
        async move { now == n }
    })
    .await;
}
