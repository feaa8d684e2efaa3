//! Shared watches: [`Watches`], the watches of one scope by what they watch,
//! and [`DiscoveryHub`], a scope of the user's own.
//!
//! The scopes (see [`Discovery`]'s docs, "Shared watches"): the process-wide
//! one, per connection the crate made; a hub; the clones of one `Discovery`
//! of a client made otherwise.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

use etcd_client::Client;

use super::builder::Discovery;
use super::fanout::Fanout;
use super::shared::Shared;
use super::start::{self, Params, Running, Subscription};
use crate::error::Result;
use crate::etcd::Connection;

/// One etcd client's discoveries, sharing their watches: the discoveries
/// made by [`discovery`](Self::discovery) that watch the same prefix, with
/// the same [format](crate::Codec::name), [version](Discovery::version) and
/// [filter](Discovery::filter_arc), share one etcd watch and one decoded set,
/// however many streams, balancers and channels they feed.
///
/// You rarely need one: discoveries made with [`Discovery::new`] from a client
/// of [`connect`](crate::connect) or [`EtcdConfig::connect`](crate::EtcdConfig::connect)
/// already share their watches, process-wide (see [`Discovery`],
/// "Shared watches"). A hub is for a client made otherwise (etcd-client's
/// own `Client::connect`), whose discoveries share only with their own
/// clones, and for counting a scope's watches ([`watches`](Self::watches)).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tonic_etcd::{discovery::DiscoveryHub, Policy};
///
/// let etcd = etcd_client::Client::connect(["http://127.0.0.1:2379"], None).await?;
/// let hub = DiscoveryHub::new(etcd);
/// let balancer = hub.discovery("helloworld").balancer(Policy::RoundRobin).await?;
/// let channel = hub.discovery("helloworld").tonic_channel().await?;
/// assert_eq!(hub.watches(), 1, "one watch feeds both");
/// # Ok(()) }
/// ```
///
/// - **Sharing key**: the hub, the prefix, the format (the codec's
///   [name](crate::Codec::name) and `Debug` output), the version, and the
///   filter: none, or the same `Arc` (a closure cannot be compared; pass one
///   [`InstanceFilter`](super::InstanceFilter) to
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
/// A hub's discoveries share only with each other, never with the
/// process-wide watches of the same client. Cloning a hub shares its
/// watches.
#[derive(Clone)]
pub struct DiscoveryHub {
    client: Client,
    watches: Arc<Watches>,
}

impl std::fmt::Debug for DiscoveryHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoveryHub")
            .field("watches", &self.watches())
            .finish_non_exhaustive()
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
        Discovery::new(self.client.clone(), service).in_hub(self)
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
        self.watches.live()
    }

    pub(crate) fn scope(&self) -> Arc<Watches> {
        self.watches.clone()
    }
}

/// The live watches of one scope, by what they watch.
#[derive(Debug, Default)]
pub(crate) struct Watches {
    entries: Mutex<HashMap<Key, Entry>>,
}

/// What a shared watch is shared by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    /// In the process-wide scope, the connection; `None` in the others,
    /// which hold one client's discoveries only.
    connection: Option<Connection>,
    prefix: String,
    format: &'static str,
    /// The codec's `Debug` output: two codecs of one name but of different
    /// settings (a codec of your own with fields) do not share.
    codec: String,
    version: Option<String>,
    /// The address of the filter's `Arc`. The entry's state holds that
    /// `Arc` while the entry can be joined (its `Weak` upgrades), so the
    /// address cannot be another filter's then.
    filter: Option<usize>,
}

impl Key {
    fn of(connection: Option<Connection>, params: &Params) -> Self {
        Self {
            connection,
            prefix: params.prefix.clone(),
            format: params.codec.name(),
            codec: format!("{:?}", params.codec),
            version: params.version.clone(),
            filter: params
                .filter
                .as_ref()
                .map(|filter| Arc::as_ptr(filter) as *const () as usize),
        }
    }
}

/// A watch as its scope holds it: weakly, so that a stopped watch's set is
/// freed with its last stream and view, not when the scope next prunes.
#[derive(Debug)]
struct Entry {
    shared: Weak<Shared>,
    fanout: Fanout,
}

impl Entry {
    fn subscription(&self) -> Option<Subscription> {
        let running = Running {
            shared: self.shared.upgrade()?,
            fanout: self.fanout.clone(),
        };
        running.subscription()
    }

    fn is_live(&self) -> bool {
        self.shared.strong_count() > 0 && !self.fanout.is_stopped()
    }
}

impl Watches {
    /// The process-wide scope: the discoveries of the crate's connections.
    pub(crate) fn process() -> &'static Watches {
        static PROCESS: LazyLock<Watches> = LazyLock::new(Watches::default);
        &PROCESS
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The number of live watches.
    pub(crate) fn live(&self) -> usize {
        let mut entries = self.lock();
        entries.retain(|_, entry| entry.is_live());
        entries.len()
    }

    /// Joins the live watch of `params`' key (with `connection` in the
    /// process-wide scope), or starts one.
    pub(crate) async fn start(
        &self,
        connection: Option<Connection>,
        params: Params,
    ) -> Result<Subscription> {
        let key = Key::of(connection, &params);
        if let Some(joined) = self.join(&key) {
            return Ok(joined);
        }
        let prepared = start::prepare(params).await?;
        let mut entries = self.lock();
        entries.retain(|_, entry| entry.is_live());
        // Another discovery may have started the same watch meanwhile: join
        // it, and drop ours unspawned.
        if let Some(joined) = entries.get(&key).and_then(Entry::subscription) {
            return Ok(joined);
        }
        let (running, rx) = prepared.spawn();
        let entry = Entry {
            shared: Arc::downgrade(&running.shared),
            fanout: running.fanout,
        };
        entries.insert(key, entry);
        Ok(Subscription {
            shared: running.shared,
            rx,
        })
    }

