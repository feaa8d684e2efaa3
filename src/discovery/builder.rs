//! [`Discovery`]: the builder of a discovery of one service, and its start,
//! [`Discovery::changes`].
//!
//! (Over 400 lines, three quarters of them docs: every option, and the rules
//! of shared watches, are where a user of `Discovery` reads them.)

use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;
use tracing::instrument;

use super::changes::InstanceChanges;
use super::filter::InstanceFilter;
use super::hub::{DiscoveryHub, Watches};
use super::start::Params;
use super::subset::{self, Subset};
use crate::codec::{resolve_namespace, Codec, Native};
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::etcd::connection_of;
use crate::instance::{validate_service_name, Instance};

/// Builder of a discovery of one service: the etcd client, the service, and
/// the options (namespace, codec, version, filter, startup timeout).
///
/// Start it one of three ways, by what you want out of it:
///
/// | you want | call | you get |
/// |---|---|---|
/// | the crate's balancer (recommended) | [`balancer(policy)`](Discovery::balancer) | a [`Balancer`](crate::Balancer) |
/// | tonic's balanced channel | [`tonic_channel()`](Discovery::tonic_channel), [`tonic_channel_with(template)`](Discovery::tonic_channel_with) | a tonic `Channel` |
/// | the raw changes | [`changes()`](Discovery::changes) | an [`InstanceChanges`] stream |
///
/// For the balancer's options, see [`Balancer::builder`](crate::Balancer::builder).
/// (`balancer` and `tonic_channel` come from the [`balance`](crate::balance)
/// module, the layer above this one.)
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tonic_etcd::{Discovery, Policy};
///
/// let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
/// let balancer = Discovery::new(etcd, "helloworld")
///     .namespace("/prod")
///     .version("1.2.0")
///     .filter(|i| i.metadata.get("zone").is_some_and(|z| z == "a"))
///     .startup_timeout(Duration::from_secs(5))
///     .balancer(Policy::RoundRobin)
///     .await?;
/// // let mut client = GreeterClient::new(balancer);
/// # Ok(()) }
/// ```
///
/// # Shared watches
///
/// Discoveries in one process that watch the same prefix (namespace and
/// service), in the same format (the codec's [name](Codec::name) and `Debug`
/// output), with the same [version](Self::version) and the same
/// [filter](Self::filter_arc), share one etcd watch and one decoded set,
/// however many balancers, channels and streams they feed, if they are in one
/// scope:
///
/// - **A client of [`connect`](crate::connect) or
///   [`EtcdConfig::connect`](crate::EtcdConfig::connect)**: every discovery
///   made from it or from one of its clones, anywhere in the process, shares.
///   No setup: the crate recognises the connections it made.
/// - **A client made otherwise** (etcd-client's own `Client::connect`): it
///   cannot be recognised (etcd-client's `Client` cannot be compared), so only
///   the clones of one `Discovery` share; or use a [`DiscoveryHub`].
/// - **A [`DiscoveryHub`]**: its discoveries share with each other only.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tonic_etcd::{Discovery, Policy};
///
/// let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
/// // One etcd watch of /services/helloworld/ feeds all three.
/// let balancer = Discovery::new(etcd.clone(), "helloworld").balancer(Policy::RoundRobin).await?;
/// let channel = Discovery::new(etcd.clone(), "helloworld").tonic_channel().await?;
/// let changes = Discovery::new(etcd, "helloworld").changes().await?;
/// # Ok(()) }
/// ```
///
/// Never shared:
///
/// - **Two connections**, even to the same endpoints as the same user: each
///   call of `connect` is a scope of its own, so clients with different
///   credentials never share a watch (nor a set read with another's rights).
///   To give a discovery a watch of its own, connect another client.
/// - A different namespace, service, format or version.
/// - Filters given as closures to [`filter`](Self::filter) by different
///   `Discovery::new` calls (closures cannot be compared): pass one
///   [`InstanceFilter`] to [`filter_arc`](Self::filter_arc) to share a
///   filtered watch. The clones of one `Discovery` hold the same filter.
/// - A [subset](Self::subset): the instances' watch is shared, and each
///   discovery keeps its own subset (and its own watch of the clients).
///
/// What sharing changes:
///
/// - The first discovery reads the prefix (within its
///   [startup timeout](Self::startup_timeout)); the others join at once, with
///   the current set queued first (one `Insert` per instance), then every
///   change: nothing missed, nothing repeated. A discovery that joins a watch
///   that is reconnecting starts with the set kept meanwhile (its
///   [health](super::DiscoveryView::health) says so) instead of failing.
/// - The [view](InstanceChanges::view) (snapshot, health) is the shared
///   watch's.
/// - The watch stops when its last stream is dropped (for a balancer or a
///   channel: when its last clone is); a discovery started after that starts
///   a new watch, with a new Get.
#[derive(Clone)]
pub struct Discovery {
    client: Client,
    service: String,
    namespace: Option<String>,
    codec: Arc<dyn Codec>,
    version: Option<String>,
    filter: Option<InstanceFilter>,
    startup_timeout: Duration,
    subset: Option<Subset>,
    sharing: Sharing,
}

