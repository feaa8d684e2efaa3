//! [`Ready`]: the endpoints a balancer may pick now, held in the structure
//! its policy picks from, so that a pick costs O(1) or O(log n) and a change
//! O(log n), whatever n.
//!
//! Every ready endpoint has a slot (a small number, fixed for its life in
//! the set) and a place in a dense list (for p2c's random draws, and counts);
//! round robin adds a [`Rotation`] in key order, weighted round robin a
//! [`Schedule`]. p2c's draws are in `picker`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use super::picker::p2c;
use super::policy::Policy;
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
    /// Slow start's factor (1 unless ramping), which p2c reads (see
    /// `slow_start`).
    ramp: f64,
}

#[derive(Debug)]
enum Order {
    Rotation(Rotation),
    Schedule(Schedule),
    Random,
}

/// The ready endpoints, by slot; see the module docs.
#[derive(Debug)]
pub(super) struct Ready {
    nodes: Vec<Option<Node>>,
    /// The ready slots, in no order.
    dense: Vec<u32>,
    order: Order,
}

impl Ready {
    pub(super) fn new(policy: Policy) -> Self {
        let order = match policy {
            Policy::RoundRobin => Order::Rotation(Rotation::default()),
            Policy::Weighted => Order::Schedule(Schedule::default()),
            Policy::P2c => Order::Random,
        };
        Self {
            nodes: Vec::new(),
            dense: Vec::new(),
            order,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.dense.len()
    }

    /// Makes `slot` pickable with `target` and `weight` (used by weighted
    /// round robin only). Replaces the target if it is there already.
    pub(super) fn insert(&mut self, slot: u32, target: Arc<Target>, weight: u32) {
        let index = slot as usize;
        if self.nodes.len() <= index {
            self.nodes.resize_with(index + 1, || None);
        }
        if let Some(node) = &mut self.nodes[index] {
            node.target = target;
            self.set_weight(slot, weight);
            return;
        }
        match &mut self.order {
            Order::Rotation(rotation) => rotation.insert(&target.key, slot),
            Order::Schedule(schedule) => schedule.insert(slot, weight),
            Order::Random => {}
        }
        self.nodes[index] = Some(Node {
            target,
            dense: self.dense.len() as u32,
            ramp: 1.0,
        });
        self.dense.push(slot);
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
        }
        let index = node.dense as usize;
        self.dense.swap_remove(index);
        if let Some(&moved) = self.dense.get(index) {
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

    /// Sets slow start's factor of a ready `slot`, which p2c reads.
    pub(super) fn set_ramp(&mut self, slot: u32, factor: f64) {
        if let Some(Some(node)) = self.nodes.get_mut(slot as usize) {
            node.ramp = factor;
        }
    }

    /// A ready endpoint by the policy, passing over the targets whose epochs
    /// are in `tried`.
    pub(super) fn pick(&mut self, tried: &[u64]) -> Option<Arc<Target>> {
        let nodes = &self.nodes;
        let node = |slot: u32| {
            nodes[slot as usize]
                .as_ref()
                .expect("a picked slot is ready")
        };
        let target = |slot: u32| &node(slot).target;
        let skip = |slot: u32| !tried.is_empty() && tried.contains(&target(slot).epoch);
        let slot = match &mut self.order {
            Order::Rotation(rotation) => rotation.pick(skip)?,
            Order::Schedule(schedule) => schedule.pick(skip)?,
            Order::Random => {
                let now = Instant::now();
                // Slow start: a ramping endpoint wins with probability
                // ramp / 2 (see `slow_start`).
                let cost = |slot: u32| match node(slot).ramp {
                    ramp if ramp < 1.0 && rand::random::<f64>() >= ramp / 2.0 => f64::INFINITY,
                    _ => target(slot).load.cost(now),
                };
                let mut rng = rand::rng();
                if tried.is_empty() {
                    let index = p2c(self.dense.len(), |i| cost(self.dense[i]), &mut rng)?;
                    self.dense[index]
                } else {
                    p2c_untried(&self.dense, skip, cost, &mut rng)?
                }
            }
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
        let sum: Duration = (0..samples)
            .map(|i| {
                let slot = self.dense[i * step];
                self.nodes[slot as usize]
                    .as_ref()
                    .expect("a dense slot is ready")
                    .target
                    .load
                    .rtt()
            })
            .sum();
        Some(sum / samples as u32)
    }

    /// The ready targets, in no order.
    pub(super) fn targets(&self) -> impl Iterator<Item = &Arc<Target>> {
        self.nodes.iter().flatten().map(|node| &node.target)
    }
}

/// p2c among the slots of `dense` that `skip` does not refuse: a few random
/// draws, as a retry has tried only a few; the whole list if they all miss.
fn p2c_untried(
    dense: &[u32],
    skip: impl Fn(u32) -> bool,
    cost: impl Fn(u32) -> f64,
    rng: &mut impl Rng,
) -> Option<u32> {
    let n = dense.len();
    if n == 0 {
        return None;
    }
    let mut draw = |other: Option<u32>| {
        (0..DRAWS)
            .map(|_| dense[rng.random_range(0..n)])
            .find(|&slot| !skip(slot) && Some(slot) != other)
    };
    if let Some(a) = draw(None) {
        if let Some(b) = draw(Some(a)) {
            return Some(if cost(b) < cost(a) { b } else { a });
        }
    }
    let untried: Vec<u32> = dense.iter().copied().filter(|&slot| !skip(slot)).collect();
    let index = p2c(untried.len(), |i| cost(untried[i]), rng)?;
    Some(untried[index])
}
