//! tonic's balanced channel fed by a change stream: [`tonic_channel`] for any
//! stream, and `Discovery::tonic_channel` / `tonic_channel_with` for a
//! discovery.

use futures_core::Stream;
use tonic::transport::{Channel, Endpoint};
use tower::discover::Change;
use tracing::{info_span, Instrument, Span};

use super::driver;
use crate::discovery::Discovery;
use crate::endpoint::default_endpoint;
use crate::error::Result;
use crate::instance::Instance;

/// How many changes tonic's channel queues before the driver holds them back.
///
/// tonic applies only the changes already queued when it routes a request, so
/// an idle client is up to date on its next request only while its backlog fits
/// here. The driver coalesces per key, so the backlog is at most one change per
/// instance: this covers fleets of up to this many instances changing at once.
const CHANGE_CAPACITY: usize = 1024;

/// A tonic [`Channel`] balanced over the instances of any stream of changes
/// (a discovery's [`InstanceChanges`](crate::InstanceChanges), a static list,
/// …), each turned into an [`Endpoint`] by `template`.
///
/// Spawns the driver task described in the [module docs](super), so this must
/// be called inside a tokio runtime. An instance for which `template` fails is
/// logged (`warn!`) and left out (and an older endpoint of the same instance is
/// removed). The driver ends, dropping `changes` (with a discovery, stopping
/// its watch), when every clone of the channel has been dropped. If `changes`
/// ends, the channel keeps its last set of endpoints.
///
/// Use it with a discovery's stream to keep a view of it, which
/// [`Discovery::tonic_channel`] does not give:
///
/// ```no_run
/// # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
/// use tonic_etcd::{balance, endpoint::default_endpoint, Discovery};
///
/// let changes = Discovery::new(etcd, "helloworld").changes().await?;
/// let view = changes.view();
/// let channel = balance::tonic_channel(changes, default_endpoint);
/// // let mut client = GreeterClient::new(channel);
/// if view.snapshot().is_empty() {
///     // tonic's channel would wait for an instance: fail fast instead.
/// }
/// # Ok(()) }
/// ```
pub fn tonic_channel<S, F>(changes: S, template: F) -> Channel
where
    S: Stream<Item = Change<String, Instance>> + Send + 'static,
    F: Fn(&Instance) -> Result<Endpoint> + Send + Sync + 'static,
{
    spawn(
        Box::pin(changes),
        template,
        info_span!(parent: None, "tonic_channel"),
    )
}

fn spawn<S, F>(changes: S, template: F, span: Span) -> Channel
where
    S: Stream<Item = Change<String, Instance>> + Send + Unpin + 'static,
    F: Fn(&Instance) -> Result<Endpoint> + Send + Sync + 'static,
{
    let (channel, sender) = Channel::balance_channel::<String>(CHANGE_CAPACITY);
    tokio::spawn(driver::drive(changes, sender, template).instrument(span));
    channel
}

impl Discovery {
    /// Starts the discovery and returns tonic's balanced [`Channel`] over its
    /// instances, with [`default_endpoint`]. See the
    /// [`balance`](crate::balance) docs for what tonic's balancing does and
    /// does not do; the crate's [`balancer`](Discovery::balancer) is the
    /// recommended client.
    ///
    /// Fails as [`Discovery::changes`] does. Must be called inside a tokio
    /// runtime.
    ///
    /// ```no_run
    /// # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
    /// let channel = tonic_etcd::Discovery::new(etcd, "helloworld").tonic_channel().await?;
    /// // let mut client = GreeterClient::new(channel);
    /// # Ok(()) }
    /// ```
    pub async fn tonic_channel(self) -> Result<Channel> {
        self.tonic_channel_with(default_endpoint).await
    }

    /// Like [`tonic_channel`](Self::tonic_channel), with your own endpoint
    /// template (TLS, timeouts, ...).
    ///
    /// ```no_run
    /// # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
    /// use std::time::Duration;
    /// use tonic_etcd::{endpoint::default_endpoint, Discovery};
    ///
    /// let channel = Discovery::new(etcd, "helloworld")
    ///     .tonic_channel_with(|i| Ok(default_endpoint(i)?.timeout(Duration::from_secs(2))))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn tonic_channel_with<F>(self, template: F) -> Result<Channel>
    where
        F: Fn(&Instance) -> Result<Endpoint> + Send + Sync + 'static,
    {
        let changes = self.changes().await?;
        let span = info_span!(parent: None, "tonic_channel", service = %changes.view().service());
        Ok(spawn(changes, template, span))
    }
}
