//! Helpers over the native registry layout and a discovery's change stream
//! (`support::changes`), shared by the discovery tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::Client;
use futures_util::StreamExt;
use tonic_etcd::codec::{Codec, Native};
use tonic_etcd::{Discovered, Instance};
use tower::discover::Change;

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

/// The next change, which must come within 5 s.
pub async fn next(discovered: &mut Discovered) -> Change<String, Instance> {
    tokio::time::timeout(Duration::from_secs(5), discovered.next())
        .await
        .expect("a change within 5 s")
        .expect("the stream does not end while discovery runs")
}

/// Reads the stream in the background, recording `+id` / `-id` in order.
pub fn record(mut discovered: Discovered, prefix: String) -> Arc<Mutex<Vec<String>>> {
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
