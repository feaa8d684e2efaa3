//! Client side: find the live instances of a service.
//!
//! [`Discovery`] is a builder; [`Discovery::start`] reads the registry and
//! returns [`Discovered`], a [`Stream`](futures_core::Stream) of tower
//! [`Change`](tower::discover::Change)s kept up to date by a background task.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::StreamExt;
//! use tower::discover::Change;
//! use tonic_etcd::Discovery;
//!
//! let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
//! let mut discovered = Discovery::new(etcd, "helloworld").start().await?;
//! println!("now: {:?}", discovered.snapshot());
//! while let Some(change) = discovered.next().await {
//!     match change {
//!         Change::Insert(key, instance) => println!("+ {key} at {}", instance.addr),
//!         Change::Remove(key) => println!("- {key}"),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Semantics
//!
//! ```text
//! prefix:  {namespace}/{service}/       e.g. /services/helloworld/
//! ```
//!
//! - **Start**: a prefix Get, in pages of 1000 keys all pinned at the revision
//!   of the first page, gives one `Insert` per instance. If it fails,
//!   [`start`](Discovery::start) fails: the caller decides whether to retry.
//! - **Watch** from that revision + 1, with `prev_kv`, so nothing between the
//!   Get and the Watch is missed. A PUT with a new value is an `Insert` (a
//!   changed value replaces the instance); an identical value is ignored. A
//!   DELETE is a `Remove`. A value that does not decode is logged (`warn!`)
//!   and skipped, and removes the instance if the key was known. An instance
//!   that stops passing the [version](Discovery::version) or
//!   [filter](Discovery::filter) is removed.
//! - **Errors** never reach the stream and never shrink the set. When the
//!   watch fails, is cancelled, ends, or etcd cannot be reached, the current
//!   set is kept, [`Health`] becomes `Reconnecting`, and the watch resumes from
//!   the last revision seen + 1, after a jittered exponential backoff (50 ms
//!   doubling to 2 s, ±50 %). etcd-client does not do this for you.
//! - **Resync**: if the revision to resume from has been compacted, or etcd
//!   reports a revision lower than one already seen (its data was wiped or
//!   restored from a backup), the task reads the prefix again and emits only
//!   the difference: `Remove` for keys gone, `Insert` for new or changed ones,
//!   nothing for the rest. Inserts come first, so that an instance that moved
//!   never leaves the set emptier than before and after.
//! - **Identity**: the key of each change is [`Codec::identity`] (the etcd key
//!   for the native format). Where several etcd keys map to one identity (formats
//!   that identify instances by address), the identity is inserted with its
//!   first key and removed with its last.
//!
//! A discovery learns of a dead etcd connection through the connection's
//! HTTP/2 keepalive: use [`connect`](crate::connect), which also sets
//! `require_leader` so that a member cut off from its cluster refuses the watch
//! instead of serving a stale one. A new watch must be confirmed by etcd within
//! 5 s, and a resync Get answer within 10 s, or the attempt counts as failed.
//!
//! Known limit: if etcd loses its data *and* is written to past the revision
//! this discovery had seen before it reconnects, the loss cannot be told from
//! the revision alone; the watch resumes without a resync.
//!
//! [`Codec::identity`]: crate::Codec::identity

mod state;
mod stream;
mod watcher;

use std::sync::Arc;

use etcd_client::Client;
use tokio::sync::{mpsc, watch};
use tracing::{info, info_span, instrument, Instrument};

pub use stream::{Discovered, DiscoveryHandle};

use crate::codec::{resolve_namespace, Codec, Native};
use crate::error::Result;
use crate::instance::{validate_service_name, Instance};
use state::{Event, State};
use stream::Shared;
use watcher::Watcher;

/// A predicate on discovered instances.
pub type InstanceFilter = Arc<dyn Fn(&Instance) -> bool + Send + Sync>;

