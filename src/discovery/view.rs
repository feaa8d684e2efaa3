//! [`DiscoveryView`]: a cloneable view of a running discovery.

use std::sync::{Arc, Mutex, PoisonError};

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
/// balancer: once every clone of it is dropped; for a
/// [shared watch](super::Discovery#shared-watches): once every stream of
/// it is), the snapshot stays as it was
/// and the health receiver reports that its sender is gone (`changed()`
/// returns an error).
#[derive(Debug, Clone)]
pub struct DiscoveryView {
    shared: Arc<Shared>,
    subset: Option<Chosen>,
}

/// The instances of a client's subset, sorted by identity, as its subset
/// stage last sent them.
pub(crate) type Chosen = Arc<Mutex<Vec<Instance>>>;

impl DiscoveryView {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            subset: None,
        }
    }

    /// The view of a subsetting discovery: `subset` is what its stream
    /// carries.
    pub(crate) fn with_subset(mut self, subset: Chosen) -> Self {
        self.subset = Some(subset);
        self
    }

    /// The current instances of the service, sorted by identity: exactly the
    /// instances inserted and not removed by the changes queued in the stream
    /// so far (including those not yet read from it).
    ///
    /// With [subsetting](super::Discovery::subset) on, every instance of the
    /// service, of which the stream carries only this client's
    /// [`subset`](Self::subset).
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

    /// Every registered instance that passes the filters, sorted by
    /// identity, **drained ones included**, each with its
    /// [override](crate::codec#overrides) applied: what an operator wants to
    /// see. [`snapshot`](Self::snapshot) is what the consumer was told (no
    /// drained instance).
    ///
    /// ```no_run
    /// # fn f(view: tonic_etcd::DiscoveryView) {
    /// for listed in view.registered() {
    ///     let state = if listed.drained { "drained" } else { "serving" };
    ///     println!("{} weight {} {state}", listed.instance.id, listed.instance.weight);
    /// }
    /// # }
    /// ```
    pub fn registered(&self) -> Vec<DiscoveredInstance> {
        self.shared.lock().registered()
    }

    /// With [subsetting](super::Discovery::subset) on, the instances of this
    /// client's subset, sorted by identity: exactly the instances inserted
    /// and not removed by the changes queued in the stream so far (empty
    /// until the first subset is sent). `None` without subsetting, when the
    /// stream carries every instance of the [`snapshot`](Self::snapshot).
    ///
    /// ```no_run
    /// # fn f(view: tonic_etcd::DiscoveryView) {
    /// match view.subset() {
    ///     Some(subset) => println!("{} of {} instances", subset.len(), view.snapshot().len()),
    ///     None => println!("all {} instances", view.snapshot().len()),
    /// }
    /// # }
    /// ```
    pub fn subset(&self) -> Option<Vec<Instance>> {
        let subset = self.subset.as_ref()?;
        Some(
            subset
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// One registered instance as [`DiscoveryView::registered`] lists it: with
/// its [override](crate::codec#overrides) applied and flagged.
///
/// ```
/// use tonic_etcd::discovery::DiscoveredInstance;
///
/// fn describe(listed: &DiscoveredInstance) -> String {
///     let mark = if listed.weight_overridden { "*" } else { "" };
///     format!("{} w={}{mark} drained={}", listed.instance.id, listed.instance.weight, listed.drained)
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoveredInstance {
    /// The instance, its weight the effective one (the override's, if any).
    pub instance: Instance,
    /// The weight the instance registered with.
    pub registered_weight: u32,
    /// Whether the weight comes from an override.
    pub weight_overridden: bool,
    /// Drained by an override: registered, but given no new requests (not in
    /// the [`snapshot`](DiscoveryView::snapshot), removed from the stream).
    pub drained: bool,
}
