//! [`DiscoveryView`]: a cloneable view of a running discovery.

use std::sync::Arc;

use tokio::sync::watch;

use super::health::Health;
use super::shared::Shared;
use crate::instance::Instance;

/// A cloneable, thread-safe view of a running discovery: its current
/// instances and its health.
///
/// Get one from [`InstanceChanges::view`](super::InstanceChanges::view), or
/// from [`Balancer::discovery`](crate::Balancer::discovery) for a balancer fed
/// by a discovery.
///
/// ```no_run
/// # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
/// use tonic_etcd::{Discovery, Policy};
///
/// let balancer = Discovery::new(etcd, "helloworld").balancer(Policy::RoundRobin).await?;
/// let view = balancer.discovery().expect("fed by a discovery");
/// println!("{} instances of {} under {}", view.snapshot().len(), view.service(), view.prefix());
/// println!("connected: {}", view.health().borrow().is_connected());
/// # Ok(()) }
/// ```
///
/// A view does not keep the discovery alive: once its
/// [`InstanceChanges`](super::InstanceChanges) stream is dropped (for a
/// balancer: once every clone of it is dropped), the snapshot stays as it was
/// and the health receiver reports that its sender is gone (`changed()`
/// returns an error).
#[derive(Debug, Clone)]
pub struct DiscoveryView {
    shared: Arc<Shared>,
}

impl DiscoveryView {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The current instances, sorted by identity: exactly the instances
    /// inserted and not removed by the changes queued in the stream so far
    /// (including those not yet read from it).
    ///
    /// ```no_run
    /// # fn f(view: tonic_etcd::DiscoveryView) {
    /// for instance in view.snapshot() {
    ///     println!("{} at {}", instance.id, instance.addr);
    /// }
    /// # }
    /// ```
    pub fn snapshot(&self) -> Vec<Instance> {
        self.shared.lock().snapshot()
    }

    /// A receiver of the health of the discovery, which starts
    /// [`Health::Connected`] (the initial Get succeeded).
    ///
    /// ```no_run
    /// # fn f(view: tonic_etcd::DiscoveryView) {
    /// if !view.health().borrow().is_connected() {
    ///     eprintln!("etcd lost; serving from the last known set");
    /// }
    /// # }
    /// ```
    pub fn health(&self) -> watch::Receiver<Health> {
        self.shared.health.clone()
    }

    /// The discovered service.
    ///
    /// ```no_run
    /// # fn f(view: tonic_etcd::DiscoveryView) {
    /// assert_eq!(view.service(), "helloworld");
    /// # }
    /// ```
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// The etcd key prefix being watched, ending with `/`.
    ///
    /// ```no_run
    /// # fn f(view: tonic_etcd::DiscoveryView) {
    /// assert_eq!(view.prefix(), "/services/helloworld/");
    /// # }
    /// ```
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }
}
