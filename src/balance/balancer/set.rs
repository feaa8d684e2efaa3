//! The endpoint set of a balancer: one [`Entry`] per instance, sorted by key,
//! the reasons an entry is not picked, and [`Ready`], what the pickers read.
//!
//! Every operation costs O(log n) or less: a batch of k changes costs
//! O(k log n), and nothing is rebuilt per change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::AbortHandle;
use tonic::transport::{Channel, Endpoint};
use tower::discover::Change;
use tracing::debug;

use super::load::{PeakEwma, DEFAULT_RTT};
use super::policy::Policy;
use super::ready::Ready;
use super::target::Target;
use crate::instance::Instance;

/// Why an endpoint is not picked. An endpoint can be left out for several
/// reasons at once; it is picked again once none is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(dead_code)] // Ejected, Unhealthy and Drained are for outlier detection, health and drains.
pub(super) enum Exclusion {
    /// Its connection could not be made; a probe reconnects.
    Unreachable,
    /// Ejected by outlier detection.
    Ejected,
    /// Its health check says it is not serving.
    Unhealthy,
    /// Drained by an operator.
    Drained,
}

impl Exclusion {
    const ALL: [Exclusion; 4] = [
        Exclusion::Unreachable,
        Exclusion::Ejected,
        Exclusion::Unhealthy,
        Exclusion::Drained,
    ];

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// One instance of the set.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) instance: Instance,
    pub(super) target: Arc<Target>,
    /// The probe of an unreachable endpoint; `None` while it is reachable.
    pub(super) probe: Option<AbortHandle>,
    /// Its number in the picking structures, for its life in the set.
    slot: u32,
    /// The weight weighted round robin uses: the instance's (at least 1),
    /// unless [`Set::set_weight`] changed it.
    weight: u32,
    /// The [`Exclusion`]s that hold now, as bits.
    excluded: u8,
}

impl Entry {
    /// Whether it may be picked: no [`Exclusion`] holds.
    pub(super) fn ready(&self) -> bool {
        self.excluded == 0
    }

    /// Whether `why` holds.
    pub(super) fn is_excluded(&self, why: Exclusion) -> bool {
        self.excluded & why.bit() != 0
    }

    /// The exclusions that hold, in declaration order.
    #[allow(dead_code)] // For the endpoint statuses of outlier detection and health.
    pub(super) fn exclusions(&self) -> impl Iterator<Item = Exclusion> + '_ {
        Exclusion::ALL
            .into_iter()
            .filter(|&why| self.is_excluded(why))
    }

    /// The weight weighted round robin uses now.
    #[allow(dead_code)] // For slow start and the endpoint statuses.
    pub(super) fn weight(&self) -> u32 {
        self.weight
    }
}

/// What a batch of changes asks for once coalesced (the last change of each
/// key wins): whether the set changed already (removals, weight changes),
/// and the instances that need an endpoint, sorted by key.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub(super) changed: bool,
    pub(super) fresh: Vec<(String, Instance)>,
}

/// The endpoints, sorted by key, and the pickers' state.
#[derive(Debug)]
pub(super) struct Set {
    pub(super) entries: BTreeMap<String, Entry>,
    ready: Ready,
    /// Slots given back by removed entries, and the next never used.
    free: Vec<u32>,
    slots: u32,
    next_epoch: u64,
    /// Where the targets' channels spawn their tasks.
    runtime: Handle,
}

impl Set {
    pub(super) fn new(policy: Policy, runtime: Handle) -> Self {
        Self {
            entries: BTreeMap::new(),
            ready: Ready::new(policy),
            free: Vec::new(),
            slots: 0,
            next_epoch: 0,
            runtime,
        }
    }

    fn epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    /// How many endpoints are known.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// How many of them may be picked.
    pub(super) fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// A ready endpoint by the policy, passing over the targets whose epochs
    /// are in `tried`: O(1) for round robin and p2c, O(log n) for weighted.
    pub(super) fn pick(&mut self, tried: &[u64]) -> Option<Arc<Target>> {
        self.ready.pick(tried)
    }

    /// The ready targets, in no order.
    #[allow(dead_code)] // For health checks and panic mode.
    pub(super) fn ready_targets(&self) -> impl Iterator<Item = &Arc<Target>> {
        self.ready.targets()
    }

    /// The response time estimate a new endpoint starts with: the mean of a
    /// few ready peers, so that it is neither flooded nor starved by p2c.
    pub(super) fn peer_rtt(&self) -> Duration {
        self.ready.mean_rtt().unwrap_or(DEFAULT_RTT)
    }

