//! Graceful shutdown of a registered tonic server.

use std::future::Future;
use std::time::Duration;

use tracing::{info, warn};

use super::guard::Registration;

/// A shutdown future for tonic's `serve_with_shutdown` that loses no request.
///
/// It waits for `signal`, then:
///
/// 1. deregisters, so the key leaves etcd at once and clients stop choosing
///    this server;
/// 2. waits `drain` while still serving, long enough for every client to see the
///    removal (a watch event takes milliseconds; allow for slow clients);
/// 3. returns, and tonic stops accepting connections and finishes the requests
///    in flight.
///
/// ```no_run
/// # async fn f(registration: tonic_etcd::Registration) {
/// use std::time::Duration;
/// use tonic_etcd::registration::shutdown_after;
///
/// let signal = async { tokio::signal::ctrl_c().await.ok(); };
/// let shutdown = shutdown_after(signal, registration, Duration::from_secs(1));
/// // Server::builder().add_service(..).serve_with_shutdown(addr, shutdown).await?;
/// # }
/// ```
pub async fn shutdown_after<F>(signal: F, registration: Registration, drain: Duration)
where
    F: Future<Output = ()>,
{
    signal.await;
    let key = registration.key().to_owned();
    match registration.deregister().await {
        Ok(()) => info!(%key, ?drain, "deregistered; draining"),
        Err(error) => warn!(%key, %error, "deregistration failed; the key expires with its lease"),
    }
    tokio::time::sleep(drain).await;
}
