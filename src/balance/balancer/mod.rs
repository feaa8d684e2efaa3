//! The crate's own balancer ([`Balancer`]): the service, its builder, and the
//! policies. The endpoint set lives in `endpoints`, the request flow with its
//! retry in `call`, the picking rules in `picker`, the load in `load`.

mod call;
mod endpoints;
mod load;
mod picker;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;
use tonic::body::Body;
use tonic::transport::Endpoint;
use tracing::{info_span, Instrument};

use crate::discovery::{Discovery, InstanceChanges};
use crate::endpoint::default_endpoint;
use crate::error::Result;
use crate::instance::Instance;
use endpoints::Shared;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Turns an instance into the tonic endpoint to connect to.
type Template = Arc<dyn Fn(&Instance) -> Result<Endpoint> + Send + Sync>;

/// How a [`Balancer`] chooses among the ready endpoints.
///
/// Parsed from and displayed as `round-robin`, `weighted` and `p2c`:
///
/// ```
/// use tonic_etcd::Policy;
///
/// let policy: Policy = "weighted".parse()?;
/// assert_eq!(policy, Policy::Weighted);
/// assert_eq!(policy.to_string(), "weighted");
/// # Ok::<(), tonic_etcd::balance::ParsePolicyError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Policy {
    /// Strict rotation over the ready endpoints, in key order.
    #[default]
    RoundRobin,
    /// Smooth weighted round robin over the instances' registry weights.
    Weighted,
    /// Power of two choices over a peak-EWMA load (response time × requests in
    /// flight).
    P2c,
}

impl Policy {
    /// Every policy, in the order of the docs.
    pub const ALL: [Policy; 3] = [Policy::RoundRobin, Policy::Weighted, Policy::P2c];

    /// The name used by [`FromStr`] and [`Display`](fmt::Display).
    pub fn name(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round-robin",
            Policy::Weighted => "weighted",
            Policy::P2c => "p2c",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Policy {
    type Err = ParsePolicyError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Policy::ALL
            .into_iter()
            .find(|policy| policy.name() == s)
            .ok_or_else(|| ParsePolicyError {
                input: s.to_owned(),
            })
    }
}

/// A policy name that is not `round-robin`, `weighted` or `p2c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsePolicyError {
    input: String,
}

impl fmt::Display for ParsePolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown balancing policy {:?}: expected round-robin, weighted or p2c",
            self.input
        )
    }
}

impl std::error::Error for ParsePolicyError {}

