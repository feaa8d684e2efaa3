//! [`Shared`]: what every clone of a balancer, its tasks and its requests
//! share: the policy, the endpoint template, the endpoint set, and the rules
//! that change it.
//!
//! ```text
//! Insert ──► Ready ──(connect error on a request)──► Ejected ──(probe connects)──► Ready
//!              ▲                                        │ probe: connect with backoff
//!              └──── Insert with a new address ◄────────┘ Remove: probe aborted
//! ```
//!
//! Outlier ejections and health verdicts take endpoints out too (see
//! `exclusion`); when they have taken out every connected endpoint, panic
//! mode routes to them all. A `Remove` that would leave no ready endpoint
//! waits for the removal grace: an `Insert` meanwhile (the instance coming
//! back, or another one) ends the wait.

use std::borrow::Cow;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::AbortHandle;
use tonic::transport::{Channel, Endpoint};
use tower::discover::Change;
use tracing::{debug, info, info_span, warn, Instrument};

use super::health_wiring;
use super::outlier::OutlierDetection;
use super::picker::{p2c, smooth_weighted};
use super::policy::Policy;
use super::set::{Entry, Set};
use super::status::{EndpointState, EndpointStatus};
use super::target::Target;
use super::tasks::probe;
use crate::error::ErrorChain;
use crate::error::Result;
use crate::instance::Instance;

/// Turns an instance into the tonic endpoint to connect to.
pub(super) type Template = Arc<dyn Fn(&Instance) -> Result<Endpoint> + Send + Sync>;

/// The request-level health options of a balancer (see the builder).
#[derive(Debug, Clone)]
pub(super) struct Options {
    pub(super) outlier: OutlierDetection,
    pub(super) panic_mode: bool,
    /// The service name of the health checks; `None` without.
    pub(super) health_check: Option<String>,
    pub(super) removal_grace: Duration,
}

/// How long a removal that would leave no ready endpoint waits by default.
pub(super) const REMOVAL_GRACE: Duration = Duration::from_secs(1);

impl Default for Options {
    fn default() -> Self {
        Self {
            outlier: OutlierDetection::new(),
            panic_mode: true,
            health_check: None,
            removal_grace: REMOVAL_GRACE,
        }
    }
}

/// What every clone of a balancer, its driver, its probes and its requests
/// share.
pub(super) struct Shared {
    service: String,
    policy: Policy,
    template: Template,
    wait: Duration,
    options: Options,
    runtime: tokio::runtime::Handle,
    set: Mutex<Set>,
    /// Removals waiting for the grace, by key.
    pending_removals: Mutex<HashMap<String, AbortHandle>>,
    /// Bumped on every change of the ready list, for requests waiting for an
    /// endpoint.
    generation: watch::Sender<u64>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.lock();
        f.debug_struct("Shared")
            .field("service", &self.service)
            .field("policy", &self.policy)
            .field("wait", &self.wait)
            .field("endpoints", &set.entries.len())
            .field("ready", &set.ready.len())
            .finish()
    }
}

impl Shared {
    /// Must be called inside a tokio runtime, whose handle the probes use.
    #[cfg(test)]
    pub(super) fn new(service: String, policy: Policy, template: Template, wait: Duration) -> Self {
        Self::with_options(service, policy, template, wait, Options::default())
    }

    /// As `new`, with the request-level health options.
    pub(super) fn with_options(
        service: String,
        policy: Policy,
        template: Template,
        wait: Duration,
        options: Options,
    ) -> Self {
        let mut set = Set::default();
        set.panic_mode = options.panic_mode;
        Self {
            service,
            policy,
            template,
            wait,
            options,
            runtime: tokio::runtime::Handle::current(),
            set: Mutex::new(set),
            pending_removals: Mutex::new(HashMap::new()),
            generation: watch::Sender::new(0),
        }
    }

    pub(super) fn outlier(&self) -> &OutlierDetection {
        &self.options.outlier
    }

