//! Connecting to etcd with options suited to a registry.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use crate::error::Result;

/// The etcd connection options this crate recommends.
///
/// - `require_leader`: a member cut off from its cluster answers "no leader"
///   instead of serving stale watches, so discovery moves to another member.
/// - HTTP/2 keepalive every 5 s (timeout 3 s), also while idle, so a dead
///   connection is noticed by the keepalive and watch streams.
/// - connect timeout 2 s.
///
/// Add TLS or credentials to these options as your cluster needs.
pub fn connect_options() -> ConnectOptions {
    ConnectOptions::new()
        .with_require_leader(true)
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
        .with_keep_alive_while_idle(true)
        .with_connect_timeout(Duration::from_secs(2))
}

/// Connects to etcd at `endpoints` (e.g. `["http://127.0.0.1:2379"]`) with
/// [`connect_options`].
///
/// The connection is lazy: this succeeds even when etcd is down, and the first
/// request reports the failure.
pub async fn connect<E: AsRef<str>, S: AsRef<[E]>>(endpoints: S) -> Result<Client> {
    Ok(Client::connect(endpoints, Some(connect_options())).await?)
}