/// The crate's own load balancer: a cloneable [`tower::Service`] that any tonic
/// generated client can use, fed by a [`Discovery`].
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tonic_etcd::{Discovery, Policy};
///
/// let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
/// let balancer = Discovery::new(etcd, "helloworld").balancer(Policy::RoundRobin).await?;
/// // let mut client = GreeterClient::new(balancer);
/// # Ok(()) }
/// ```
///
/// Every discovered instance gets one lazily connected tonic
/// [`Channel`](tonic::transport::Channel)
/// (built by an endpoint template, [`default_endpoint`] unless
/// [set](BalancerBuilder::endpoint)), and each request goes to one of the
/// *ready* endpoints, chosen by the [`Policy`]:
///
/// - [`Policy::RoundRobin`]: strict rotation over the ready endpoints in key
///   order; 30 sequential requests over three endpoints give exactly 10 each.
/// - [`Policy::Weighted`]: smooth weighted round robin (nginx's) over the
///   [`Instance::weight`]s in the registry, exact over each round of
///   `sum(weights)` requests and spread out within it. A weight changed with
///   [`Registration::update`](crate::Registration::update) applies as soon as
///   discovery sees it, without reconnecting.
/// - [`Policy::P2c`]: power of two choices over a peak-EWMA load, as in
///   [`tower::load::PeakEwma`]: for two ready endpoints drawn at random, the one
///   with the lower `response time estimate × (requests in flight + 1)` wins.
///   The estimate follows a slower response at once and a faster one over a
///   10 s decay; it is measured until the response headers arrive.
///
/// # Behaviour
///
/// - **Fail fast.** With no ready endpoint, a request fails at once with
///   `UNAVAILABLE` ("no ready endpoint for service …"), or after waiting up to
///   [`wait_for_endpoint`](BalancerBuilder::wait_for_endpoint) for one. It never
///   hangs, and `poll_ready` is always ready: the balancer never holds a
///   request back.
/// - **Unreachable endpoints are ejected.** When a request cannot connect to
///   its endpoint (tonic reports a [`ConnectError`](tonic::ConnectError): refused,
///   connect timeout, TLS handshake), the endpoint leaves the ready set at once.
///   A background probe connects to it again and again, with jittered backoff
///   from 100 ms doubling to 5 s; once it connects, the endpoint is ready again,
///   with that fresh connection. Removing the instance stops the probe.
/// - **Requests that were not sent are retried.** A request whose connection
///   could not be made never left the process: it is sent again to another
///   ready endpoint. One whose connection closed while it waited for it (hyper
///   cancels it unsent) is sent once more to the same endpoint, on a new
///   connection, then to others. Each connection gets one attempt per request;
///   with a [wait](BalancerBuilder::wait_for_endpoint), a request whose
///   endpoints are all ejected waits for one to come back.
///   Requests that failed after something was sent are not retried: they may
///   have run. Killing a server therefore costs only the requests already
///   written to its connection when it died: under a steady load, none or one.
///   A request sent again carries the same method, URI and headers but not the
///   request's [extensions](http::Extensions), which tonic's channel does not
///   read. The wait for an endpoint counts from the request's start.
/// - **Discovery changes apply at once**, whether requests flow or not: a task
///   reads the [`InstanceChanges`] stream and updates the set on every change. The
///   instances of the initial Get are known when the balancer is built.
/// - The task, the discovery with its etcd watch, and the probes stop when
///   every clone of the balancer has been dropped. Requests in flight finish.
///
/// Clones share the endpoints, connections and pickers. The errors it returns
/// are tonic's transport errors and, when no endpoint is ready, a
/// [`tonic::Status`] with code `UNAVAILABLE`; tonic clients turn both into a
/// `Status`.
///
/// With a custom endpoint template or a wait for the first endpoint:
///
/// ```no_run
/// # async fn run(discovered: tonic_etcd::InstanceChanges) {
/// use std::time::Duration;
/// use tonic_etcd::{endpoint::default_endpoint, Balancer, Policy};
///
/// let balancer = Balancer::builder(Policy::Weighted)
///     .endpoint(|i| Ok(default_endpoint(i)?.timeout(Duration::from_secs(2))))
///     .wait_for_endpoint(Duration::from_millis(500))
///     .build(discovered);
/// // let mut client = GreeterClient::new(balancer.clone());
/// # }
/// ```
///
/// # Limits
///
/// - An endpoint is judged only by whether it can be connected to. A server
///   that accepts connections and then fails every request stays in the set;
///   its errors reach the caller.
/// - A black-holed address costs each request that tries it the endpoint's
///   `connect_timeout` (1 s with [`default_endpoint`]) before the retry.
/// - A server that dies while requests are on its connection (in flight, or
///   written in the instant before the client saw the connection close) fails
///   those requests: they may have reached it. The next request reconnects,
///   fails to connect, ejects the endpoint and is retried elsewhere.
/// - An HTTP/2 `REFUSED_STREAM` or a `GOAWAY` that excludes a request is not
///   recognised as "not processed": such requests fail instead of being retried.
#[derive(Clone)]
pub struct Balancer {
    shared: Arc<Shared>,
    // Dropped with the last clone, which stops the driver.
    _driver: Arc<DriverGuard>,
}

#[derive(Debug)]
struct DriverGuard {
    _stop: oneshot::Sender<()>,
}

impl fmt::Debug for Balancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (known, ejected) = self.shared.counts();
        f.debug_struct("Balancer")
            .field("service", &self.shared.service())
            .field("policy", &self.shared.policy())
            .field("endpoints", &known)
            .field("ejected", &ejected)
            .finish()
    }
}