    pub(super) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    fn pending_removals(&self) -> MutexGuard<'_, HashMap<String, AbortHandle>> {
        self.pending_removals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Set> {
        // Every method leaves the set consistent before it can panic.
        self.set.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn service(&self) -> &str {
        &self.service
    }

    pub(super) fn policy(&self) -> Policy {
        self.policy
    }

    pub(super) fn wait(&self) -> Duration {
        self.wait
    }

    /// A receiver that sees every later change of the ready list.
    pub(super) fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub(super) fn changed(&self, set: &mut Set) {
        set.rebuild();
        crate::observe::endpoint_counts(&self.service, set.ready.len(), set.entries.len());
        self.generation.send_modify(|g| *g += 1);
    }

    /// How many endpoints are known and how many of them are ejected.
    pub(super) fn counts(&self) -> (usize, usize) {
        let set = self.lock();
        (set.entries.len(), set.entries.len() - set.ready.len())
    }

    pub(super) fn statuses(&self) -> Vec<EndpointStatus> {
        let set = self.lock();
        set.entries
            .iter()
            .map(|(key, entry)| {
                let health = &entry.target.health;
                let (state, mut reason) = if !entry.connected() {
                    (EndpointState::Connecting, health.unreachable())
                } else if let Some(ejection) = health.ejection() {
                    (EndpointState::Ejected, Some(ejection.reason()))
                } else if let Some(reason) = health.unhealthy() {
                    (EndpointState::Unhealthy, Some(reason))
                } else {
                    (EndpointState::Ready, None)
                };
                let routed = state == EndpointState::Ready || (set.panicking && entry.connected());
                if routed && state != EndpointState::Ready {
                    if let Some(reason) = &mut reason {
                        reason.push_str("; routed anyway: panic mode");
                    }
                }
                let (requests, failures) = health.counts();
                EndpointStatus {
                    key: key.clone(),
                    instance: entry.instance.clone(),
                    ready: routed,
                    state,
                    reason,
                    requests,
                    failures,
                    in_flight: entry.target.load.in_flight(),
                    latency: entry.target.load.rtt(),
                }
            })
            .collect()
    }

    /// Picks a ready endpoint by the policy, skipping the targets whose epochs
    /// are in `tried`.
    pub(super) fn pick(&self, tried: &[u64]) -> Option<Arc<Target>> {
        let mut guard = self.lock();
        let Set {
            ready,
            weights,
            round_robin,
            ..
        } = &mut *guard;
        let untried = |index: usize| tried.is_empty() || !tried.contains(&ready[index].epoch);
        let index = match self.policy {
            Policy::RoundRobin | Policy::P2c => {
                // Every request starts with nothing tried: pick from the ready
                // list itself, without allocating.
                let candidates: Cow<'_, [Arc<Target>]> = if tried.is_empty() {
                    Cow::Borrowed(ready)
                } else {
                    ready
                        .iter()
                        .filter(|target| !tried.contains(&target.epoch))
                        .cloned()
                        .collect()
                };
                let index = if self.policy == Policy::RoundRobin {
                    round_robin.pick(candidates.len())
                } else {
                    let now = std::time::Instant::now();
                    p2c(
                        candidates.len(),
                        |i| candidates[i].load.cost(now),
                        &mut rand::rng(),
                    )
                }?;
                return Some(candidates[index].clone());
            }
            Policy::Weighted => smooth_weighted(weights, |index| !untried(index))?,
        };
        Some(ready[index].clone())
    }

    /// Applies one discovery change.
    pub(super) fn apply(self: &Arc<Self>, change: Change<String, Instance>) {
        let (key, instance) = match change {
            Change::Insert(key, instance) => (key, instance),
            Change::Remove(key) => {
                self.remove(key);
                return;
            }
        };
        // The instance is back, or another one is there: the removals that
        // waited for one take effect once it is in (but not this key's own).
        let waiting: Vec<String> = self
            .pending_removals()
            .drain()
            .map(|(pending, timer)| {
                timer.abort();
                pending
            })
            .collect();
        self.insert(key.clone(), instance);
        for pending in waiting.iter().filter(|pending| **pending != key) {
            self.remove_now(pending);
        }
    }

    fn insert(self: &Arc<Self>, key: String, instance: Instance) {
        {
            let mut set = self.lock();
            if let Some(entry) = set.entries.get_mut(&key) {
                let mut reweighted = entry.instance.clone();
                reweighted.weight = instance.weight;
                if reweighted == instance {
                    // Same endpoint: keep its connection (and its ejection).
                    if entry.instance.weight != instance.weight {
                        debug!(%key, weight = instance.weight, "weight changed");
                        entry.instance = instance;
                        self.changed(&mut set);
                    }
                    return;
                }
            }
        }
        // The user's template runs without the lock held. Only this task
        // inserts and removes, so the entry cannot change meanwhile.
        let (channel, endpoint) = match (self.template)(&instance) {
            Ok(endpoint) => (endpoint.connect_lazy(), endpoint),
            Err(error) => {
                warn!(%key, addr = %instance.addr, %error, "cannot build an endpoint; instance left out");
                let mut set = self.lock();
                if set.remove(&key) {
                    self.changed(&mut set);
                }
                return;
            }
        };
        let mut set = self.lock();
        set.remove(&key);
        let target = set.target(&key, &instance, channel);
        self.attach(&target);
        debug!(%key, addr = %instance.addr, weight = instance.weight, "endpoint inserted");
        set.entries.insert(
            key,
            Entry {
                instance,
                endpoint,
                target,
                probe: None,
            },
        );
        self.changed(&mut set);
    }

