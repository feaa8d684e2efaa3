//! [`DiscoveryHub`]: discoveries of one etcd client that share one watch per
//! prefix, format, version and filter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use etcd_client::Client;

use super::builder::Discovery;
use super::start::{self, Params, Running, Subscription};
use crate::error::Result;

/// One etcd client's discoveries, sharing their watches: the discoveries
/// made by [`discovery`](Self::discovery) that watch the same prefix, with
/// the same [format](crate::Codec::name), [version](Discovery::version) and
/// [filter](Discovery::filter_arc), share one etcd watch and one decoded set,
/// however many streams, balancers and channels they feed.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tonic_etcd::{discovery::DiscoveryHub, Policy};
///
/// let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
/// let hub = DiscoveryHub::new(etcd);
/// let balancer = hub.discovery("helloworld").balancer(Policy::RoundRobin).await?;
/// let channel = hub.discovery("helloworld").tonic_channel().await?;
/// assert_eq!(hub.watches(), 1, "one watch feeds both");
/// # Ok(()) }
/// ```
///
/// - **Sharing key**: the hub (its etcd client: etcd-client's `Client` has no
///   identity to compare, and two clients may hold different credentials, so
///   only discoveries of one hub share), the prefix, the format's name, the
///   version, and the filter: none, or the same `Arc` (a closure cannot be
///   compared; pass one [`InstanceFilter`](super::InstanceFilter) to
///   [`filter_arc`](Discovery::filter_arc) to share a filtered watch). The
///   first discovery's [startup timeout](Discovery::startup_timeout) applies
///   to the Get; the others start at once.
/// - **Late subscribers** get the current set first (one `Insert` per
///   instance, queued when they start), then every change after it: nothing
///   missed, nothing repeated.
/// - **Lifetime**: the watch stops when its last stream is dropped; a
///   discovery started after that starts a new watch (a new Get).
/// - Health ([`DiscoveryView::health`](super::DiscoveryView::health)) and the
///   snapshot are the shared watch's.
///
/// A [`Discovery`] made with [`Discovery::new`] shares nothing. Cloning a hub
/// shares its watches.
#[derive(Clone)]
pub struct DiscoveryHub {
    client: Client,
    watches: Arc<Mutex<HashMap<Key, Running>>>,
}

impl std::fmt::Debug for DiscoveryHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoveryHub")
            .field("watches", &self.watches())
            .finish_non_exhaustive()
    }
}

/// What a shared watch is shared by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    prefix: String,
    format: &'static str,
    version: Option<String>,
    /// The address of the filter's `Arc`: the hub's entry holds the `Arc`, so
    /// the address is not reused while the entry lives.
    filter: Option<usize>,
}

impl Key {
    fn of(params: &Params) -> Self {
        Self {
            prefix: params.prefix.clone(),
            format: params.codec.name(),
            version: params.version.clone(),
            filter: params
                .filter
                .as_ref()
                .map(|filter| Arc::as_ptr(filter) as *const () as usize),
        }
    }
}

impl DiscoveryHub {
    /// A hub of discoveries through `client`, with no watch yet.
    ///
    /// ```no_run
    /// # async fn run() -> tonic_etcd::Result<()> {
    /// let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
    /// let hub = tonic_etcd::discovery::DiscoveryHub::new(etcd);
    /// assert_eq!(hub.watches(), 0);
    /// # Ok(()) }
    /// ```
    pub fn new(client: Client) -> Self {
        Self {
            client,
            watches: Arc::default(),
        }
    }

    /// A discovery of `service` through this hub's client that shares its
    /// watch with the hub's other discoveries of the same prefix, format,
    /// version and filter; the options are [`Discovery`]'s.
    ///
    /// ```no_run
    /// # async fn run(hub: tonic_etcd::discovery::DiscoveryHub) -> tonic_etcd::Result<()> {
    /// let a = hub.discovery("helloworld").changes().await?;
    /// let b = hub.discovery("helloworld").changes().await?;
    /// assert_eq!(hub.watches(), 1);
    /// # Ok(()) }
    /// ```
    pub fn discovery(&self, service: impl Into<String>) -> Discovery {
        Discovery::new(self.client.clone(), service).in_hub(self.clone())
    }

    /// The number of etcd watches this hub runs now (one per distinct
    /// prefix, format, version and filter that has a live stream).
    ///
    /// ```no_run
    /// # fn f(hub: tonic_etcd::discovery::DiscoveryHub) {
    /// println!("{} watches", hub.watches());
    /// # }
    /// ```
    pub fn watches(&self) -> usize {
        let mut watches = self.lock();
        watches.retain(|_, running| !running.fanout.is_stopped());
        watches.len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Running>> {
        self.watches.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the live watch of `params`' key, or starts one.
    pub(crate) async fn start(&self, params: Params) -> Result<Subscription> {
        let key = Key::of(&params);
        if let Some(joined) = self.join(&key) {
            return Ok(joined);
        }
        let prepared = start::prepare(params).await?;
        let mut watches = self.lock();
        // Free the sets of the watches that have stopped.
        watches.retain(|_, running| !running.fanout.is_stopped());
        // Another discovery may have started the same watch meanwhile: join
        // it, and drop ours unspawned.
        if let Some(joined) = watches.get(&key).and_then(Running::subscription) {
            return Ok(joined);
        }
        let (running, rx) = prepared.spawn();
        let shared = running.shared.clone();
        watches.insert(key, running);
        Ok(Subscription { shared, rx })
    }

    fn join(&self, key: &Key) -> Option<Subscription> {
        self.lock().get(key).and_then(Running::subscription)
    }
}
