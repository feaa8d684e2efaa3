//! Plain reads of etcd keys (`support::kv`), for tests that check what a
//! registration or an example left in etcd.

use etcd_client::{Client, GetOptions};

/// The value and lease of `key`, if it exists. Panics if etcd does not answer.
pub async fn get(client: &Client, key: &str) -> Option<(Vec<u8>, i64)> {
    let mut client = client.clone();
    let response = client.get(key, None).await.expect("etcd get");
    response
        .kvs()
        .first()
        .map(|kv| (kv.value().to_vec(), kv.lease()))
}

/// The lease of `key` (0 for a key without one); `None` if the key is absent
/// or etcd does not answer, so that a poll goes on while etcd restarts.
pub async fn lease_of(client: &Client, key: &str) -> Option<i64> {
    let mut client = client.clone();
    let response = client.get(key, None).await.ok()?;
    response.kvs().first().map(|kv| kv.lease())
}

/// The keys under `prefix` (every key for `""`) with their leases, in key
/// order; the error if etcd does not answer.
pub async fn keys(client: &Client, prefix: &str) -> Result<Vec<(String, i64)>, etcd_client::Error> {
    let mut client = client.clone();
    let options = if prefix.is_empty() {
        GetOptions::new().with_all_keys()
    } else {
        GetOptions::new().with_prefix()
    };
    let response = client.get(prefix, Some(options)).await?;
    Ok(response
        .kvs()
        .iter()
        .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.lease()))
        .collect())
}