/// Builder of a discovery of one service.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tonic_etcd::Discovery;
///
/// let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
/// let discovered = Discovery::new(etcd, "helloworld")
///     .namespace("/prod")
///     .version("1.2.0")
///     .filter(|i| i.metadata.get("zone").is_some_and(|z| z == "a"))
///     .start()
///     .await?;
/// # Ok(()) }
/// ```
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
    ///
    /// Nothing is checked or read until [`start`](Self::start).
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

    /// Sets the namespace (key prefix before the service name). A trailing `/`
    /// is ignored. Defaults to the codec's own (`/services` for native).
    ///
    /// ```no_run
    /// # fn f(etcd: etcd_client::Client) {
    /// let discovery = tonic_etcd::Discovery::new(etcd, "helloworld").namespace("/prod");
    /// # }
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets the registry layout. Defaults to [`Native`].
    ///
    /// ```no_run
    /// # fn f(etcd: etcd_client::Client) {
    /// use tonic_etcd::codec::Native;
    /// let discovery = tonic_etcd::Discovery::new(etcd, "helloworld").codec(Native);
    /// # }
    /// ```
    pub fn codec(mut self, codec: impl Codec) -> Self {
        self.codec = Arc::new(codec);
        self
    }

    /// Sets the registry layout from a shared codec. Defaults to [`Native`].
    ///
    /// ```no_run
    /// # fn f(etcd: etcd_client::Client) {
    /// use std::sync::Arc;
    /// use tonic_etcd::{codec::Native, Codec};
    /// let codec: Arc<dyn Codec> = Arc::new(Native);
    /// let discovery = tonic_etcd::Discovery::new(etcd, "helloworld").codec_arc(codec);
    /// # }
    /// ```
    pub fn codec_arc(mut self, codec: Arc<dyn Codec>) -> Self {
        self.codec = codec;
        self
    }

    /// Keeps only instances whose version equals `version`. Defaults to all.
    ///
    /// An instance whose version changes to another is removed.
    ///
    /// ```no_run
    /// # fn f(etcd: etcd_client::Client) {
    /// let discovery = tonic_etcd::Discovery::new(etcd, "helloworld").version("1.2.0");
    /// # }
    /// ```
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Keeps only instances for which `filter` returns true. Defaults to all.
    ///
    /// The filter runs on every decoded value; an instance that stops passing
    /// it is removed. It must be cheap and must not block.
    ///
    /// ```no_run
    /// # fn f(etcd: etcd_client::Client) {
    /// let discovery = tonic_etcd::Discovery::new(etcd, "helloworld")
    ///     .filter(|i| i.metadata.get("zone").is_some_and(|z| z == "a"));
    /// # }
    /// ```
    pub fn filter(mut self, filter: impl Fn(&Instance) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Arc::new(filter));
        self
    }

    /// Checks the options, reads the registry, and starts watching it.
    ///
    /// When this returns, the stream already holds one `Insert` per instance
    /// found, and [`Discovered::snapshot`] lists them. The background task is
    /// spawned on the current tokio runtime, so this must run inside one.
    ///
    /// Fails with [`Error::InvalidServiceName`](crate::Error::InvalidServiceName),
    /// [`Error::InvalidNamespace`](crate::Error::InvalidNamespace), or
    /// [`Error::Etcd`](crate::Error::Etcd) if the initial Get fails. A page of
    /// the Get that fails on its way (a member of the cluster down or electing
    /// a leader) is sent again up to 4 times within 300 ms first. The Get has
    /// no deadline of its own (an unreachable etcd fails at the connect timeout
    /// of the client); wrap the call in [`tokio::time::timeout`] to set one.
    #[instrument(name = "discovery_start", skip(self), fields(service = %self.service))]
    pub async fn start(self) -> Result<Discovered> {
        validate_service_name(&self.service)?;
        let namespace = resolve_namespace(self.codec.as_ref(), self.namespace.as_deref())?;
        let prefix = self.codec.service_prefix(namespace, &self.service);

        let snapshot = watcher::fetch(self.client.kv_client(), &prefix).await?;

        let (tx, rx) = mpsc::unbounded_channel();
        let (health_tx, health_rx) = watch::channel(Health::Connected);
        let state = State::new(self.service.clone(), self.codec, self.version, self.filter);
        let shared = Arc::new(Shared::new(
            self.service.clone(),
            prefix.clone(),
            state,
            health_rx,
        ));
        let watcher = Watcher::new(
            self.client,
            prefix.clone(),
            shared.clone(),
            tx,
            health_tx,
            snapshot.revision,
        );
        let keys = snapshot.kvs.len();
        watcher.apply([Event::Resync { kvs: snapshot.kvs }]);
        info!(
            %prefix,
            revision = snapshot.revision,
            keys,
            instances = shared.lock().len(),
            "discovery started"
        );
        // The task outlives this call: its span must not nest under `discovery_start`.
        let span = info_span!(parent: None, "discovery", service = %self.service, %prefix);
        tokio::spawn(watcher.run().instrument(span));
        Ok(Discovered::new(rx, shared))
    }
}

/// Health of a discovery, from [`DiscoveryHandle::health`].
///
/// Whatever the health, the last known set of instances is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// The last etcd request succeeded: the watch is established (or, right
    /// after start, being established) and the set is up to date.
    Connected,
    /// Lost etcd; keeping the last known set and retrying with backoff.
    Reconnecting {
        /// The last error, for display.
        error: String,
    },
}

impl Health {
    /// Whether this is [`Health::Connected`].
    pub fn is_connected(&self) -> bool {
        matches!(self, Self::Connected)
    }
}
