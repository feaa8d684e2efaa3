//! [`Shared`]: what every clone of a balancer, its tasks and its requests
//! share: the policy, the endpoint template, the endpoint set, and the rules
//! that change it.
//!
//! ```text
//! Insert ──► Ready ──(connect error on a request)──► Ejected ──(probe connects)──► Ready
//!              ▲                                        │ probe: connect with backoff
//!              └──── Insert with a new address ◄────────┘ Remove: probe aborted
//! ```

use std::error::Error as StdError;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};
use tower::discover::Change;
use tracing::{info, info_span, warn, Instrument};

use super::policy::Policy;
use super::set::{Exclusion, Set};
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
            .field("ready", &set.ready_len())
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
            set: Mutex::new(Set::new(policy, tokio::runtime::Handle::current())),
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

    /// Tells waiting requests; called with the lock held, once per batch.
    fn changed(&self, _locked: &mut Set) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// How many endpoints are known and how many of them are ejected.
    pub(super) fn counts(&self) -> (usize, usize) {
        let set = self.lock();
        (set.len(), set.len() - set.ready_len())
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
        self.lock().pick(tried)
    }

    /// Applies one discovery change.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) fn apply(self: &Arc<Self>, change: Change<String, Instance>) {
        self.apply_batch(vec![change]);
    }

    /// Applies a batch of discovery changes (the last of each key wins) with
    /// one notification of waiting requests: O(k log n) for k changes.
    pub(super) fn apply_batch(self: &Arc<Self>, changes: Vec<Change<String, Instance>>) {
        let plan = self.lock().plan(changes);
        let mut changed = plan.changed;
        // The user's template runs without the lock held. Only the driver
        // inserts and removes, so the entries cannot change meanwhile.
        let mut built = Vec::with_capacity(plan.fresh.len());
        let mut refused = Vec::new();
        for (key, instance) in plan.fresh {
            match (self.template)(&instance) {
                Ok(endpoint) => built.push((key, instance, endpoint)),
                Err(error) => {
                    warn!(%key, addr = %instance.addr, %error, "cannot build an endpoint; instance left out");
                    refused.push(key);
                }
            }
        }
        let mut set = self.lock();
        for key in refused {
            changed |= set.remove(&key);
        }
        if !built.is_empty() {
            let rtt = set.peer_rtt();
            for (key, instance, endpoint) in built {
                set.insert(key, instance, endpoint, rtt);
            }
            changed = true;
        }
        if changed {
            self.changed(&mut set);
        }
    }

    /// Takes `target` out of the ready list after its connection failed, and
    /// probes it in the background until it connects again. Does nothing if
    /// the endpoint has since been ejected, replaced or removed.
    pub(super) fn eject(self: &Arc<Self>, target: &Target, error: &(dyn StdError + 'static)) {
        let mut set = self.lock();
        let Some(entry) = set.entries.get_mut(&target.key) else {
            return;
        };
        if entry.target.epoch != target.epoch || entry.is_excluded(Exclusion::Unreachable) {
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
            entry.target.endpoint.clone(),
        );
        entry.probe = Some(self.runtime.spawn(probe.instrument(span)).abort_handle());
        if set.exclude(&target.key, Exclusion::Unreachable) {
            self.changed(&mut set);
        }
    }

    /// Puts an ejected endpoint back with the channel its probe connected.
    pub(super) fn restore(&self, key: &str, epoch: u64, channel: Channel) {
        let mut set = self.lock();
        let addr = match set.entries.get_mut(key) {
            Some(entry)
                if entry.target.epoch == epoch && entry.is_excluded(Exclusion::Unreachable) =>
            {
                entry.probe = None;
                entry.instance.addr.clone()
            }
            _ => return,
        };
        set.reconnect(key, channel);
        set.include(key, Exclusion::Unreachable);
        info!(%key, addr = %addr, "connected again; endpoint back");
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
