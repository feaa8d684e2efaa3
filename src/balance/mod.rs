//! Load balancing over a stream of instances: the crate's own [`Balancer`],
//! or tonic's balanced [`Channel`](tonic::transport::Channel). This is the
//! transport seam: the layer above [`discovery`](crate::discovery), and (with
//! [`endpoint`](crate::endpoint) and `tls`) the only one that names tonic
//! types.
//!
//! One headline constructor per client kind:
//!
//! | client | from a [`Discovery`](crate::Discovery) | from any stream of [`Change`](crate::Change)s |
//! |---|---|---|
//! | the crate's [`Balancer`] (recommended) | [`Discovery::balancer`](crate::Discovery::balancer) | [`Balancer::builder`]`(policy).build(stream)` |
//! | tonic's `Channel` | [`Discovery::tonic_channel`](crate::Discovery::tonic_channel) | [`tonic_channel`]`(stream, template)` |
//!
//! Options go through [`Balancer::builder`] (then
//! [`discover`](BalancerBuilder::discover) a discovery) and
//! [`Discovery::tonic_channel_with`](crate::Discovery::tonic_channel_with)
//! (an endpoint template).
//!
//! # The crate's own balancer
//!
//! A [`Balancer`] is a cloneable `tower::Service` for any tonic generated
//! client, with a [`Policy`]: round robin, weighted round robin over
//! the registry weights, power of two choices over peak-EWMA load, or
//! consistent hashing with bounded loads over a request's [`HashKey`]. It fails
//! fast when no endpoint is ready, ejects endpoints it cannot connect to (and
//! probes them back), retries requests that were never sent, and applies
//! changes as they come, with or without traffic. See [`Balancer`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tonic_etcd::{Discovery, Policy};
//!
//! let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
//! let balancer = Discovery::new(etcd, "helloworld").balancer(Policy::RoundRobin).await?;
//! // let mut client = GreeterClient::new(balancer);
//! // Health and snapshot of the discovery that feeds it:
//! let discovery = balancer.discovery().expect("fed by a discovery");
//! # Ok(()) }
//! ```
//!
//! # tonic's balanced channel
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tonic_etcd::{endpoint, Discovery};
//!
//! let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
//!
//! // The settings of `endpoint::default_endpoint`:
//! let channel = Discovery::new(etcd.clone(), "helloworld").tonic_channel().await?;
//!
//! // Or your own endpoint settings, here with a per-request timeout:
//! let channel = Discovery::new(etcd, "helloworld")
//!     .tonic_channel_with(|instance| {
//!         Ok(endpoint::default_endpoint(instance)?.timeout(Duration::from_secs(2)))
//!     })
//!     .await?;
//! // let mut client = GreeterClient::new(channel);
//! # Ok(()) }
//! ```
//!
//! A task (the *driver*) reads the change stream and sends each change to the
//! channel. tonic applies changes only while requests flow, so an idle
//! client's change queue can fill up; the driver never waits on it while
//! reading the stream: it keeps at most one pending change per instance (the
//! latest), drops removals of instances tonic never saw, and hands them over as
//! room appears. The driver, and with it the stream (a discovery and its etcd
//! watch), stops when every clone of the channel has been dropped. A stream
//! that ends leaves the channel with its last set of endpoints.
//!
//! # What tonic's balanced channel does and does not do
//!
//! These come from tonic and tower, not from this crate; the crate's own
//! [`Balancer`] (round robin, weighted, peak-EWMA p2c) addresses each of them.
//!
//! 1. **Random pick.** The channel is tower's power-of-two-choices balancer
//!    with no load metric: each request goes to a random ready endpoint. It is
//!    not round robin and not load-aware.
//! 2. **Unreachable endpoints stay.** An instance that is registered but cannot
//!    be reached stays in the balancer and keeps failing the requests sent to
//!    it, until discovery removes it (when its lease expires). The short
//!    `connect_timeout` of [`default_endpoint`](crate::endpoint::default_endpoint) limits how long each failure
//!    takes.
//! 3. **No endpoints means waiting forever.** With no instance, a request waits
//!    until one appears; [`Endpoint::timeout`](tonic::transport::Endpoint::timeout) does not apply. Wrap calls in
//!    [`tokio::time::timeout`] (or set a gRPC deadline and enforce it) to fail
//!    fast.
//! 4. **Changes apply while requests flow.** Hence the coalescing driver above.
//! 5. **A dropped sender freezes the set.** If the driver stopped while the
//!    channel lived, the endpoint set would silently stop changing. The driver
//!    therefore runs as long as any clone of the channel exists.
//!
//! Set `connect_timeout` and HTTP/2 keepalive on every endpoint (as
//! [`default_endpoint`](crate::endpoint::default_endpoint) does), or
//! black-holed addresses hang requests.
//!
//! # Other transports
//!
//! tonic's development is winding down in favour of the official `grpc`
//! crate. Below this module nothing names tonic: the discovery hands out
//! plain [`Change`](crate::Change)s of [`Instance`](crate::Instance)s, and
//! the balancer's picking rules and load work on plain data. An adapter for
//! `grpc` is meant to be one more module here, next to `tonic_channel`,
//! consuming the same stream.

mod balancer;
mod driver;
mod health_check;
mod tonic_channel;

#[doc(hidden)]
pub use balancer::PickBench;
pub use balancer::{
    Balancer, BalancerBuilder, EndpointState, EndpointStatus, Locality, OutlierDetection,
    ParsePolicyError, Policy, ResponseFuture, SlowStart,
};
pub use balancer::{HashKey, DEFAULT_HASH_KEY_HEADER};
pub use tonic_channel::tonic_channel;