    /// Takes `target` out of the ready list after its connection failed, and
    /// probes it in the background until it connects again. Does nothing if
    /// the endpoint has since been ejected, replaced or removed.
    pub(super) fn eject(self: &Arc<Self>, target: &Target, error: &(dyn StdError + 'static)) {
        let mut set = self.lock();
        let Some(entry) = set.entries.get_mut(&target.key) else {
            return;
        };
        if entry.target.epoch != target.epoch || !entry.ready() {
            return;
        }
        let reason = format!("cannot connect: {}", ErrorChain(error));
        warn!(
            service = %self.service,
            endpoint = %target.key,
            addr = %target.addr,
            %reason,
            "endpoint unreachable; probing it in the background"
        );
        entry.target.health.set_unreachable(reason);
        let span = info_span!(parent: None, "probe", service = %self.service, key = %target.key, addr = %target.addr);
        let probe = probe(
            Arc::downgrade(self),
            target.key.clone(),
            target.epoch,
            entry.endpoint.clone(),
        );
        entry.probe = Some(self.runtime.spawn(probe.instrument(span)).abort_handle());
        crate::observe::ejected(&self.service, &target.addr, "connect_error");
        self.changed(&mut set);
    }

    /// Puts an ejected endpoint back with the channel its probe connected.
    pub(super) fn restore(self: &Arc<Self>, key: &str, epoch: u64, channel: Channel) {
        let mut set = self.lock();
        let instance = match set.entries.get(key) {
            Some(entry) if entry.target.epoch == epoch && !entry.ready() => entry.instance.clone(),
            _ => return,
        };
        let target = set.target(key, &instance, channel);
        self.attach(&target);
        let entry = set.entries.get_mut(key).expect("checked above");
        entry.target = target;
        entry.probe = None;
        info!(service = %self.service, endpoint = %key, addr = %instance.addr, reason = "connected again", "endpoint back");
        self.changed(&mut set);
    }

    /// Removes `key`, or, if that would leave no ready endpoint, waits for
    /// the removal grace first (see the module docs).
    fn remove(self: &Arc<Self>, key: String) {
        let grace = self.options.removal_grace;
        {
            let set = self.lock();
            let last = set.ready.len() == 1 && set.ready[0].key == key;
            if !last || grace.is_zero() {
                drop(set);
                self.remove_now(&key);
                return;
            }
        }
        info!(
            service = %self.service,
            endpoint = %key,
            reason = %format_args!("removed, but it is the last ready endpoint: kept for {grace:?} in case one comes"),
            "endpoint removal deferred"
        );
        let shared = Arc::downgrade(self);
        let timer_key = key.clone();
        let timer = self.runtime.spawn(async move {
            tokio::time::sleep(grace).await;
            if let Some(shared) = shared.upgrade() {
                if shared.pending_removals().remove(&timer_key).is_some() {
                    shared.remove_now(&timer_key);
                }
            }
        });
        if let Some(old) = self.pending_removals().insert(key, timer.abort_handle()) {
            old.abort();
        }
    }

    fn remove_now(&self, key: &str) {
        let mut set = self.lock();
        if set.remove(key) {
            info!(service = %self.service, endpoint = %key, reason = "removed from the change stream", "endpoint removed");
            self.changed(&mut set);
        }
    }

    /// Starts the health checks of a new target, if they are on.
    fn attach(self: &Arc<Self>, target: &Arc<Target>) {
        if let Some(service) = &self.options.health_check {
            let task = health_wiring::spawn(self, target, service.clone());
            target.health.set_watch(task);
        }
    }

    /// Forgets every endpoint and stops every probe.
    pub(super) fn clear(&self) {
        for (_, timer) in self.pending_removals().drain() {
            timer.abort();
        }
        let mut set = self.lock();
        let keys: Vec<String> = set.entries.keys().cloned().collect();
        for key in keys {
            set.remove(&key);
        }
        self.changed(&mut set);
    }
}

#[cfg(test)]
mod tests;
