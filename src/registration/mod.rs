//! Server side: keep an instance registered. (being written)

use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;
use tokio::sync::watch;

use crate::codec::{Codec, Native};
use crate::error::Result;
use crate::instance::Instance;

/// Builder of registrations.
#[derive(Clone)]
pub struct Registrar {
    client: Client,
    ttl: Duration,
    namespace: Option<String>,
    codec: Arc<dyn Codec>,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar").finish_non_exhaustive()
    }
}

impl Registrar {
    /// New registrar.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            ttl: Duration::from_secs(10),
            namespace: None,
            codec: Arc::new(Native),
        }
    }
    /// TTL.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
    /// Namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }
    /// Register.
    pub async fn register(&self, instance: Instance) -> Result<Registration> {
        let _ = (&self.client, &self.codec, instance);
        todo!()
    }
}

/// The guard.
#[derive(Debug)]
#[must_use]
pub struct Registration {}

impl Registration {
    /// The key.
    pub fn key(&self) -> &str {
        todo!()
    }
    /// State.
    pub fn state(&self) -> watch::Receiver<RegistrationState> {
        todo!()
    }
    /// Update.
    pub async fn update(&self, f: impl FnOnce(&mut Instance)) -> Result<()> {
        let _ = f;
        todo!()
    }
    /// Deregister.
    pub async fn deregister(self) -> Result<()> {
        todo!()
    }
}

/// State.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistrationState {
    /// Registered.
    Registered {
        /// Lease.
        lease_id: i64,
    },
    /// Reconnecting.
    Reconnecting {
        /// Error.
        error: String,
    },
    /// Displaced.
    Displaced {
        /// By.
        by_lease: i64,
    },
    /// Deregistered.
    Deregistered,
}

/// Graceful shutdown for `serve_with_shutdown`: wait for `signal`, deregister,
/// wait `drain`, then return so tonic finishes in-flight requests.
pub async fn shutdown_after<F: std::future::Future<Output = ()>>(
    signal: F,
    registration: Registration,
    drain: Duration,
) {
    signal.await;
    let _ = registration.deregister().await;
    tokio::time::sleep(drain).await;
}
