//! [`Balancer`]: the crate's load balancer, a cloneable `tower::Service`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::oneshot;
use tonic::body::Body;
use tracing::{Instrument, Span};

use super::call::{BoxError, Call};
use super::policy::Policy;
use super::shared::Shared;
use super::status::EndpointStatus;
use super::tasks::{self, Changes};
use crate::discovery::DiscoveryView;

/// The crate's own load balancer: a cloneable [`tower::Service`] that any tonic
/// generated client can use, fed by a [`Discovery`](crate::Discovery) or by any
/// stream of [`Change`](crate::Change)s.
///
/// Build one with [`Discovery::balancer`](crate::Discovery::balancer), or,
/// for its options, with [`Balancer::builder`] and then
/// [`discover`](super::BalancerBuilder::discover) (a discovery) or
/// [`build`](super::BalancerBuilder::build) (any stream):
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
/// Every instance gets one lazily connected tonic
/// [`Channel`](tonic::transport::Channel)
/// (built by an endpoint template,
/// [`default_endpoint`](crate::endpoint::default_endpoint) unless
/// [set](super::BalancerBuilder::endpoint)), and each request goes to one of the
/// *ready* endpoints, chosen by the [`Policy`]:
///
/// - [`Policy::RoundRobin`]: strict rotation over the ready endpoints in key
///   order; 30 sequential requests over three endpoints give exactly 10 each.
/// - [`Policy::Weighted`]: weighted round robin over the
///   [`Instance::weight`](crate::Instance::weight)s in the registry, exact over
///   each round of `sum(weights)` requests and spread out within it. A weight
///   changed with [`Registration::update`](crate::Registration::update)
///   applies as soon as discovery sees it, without reconnecting.
/// - [`Policy::P2c`]: power of two choices over a peak-EWMA load, as in
///   [`tower::load::PeakEwma`]: for two ready endpoints drawn at random, the one
///   with the lower `response time estimate × (requests in flight + 1)` wins.
///   The estimate follows a slower response at once and a faster one over a
///   10 s decay; it is measured until the response headers arrive.
/// - [`Policy::ConsistentHash`]: the endpoint of the request's key
///   ([`HashKey`](crate::balance::HashKey) extension or key header) on a hash
///   ring, passed over for the next one on the ring while it has more than
///   its bounded share of the requests in flight; keyless requests in turn.
///
/// Two options shape where the policy picks, both off by default:
///
/// - [`locality`](super::BalancerBuilder::locality): the endpoints of the
///   client's zone ([`Locality`](crate::Locality)) take the requests while
///   enough of them are ready; below that, a share that grows smoothly with
///   each missing endpoint spills over to the other zones. The policy picks
///   within the group chosen.
/// - [`slow_start`](super::BalancerBuilder::slow_start): an endpoint that joins
///   or comes back into rotation gets a share of the requests that ramps up
///   over a window ([`SlowStart`](crate::SlowStart), after Envoy's).
///
/// # Behaviour
///
/// - **Fail fast.** With no ready endpoint, a request fails at once with
///   `UNAVAILABLE` ("no ready endpoint for service …"), or after waiting up to
///   [`wait_for_endpoint`](super::BalancerBuilder::wait_for_endpoint) for one. It never
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
///   with a [wait](super::BalancerBuilder::wait_for_endpoint), a request whose
///   endpoints are all ejected waits for one to come back.
///   Requests that failed after something was sent are not retried: they may
///   have run. Killing a server therefore costs only the requests already
///   written to its connection when it died: under a steady load, none or one.
///   A request sent again carries the same method, URI and headers but not the
///   request's [extensions](http::Extensions), which tonic's channel does not
///   read. The wait for an endpoint counts from the request's start.
/// - **Changes apply at once**, whether requests flow or not: a task reads
///   the change stream and updates the set on every change. The changes the
///   stream has ready when the balancer is built (a discovery's initial Get, a
///   static list) are applied before it is returned.
/// - **A stream that ends keeps the last set.** A discovery's stream never
///   ends while it runs; any other stream may (a static list does at once):
///   the balancer then goes on with the endpoints it had, ejecting and
///   probing them as usual, and no instance is added or removed any more.
/// - **Failing endpoints are ejected.** Passive outlier detection (on by
///   default, [`OutlierDetection`](crate::OutlierDetection)) takes out an
///   endpoint after 5 consecutive failures (`UNAVAILABLE`, a connection error
///   after sending, a deadline expired waiting for it), or a failure rate of
///   50 % over at least 20 requests in 10 s, for 30 s × the times ejected (at
///   most 300 s), then readmits it on probation.
/// - **Panic mode.** When every connected endpoint is ejected or unhealthy,
///   requests go to all of them in turn, as if none were
///   ([`panic_mode`](super::BalancerBuilder::panic_mode), on by default;
///   its picks scan the endpoints, a slower path for an emergency).
/// - **A set empty for a moment fails nothing.** A removal that would leave
///   no ready endpoint waits for the
///   [`removal_grace`](super::BalancerBuilder::removal_grace) (1 s); an
///   insert meanwhile ends the wait.
/// - **Health checks** (opt-in,
///   [`health_check`](super::BalancerBuilder::health_check)) take out an
///   endpoint whose `grpc.health.v1` service does not report `SERVING`.
/// - Every endpoint state change is an `info` event with the fields
///   `service`, `endpoint` and `reason`; each request has a `debug` span
///   naming its endpoint. [`Balancer::endpoints`] reports each endpoint's
///   state, reason, counters and latency estimate.
/// - The task, the stream (with a discovery, its etcd watch), and the probes
///   stop when every clone of the balancer has been dropped. Requests in
///   flight finish.
///
/// Clones share the endpoints, connections and pickers. The errors it returns
/// are tonic's transport errors and, when no endpoint is ready, a
/// [`tonic::Status`] with code `UNAVAILABLE`; tonic clients turn both into a
/// `Status`.
///
/// # Limits
///
/// - Outlier detection reads the gRPC code of the response head only: a
///   streaming call that fails after its first message (the code in the
///   trailers) counts as answered. Until an endpoint is ejected, its failures
///   reach the callers (5 with the defaults).
/// - A black-holed address costs each request that tries it the endpoint's
///   `connect_timeout` (1 s with the default template) before the retry.
/// - A server that dies while requests are on its connection (in flight, or
///   written in the instant before the client saw the connection close) fails
///   those requests: they may have reached it. The next request reconnects,
///   fails to connect, ejects the endpoint and is retried elsewhere.
/// - An HTTP/2 `REFUSED_STREAM` or a `GOAWAY` that excludes a request is not
///   recognised as "not processed": such requests fail instead of being retried.
#[derive(Clone)]
pub struct Balancer {
    shared: Arc<Shared>,
    discovery: Option<DiscoveryView>,
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
            .field(
                "discovery",
                &self.discovery.as_ref().map(DiscoveryView::prefix),
            )
            .finish()
    }
}

