//! Load balancing over the instances of a discovery: the crate's own
//! [`Balancer`], or tonic's balanced [`Channel`].
//!
//! # The crate's own balancer
//!
//! A [`Balancer`] is a cloneable `tower::Service` for any tonic generated
//! client, with a [`Policy`]: round robin, smooth weighted round robin over
//! the registry weights, or power of two choices over peak-EWMA load. It fails
//! fast when no endpoint is ready, ejects endpoints it cannot connect to (and
//! probes them back), retries requests that were never sent, and applies
//! discovery changes as they come, with or without traffic. See [`Balancer`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tonic_etcd::{Discovery, Policy};
//!
//! let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
//! let balancer = Discovery::new(etcd, "helloworld").balancer(Policy::RoundRobin).await?;
//! // let mut client = GreeterClient::new(balancer);
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
//! // The defaults of `default_endpoint`:
//! let channel = Discovery::new(etcd.clone(), "helloworld").balance_channel().await?;
//!
//! // Or your own endpoint settings, here with a per-request timeout:
//! let channel = Discovery::new(etcd, "helloworld")
//!     .balance_channel_with(|instance| {
//!         Ok(endpoint::default_endpoint(instance)?.timeout(Duration::from_secs(2)))
//!     })
//!     .await?;
//! // let mut client = GreeterClient::new(channel);
//! # Ok(()) }
//! ```
//!
//! A task (the *driver*) reads the [`InstanceChanges`] stream and sends each change
//! to the channel. tonic applies changes only while requests flow, so an idle
//! client's change queue can fill up; the driver never waits on it while
//! reading discovery: it keeps at most one pending change per instance (the
//! latest), drops removals of instances tonic never saw, and hands them over as
//! room appears. The driver, and with it the discovery and its etcd watch,
//! stops when every clone of the channel has been dropped.
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
//!    `connect_timeout` of [`default_endpoint`] limits how long each failure
//!    takes.
//! 3. **No endpoints means waiting forever.** With no instance, a request waits
//!    until one appears; [`Endpoint::timeout`] does not apply. Wrap calls in
//!    [`tokio::time::timeout`] (or set a gRPC deadline and enforce it) to fail
//!    fast.
//! 4. **Changes apply while requests flow.** Hence the coalescing driver above.
//! 5. **A dropped sender freezes the set.** If the driver stopped while the
//!    channel lived, the endpoint set would silently stop changing. The driver
//!    therefore runs as long as any clone of the channel exists.
//!
//! Set `connect_timeout` and HTTP/2 keepalive on every endpoint (as
//! [`default_endpoint`] does), or black-holed addresses hang requests.

mod balancer;
mod driver;

use tonic::transport::{Channel, Endpoint};
use tracing::{info_span, Instrument};

use crate::discovery::{Discovery, InstanceChanges};
use crate::endpoint::default_endpoint;
use crate::error::Result;
use crate::instance::Instance;

pub use balancer::{
    Balancer, BalancerBuilder, EndpointStatus, ParsePolicyError, Policy, ResponseFuture,
};

/// How many changes tonic's channel queues before the driver holds them back.
///
/// tonic applies only the changes already queued when it routes a request, so
/// an idle client is up to date on its next request only while its backlog fits
/// here. The driver coalesces per key, so the backlog is at most one change per
/// instance: this covers fleets of up to this many instances changing at once.
const CHANGE_CAPACITY: usize = 1024;

/// A tonic [`Channel`] balanced over the instances of `discovered`, each turned
/// into an [`Endpoint`] by `template`.
///
/// Spawns the driver task described in the [module docs](self), so this must
/// be called inside a tokio runtime. An instance for which `template` fails is
/// logged (`warn!`) and left out (and an older endpoint of the same instance is
/// removed). The driver ends, dropping `discovered` and stopping its watch,
/// when every clone of the channel has been dropped.
pub fn channel<F>(discovered: InstanceChanges, template: F) -> Channel
where
    F: Fn(&Instance) -> Result<Endpoint> + Send + Sync + 'static,
{
    let (channel, sender) = Channel::balance_channel::<String>(CHANGE_CAPACITY);
    let handle = discovered.view();
    let span = info_span!(parent: None, "balance_channel", service = %handle.service());
    tokio::spawn(driver::drive(discovered, sender, template).instrument(span));
    channel
}

impl Discovery {
    /// Starts the discovery and returns a tonic [`Channel`] balanced over its
    /// instances, with [`default_endpoint`]; see the [`balance`](crate::balance)
    /// docs for what tonic's balancing does and does not do.
    ///
    /// Fails as [`Discovery::changes`] does. Must be called inside a tokio runtime.
    pub async fn balance_channel(self) -> Result<Channel> {
        self.balance_channel_with(default_endpoint).await
    }

    /// Like [`balance_channel`](Self::balance_channel), with your own endpoint
    /// template (TLS, timeouts, ...).
    ///
    /// ```no_run
    /// # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
    /// use std::time::Duration;
    /// use tonic_etcd::{endpoint::default_endpoint, Discovery};
    ///
    /// let channel = Discovery::new(etcd, "helloworld")
    ///     .balance_channel_with(|i| Ok(default_endpoint(i)?.timeout(Duration::from_secs(2))))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn balance_channel_with<F>(self, template: F) -> Result<Channel>
    where
        F: Fn(&Instance) -> Result<Endpoint> + Send + Sync + 'static,
    {
        Ok(channel(self.changes().await?, template))
    }
}
