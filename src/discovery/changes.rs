//! [`InstanceChanges`]: the stream of changes of a running discovery.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::{mpsc, watch};
use tower::discover::Change;

use super::health::Health;
use super::shared::Shared;
use super::view::{Chosen, DiscoveryView};
use crate::instance::Instance;

/// The changes of a running discovery: a [`Stream`] of
/// [`Change<String, Instance>`](Change).
///
/// Returned by [`Discovery::changes`](super::Discovery::changes):
///
/// ```no_run
/// # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
/// use futures_util::StreamExt;
/// use tonic_etcd::{Change, Discovery};
///
/// let mut changes = Discovery::new(etcd, "helloworld").changes().await?;
/// while let Some(change) = changes.next().await {
///     match change {
///         Change::Insert(key, instance) => println!("+ {key} at {}", instance.addr),
///         Change::Remove(key) => println!("- {key}"),
///     }
/// }
/// # Ok(()) }
/// ```
///
/// The first items are one [`Change::Insert`] per instance found by the
/// initial Get (already queued when `changes` returns); then one item per
/// change seen by the watch. The key of a change is the instance's identity
/// ([`Codec::identity`]; the etcd key for the native format).
///
/// - A [`Change::Insert`] for a key already inserted replaces that instance.
/// - The stream never yields an error: etcd errors go to `tracing` and to
///   [`health`](Self::health), and the set is kept as it was.
/// - The stream ends only when the background task has ended, which it does
///   only if it panicked or the runtime is shutting down; it never ends while
///   discovery runs.
/// - Dropping it stops the background task and cancels the etcd watch,
///   unless other streams share that watch: then the last one does (see
///   [Shared watches](super::Discovery#shared-watches)).
///
/// Changes are buffered without bound, so the task never waits for a slow
/// consumer; a consumer that stops polling only costs memory. To keep nothing
/// but the latest state, see [`DiscoveryView::snapshot`].
///
/// # As a tower `Discover`
///
/// tower's `Discover` is implemented for streams of `Result<Change<K, S>, E>`;
/// wrap the items to get one:
///
/// ```
/// use std::convert::Infallible;
/// use futures_util::StreamExt;
/// use tower::discover::Discover;
///
/// fn discover(changes: tonic_etcd::InstanceChanges) -> impl Discover<Key = String> {
///     changes.map(Ok::<_, Infallible>)
/// }
/// ```
///
/// [`Codec::identity`]: crate::Codec::identity
#[derive(Debug)]
pub struct InstanceChanges {
    rx: mpsc::UnboundedReceiver<Change<String, Instance>>,
    view: DiscoveryView,
}

impl InstanceChanges {
    pub(crate) fn new(
        rx: mpsc::UnboundedReceiver<Change<String, Instance>>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            rx,
            view: DiscoveryView::new(shared),
        }
    }

    /// The stream of a subset of the instances of `shared`, `chosen`.
    pub(crate) fn subset(
        rx: mpsc::UnboundedReceiver<Change<String, Instance>>,
        shared: Arc<Shared>,
        chosen: Chosen,
    ) -> Self {
        Self {
            rx,
            view: DiscoveryView::new(shared).with_subset(chosen),
        }
    }

    /// A cloneable view of this discovery (snapshot, health). It does not keep
    /// the discovery running.
    ///
    /// ```no_run
    /// # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
    /// let changes = tonic_etcd::Discovery::new(etcd, "helloworld").changes().await?;
    /// let view = changes.view();
    /// // Hand `changes` to a consumer; keep `view` for the snapshot.
    /// # drop(changes);
    /// println!("{:?}", view.snapshot());
    /// # Ok(()) }
    /// ```
    pub fn view(&self) -> DiscoveryView {
        self.view.clone()
    }

    /// The current instances, sorted by identity; see [`DiscoveryView::snapshot`].
    ///
    /// ```no_run
    /// # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
    /// let changes = tonic_etcd::Discovery::new(etcd, "helloworld").changes().await?;
    /// println!("{} instances at start", changes.snapshot().len());
    /// # Ok(()) }
    /// ```
    pub fn snapshot(&self) -> Vec<Instance> {
        self.view.snapshot()
    }

    /// The health of the discovery; see [`DiscoveryView::health`].
    ///
    /// ```no_run
    /// # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
    /// let changes = tonic_etcd::Discovery::new(etcd, "helloworld").changes().await?;
    /// assert!(changes.health().borrow().is_connected());
    /// # Ok(()) }
    /// ```
    pub fn health(&self) -> watch::Receiver<Health> {
        self.view.health()
    }
}

impl Stream for InstanceChanges {
    type Item = Change<String, Instance>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.rx.len(), None)
    }
}

const _: () = {
    const fn assert_stream_bounds<T: Send + Sync + Unpin>() {}
    assert_stream_bounds::<InstanceChanges>();
    assert_stream_bounds::<DiscoveryView>();
};
