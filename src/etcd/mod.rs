//! The connection to etcd: endpoints, TLS, mutual TLS and user/password
//! authentication ([`EtcdConfig`], [`connect`]), and what etcd's errors mean
//! (`status`, the one place that classifies them).
//!
//! This is the ground layer: everything else builds on the `etcd_client::Client`
//! made here, and nothing here knows of registration, discovery or balancing.

mod config;
mod endpoints;
mod failover;
mod pem;
#[cfg(feature = "tls")]
mod probe;
mod retry;
pub(crate) mod status;

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use crate::error::Result;

pub use config::EtcdConfig;
pub(crate) use failover::{connection_of, Connection};
#[cfg_attr(not(feature = "tls"), allow(unused_imports))]
pub(crate) use pem::Pem;
pub(crate) use retry::retry_transient;

/// The etcd connection options this crate recommends.
///
/// - `require_leader`: a member cut off from its cluster answers "no leader"
///   instead of serving stale watches, so discovery moves to another member.
/// - HTTP/2 keepalive every 5 s (timeout 3 s), also while idle, so a dead
///   connection is noticed by the keepalive and watch streams.
/// - connect timeout 2 s.
///
/// [`EtcdConfig`] adds TLS and credentials to these. (etcd-client's
/// `ConnectOptions` shows the password in its `Debug` output: do not log it.)
///
/// ```
/// let options = tonic_etcd::connect_options();
/// # let _ = options;
/// ```
pub fn connect_options() -> ConnectOptions {
    ConnectOptions::new()
        .with_require_leader(true)
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
        .with_keep_alive_while_idle(true)
        .with_connect_timeout(EtcdConfig::DEFAULT_CONNECT_TIMEOUT)
}

/// Connects to etcd at `endpoints` (e.g. `["http://127.0.0.1:2379"]`) with
/// [`connect_options`], without TLS or authentication; the same as
/// `EtcdConfig::new(endpoints).connect()`. See [`EtcdConfig`] for TLS and
/// credentials.
///
/// The connection is lazy: this succeeds even when etcd is down, and the first
/// request reports the failure. It fails at once, naming the endpoint, for an
/// endpoint with a scheme other than `http://` ([`Error::Config`]), and for a
/// host name that does not resolve ([`Error::Resolve`]).
///
/// ```no_run
/// # async fn run() -> tonic_etcd::Result<()> {
/// let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
/// # Ok(()) }
/// ```
///
/// [`Error::Config`]: crate::Error::Config
/// [`Error::Resolve`]: crate::Error::Resolve
pub async fn connect<E: AsRef<str>, S: AsRef<[E]>>(endpoints: S) -> Result<Client> {
    EtcdConfig::new(endpoints.as_ref().iter().map(|e| e.as_ref().to_owned()))
        .connect()
        .await
}