impl Balancer {
    /// A balancer over `discovered` with `policy` and the builder's defaults.
    ///
    /// Spawns its task on the current tokio runtime, so this must be called
    /// inside one.
    pub fn new(discovered: InstanceChanges, policy: Policy) -> Balancer {
        Balancer::builder(policy).build(discovered)
    }

    /// A builder, to set the endpoint template or the wait for an endpoint.
    pub fn builder(policy: Policy) -> BalancerBuilder {
        BalancerBuilder {
            policy,
            template: Arc::new(default_endpoint),
            wait: Duration::ZERO,
        }
    }

    /// The balanced service's name.
    pub fn service(&self) -> &str {
        self.shared.service()
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.shared.policy()
    }

    /// The endpoints now, sorted by key, each ready or ejected.
    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        self.shared.statuses()
    }
}

/// One endpoint of a [`Balancer`], from [`Balancer::endpoints`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStatus {
    /// The discovery key (the instance's identity).
    pub key: String,
    /// The instance as last discovered.
    pub instance: Instance,
    /// Whether requests may go to it: false while it is ejected because it
    /// could not be connected to.
    pub ready: bool,
}

/// Builder of a [`Balancer`], from [`Balancer::builder`].
pub struct BalancerBuilder {
    policy: Policy,
    template: Template,
    wait: Duration,
}

impl fmt::Debug for BalancerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalancerBuilder")
            .field("policy", &self.policy)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl BalancerBuilder {
    /// Sets the template that turns an instance into a tonic [`Endpoint`]
    /// (TLS, timeouts, …). An instance it refuses is logged and left out.
    /// Defaults to [`default_endpoint`].
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

    /// Builds the balancer over `discovered`, already knowing the instances
    /// queued in it, and spawns its task on the current tokio runtime (so this
    /// must be called inside one).
    pub fn build(self, mut discovered: InstanceChanges) -> Balancer {
        let handle = discovered.view();
        let shared = Arc::new(Shared::new(
            handle.service().to_owned(),
            self.policy,
            self.template,
            self.wait,
        ));
        shared.apply_queued(&mut discovered);
        let (stop_tx, stop_rx) = oneshot::channel();
        let span = info_span!(
            parent: None,
            "balancer",
            service = %handle.service(),
            policy = %self.policy
        );
        tokio::spawn(endpoints::drive(shared.clone(), discovered, stop_rx).instrument(span));
        Balancer {
            shared,
            _driver: Arc::new(DriverGuard { _stop: stop_tx }),
        }
    }
}

impl tower::Service<http::Request<Body>> for Balancer {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    /// Always ready: a request that finds no endpoint fails in its future.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        ResponseFuture {
            call: call::Call::start(self.shared.clone(), request),
        }
    }
}

/// The response future of a [`Balancer`].
pub struct ResponseFuture {
    call: call::Call,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = std::result::Result<http::Response<Body>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.call).poll(cx)
    }
}

impl Discovery {
    /// Starts the discovery and returns a [`Balancer`] over its instances with
    /// `policy` and [`default_endpoint`]. For other settings, use
    /// [`Balancer::builder`] with [`Discovery::changes`].
    ///
    /// Fails as [`Discovery::changes`] does. Must be called inside a tokio runtime.
    pub async fn balancer(self, policy: Policy) -> Result<Balancer> {
        Ok(Balancer::new(self.changes().await?, policy))
    }
}

const _: () = {
    const fn assert_bounds<T: Send + Sync + Clone + Unpin + 'static>() {}
    const fn assert_send_sync<T: Send + Sync>() {}
    const fn assert_send<T: Send>() {}
    assert_bounds::<Balancer>();
    assert_bounds::<Policy>();
    assert_bounds::<EndpointStatus>();
    assert_send_sync::<BalancerBuilder>();
    assert_send_sync::<ParsePolicyError>();
    assert_send::<ResponseFuture>();
};