/// Where a discovery looks for a watch to share (see "Shared watches").
#[derive(Clone)]
enum Sharing {
    /// The process-wide scope if the client is one of the crate's
    /// connections; else this scope, shared by the clones of the discovery.
    Auto(Arc<Watches>),
    /// A [`DiscoveryHub`]'s scope.
    Hub(Arc<Watches>),
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("service", &self.service)
            .field("namespace", &self.namespace)
            .field("codec", &self.codec.name())
            .field("version", &self.version)
            .field("filter", &self.filter.is_some())
            .field("startup_timeout", &self.startup_timeout)
            .field("subset", &self.subset)
            .field(
                "sharing",
                &match self.sharing {
                    Sharing::Auto(_) => "auto",
                    Sharing::Hub(_) => "hub",
                },
            )
            .finish()
    }
}

impl Discovery {
    /// The [`startup_timeout`](Self::startup_timeout) used when none is set:
    /// 3 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(tonic_etcd::Discovery::DEFAULT_STARTUP_TIMEOUT, Duration::from_secs(3));
    /// ```
    pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(3);

    /// Discovers `service` through `client`.
    ///
    /// Nothing is checked or read until the discovery starts
    /// ([`changes`](Self::changes), [`balancer`](Self::balancer),
    /// [`tonic_channel`](Self::tonic_channel)).
    ///
    /// ```no_run
    /// # async fn run() -> tonic_etcd::Result<()> {
    /// let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
    /// let discovery = tonic_etcd::Discovery::new(etcd, "helloworld");
    /// # Ok(()) }
    /// ```
    pub fn new(client: Client, service: impl Into<String>) -> Self {
        Self {
            client,
            service: service.into(),
            namespace: None,
            codec: Arc::new(Native),
            version: None,
            filter: None,
            startup_timeout: Self::DEFAULT_STARTUP_TIMEOUT,
            subset: None,
            sharing: Sharing::Auto(Arc::default()),
        }
    }

