//! [`Ready`]: the endpoints a balancer may pick now, held in the structure
//! its policy picks from, so that a pick costs O(1) or O(log n) and a change
//! O(log n), whatever n.
//!
//! Every ready endpoint has a slot (a small number, fixed for its life in
//! the set) and a place in a dense list (for p2c's random draws, and counts);
//! round robin adds a [`Rotation`] in key order, weighted round robin a
//! [`Schedule`], consistent hashing a [`Ring`]. p2c's draws are in `picker`;
//! the dense list points straight at each endpoint's load, so that a draw
//! reads one entry and one load (no lock: see `load`), and only the winner's
//! target is looked up.
//! (Over 400 lines with its tests: the four policies' structures share the
//! slots and the dense list, and their bookkeeping is checked together.)

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::hash_key::{hash, load_bound, Hashing};
use super::load::{Nanos, PeakEwma};
use super::pick::Pick;
use super::picker::p2c;
use super::policy::Policy;
use super::ring::Ring;
use super::rotation::Rotation;
use super::schedule::Schedule;
use super::target::Target;

/// How many endpoints [`Ready::mean_rtt`] samples.
const RTT_SAMPLES: usize = 16;

/// How many random draws p2c makes to find an endpoint not tried yet before
/// it falls back to listing them.
const DRAWS: usize = 8;

#[derive(Debug)]
struct Node {
    target: Arc<Target>,
    /// Index in `Ready::dense`.
    dense: u32,
}

/// One ready endpoint in the dense list: what p2c reads of it, one pointer
/// away each (16 bytes, so that the list of 100,000 stays near the cache).
#[derive(Debug)]
struct Dense {
    load: Arc<PeakEwma>,
    target: Arc<Target>,
}

impl Dense {
    /// Its load's cost at `now`. Reads its target's reference count too,
    /// beside the load: the winner's clone then finds that line in cache.
    /// With many endpoints both lines are far (a cache miss and a page walk
    /// each), and misses that overlap cost about one: the two candidates'
    /// four lines are read at once rather than the winner's target after
    /// the comparison.
    fn cost(&self, now: Nanos) -> f64 {
        std::hint::black_box(Arc::strong_count(&self.target));
        self.load.cost(now)
    }
}

#[derive(Debug)]
enum Order {
    Rotation(Rotation),
    Schedule(Schedule),
    Random,
    /// Consistent hashing; keyless requests take the dense list in turn,
    /// from `turn`.
    Ring {
        ring: Ring,
        factor: f64,
        turn: usize,
    },
}

/// The ready endpoints, by slot; see the module docs.
#[derive(Debug)]
pub(super) struct Ready {
    nodes: Vec<Option<Node>>,
    /// The ready endpoints, in no order.
    dense: Vec<Dense>,
    /// The slot of each entry of `dense`, in step with it (for removals).
    dense_slots: Vec<u32>,
    /// Slow start's factor of each entry of `dense`, in step with it (1
    /// unless ramping; see `slow_start`), apart so that `dense` stays small.
    ramps: Vec<f32>,
    /// How many entries ramp (a factor below 1): p2c reads `ramps` only then.
    ramping: usize,
    order: Order,
}