    fn join(&self, key: &Key) -> Option<Subscription> {
        self.lock().get(key).and_then(Entry::subscription)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::watch;

    use super::*;
    use crate::codec::{Codec, Native, Plain};
    use crate::discovery::filter::InstanceFilter;
    use crate::discovery::health::Health;
    use crate::discovery::state::State;
    use crate::etcd::connection_of;
    use crate::instance::Instance;

    /// A lazy client: nothing listens there, and nothing is sent.
    async fn client() -> Client {
        crate::connect(["http://127.0.0.1:9"]).await.unwrap()
    }

    fn params(client: &Client, codec: Arc<dyn Codec>) -> Params {
        Params {
            client: client.clone(),
            service: "svc".into(),
            prefix: "/services/svc/".into(),
            codec,
            version: None,
            filter: None,
            startup_timeout: Duration::from_secs(1),
        }
    }

    /// A codec of one's own with a setting, named as the native one.
    #[derive(Debug)]
    struct Tuned(#[allow(dead_code, reason = "read through Debug, as the key does")] u8);

    impl Codec for Tuned {
        fn name(&self) -> &'static str {
            "native"
        }
        fn default_namespace(&self) -> &'static str {
            "/services"
        }
        fn key(&self, namespace: &str, instance: &Instance) -> String {
            Native.key(namespace, instance)
        }
        fn encode(&self, instance: &Instance) -> Result<Vec<u8>> {
            Native.encode(instance)
        }
        fn decode(&self, service: &str, key: &str, value: &[u8]) -> Result<Instance> {
            Native.decode(service, key, value)
        }
    }

    #[tokio::test]
    async fn the_key_tells_apart_what_must_not_share() {
        let etcd = client().await;
        let other = client().await;
        let (one, two) = (connection_of(&etcd), connection_of(&other));
        let native = |_: ()| params(&etcd, Arc::new(Native));
        let base = Key::of(one, &native(()));

        assert_eq!(
            Key::of(one, &native(())),
            base,
            "same options, one connection"
        );
        assert_ne!(Key::of(two, &native(())), base, "another connection");
        assert_ne!(Key::of(None, &native(())), base, "another scope");

        let mut p = native(());
        p.prefix = "/prod/svc/".into();
        assert_ne!(Key::of(one, &p), base, "another prefix");
        assert_ne!(
            Key::of(one, &params(&etcd, Arc::new(Plain))),
            base,
            "another format"
        );
        let tuned = |n| Key::of(one, &params(&etcd, Arc::new(Tuned(n))));
        assert_ne!(tuned(1), base, "a codec named native, of another type");
        assert_ne!(tuned(1), tuned(2), "one codec type, other settings");
        assert_eq!(tuned(1), tuned(1));

        let mut p = native(());
        p.version = Some("1".into());
        assert_ne!(Key::of(one, &p), base, "a version");

        let filter: InstanceFilter = Arc::new(|_| true);
        let with = |filter: &InstanceFilter| {
            let mut p = native(());
            p.filter = Some(filter.clone());
            Key::of(one, &p)
        };
        assert_ne!(with(&filter), base, "a filter");
        assert_eq!(with(&filter), with(&filter.clone()), "the same Arc");
        let alike: InstanceFilter = Arc::new(|_| true);
        assert_ne!(
            with(&filter),
            with(&alike),
            "another Arc of the same closure"
        );
    }

    /// A stream of a watch's changes, as a fanout hands it out.
    type Stream = tokio::sync::mpsc::UnboundedReceiver<tower::discover::Change<String, Instance>>;

    /// An entry of one running watch: its shared set, its one stream and
    /// the entry (the health sender must outlive the test's checks).
    fn live_entry() -> (watch::Sender<Health>, Arc<Shared>, Stream, Entry) {
        let (health_tx, health) = watch::channel(Health::Connected);
        let state = State::new("svc".into(), Arc::new(Native), None, None);
        let shared = Arc::new(Shared::new(
            "svc".into(),
            "/services/svc/".into(),
            state,
            health,
        ));
        let fanout = Fanout::default();
        let first = fanout.subscribe([]).unwrap();
        let entry = Entry {
            shared: Arc::downgrade(&shared),
            fanout,
        };
        (health_tx, shared, first, entry)
    }

    #[tokio::test]
    async fn an_entry_whose_set_is_gone_is_not_joined() {
        let (_health_tx, shared, first, entry) = live_entry();
        assert!(entry.is_live());
        assert!(entry.subscription().is_some(), "joined while live");

        // The state is freed with the last stream and view, though the
        // fanout still has a subscriber: nothing to join.
        drop(shared);
        assert!(!entry.is_live());
        assert!(entry.subscription().is_none());
        drop(first);
    }

    #[tokio::test]
    async fn an_entry_whose_streams_are_gone_is_not_joined() {
        let (_health_tx, _shared, first, entry) = live_entry();
        drop(first);
        assert!(!entry.is_live(), "a view alone keeps no watch");
        assert!(entry.subscription().is_none());
    }
}