    /// Makes this discovery share its watch through `hub`.
    pub(crate) fn in_hub(mut self, hub: &DiscoveryHub) -> Self {
        self.sharing = Sharing::Hub(hub.scope());
        self
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

    /// Keeps only instances for which the shared `filter` returns true; as
    /// [`filter`](Self::filter), but discoveries given the same `Arc` share
    /// their watch (see [Shared watches](Self#shared-watches)).
    ///
    /// ```no_run
    /// # fn f(etcd: etcd_client::Client) {
    /// use std::sync::Arc;
    /// use tonic_etcd::{discovery::InstanceFilter, Discovery};
    ///
    /// let zone_a: InstanceFilter = Arc::new(|i| i.metadata.get("zone").is_some_and(|z| z == "a"));
    /// let one = Discovery::new(etcd.clone(), "helloworld").filter_arc(zone_a.clone());
    /// let two = Discovery::new(etcd, "helloworld").filter_arc(zone_a); // same watch as `one`
    /// # }
    /// ```
    pub fn filter_arc(mut self, filter: InstanceFilter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Turns subsetting on: the stream (and so the balancer or channel fed by
    /// it) carries only this client's [`Subset::size`] instances of the
    /// service, chosen by deterministic aperture over the subsetting clients;
    /// see [`subset`](super::subset) for the algorithm, its sources, and what
    /// happens while the clients change. Off by default.
    ///
    /// The start then also writes the client's key and reads the other
    /// clients' (each within the startup timeout), and waits for the clients
    /// to [settle](Subset::settle). The stream carries the subset; its
    /// [view](InstanceChanges::view)'s snapshot still lists every instance,
    /// and [`DiscoveryView::subset`](super::DiscoveryView::subset) lists the
    /// subset.
    /// Fails with [`Error::Config`](crate::Error::Config)
    /// for a size of 0 and [`Error::InvalidId`](crate::Error::InvalidId) for a
    /// bad client id.
    ///
    /// ```no_run
    /// # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
    /// use tonic_etcd::discovery::Subset;
    ///
    /// let changes = tonic_etcd::Discovery::new(etcd, "helloworld")
    ///     .subset(Subset::new(3).client_id("web-1"))
    ///     .changes()
    ///     .await?;
    /// println!("{} instances in all", changes.snapshot().len());
    /// # Ok(()) }
    /// ```
    pub fn subset(mut self, subset: Subset) -> Self {
        self.subset = Some(subset);
        self
    }

    /// Sets how long the start (the initial Get, every page of it, and its
    /// quick retries) may take before it fails with
    /// [`Error::Timeout`]. Defaults to [`DEFAULT_STARTUP_TIMEOUT`](Self::DEFAULT_STARTUP_TIMEOUT), 3 s.
    ///
    /// Without a deadline, an etcd that accepts connections but never answers
    /// (a frozen process, a black-holed address behind a proxy) holds the
    /// start for as long as it stays silent: its connections are not refused,
    /// so the Get waits for an answer that does not come. An etcd that
    /// refuses connections fails sooner, with [`Error::Etcd`], after the
    /// quick retries. Pass [`Duration::MAX`] for no deadline.
    ///
    /// The name is [`Registrar::startup_timeout`](crate::Registrar::startup_timeout)'s;
    /// the discovery does not retry a start that failed: the caller decides.
    ///
    /// ```no_run
    /// # fn f(etcd: etcd_client::Client) {
    /// use std::time::Duration;
    /// let discovery = tonic_etcd::Discovery::new(etcd, "helloworld")
    ///     .startup_timeout(Duration::from_secs(10));
    /// # }
    /// ```
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Checks the options, reads the registry, and starts watching it: the
    /// raw stream of changes, for your own consumer.
    ///
    /// When this returns, the stream already holds one `Insert` per instance
    /// found, and [`InstanceChanges::snapshot`] lists them. The background task
    /// is spawned on the current tokio runtime, so this must run inside one.
    /// A discovery that joins a [shared watch](Self#shared-watches) reads
    /// nothing: it starts at once with the watch's current set.
    ///
    /// Fails with [`Error::InvalidServiceName`], [`Error::InvalidNamespace`],
    /// [`Error::Etcd`] if the initial Get fails, or [`Error::Timeout`] if it
    /// takes longer than the [`startup_timeout`](Self::startup_timeout). A
    /// page of the Get that fails on its way (a member of the cluster down or
    /// electing a leader) is sent again up to 4 times within 300 ms first.
    ///
    /// ```no_run
    /// # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
    /// use futures_util::StreamExt;
    ///
    /// let mut changes = tonic_etcd::Discovery::new(etcd, "helloworld").changes().await?;
    /// println!("now: {:?}", changes.snapshot());
    /// while let Some(change) = changes.next().await {
    ///     println!("{change:?}");
    /// }
    /// # Ok(()) }
    /// ```
    #[instrument(name = "discovery_start", skip(self), fields(service = %self.service))]
    pub async fn changes(self) -> Result<InstanceChanges> {
        validate_service_name(&self.service)?;
        let namespace = resolve_namespace(self.codec.as_ref(), self.namespace.as_deref())?;
        let prefix = self.codec.service_prefix(namespace, &self.service);

        let params = Params {
            client: self.client.clone(),
            service: self.service.clone(),
            prefix,
            codec: self.codec,
            version: self.version,
            filter: self.filter,
            startup_timeout: self.startup_timeout,
        };
        let servers = match &self.sharing {
            Sharing::Hub(hub) => hub.start(None, params).await?,
            Sharing::Auto(own) => match connection_of(&self.client) {
                Some(connection) => Watches::process().start(Some(connection), params).await?,
                None => own.start(None, params).await?,
            },
        };
        match self.subset {
            None => Ok(InstanceChanges::new(servers.rx, servers.shared)),
            Some(subset) => {
                subset::start(
                    &self.client,
                    &self.service,
                    subset,
                    servers,
                    self.startup_timeout,
                )
                .await
            }
        }
    }
}
