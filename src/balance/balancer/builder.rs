//! [`BalancerBuilder`]: the options of a [`Balancer`], and the two ways to
//! feed it: a [`Discovery`] ([`discover`](BalancerBuilder::discover)) or any
//! stream ([`build`](BalancerBuilder::build)).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use tonic::transport::Endpoint;
use tower::discover::Change;
use tracing::info_span;

use super::locality::Locality;
use super::outlier::OutlierDetection;
use super::policy::Policy;
use super::service::Balancer;
use super::shared::{Options, Shared, Template};
use super::slow_start::SlowStart;
use crate::discovery::{Discovery, DiscoveryView};
use crate::endpoint::default_endpoint;
use crate::error::Result;
use crate::instance::Instance;

impl Balancer {
    /// A builder, to set the endpoint template, the wait for an endpoint, or
    /// the service name; then feed it a [`Discovery`] with
    /// [`discover`](BalancerBuilder::discover) or any stream with
    /// [`build`](BalancerBuilder::build).
    ///
    /// ```no_run
    /// # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
    /// use std::time::Duration;
    /// use tonic_etcd::{endpoint::default_endpoint, Balancer, Discovery, Policy};
    ///
    /// let balancer = Balancer::builder(Policy::Weighted)
    ///     .endpoint(|i| Ok(default_endpoint(i)?.timeout(Duration::from_secs(2))))
    ///     .wait_for_endpoint(Duration::from_millis(500))
    ///     .discover(Discovery::new(etcd, "helloworld"))
    ///     .await?;
    /// // let mut client = GreeterClient::new(balancer);
    /// # Ok(()) }
    /// ```
    pub fn builder(policy: Policy) -> BalancerBuilder {
        BalancerBuilder {
            policy,
            service: None,
            template: Arc::new(default_endpoint),
            wait: Duration::ZERO,
            options: Options::default(),
        }
    }
}

/// Builder of a [`Balancer`], from [`Balancer::builder`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> tonic_etcd::Result<()> {
/// use futures_util::stream::{self, StreamExt};
/// use tonic_etcd::{Balancer, Change, Instance, Policy};
///
/// // A static list of instances, kept open so that it never ends.
/// let instances = ["10.0.0.7:50051", "10.0.0.8:50051"]
///     .map(|addr| Instance::new("helloworld", addr));
/// let mut changes = Vec::new();
/// for instance in instances {
///     let instance = instance?;
///     changes.push(Change::Insert(instance.addr.clone(), instance));
/// }
/// let balancer = Balancer::builder(Policy::RoundRobin)
///     .service("helloworld")
///     .build(stream::iter(changes).chain(stream::pending()));
/// assert_eq!(balancer.endpoints().len(), 2);
/// assert!(balancer.discovery().is_none());
/// # Ok(()) }
/// ```
pub struct BalancerBuilder {
    policy: Policy,
    service: Option<String>,
    template: Template,
    wait: Duration,
    options: Options,
}

impl fmt::Debug for BalancerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalancerBuilder")
            .field("policy", &self.policy)
            .field("service", &self.service)
            .field("wait", &self.wait)
            .field("outlier_detection", &self.options.outlier)
            .field("panic_mode", &self.options.panic_mode)
            .field("health_check", &self.options.health_check)
            .field("removal_grace", &self.options.removal_grace)
            .field("hashing", &self.options.hashing)
            .field("locality", &self.options.locality)
            .field("slow_start", &self.options.slow_start)
            .finish_non_exhaustive()
    }
}