impl Balancer {
    /// Applies what `changes` has ready, then spawns the driver in `span` on
    /// the current tokio runtime.
    pub(super) fn start(
        shared: Arc<Shared>,
        mut changes: Changes,
        discovery: Option<DiscoveryView>,
        span: Span,
    ) -> Balancer {
        tasks::apply_ready(&shared, &mut changes);
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(tasks::drive(shared.clone(), changes, stop_rx).instrument(span));
        Balancer {
            shared,
            discovery,
            _driver: Arc::new(DriverGuard { _stop: stop_tx }),
        }
    }

    /// The balanced service's name: the one [set](super::BalancerBuilder::service)
    /// on the builder, else the discovery's service; empty for a balancer
    /// built from a stream without a name.
    ///
    /// ```no_run
    /// # fn f(balancer: tonic_etcd::Balancer) {
    /// println!("balancing {}", balancer.service());
    /// # }
    /// ```
    pub fn service(&self) -> &str {
        self.shared.service()
    }

    /// The policy.
    ///
    /// ```no_run
    /// # fn f(balancer: tonic_etcd::Balancer) {
    /// assert_eq!(balancer.policy(), tonic_etcd::Policy::RoundRobin);
    /// # }
    /// ```
    pub fn policy(&self) -> Policy {
        self.shared.policy()
    }

    /// The endpoints now, sorted by key, each with its state (ready,
    /// connecting, ejected, unhealthy), why, its counters and its latency
    /// estimate: see [`EndpointStatus`].
    ///
    /// ```no_run
    /// # fn f(balancer: tonic_etcd::Balancer) {
    /// let ready = balancer.endpoints().iter().filter(|e| e.ready).count();
    /// println!("{ready} ready endpoints");
    /// # }
    /// ```
    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        self.shared.statuses()
    }

    /// The discovery that feeds this balancer, for its snapshot and health:
    /// `Some` when it was built from a [`Discovery`](crate::Discovery)
    /// ([`Discovery::balancer`](crate::Discovery::balancer),
    /// [`BalancerBuilder::discover`](super::BalancerBuilder::discover)),
    /// `None` when it was built from another stream.
    ///
    /// ```no_run
    /// # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
    /// use tonic_etcd::{Discovery, Policy};
    ///
    /// let balancer = Discovery::new(etcd, "helloworld").balancer(Policy::RoundRobin).await?;
    /// let discovery = balancer.discovery().expect("fed by a discovery");
    /// if !discovery.health().borrow().is_connected() {
    ///     eprintln!("etcd lost; balancing over the last known set");
    /// }
    /// println!("{} instances", discovery.snapshot().len());
    /// # Ok(()) }
    /// ```
    pub fn discovery(&self) -> Option<&DiscoveryView> {
        self.discovery.as_ref()
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
            call: Call::start(self.shared.clone(), request),
        }
    }
}

/// The response future of a [`Balancer`]: what `Balancer::call` returns.
///
/// ```no_run
/// # async fn run(mut balancer: tonic_etcd::Balancer) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use tower::Service;
///
/// let request = http::Request::new(tonic::body::Body::empty());
/// let future: tonic_etcd::balance::ResponseFuture = balancer.call(request);
/// let response = future.await?;
/// # Ok(()) }
/// ```
pub struct ResponseFuture {
    call: Call,
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
