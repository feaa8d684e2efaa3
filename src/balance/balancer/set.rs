//! The endpoint set of a balancer: one [`Entry`] per instance, sorted by key,
//! the reasons an entry is not picked, and [`Zones`], what the pickers read
//! (the ready endpoints, by zone), with slow start's [`Ramps`].
//! (About 560 lines: every change of an entry keeps the pickers' structures
//! and the per-state counters in step, and that bookkeeping belongs together.)
//!
//! Every operation costs O(log n) or less: a batch of k changes costs
//! O(k log n), and nothing is rebuilt per change. The one exception is panic
//! mode's pick ([`Set::pick_panic`]), a scan of the entries from a cursor: it
//! runs only when no endpoint at all is ready, an emergency state.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::task::AbortHandle;
use tonic::transport::Channel;
use tower::discover::Change;
use tracing::debug;

use super::load::{PeakEwma, DEFAULT_RTT};
use super::locality::{Locality, Zones};
use super::pick::Pick;
use super::policy::Policy;
use super::shared::Template;
use super::slow_start::{Ramps, SlowStart};
use super::target::Target;
use crate::instance::Instance;

/// Why an endpoint is not picked. An endpoint can be left out for several
/// reasons at once; it is picked again once none is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(dead_code)] // Drained is for drains.
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

    /// The reasons panic mode routes through: the endpoint's answers, not
    /// its connection or an operator.
    const PANIC: u8 = (1 << Exclusion::Ejected as u8) | (1 << Exclusion::Unhealthy as u8);
}

/// One instance of the set.
#[derive(Debug)]
pub(super) struct Entry {
    /// Shared with its target (which builds its endpoint from it).
    pub(super) instance: Arc<Instance>,
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

    /// Whether panic mode may route to it: excluded, but only for its answers
    /// (ejected, unhealthy), not unreachable nor drained.
    pub(super) fn panic_eligible(&self) -> bool {
        self.excluded != 0 && self.excluded & !Exclusion::PANIC == 0
    }

    /// The exclusions that hold, in declaration order.
    #[allow(dead_code)] // For tests and later statuses.
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
    /// The ready endpoints, by zone (one group without a locality).
    ready: Zones,
    /// Slow start's ramps (a no-op when it is off).
    ramps: Ramps,
    /// Slots given back by removed entries, and the next never used.
    free: Vec<u32>,
    slots: u32,
    next_epoch: u64,
    /// Where the targets' channels spawn their tasks.
    runtime: Handle,
    /// How many entries are [`Exclusion::Ejected`]: the cap on ejections
    /// reads it in O(1).
    ejected: usize,
    /// How many are unreachable, and how many unhealthy (for the gauges).
    unreachable: usize,
    unhealthy: usize,
    /// Route to the entries excluded only for their answers when none is
    /// ready (see [`pick_panic`](Self::pick_panic)).
    pub(super) panic_mode: bool,
    /// The key panic mode picked last: the next scan starts after it.
    panic_cursor: Option<String>,
}

impl Set {
    pub(super) fn new(policy: Policy, runtime: Handle) -> Self {
        Self {
            entries: BTreeMap::new(),
            ready: Zones::new(policy, None),
            ramps: Ramps::default(),
            free: Vec::new(),
            slots: 0,
            next_epoch: 0,
            runtime,
            ejected: 0,
            unreachable: 0,
            unhealthy: 0,
            panic_mode: false,
            panic_cursor: None,
        }
    }

    /// Sets locality-aware routing and slow start, on an empty set. Round
    /// robin with slow start schedules by weight (see `slow_start`).
    pub(super) fn route(
        &mut self,
        policy: Policy,
        locality: Option<Locality>,
        slow_start: Option<SlowStart>,
    ) {
        debug_assert!(self.entries.is_empty());
        self.ramps = Ramps::new(slow_start, policy == Policy::RoundRobin);
        let order = match policy {
            Policy::RoundRobin if self.ramps.on() => Policy::Weighted,
            policy => policy,
        };
        self.ready = Zones::new(order, locality);
    }