impl Ready {
    pub(super) fn new(policy: Policy) -> Self {
        let order = match policy {
            Policy::RoundRobin => Order::Rotation(Rotation::default()),
            Policy::Weighted => Order::Schedule(Schedule::default()),
            Policy::P2c => Order::Random,
            Policy::ConsistentHash => {
                let hashing = Hashing::default();
                Order::Ring {
                    ring: Ring::new(hashing.vnodes),
                    factor: hashing.factor,
                    turn: 0,
                }
            }
        };
        Self {
            nodes: Vec::new(),
            dense: Vec::new(),
            dense_slots: Vec::new(),
            ramps: Vec::new(),
            ramping: 0,
            order,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.dense.len()
    }

    /// Sets consistent hashing's points per endpoint and load factor (see
    /// the builder); before any endpoint is in. Other policies ignore it.
    pub(super) fn hashing(&mut self, vnodes: u32, load_factor: f64) {
        if let Order::Ring { ring, factor, .. } = &mut self.order {
            debug_assert_eq!(ring.len(), 0, "the ring is set up while empty");
            *ring = Ring::new(vnodes);
            *factor = load_factor;
        }
    }

    /// Makes `slot` pickable with `target` and `weight` (used by weighted
    /// round robin only). Replaces the target if it is there already.
    pub(super) fn insert(&mut self, slot: u32, target: Arc<Target>, weight: u32) {
        let index = slot as usize;
        if self.nodes.len() <= index {
            self.nodes.resize_with(index + 1, || None);
        }
        if let Some(node) = &mut self.nodes[index] {
            let dense = &mut self.dense[node.dense as usize];
            dense.load = target.load.clone();
            dense.target = target.clone();
            node.target = target;
            self.set_weight(slot, weight);
            return;
        }
        match &mut self.order {
            Order::Rotation(rotation) => rotation.insert(&target.key, slot),
            Order::Schedule(schedule) => schedule.insert(slot, weight),
            Order::Random => {}
            Order::Ring { ring, .. } => ring.insert(slot, hash(target.key.as_bytes())),
        }
        self.dense.push(Dense {
            load: target.load.clone(),
            target: target.clone(),
        });
        self.dense_slots.push(slot);
        self.ramps.push(1.0);
        self.nodes[index] = Some(Node {
            target,
            dense: self.dense.len() as u32 - 1,
        });
    }

    /// Takes `slot` out of the picks; whether it was in.
    pub(super) fn remove(&mut self, slot: u32) -> bool {
        let Some(node) = self.nodes.get_mut(slot as usize).and_then(Option::take) else {
            return false;
        };
        match &mut self.order {
            Order::Rotation(rotation) => {
                rotation.remove(&node.target.key);
            }
            Order::Schedule(schedule) => {
                schedule.remove(slot);
            }
            Order::Random => {}
            Order::Ring { ring, .. } => {
                ring.remove(slot);
            }
        }
        let index = node.dense as usize;
        self.dense.swap_remove(index);
        self.dense_slots.swap_remove(index);
        if self.ramps.swap_remove(index) < 1.0 {
            self.ramping -= 1;
        }
        if let Some(&moved) = self.dense_slots.get(index) {
            if let Some(moved) = &mut self.nodes[moved as usize] {
                moved.dense = index as u32;
            }
        }
        true
    }

    /// Changes the weight of a ready `slot` (weighted round robin reads it).
    pub(super) fn set_weight(&mut self, slot: u32, weight: u32) {
        if let Order::Schedule(schedule) = &mut self.order {
            schedule.set_weight(slot, weight);
        }
    }

    /// Finishes the work a batch of changes left for later (consistent
    /// hashing places the points of new endpoints in one pass).
    pub(super) fn settle(&mut self) {
        if let Order::Ring { ring, .. } = &mut self.order {
            ring.settle();
        }
    }

    /// Sets slow start's factor of a ready `slot`, which p2c reads.
    pub(super) fn set_ramp(&mut self, slot: u32, factor: f64) {
        let Some(Some(node)) = self.nodes.get(slot as usize) else {
            return;
        };
        let ramp = &mut self.ramps[node.dense as usize];
        let (was, now) = (*ramp < 1.0, factor < 1.0);
        *ramp = factor as f32;
        match (was, now) {
            (false, true) => self.ramping += 1,
            (true, false) => self.ramping -= 1,
            _ => {}
        }
    }

    /// A ready endpoint by the policy and `pick`, passing over the targets
    /// whose epochs are in `tried`.
    pub(super) fn pick(&mut self, pick: &Pick, tried: &[u64]) -> Option<Arc<Target>> {
        let nodes = &self.nodes;
        let target = |slot: u32| {
            &nodes[slot as usize]
                .as_ref()
                .expect("a picked slot is ready")
                .target
        };
        let skip = |slot: u32| !tried.is_empty() && tried.contains(&target(slot).epoch);
        let slot = match &mut self.order {
            Order::Rotation(rotation) => rotation.pick(skip)?,
            Order::Schedule(schedule) => schedule.pick(skip)?,
            Order::Random => {
                let now = Nanos::now();
                let (dense, ramps) = (&self.dense, &self.ramps);
                let ramping = self.ramping > 0;
                // Slow start: a ramping endpoint wins a comparison with
                // probability factor / 2, and otherwise counts as infinitely
                // loaded (see `slow_start`).
                let cost = |i: usize| {
                    if ramping && ramps[i] < 1.0 && rand::random::<f32>() >= ramps[i] / 2.0 {
                        return f64::INFINITY;
                    }
                    dense[i].cost(now)
                };
                let mut rng = rand::rng();
                let index = if tried.is_empty() {
                    p2c(dense.len(), cost, &mut rng)?
                } else {
                    p2c_untried(dense, tried, cost, &mut rng)?
                };
                return Some(dense[index].target.clone());
            }
            Order::Ring { ring, factor, turn } => match pick.key {
                Some(key) => {
                    let bound = load_bound(*factor, pick.in_flight, self.dense.len());
                    // No endpoint has more in flight than all together: below
                    // the bound, none is full and no load need be read.
                    let full = |slot: u32| {
                        bound <= pick.in_flight && target(slot).load.in_flight() >= bound
                    };
                    ring.settle();
                    ring.pick(key, skip, full)?
                }
                None => in_turn(&self.dense_slots, turn, skip)?,
            },
        };
        Some(target(slot).clone())
    }

    /// The mean response time estimate of a few ready endpoints spread over
    /// the set (all of them when there are few), or `None` with none ready:
    /// what a new endpoint starts with, in O(1).
    pub(super) fn mean_rtt(&self) -> Option<Duration> {
        let n = self.dense.len();
        if n == 0 {
            return None;
        }
        let samples = n.min(RTT_SAMPLES);
        let step = n / samples;
        let sum: Duration = (0..samples).map(|i| self.dense[i * step].load.rtt()).sum();
        Some(sum / samples as u32)
    }

    /// The ready targets, in no order.
    pub(super) fn targets(&self) -> impl Iterator<Item = &Arc<Target>> {
        self.nodes.iter().flatten().map(|node| &node.target)
    }
}

/// The slot of `slots` at `turn`, or the next one `skip` does not refuse,
/// at most once round; `turn` moves past it. Round robin over the dense
/// list, whose order changes as endpoints leave (a swap): keyless requests
/// are spread evenly, though not in key order.
fn in_turn(slots: &[u32], turn: &mut usize, skip: impl Fn(u32) -> bool) -> Option<u32> {
    let n = slots.len();
    for _ in 0..n {
        let index = *turn % n;
        *turn = index + 1;
        if !skip(slots[index]) {
            return Some(slots[index]);
        }
    }
    None
}

/// p2c by `cost` among the entries of `dense` whose targets' epochs are not
/// in `tried`: a few random draws, as a retry has tried only a few; the
/// whole list if they all miss. The index of the one chosen.
fn p2c_untried(
    dense: &[Dense],
    tried: &[u64],
    cost: impl Fn(usize) -> f64,
    rng: &mut impl Rng,
) -> Option<usize> {
    let skip = |i: usize| tried.contains(&dense[i].target.epoch);
    let n = dense.len();
    if n == 0 {
        return None;
    }
    let mut draw = |other: Option<usize>| {
        (0..DRAWS)
            .map(|_| rng.random_range(0..n))
            .find(|&i| !skip(i) && Some(i) != other)
    };
    if let Some(a) = draw(None) {
        if let Some(b) = draw(Some(a)) {
            return Some(if cost(b) < cost(a) { b } else { a });
        }
    }
    let untried: Vec<usize> = (0..n).filter(|&i| !skip(i)).collect();
    let index = p2c(untried.len(), |i| cost(untried[i]), rng)?;
    Some(untried[index])
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use tokio::runtime::Handle;

    use super::*;
    use crate::endpoint::default_endpoint;
    use crate::instance::Instance;

    fn target(slot: u32, epoch: u64, rtt_ms: u64) -> Arc<Target> {
        let instance = Instance::new("svc", format!("127.0.0.1:{}", 1_000 + slot)).unwrap();
        Arc::new(Target::new(
            format!("k{slot:03}"),
            Arc::new(instance),
            Arc::new(default_endpoint),
            Handle::current(),
            PeakEwma::new(Duration::from_millis(rtt_ms)),
            epoch,
        ))
    }

    /// Every ready slot is in the dense list once, pointing at its target's
    /// load, and the nodes know their places.
    fn check(ready: &Ready) {
        assert_eq!(ready.dense.len(), ready.targets().count());
        assert_eq!(ready.dense.len(), ready.dense_slots.len());
        for (index, dense) in ready.dense.iter().enumerate() {
            let slot = ready.dense_slots[index];
            let node = ready.nodes[slot as usize].as_ref().unwrap();
            assert_eq!(node.dense as usize, index);
            assert!(Arc::ptr_eq(&node.target, &dense.target));
            assert!(Arc::ptr_eq(&node.target.load, &dense.load));
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_dense_list_follows_random_changes() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut ready = Ready::new(Policy::P2c);
        let mut epoch = 0;
        let mut there = HashSet::new();
        for _ in 0..2_000 {
            let slot = rng.random_range(0..40u32);
            epoch += 1;
            if rng.random_bool(0.6) {
                // A new target, or a replacement of the one there.
                ready.insert(slot, target(slot, epoch, 10), 1);
                there.insert(slot);
            } else {
                assert_eq!(ready.remove(slot), there.remove(&slot));
            }
            check(&ready);
            let picked = ready.pick(&Pick::default(), &[]);
            assert_eq!(picked.is_some(), !there.is_empty());
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn p2c_reads_the_replaced_targets_load() {
        let mut ready = Ready::new(Policy::P2c);
        ready.insert(0, target(0, 1, 10), 1);
        ready.insert(1, target(1, 2, 10), 1);
        // Slot 0 gets a new target whose estimate is far worse: p2c, which
        // always draws both of two, never picks it.
        ready.insert(0, target(0, 3, 10_000), 1);
        check(&ready);
        for _ in 0..50 {
            assert_eq!(ready.pick(&Pick::default(), &[]).unwrap().epoch, 2);
        }
        // Unless the other was tried already.
        assert_eq!(ready.pick(&Pick::default(), &[2]).unwrap().epoch, 3);
        assert!(ready.pick(&Pick::default(), &[2, 3]).is_none());
    }
}