    /// Applies the part of `changes` that needs no new endpoint (removals,
    /// weight changes, values seen already) and returns the rest; see
    /// [`Plan`]. Then [`insert`](Self::insert) each of `Plan::fresh`.
    pub(super) fn plan(&mut self, changes: Vec<Change<String, Instance>>) -> Plan {
        let mut last: HashMap<String, Option<Instance>> = HashMap::with_capacity(changes.len());
        for change in changes {
            match change {
                Change::Insert(key, instance) => last.insert(key, Some(instance)),
                Change::Remove(key) => last.insert(key, None),
            };
        }
        let mut plan = Plan::default();
        for (key, instance) in last {
            let Some(instance) = instance else {
                if self.remove(&key) {
                    debug!(%key, "endpoint removed");
                    plan.changed = true;
                }
                continue;
            };
            match self.entries.get_mut(&key) {
                Some(entry) if same_endpoint(&entry.instance, &instance) => {
                    // Same endpoint: keep its connection (and its exclusions).
                    if entry.instance.weight != instance.weight {
                        debug!(%key, weight = instance.weight, "weight changed");
                        entry.weight = instance.weight.max(1);
                        entry.instance = instance;
                        if entry.ready() {
                            self.ready.set_weight(entry.slot, entry.weight);
                        }
                        plan.changed = true;
                    }
                }
                _ => plan.fresh.push((key, instance)),
            }
        }
        // New slots in key order: weighted round robin breaks ties by slot.
        plan.fresh.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        plan
    }

    /// Inserts `key` (replacing what was there) as a new, ready endpoint on
    /// `endpoint`, starting with the response time estimate `rtt` (see
    /// [`peer_rtt`](Self::peer_rtt)). Its channel is made on its first pick.
    pub(super) fn insert(
        &mut self,
        key: String,
        instance: Instance,
        endpoint: Endpoint,
        rtt: Duration,
    ) {
        self.remove(&key);
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots += 1;
            self.slots - 1
        });
        let epoch = self.epoch();
        let target = Arc::new(Target::new(
            key.clone(),
            instance.addr.clone(),
            endpoint,
            self.runtime.clone(),
            PeakEwma::new(rtt),
            epoch,
        ));
        let weight = instance.weight.max(1);
        self.ready.insert(slot, target.clone(), weight);
        debug!(%key, addr = %instance.addr, weight = instance.weight, "endpoint inserted");
        self.entries.insert(
            key,
            Entry {
                instance,
                target,
                probe: None,
                slot,
                weight,
                excluded: 0,
            },
        );
    }

    /// Gives `key` a new target (a new epoch) over `channel`, connected by a
    /// probe; whether it is there.
    pub(super) fn reconnect(&mut self, key: &str, channel: Channel) -> bool {
        let rtt = self.peer_rtt();
        let epoch = self.epoch();
        let runtime = self.runtime.clone();
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        let target = Target::new(
            key.to_owned(),
            entry.instance.addr.clone(),
            entry.target.endpoint.clone(),
            runtime,
            PeakEwma::new(rtt),
            epoch,
        );
        entry.target = Arc::new(target.with_channel(channel));
        if entry.ready() {
            self.ready
                .insert(entry.slot, entry.target.clone(), entry.weight);
        }
        true
    }

    /// Leaves `key` out of the picks for `why` (on top of any other reason);
    /// whether it was picked until now. O(log n).
    pub(super) fn exclude(&mut self, key: &str, why: Exclusion) -> bool {
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        let was_ready = entry.ready();
        entry.excluded |= why.bit();
        if was_ready {
            self.ready.remove(entry.slot);
        }
        was_ready
    }

    /// Lifts `why` from `key`; whether it is picked again (no other reason
    /// holds). O(log n).
    pub(super) fn include(&mut self, key: &str, why: Exclusion) -> bool {
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        if !entry.is_excluded(why) {
            return false;
        }
        entry.excluded &= !why.bit();
        if entry.ready() {
            self.ready
                .insert(entry.slot, entry.target.clone(), entry.weight);
        }
        entry.ready()
    }

    /// Sets the weight weighted round robin uses for `key` (not the
    /// instance's): for a slow start that ramps an endpoint up. O(log n);
    /// whether `key` is there. The next weight change from the registry
    /// sets it back to the instance's.
    #[allow(dead_code)] // For slow start.
    pub(super) fn set_weight(&mut self, key: &str, weight: u32) -> bool {
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        entry.weight = weight.max(1);
        if entry.ready() {
            self.ready.set_weight(entry.slot, entry.weight);
        }
        true
    }

    /// Removes `key`, stopping its probe; whether it was there.
    pub(super) fn remove(&mut self, key: &str) -> bool {
        match self.entries.remove(key) {
            Some(entry) => {
                if let Some(probe) = entry.probe {
                    probe.abort();
                }
                self.ready.remove(entry.slot);
                self.free.push(entry.slot);
                true
            }
            None => false,
        }
    }
}

/// Whether two instances of one key are the same endpoint, whatever their
/// weights.
fn same_endpoint(a: &Instance, b: &Instance) -> bool {
    a.addr == b.addr
        && a.id == b.id
        && a.service == b.service
        && a.version == b.version
        && a.metadata == b.metadata
}

#[cfg(test)]
mod tests;
