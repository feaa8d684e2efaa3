//! Locality-aware routing: [`Locality`] (the client's zone, and when that
//! zone has enough ready endpoints to take every request), the share of
//! picks that stays in the zone ([`local_share`]), the choice of a group per
//! pick ([`Split`]), and [`Zones`], the ready endpoints in two groups.
//!
//! The model is Envoy's priority levels with their overprovisioning factor
//! (<https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/priority>):
//! the client's zone is the first level, every other zone the second, and
//! the first level takes the share `min(1, health × overprovisioning)` of
//! the requests, the rest going to the second. Here `health` is the ready
//! fraction of the zone's endpoints, and the overprovisioning is
//! `1 / min_ready_fraction` (Envoy's default 1.4 is a fraction of about
//! 0.7). The share moves by `1 / needed` per endpoint that comes or goes,
//! never from all to nothing at a threshold: there is nothing to flap.

use std::sync::Arc;
use std::time::Duration;

use super::pick::Pick;
use super::policy::Policy;
use super::ready::Ready;
use super::target::Target;
use crate::instance::Instance;

/// Locality-aware routing: requests go to the endpoints of the client's
/// zone while enough of them are ready, and spill over to the other zones
/// smoothly as they fail. Set with
/// [`BalancerBuilder::locality`](crate::BalancerBuilder::locality).
///
/// An instance's zone is its metadata entry `zone`
/// ([`Locality::METADATA_KEY`], registered with
/// `Instance::with_metadata("zone", ..)`); instances without one count as
/// another zone.
///
/// The zone is *enough* when its ready endpoints reach `needed`, the larger
/// of [`min_ready_fraction`](Self::min_ready_fraction) × its endpoints (0.7
/// by default) and [`min_ready`](Self::min_ready) (1 by default). Below
/// that, it takes the share `ready / needed` of the requests and the other
/// zones the rest: with 10 endpoints in the zone, 7 ready keep every request
/// local, 6 keep 6/7 of them, none sends every request elsewhere. Its
/// endpoints count whatever their state (unreachable, ejected, unhealthy);
/// an instance that deregisters leaves the count. When no other zone has a
/// ready endpoint, every request stays local.
///
/// ```
/// use tonic_etcd::balance::Locality;
///
/// let locality = Locality::new("eu-west-1a").min_ready_fraction(0.5).min_ready(2);
/// assert_eq!(locality.zone(), "eu-west-1a");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Locality {
    zone: String,
    min_ready_fraction: f64,
    min_ready: usize,
}

impl Locality {
    /// The metadata key of an instance's zone: `zone`.
    ///
    /// ```
    /// use tonic_etcd::{balance::Locality, Instance};
    ///
    /// let instance = Instance::new("helloworld", "10.0.0.7:50051")?
    ///     .with_metadata(Locality::METADATA_KEY, "a");
    /// assert_eq!(instance.metadata["zone"], "a");
    /// # Ok::<(), tonic_etcd::Error>(())
    /// ```
    pub const METADATA_KEY: &'static str = "zone";

    /// The default [`min_ready_fraction`](Self::min_ready_fraction): 0.7,
    /// about Envoy's overprovisioning factor of 1.4 (1 / 1.4 ≈ 0.71).
    pub const DEFAULT_MIN_READY_FRACTION: f64 = 0.7;

    /// Prefers the endpoints of `zone`, with the default thresholds.
    ///
    /// ```
    /// let locality = tonic_etcd::balance::Locality::new("a");
    /// assert_eq!(locality.zone(), "a");
    /// ```
    pub fn new(zone: impl Into<String>) -> Self {
        Self {
            zone: zone.into(),
            min_ready_fraction: Self::DEFAULT_MIN_READY_FRACTION,
            min_ready: 1,
        }
    }

