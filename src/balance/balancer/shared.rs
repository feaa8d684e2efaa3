//! [`Shared`]: what every clone of a balancer, its tasks and its requests
//! share: the policy, the endpoint template, the endpoint set, and the rules
//! that change it.
//!
//! ```text
//! Insert ──► Ready ──(connect error on a request)──► Ejected ──(probe connects)──► Ready
//!              ▲                                        │ probe: connect with backoff
//!              └──── Insert with a new address ◄────────┘ Remove: probe aborted
//! ```

use std::borrow::Cow;
use std::error::Error as StdError;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};
use tower::discover::Change;
use tracing::{debug, info, info_span, warn, Instrument};

use super::picker::{p2c, smooth_weighted};
use super::policy::Policy;
use super::set::{Entry, Set};
use super::status::EndpointStatus;
use super::target::Target;
use super::tasks::probe;
use crate::error::ErrorChain;
use crate::error::Result;
use crate::instance::Instance;

/// Turns an instance into the tonic endpoint to connect to.
pub(super) type Template = Arc<dyn Fn(&Instance) -> Result<Endpoint> + Send + Sync>;

/// What every clone of a balancer, its driver, its probes and its requests
/// share.
pub(super) struct Shared {
    service: String,
    policy: Policy,
    template: Template,
    wait: Duration,
    runtime: tokio::runtime::Handle,
    set: Mutex<Set>,
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
    pub(super) fn new(service: String, policy: Policy, template: Template, wait: Duration) -> Self {
        Self {
            service,
            policy,
            template,
            wait,
            runtime: tokio::runtime::Handle::current(),
            set: Mutex::new(Set::default()),
            generation: watch::Sender::new(0),
        }
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

    fn changed(&self, set: &mut Set) {
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
        self.lock()
            .entries
            .iter()
            .map(|(key, entry)| EndpointStatus {
                key: key.clone(),
                instance: entry.instance.clone(),
                ready: entry.ready(),
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
                let mut set = self.lock();
                if set.remove(&key) {
                    debug!(%key, "endpoint removed");
                    self.changed(&mut set);
                }
                return;
            }
        };
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
        warn!(
            key = %target.key,
            addr = %target.addr,
            error = %ErrorChain(error),
            "cannot connect; endpoint ejected, probing it in the background"
        );
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
    pub(super) fn restore(&self, key: &str, epoch: u64, channel: Channel) {
        let mut set = self.lock();
        let instance = match set.entries.get(key) {
            Some(entry) if entry.target.epoch == epoch && !entry.ready() => entry.instance.clone(),
            _ => return,
        };
        let target = set.target(key, &instance, channel);
        let entry = set.entries.get_mut(key).expect("checked above");
        entry.target = target;
        entry.probe = None;
        info!(%key, addr = %instance.addr, "connected again; endpoint back");
        self.changed(&mut set);
    }

    /// Forgets every endpoint and stops every probe.
    pub(super) fn clear(&self) {
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