impl BalancerBuilder {
    /// Sets the name of the balanced service, shown in the balancer's logs and
    /// in its "no ready endpoint for service …" errors. Defaults to the
    /// discovery's service with [`discover`](Self::discover), and to none with
    /// [`build`](Self::build).
    ///
    /// ```
    /// use tonic_etcd::{Balancer, Policy};
    ///
    /// let builder = Balancer::builder(Policy::RoundRobin).service("helloworld");
    /// ```
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service = Some(name.into());
        self
    }

    /// Sets the template that turns an instance into a tonic [`Endpoint`]
    /// (TLS, timeouts, …). An instance it refuses is logged and left out.
    /// Defaults to [`default_endpoint`].
    ///
    /// It runs when an instance joins, to refuse what it cannot build, and
    /// again when the endpoint is first picked and on each reconnection (an
    /// idle endpoint holds no `Endpoint`): it must be a pure function of the
    /// instance.
    ///
    /// Keep a `connect_timeout`: it bounds how long a request waits on an
    /// unreachable address before it is retried elsewhere.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tonic_etcd::{endpoint::default_endpoint, Balancer, Policy};
    ///
    /// let builder = Balancer::builder(Policy::RoundRobin)
    ///     .endpoint(|i| Ok(default_endpoint(i)?.timeout(Duration::from_secs(2))));
    /// ```
    pub fn endpoint<F>(mut self, template: F) -> Self
    where
        F: Fn(&Instance) -> Result<Endpoint> + Send + Sync + 'static,
    {
        self.template = Arc::new(template);
        self
    }

    /// Sets how long a request waits for a ready endpoint when there is none,
    /// before failing with `UNAVAILABLE`. Defaults to zero: fail at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tonic_etcd::{Balancer, Policy};
    ///
    /// let builder = Balancer::builder(Policy::RoundRobin)
    ///     .wait_for_endpoint(Duration::from_secs(1));
    /// ```
    pub fn wait_for_endpoint(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Sets passive outlier detection: which failures take an endpoint out
    /// of rotation, and for how long. On by default with
    /// [`OutlierDetection::new`]'s settings (5 consecutive failures, or 50 %
    /// of at least 20 requests in 10 s; ejected for 30 s × the times ejected,
    /// up to 300 s; at most 10 % of the endpoints, but always one);
    /// [`OutlierDetection::disabled`] turns it off.
    ///
    /// ```
    /// use tonic_etcd::{Balancer, OutlierDetection, Policy};
    ///
    /// let builder = Balancer::builder(Policy::RoundRobin)
    ///     .outlier_detection(OutlierDetection::new().consecutive_failures(3));
    /// let off = Balancer::builder(Policy::RoundRobin)
    ///     .outlier_detection(OutlierDetection::disabled());
    /// ```
    pub fn outlier_detection(mut self, detection: OutlierDetection) -> Self {
        self.options.outlier = detection;
        self
    }

    /// Sets panic mode (on by default): when outlier detection and health
    /// checks have taken out every connected endpoint, requests go to all of
    /// them as if none were out, rather than failing (as Envoy does).
    /// Endpoints that cannot be connected to stay out either way. Off, such
    /// requests fail with `UNAVAILABLE` ("no ready endpoint"). In panic mode
    /// the balancer picks in turn, in key order, whatever the policy, by a
    /// scan of the endpoints: O(n) per pick at worst rather than the usual
    /// O(1) or O(log n), a cost paid only in that emergency.
    ///
    /// ```
    /// use tonic_etcd::{Balancer, Policy};
    ///
    /// let builder = Balancer::builder(Policy::RoundRobin).panic_mode(false);
    /// ```
    pub fn panic_mode(mut self, on: bool) -> Self {
        self.options.panic_mode = on;
        self
    }

    /// Turns on active health checks (gRPC's client-side health checking):
    /// one `grpc.health.v1.Health/Watch` stream per endpoint connection, for
    /// `service` (`""` for the server as a whole). `NOT_SERVING` or
    /// `SERVICE_UNKNOWN` takes the endpoint out of rotation until it reports
    /// `SERVING`; a server without the health service (`UNIMPLEMENTED`)
    /// counts as healthy, with one warning; a failed stream is retried with
    /// backoff and changes nothing by itself. An endpoint is in rotation
    /// until its first answer. Off by default: no health stream is opened.
    ///
    /// ```
    /// use tonic_etcd::{Balancer, Policy};
    ///
    /// let builder = Balancer::builder(Policy::RoundRobin).health_check("helloworld.Greeter");
    /// ```
    pub fn health_check(mut self, service: impl Into<String>) -> Self {
        self.options.health_check = Some(service.into());
        self
    }

    /// Sets how long a removal that would leave no ready endpoint waits
    /// before it takes effect (default 1 s; zero: at once). A set that
    /// empties for a moment (every lease revoked at once, the servers
    /// registering again a moment later) then fails no request: the last
    /// endpoint keeps its requests until an instance is inserted (which ends
    /// the wait) or the grace is over. A set that stays empty still fails
    /// fast after it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tonic_etcd::{Balancer, Policy};
    ///
    /// let builder = Balancer::builder(Policy::RoundRobin)
    ///     .removal_grace(Duration::from_millis(500));
    /// ```
    pub fn removal_grace(mut self, grace: Duration) -> Self {
        self.options.removal_grace = grace;
        self
    }

    /// Sets the request header that carries a request's key under
    /// [`Policy::ConsistentHash`] (gRPC metadata of that name; a
    /// [`HashKey`](crate::balance::HashKey) extension takes precedence).
    /// Defaults to [`DEFAULT_HASH_KEY_HEADER`](crate::balance::DEFAULT_HASH_KEY_HEADER),
    /// `x-hash-key`. The value's bytes are hashed as
    /// [`HashKey::new`](crate::balance::HashKey::new) hashes its key.
    ///
    /// ```
    /// use http::HeaderName;
    /// use tonic_etcd::{Balancer, Policy};
    ///
    /// let builder = Balancer::builder(Policy::ConsistentHash)
    ///     .hash_key_header(HeaderName::from_static("x-user-id"));
    /// ```
    pub fn hash_key_header(mut self, name: http::HeaderName) -> Self {
        self.options.hashing.header = name;
        self
    }

    /// Sets the bounded-load factor c of [`Policy::ConsistentHash`]: an
    /// endpoint with ⌈c × (requests in flight + 1) / n⌉ requests in flight or
    /// more, over n ready endpoints, is passed over for the next one on the
    /// ring (Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with
    /// Bounded Loads", SODA 2018). Smaller spreads a hot key sooner; larger
    /// keeps keys home longer. Defaults to 1.25; values below 1 (or NaN) are
    /// taken as 1; [`f64::INFINITY`] turns the bound off.
    ///
    /// ```
    /// use tonic_etcd::{Balancer, Policy};
    ///
    /// let builder = Balancer::builder(Policy::ConsistentHash).hash_load_factor(1.5);
    /// ```
    pub fn hash_load_factor(mut self, factor: f64) -> Self {
        self.options.hashing.factor = if factor >= 1.0 { factor } else { 1.0 };
        self
    }

    /// Sets how many points each endpoint puts on the ring of
    /// [`Policy::ConsistentHash`], from 1 to 1024. More spread the keys more
    /// evenly (an endpoint's share varies by about 1/sqrt(points)) and cost
    /// more memory and time: about 15 bytes per point (1.5 KB per endpoint
    /// at the default, measured at 100,000 endpoints), and a join or leave
    /// places or takes out each point. Every client of a fleet must use the
    /// same number to send a key to the same server. Defaults to 100; at
    /// 100,000 endpoints, consider fewer (20: about 30 MB rather than 150 MB).
    ///
    /// ```
    /// use tonic_etcd::{Balancer, Policy};
    ///
    /// let builder = Balancer::builder(Policy::ConsistentHash).hash_ring_vnodes(200);
    /// ```
    pub fn hash_ring_vnodes(mut self, points: u32) -> Self {
        self.options.hashing.vnodes = points;
        self
    }

    /// Sets locality-aware routing: the client's zone, whose endpoints (those
    /// with the metadata `zone` of that name) take the requests while enough
    /// of them are ready, the other zones and the endpoints without a zone
    /// taking a share that grows smoothly as the zone's ready endpoints fall
    /// below the threshold (see [`Locality`] for the rule and its defaults:
    /// 70 % of the zone's endpoints, and at least one). Composes with every
    /// policy: each picks within the group chosen. Defaults to none: every
    /// endpoint alike, whatever its zone.
    ///
    /// ```
    /// use tonic_etcd::{Balancer, Locality, Policy};
    ///
    /// let builder = Balancer::builder(Policy::P2c).locality(Locality::new("eu-west-1a"));
    /// let strict = Balancer::builder(Policy::RoundRobin)
    ///     .locality(Locality::new("a").min_ready_fraction(1.0).min_ready(2));
    /// ```
    pub fn locality(mut self, locality: Locality) -> Self {
        self.options.locality = Some(locality);
        self
    }

    /// Sets slow start: an endpoint that joins while others are ready, or
    /// comes back into rotation (reconnected, readmitted after an ejection,
    /// healthy again), gets a share of the requests that ramps from 10 % of
    /// its weight to all of it over the window (see [`SlowStart`] for the
    /// curve, after Envoy's). Weighted round robin and p2c read the ramp;
    /// round robin with slow start schedules by weight, all equal but the
    /// ramping endpoints'. Defaults to off.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tonic_etcd::{Balancer, Policy, SlowStart};
    ///
    /// let builder = Balancer::builder(Policy::Weighted)
    ///     .slow_start(SlowStart::new(Duration::from_secs(30)));
    /// ```
    pub fn slow_start(mut self, slow_start: SlowStart) -> Self {
        self.options.slow_start = Some(slow_start);
        self
    }

    /// Starts `discovery` and builds the balancer over it, already knowing
    /// the instances of its initial Get. The balancer keeps a view of the
    /// discovery: [`Balancer::discovery`].
    ///
    /// Fails as [`Discovery::changes`] does (bad options, etcd's error, or no
    /// answer within the discovery's
    /// [`startup_timeout`](Discovery::startup_timeout)). Spawns its task on the
    /// current tokio runtime, so this must be called inside one.
    ///
    /// ```no_run
    /// # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
    /// use tonic_etcd::{Balancer, Discovery, Policy};
    ///
    /// let balancer = Balancer::builder(Policy::P2c)
    ///     .discover(Discovery::new(etcd, "helloworld").namespace("/prod"))
    ///     .await?;
    /// assert_eq!(balancer.service(), "helloworld");
    /// # Ok(()) }
    /// ```
    pub async fn discover(self, discovery: Discovery) -> Result<Balancer> {
        let changes = discovery.changes().await?;
        let view = changes.view();
        Ok(self.start(Box::pin(changes), Some(view)))
    }

    /// [`discover`](Self::discover) with subsetting: the balancer holds only
    /// `subset.size()` of the instances, chosen for this client among the
    /// service's subsetting clients ([`Discovery::subset`], which this
    /// forwards to; algorithm and sources in
    /// [`discovery::subset`](crate::discovery::subset)).
    ///
    /// ```no_run
    /// # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
    /// use tonic_etcd::{discovery::Subset, Balancer, Discovery, Policy};
    ///
    /// let balancer = Balancer::builder(Policy::RoundRobin)
    ///     .discover_subset(Discovery::new(etcd, "helloworld"), Subset::new(10))
    ///     .await?;
    /// assert!(balancer.endpoints().len() <= 10);
    /// # Ok(()) }
    /// ```
    pub async fn discover_subset(
        self,
        discovery: Discovery,
        subset: crate::discovery::Subset,
    ) -> Result<Balancer> {
        self.discover(discovery.subset(subset)).await
    }

    /// Builds the balancer over any stream of changes: a static list, a test
    /// stream, another registry. The changes the stream has ready now are
    /// applied before this returns; the rest as they come.
    ///
    /// Keys are the instances' identities: an `Insert` of a key already there
    /// replaces its instance, a `Remove` takes it out. If the stream ends, the
    /// balancer keeps the last set (see [`Balancer`]'s behaviour); chain
    /// [`stream::pending`](futures_util::stream::pending) to a list to say
    /// that it is all there is. Spawns its task on the current tokio runtime,
    /// so this must be called inside one. See [`BalancerBuilder`] for an
    /// example.
    ///
    /// ```no_run
    /// # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
    /// use tonic_etcd::{Balancer, Discovery, Policy};
    ///
    /// // The raw changes of a discovery work too (without Balancer::discovery).
    /// let changes = Discovery::new(etcd, "helloworld").changes().await?;
    /// let balancer = Balancer::builder(Policy::RoundRobin).build(changes);
    /// # Ok(()) }
    /// ```
    pub fn build<S>(self, changes: S) -> Balancer
    where
        S: Stream<Item = Change<String, Instance>> + Send + 'static,
    {
        self.start(Box::pin(changes), None)
    }

    fn start(self, changes: super::tasks::Changes, discovery: Option<DiscoveryView>) -> Balancer {
        let service = self
            .service
            .or_else(|| discovery.as_ref().map(|view| view.service().to_owned()))
            .unwrap_or_default();
        let span = info_span!(parent: None, "balancer", service = %service, policy = %self.policy);
        let shared = Arc::new(Shared::with_options(
            service,
            self.policy,
            self.template,
            self.wait,
            self.options,
        ));
        Balancer::start(shared, changes, discovery, span)
    }
}

impl Discovery {
    /// Starts the discovery and returns the crate's [`Balancer`] over its
    /// instances, with `policy` and the builder's defaults: the recommended
    /// client. For other options, use [`Balancer::builder`] and
    /// [`BalancerBuilder::discover`].
    ///
    /// Fails as [`Discovery::changes`] does. Must be called inside a tokio
    /// runtime.
    ///
    /// ```no_run
    /// # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
    /// use tonic_etcd::{Discovery, Policy};
    ///
    /// let balancer = Discovery::new(etcd, "helloworld").balancer(Policy::RoundRobin).await?;
    /// // let mut client = GreeterClient::new(balancer);
    /// # Ok(()) }
    /// ```
    pub async fn balancer(self, policy: Policy) -> Result<Balancer> {
        Balancer::builder(policy).discover(self).await
    }
}