    /// Sets the fraction of the zone's endpoints that must be ready for it
    /// to take every request, within 0..=1 (outside, it is clamped).
    /// Defaults to [`DEFAULT_MIN_READY_FRACTION`](Self::DEFAULT_MIN_READY_FRACTION).
    ///
    /// ```
    /// // Every endpoint of the zone must be ready; one out of four sends a
    /// // quarter of the requests elsewhere.
    /// let strict = tonic_etcd::balance::Locality::new("a").min_ready_fraction(1.0);
    /// ```
    pub fn min_ready_fraction(mut self, fraction: f64) -> Self {
        self.min_ready_fraction = if fraction.is_nan() {
            Self::DEFAULT_MIN_READY_FRACTION
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self
    }

    /// Sets how many endpoints of the zone must be ready, at least, for it
    /// to take every request (on top of the fraction). A zone with fewer
    /// endpoints than this always shares its requests with the others.
    /// Defaults to 1.
    ///
    /// ```
    /// let locality = tonic_etcd::balance::Locality::new("a").min_ready(3);
    /// ```
    pub fn min_ready(mut self, count: usize) -> Self {
        self.min_ready = count;
        self
    }

    /// The client's zone.
    ///
    /// ```
    /// assert_eq!(tonic_etcd::balance::Locality::new("a").zone(), "a");
    /// ```
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// Whether `instance` is in the client's zone.
    pub(super) fn is_local(&self, instance: &Instance) -> bool {
        instance
            .metadata
            .get(Self::METADATA_KEY)
            .is_some_and(|zone| *zone == self.zone)
    }

    /// How many ready endpoints the zone needs, out of `known`, to take
    /// every request.
    fn needed(&self, known: usize) -> f64 {
        (self.min_ready_fraction * known as f64).max(self.min_ready as f64)
    }
}

/// The share of the picks that goes to the client's zone, with `ready` of
/// its `known` endpoints ready: `min(1, ready / needed)`, 0 with none ready.
pub(super) fn local_share(locality: &Locality, ready: usize, known: usize) -> f64 {
    if ready == 0 {
        return 0.0;
    }
    let needed = locality.needed(known);
    if needed <= ready as f64 {
        1.0
    } else {
        ready as f64 / needed
    }
}

/// Which group a pick tries first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Group {
    Local,
    Other,
}

/// Chooses a group per pick so that over any run of picks the local ones
/// are the share asked for, within one pick: a credit grows by the share
/// per pick and a local pick spends one. Deterministic, unlike a coin per
/// pick, so round robin's and weighted's exactness carries over: a share
/// of 1/2 alternates.
#[derive(Debug, Default)]
pub(super) struct Split {
    credit: f64,
}

impl Split {
    pub(super) fn choose(&mut self, share: f64) -> Group {
        // Kept within [0, 1), so a change of share takes effect at once; the
        // tolerance keeps rational shares (5/7) exact over their periods
        // despite rounding.
        self.credit = (self.credit + share.clamp(0.0, 1.0)).min(2.0);
        if self.credit >= 1.0 - 1e-9 {
            self.credit = (self.credit - 1.0).clamp(0.0, 0.999_999);
            Group::Local
        } else {
            Group::Other
        }
    }
}

/// Where an endpoint of the set sits: its group, and its slot in that
/// group's structures.
#[derive(Debug, Clone, Copy)]
struct Place {
    local: bool,
    slot: u32,
}

/// The ready endpoints in two groups, each in its policy's structure: the
/// client's zone and the others. Without a [`Locality`] every endpoint is
/// in the first group, under its own slot, and a pick costs what the
/// policy's does; with one, a pick first chooses the group ([`Split`],
/// O(1)), then picks in it, and falls back to the other group when the
/// chosen one has nothing left to try.
///
/// With a locality each group numbers its endpoints itself, so that its
/// structures (indexed by slot) stay dense: sized by the group, not by the
/// set, which halves their cache footprint with two even zones.
#[derive(Debug)]
pub(super) struct Zones {
    locality: Option<Locality>,
    local: Ready,
    other: Ready,
    /// By the set's slot: where the endpoint is, while in the set.
    places: Vec<Option<Place>>,
    /// Per group (local, other): the slots given back, and the next never
    /// used.
    free: [Vec<u32>; 2],
    next: [u32; 2],
    /// The endpoints of the client's zone, ready or not.
    known_local: usize,
    split: Split,
}

impl Zones {
    /// Groups endpoints by `locality`, picking in each by `policy`.
    pub(super) fn new(policy: Policy, locality: Option<Locality>) -> Self {
        Self {
            locality,
            local: Ready::new(policy),
            other: Ready::new(policy),
            places: Vec::new(),
            free: [Vec::new(), Vec::new()],
            next: [0, 0],
            known_local: 0,
            split: Split::default(),
        }
    }

