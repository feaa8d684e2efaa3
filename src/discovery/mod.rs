//! Client side: find the live instances of a service.
//!
//! TODO(helper): module docs; implementation.

use std::sync::Arc;

use etcd_client::Client;

use crate::codec::{Codec, Native};
use crate::error::Result;
use crate::instance::Instance;

/// A predicate on discovered instances.
pub type InstanceFilter = Arc<dyn Fn(&Instance) -> bool + Send + Sync>;

/// Builder of a discovery of one service.
#[derive(Clone)]
pub struct Discovery {
    client: Client,
    service: String,
    namespace: Option<String>,
    codec: Arc<dyn Codec>,
    version: Option<String>,
    filter: Option<InstanceFilter>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("service", &self.service)
            .field("namespace", &self.namespace)
            .field("codec", &self.codec.name())
            .field("version", &self.version)
            .field("filter", &self.filter.is_some())
            .finish()
    }
}

impl Discovery {
    /// Discovers `service` through `client`.
    pub fn new(client: Client, service: impl Into<String>) -> Self {
        Self {
            client,
            service: service.into(),
            namespace: None,
            codec: Arc::new(Native),
            version: None,
            filter: None,
        }
    }

    /// Sets the namespace. Defaults to the codec's own (`/services` for native).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets the registry layout. Defaults to [`Native`].
    pub fn codec(mut self, codec: impl Codec) -> Self {
        self.codec = Arc::new(codec);
        self
    }

    /// Sets the registry layout from a shared codec. Defaults to [`Native`].
    pub fn codec_arc(mut self, codec: Arc<dyn Codec>) -> Self {
        self.codec = codec;
        self
    }

    /// Keeps only instances whose version equals `version`. Defaults to all.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Keeps only instances for which `filter` returns true. Defaults to all.
    pub fn filter(mut self, filter: impl Fn(&Instance) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Arc::new(filter));
        self
    }

    /// Runs the initial Get and starts watching; see the module docs.
    pub async fn start(self) -> Result<Discovered> {
        todo!()
    }
}

/// The stream of changes of a running discovery. TODO(helper)
#[derive(Debug)]
pub struct Discovered {}

/// Cloneable view of a running discovery: health and snapshot. TODO(helper)
#[derive(Debug, Clone)]
pub struct DiscoveryHandle {}

/// Health of a discovery. TODO(helper)
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// Watching etcd, up to date.
    Connected,
    /// Lost etcd; keeping the last known set and retrying.
    Reconnecting {
        /// The last error.
        error: String,
    },
}