    /// Starts the slow start of `key` at `now` if it is ready and slow
    /// start is on: its weight drops to the ramp's first step. O(log n).
    pub(super) fn ramp_up(&mut self, key: &str, now: Instant) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if !entry.ready() || !self.ramps.start(key, now) {
            return;
        }
        entry.weight = self.ramps.weight(key, &entry.instance, now);
        self.ready.set_weight(entry.slot, entry.weight);
        self.ready.set_ramp(entry.slot, self.ramps.factor(key, now));
    }

    /// Steps every ramping endpoint's weight to `now`; whether some are
    /// still ramping. O(r log n) for r ramping.
    pub(super) fn ramp_step(&mut self, now: Instant) -> bool {
        for (key, factor) in self.ramps.advance(now) {
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            entry.weight =
                super::slow_start::scaled(self.ramps.full_weight(&entry.instance), factor);
            if entry.ready() {
                self.ready.set_weight(entry.slot, entry.weight);
                self.ready.set_ramp(entry.slot, factor);
            }
        }
        self.ramps.ramping()
    }

    /// Whether some endpoints are ramping up, and how often to step them.
    pub(super) fn ramping(&self) -> Option<Duration> {
        self.ramps.step().filter(|_| self.ramps.ramping())
    }

    /// The share of the picks that go to the client's zone now (1 without
    /// locality-aware routing).
    #[allow(dead_code)] // For statuses and tests.
    pub(super) fn local_share(&self) -> f64 {
        self.ready.local_share()
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
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) fn pick(&mut self, tried: &[u64]) -> Option<Arc<Target>> {
        self.pick_with(&Pick::default(), tried)
    }

    /// [`pick`](Self::pick) for a request's [`Pick`] (its hashed key, for
    /// consistent hashing: O(1) expected).
    pub(super) fn pick_with(&mut self, pick: &Pick, tried: &[u64]) -> Option<Arc<Target>> {
        self.ready.pick(pick, tried)
    }

    /// Finishes the work a batch of changes left for later, once per batch
    /// (consistent hashing places the points of new endpoints in one pass;
    /// a pick would do it too).
    pub(super) fn settle(&mut self) {
        self.ready.settle();
    }

    /// Sets consistent hashing's points per endpoint and load factor, while
    /// the set is empty (other policies ignore it).
    pub(super) fn hashing(&mut self, vnodes: u32, factor: f64) {
        self.ready.hashing(vnodes, factor);
    }

    /// How many of them are ejected by outlier detection. O(1).
    pub(super) fn ejected_len(&self) -> usize {
        self.ejected
    }

    /// How many are unreachable (being probed) and how many unhealthy. O(1).
    pub(super) fn unreachable_and_unhealthy(&self) -> (usize, usize) {
        (self.unreachable, self.unhealthy)
    }

    fn count(&mut self, why: Exclusion, delta: isize) {
        let counter = match why {
            Exclusion::Ejected => &mut self.ejected,
            Exclusion::Unreachable => &mut self.unreachable,
            Exclusion::Unhealthy => &mut self.unhealthy,
            _ => return,
        };
        *counter = counter.saturating_add_signed(delta);
    }

    /// Whether panic mode routes now: it is on, no endpoint is ready, and
    /// some are excluded only for their answers. O(n) when nothing is
    /// ready (for statuses, not for picks).
    pub(super) fn panicking(&self) -> bool {
        self.panic_mode && self.ready.len() == 0 && self.entries.values().any(Entry::panic_eligible)
    }

    /// Panic mode's pick, when no endpoint is ready: the next entry after
    /// the cursor, in key order, excluded only for its answers (ejected or
    /// unhealthy) and not in `tried`. This is a scan, O(n) at worst, unlike
    /// the other picks: it runs only in the emergency where outlier
    /// detection or health checks have taken out every connected endpoint.
    pub(super) fn pick_panic(&mut self, tried: &[u64]) -> Option<Arc<Target>> {
        if !self.panic_mode || self.ready.len() != 0 {
            return None;
        }
        use std::ops::Bound::{Excluded, Unbounded};
        let after = match &self.panic_cursor {
            Some(cursor) => (Excluded(cursor.as_str()), Unbounded),
            None => (Unbounded, Unbounded),
        };
        let upto = match &self.panic_cursor {
            Some(cursor) => (Unbounded, std::ops::Bound::Included(cursor.as_str())),
            None => (Unbounded, Excluded("")),
        };
        let (key, target) = self
            .entries
            .range::<str, _>(after)
            .chain(self.entries.range::<str, _>(upto))
            .find(|(_, entry)| entry.panic_eligible() && !tried.contains(&entry.target.epoch))
            .map(|(key, entry)| (key.clone(), entry.target.clone()))?;
        self.panic_cursor = Some(key);
        Some(target)
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
                        entry.weight = self.ramps.weight(&key, &instance, Instant::now());
                        entry.instance = Arc::new(instance);
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

    /// Inserts `key` (replacing what was there) as a new, ready endpoint
    /// whose endpoint `template` builds, starting with the response time
    /// estimate `rtt` (see [`peer_rtt`](Self::peer_rtt)). Its endpoint and
    /// channel are made on its first pick. Returns its target.
    pub(super) fn insert(
        &mut self,
        key: String,
        instance: Instance,
        template: Template,
        rtt: Duration,
    ) -> Arc<Target> {
        self.remove(&key);
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots += 1;
            self.slots - 1
        });
        let epoch = self.epoch();
        let instance = Arc::new(instance);
        let target = Arc::new(Target::new(
            key.clone(),
            instance.clone(),
            template,
            self.runtime.clone(),
            PeakEwma::new(rtt),
            epoch,
        ));
        let weight = self.ramps.full_weight(&instance);
        self.ready.join(slot, &instance);
        self.ready.insert(slot, target.clone(), weight);
        debug!(%key, addr = %instance.addr, weight = instance.weight, "endpoint inserted");
        self.entries.insert(
            key,
            Entry {
                instance,
                target: target.clone(),
                probe: None,
                slot,
                weight,
                excluded: 0,
            },
        );
        target
    }

    /// Gives `key` a new target (a new epoch) over `channel`, connected by a
    /// probe; the new target, if `key` is there. The new target's answers
    /// start afresh (its [`Health`](super::health::Health) is new), so the
    /// exclusions for the old one's answers (ejected, unhealthy) are lifted.
    pub(super) fn reconnect(&mut self, key: &str, channel: Channel) -> Option<Arc<Target>> {
        let rtt = self.peer_rtt();
        let epoch = self.epoch();
        let runtime = self.runtime.clone();
        let entry = self.entries.get_mut(key)?;
        let target = Target::new(
            key.to_owned(),
            entry.instance.clone(),
            entry.target.template(),
            runtime,
            PeakEwma::new(rtt),
            epoch,
        );
        entry.target = Arc::new(target.with_channel(channel));
        let (ejected, unhealthy) = (
            entry.is_excluded(Exclusion::Ejected),
            entry.is_excluded(Exclusion::Unhealthy),
        );
        entry.excluded &= !Exclusion::PANIC;
        if entry.ready() {
            self.ready
                .insert(entry.slot, entry.target.clone(), entry.weight);
        }
        let target = entry.target.clone();
        if ejected {
            self.count(Exclusion::Ejected, -1);
        }
        if unhealthy {
            self.count(Exclusion::Unhealthy, -1);
        }
        Some(target)
    }

    /// Leaves `key` out of the picks for `why` (on top of any other reason);
    /// whether it was picked until now. O(log n).
    pub(super) fn exclude(&mut self, key: &str, why: Exclusion) -> bool {
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        let was_ready = entry.ready();
        let new = !entry.is_excluded(why);
        entry.excluded |= why.bit();
        if was_ready {
            self.ready.remove(entry.slot);
        }
        if new {
            self.count(why, 1);
        }
        was_ready
    }

    /// Lifts `why` from `key`; whether it is picked again (no other reason
    /// holds). O(log n). An endpoint back from [`Exclusion::Unhealthy`] had
    /// no traffic meanwhile: its response time estimate starts again from
    /// its peers' (see [`peer_rtt`](Self::peer_rtt)), so that p2c neither
    /// floods nor starves it.
    pub(super) fn include(&mut self, key: &str, why: Exclusion) -> bool {
        let rtt = self.peer_rtt();
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        if !entry.is_excluded(why) {
            return false;
        }
        entry.excluded &= !why.bit();
        if why == Exclusion::Unhealthy && entry.ready() {
            entry.target.load.restart(rtt);
        }
        let ready = entry.ready();
        if ready {
            self.ready
                .insert(entry.slot, entry.target.clone(), entry.weight);
        }
        self.count(why, -1);
        // Back after a time out of rotation, it ramps up as a new one.
        if ready && self.ready.len() > 1 {
            self.ramp_up(key, Instant::now());
        }
        ready
    }

    /// Sets the weight weighted round robin uses for `key` (not the
    /// instance's): for a slow start that ramps an endpoint up. O(log n);
    /// whether `key` is there. The next weight change from the registry
    /// sets it back to the instance's.
    #[allow(dead_code)] // For tests and operators.
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
                for why in [
                    Exclusion::Ejected,
                    Exclusion::Unreachable,
                    Exclusion::Unhealthy,
                ] {
                    if entry.is_excluded(why) {
                        self.count(why, -1);
                    }
                }
                if let Some(probe) = entry.probe {
                    probe.abort();
                }
                self.ready.remove(entry.slot);
                self.ready.leave(entry.slot);
                self.ramps.stop(key);
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
mod routing_tests;
#[cfg(test)]
mod tests;