    /// Counts a new endpoint of the set in its zone; before its
    /// [`insert`](Self::insert).
    pub(super) fn join(&mut self, slot: u32, instance: &Instance) {
        let local = self
            .locality
            .as_ref()
            .is_none_or(|locality| locality.is_local(instance));
        let index = slot as usize;
        if self.places.len() <= index {
            self.places.resize(index + 1, None);
        }
        let group_slot = if self.locality.is_none() {
            slot
        } else {
            let group = usize::from(!local);
            self.free[group].pop().unwrap_or_else(|| {
                self.next[group] += 1;
                self.next[group] - 1
            })
        };
        self.places[index] = Some(Place {
            local,
            slot: group_slot,
        });
        if local {
            self.known_local += 1;
        }
    }

    /// Forgets an endpoint that left the set; after its
    /// [`remove`](Self::remove).
    pub(super) fn leave(&mut self, slot: u32) {
        let Some(place) = self.places.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        if place.local {
            self.known_local -= 1;
        }
        if self.locality.is_some() {
            self.free[usize::from(!place.local)].push(place.slot);
        }
    }

    /// The group of the set's `slot`, and its slot there.
    fn group(&mut self, slot: u32) -> (&mut Ready, u32) {
        let place = self.places[slot as usize].expect("a joined slot");
        let ready = if place.local {
            &mut self.local
        } else {
            &mut self.other
        };
        (ready, place.slot)
    }

    pub(super) fn len(&self) -> usize {
        self.local.len() + self.other.len()
    }

    /// The share of the picks that go to the client's zone now (1 without
    /// a locality).
    pub(super) fn local_share(&self) -> f64 {
        match &self.locality {
            None => 1.0,
            Some(_) if self.other.len() == 0 => 1.0,
            Some(locality) => local_share(locality, self.local.len(), self.known_local),
        }
    }

    /// Makes a [`join`](Self::join)ed endpoint pickable.
    pub(super) fn insert(&mut self, slot: u32, target: Arc<Target>, weight: u32) {
        let (ready, slot) = self.group(slot);
        ready.insert(slot, target, weight);
    }

    pub(super) fn remove(&mut self, slot: u32) -> bool {
        let (ready, slot) = self.group(slot);
        ready.remove(slot)
    }

    pub(super) fn set_weight(&mut self, slot: u32, weight: u32) {
        let (ready, slot) = self.group(slot);
        ready.set_weight(slot, weight);
    }

    /// Sets slow start's factor of a ready endpoint, which p2c reads.
    pub(super) fn set_ramp(&mut self, slot: u32, factor: f64) {
        let (ready, slot) = self.group(slot);
        ready.set_ramp(slot, factor);
    }

    /// A ready endpoint for `pick`: in the group [`Split`] chooses, else in
    /// the other.
    pub(super) fn pick(&mut self, pick: &Pick, tried: &[u64]) -> Option<Arc<Target>> {
        if self.locality.is_none() || self.other.len() == 0 {
            return self
                .local
                .pick(pick, tried)
                .or_else(|| self.other.pick(pick, tried));
        }
        if self.local.len() == 0 {
            return self.other.pick(pick, tried);
        }
        let share = self.local_share();
        let (first, second) = match self.split.choose(share) {
            Group::Local => (&mut self.local, &mut self.other),
            Group::Other => (&mut self.other, &mut self.local),
        };
        first.pick(pick, tried).or_else(|| second.pick(pick, tried))
    }

    /// Finishes the work a batch of changes left for later, in both groups
    /// (consistent hashing places new endpoints' points in one pass).
    pub(super) fn settle(&mut self) {
        self.local.settle();
        self.other.settle();
    }

    /// Sets consistent hashing's points per endpoint and load factor in both
    /// groups, while they are empty.
    pub(super) fn hashing(&mut self, vnodes: u32, factor: f64) {
        self.local.hashing(vnodes, factor);
        self.other.hashing(vnodes, factor);
    }

    /// The mean response time estimate of a few ready endpoints of both
    /// groups, weighted by their sizes.
    pub(super) fn mean_rtt(&self) -> Option<Duration> {
        let (a, b) = (self.local.len() as u32, self.other.len() as u32);
        match (self.local.mean_rtt(), self.other.mean_rtt()) {
            (Some(x), Some(y)) => Some((x * a + y * b) / (a + b)),
            (x, y) => x.or(y),
        }
    }

    pub(super) fn targets(&self) -> impl Iterator<Item = &Arc<Target>> {
        self.local.targets().chain(self.other.targets())
    }
}

#[cfg(test)]
mod tests;
