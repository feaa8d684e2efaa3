//! [`Discovered`], the stream of changes, and [`DiscoveryHandle`], its shared view.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::{mpsc, watch};
use tower::discover::Change;

use super::state::State;
use super::Health;
use crate::instance::Instance;

/// What the task and every handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    service: String,
    prefix: String,
    state: Mutex<State>,
    health: watch::Receiver<Health>,
}

impl Shared {
    pub(crate) fn new(
        service: String,
        prefix: String,
        state: State,
        health: watch::Receiver<Health>,
    ) -> Self {
        Self {
            service,
            prefix,
            state: Mutex::new(state),
            health,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent after every apply; a panic elsewhere while
        // holding the lock cannot leave it half-updated for readers to fear.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The changes of a running discovery: a [`Stream`] of
/// [`Change<String, Instance>`](Change).
///
/// Returned by [`Discovery::start`](super::Discovery::start). The first items
/// are one [`Change::Insert`] per instance found by the initial Get (already
/// queued when `start` returns); then one item per change seen by the watch.
/// The key of a change is the instance's identity ([`Codec::identity`]; the etcd
/// key for the native format).
///
/// - A [`Change::Insert`] for a key already inserted replaces that instance.
/// - The stream never yields an error: etcd errors go to `tracing` and to
///   [`health`](Self::health), and the set is kept as it was.
/// - The stream ends only when the background task has ended, which it does
///   only if it panicked or the runtime is shutting down; it never ends while
///   discovery runs.
/// - Dropping it stops the background task and cancels the etcd watch.
///
/// Changes are buffered without bound, so the task never waits for a slow
/// consumer; a consumer that stops polling only costs memory. To keep nothing
/// but the latest state, see [`DiscoveryHandle::snapshot`].
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
/// fn discover(d: tonic_etcd::Discovered) -> impl Discover<Key = String> {
///     d.map(Ok::<_, Infallible>)
/// }
/// ```
///
/// [`Codec::identity`]: crate::Codec::identity
#[derive(Debug)]
pub struct Discovered {
    rx: mpsc::UnboundedReceiver<Change<String, Instance>>,
    handle: DiscoveryHandle,
}

impl Discovered {
    pub(crate) fn new(
        rx: mpsc::UnboundedReceiver<Change<String, Instance>>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            rx,
            handle: DiscoveryHandle { shared },
        }
    }

    /// A cloneable view of this discovery (snapshot, health). It does not keep
    /// the discovery running.
    pub fn handle(&self) -> DiscoveryHandle {
        self.handle.clone()
    }

    /// The current instances, sorted by identity; see [`DiscoveryHandle::snapshot`].
    pub fn snapshot(&self) -> Vec<Instance> {
        self.handle.snapshot()
    }

    /// The health of the discovery; see [`DiscoveryHandle::health`].
    pub fn health(&self) -> watch::Receiver<Health> {
        self.handle.health()
    }
}

impl Stream for Discovered {
    type Item = Change<String, Instance>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.rx.len(), None)
    }
}

/// A cloneable, thread-safe view of a running discovery: its current instances
/// and its health.
///
/// A handle does not keep the discovery alive: once the [`Discovered`] stream
/// is dropped, the snapshot stays as it was and the health receiver reports
/// that its sender is gone (`changed()` returns an error).
#[derive(Debug, Clone)]
pub struct DiscoveryHandle {
    shared: Arc<Shared>,
}

impl DiscoveryHandle {
    /// The current instances, sorted by identity: exactly the instances
    /// inserted and not removed by the changes queued in the stream so far
    /// (including those not yet read from it).
    pub fn snapshot(&self) -> Vec<Instance> {
        self.shared.lock().snapshot()
    }

    /// A receiver of the health of the discovery, which starts
    /// [`Health::Connected`] (the initial Get succeeded).
    pub fn health(&self) -> watch::Receiver<Health> {
        self.shared.health.clone()
    }

    /// The discovered service.
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// The etcd key prefix being watched, ending with `/`.
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }
}

const _: () = {
    const fn assert_stream_bounds<T: Send + Sync + Unpin>() {}
    assert_stream_bounds::<Discovered>();
    assert_stream_bounds::<DiscoveryHandle>();
};
