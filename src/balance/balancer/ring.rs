//! [`Ring`]: consistent hashing with bounded loads, over slot numbers and
//! plain data, so that it is tested alone.
//!
//! The scheme is the ring of Karger et al. ("Consistent Hashing and Random
//! Trees", STOC 1997): every endpoint puts `vnodes` points on a ring of 2^64
//! positions, and a key goes to the endpoint of the first point at or after
//! its hash. When one of n endpoints leaves, only the keys on its points
//! move (to the next point of another endpoint), about 1/n of them; when one
//! joins, only the keys that now land on its points move. The points of an
//! endpoint depend on its key alone, so every client of a fleet builds the
//! same ring from the same set, whatever the order of the changes.
//!
//! On top, the bounded loads of Mirrokni, Thorup and Zadimoghaddam
//! ("Consistent Hashing with Bounded Loads", SODA 2018): the caller refuses
//! an endpoint that is full (its load at the bound), and the walk goes on
//! round the ring to the next endpoint that is not. See `Ready::pick` for
//! the bound.
//!
//! The number of points per endpoint is fixed for the ring's life (100 by
//! default), not scaled down as the set grows: a count that depended on n
//! would change every endpoint's points when n crosses a step, moving keys
//! that were on no leaving endpoint, and two clients that saw different
//! histories could disagree. Large fleets choose fewer points up front
//! (`BalancerBuilder::hash_ring_vnodes`).

//! # Layout
//!
//! The points live in buckets by the top bits of their position, each a
//! small sorted vector: a lookup is one index and a short search, O(1)
//! expected whatever n, and adding or removing an endpoint touches `vnodes`
//! small vectors, O(vnodes). The bucket count doubles or halves as the ring
//! grows or shrinks (one pass over the points, amortized like a vector's
//! growth) so that buckets hold a few points each; it stops doubling at
//! 2^[`MAX_BITS`] buckets, where larger rings make larger buckets. A point
//! takes 12 bytes in its bucket.
//!
//! The points of new endpoints wait in a list until the next
//! [`settle`](Ring::settle) (once per batch of changes) or pick: a few are
//! put in their buckets one by one, many (a large initial set) by one
//! rebuild that counts, places and sorts every bucket in a pass, rather
//! than as many random insertions.

/// The points each endpoint puts on the ring by default: enough for an even
/// share of the keys (the share of an endpoint varies by about
/// 1/sqrt(vnodes), 10 %) at a cost of about 1.5 KB per endpoint.
pub(crate) const DEFAULT_VNODES: u32 = 100;

/// The most points an endpoint may put on the ring.
pub(crate) const MAX_VNODES: u32 = 1024;

/// Bucket counts, as powers of two.
const MIN_BITS: u32 = 4;
const MAX_BITS: u32 = 20;

/// Mean points per bucket: the count doubles above `GROW` and halves below
/// `SHRINK`, with room between the two so that it does not flap.
const GROW: usize = 16;
const SHRINK: usize = 2;

/// How many points a walk goes past the first endpoint it could fall back
/// to (one not refused, but full) before it takes that one. The bounded
/// load guarantees endpoints below the bound; this only bounds the cost
/// when the few the walk meets are all full.
const MAX_WALK: usize = 4096;

/// One point of an endpoint on the ring: its position, split in two halves
/// to keep the point at 12 bytes, and its endpoint's slot.
#[derive(Debug, Clone, Copy)]
struct Point {
    hi: u32,
    lo: u32,
    slot: u32,
}

impl Point {
    fn at(self) -> u64 {
        (u64::from(self.hi) << 32) | u64::from(self.lo)
    }
}

/// The position of point `i` of the endpoint whose key hashes to `seed`:
/// SplitMix64's output function (Steele, Lea and Flood, "Fast Splittable
/// Pseudorandom Number Generators", OOPSLA 2014) on the seed plus `i + 1`
/// golden-ratio steps. A bijection with full avalanche: distinct points for
/// one endpoint, independent-looking positions across endpoints.
pub(crate) fn point(seed: u64, i: u32) -> u64 {
    let mut z = seed.wrapping_add(u64::from(i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Consistent hashing over slots; see the module docs.
#[derive(Debug)]
pub(crate) struct Ring {
    vnodes: u32,
    /// Slot → the hash of its endpoint's key, while it is on the ring.
    seeds: Vec<Option<u64>>,
    members: usize,
    /// `buckets[b]`: the points whose top `bits` bits are `b`, sorted by
    /// position, then by seed (two endpoints on one position, a 2^-64
    /// chance, are in the same order in every client).
    buckets: Vec<Vec<Point>>,
    bits: u32,
    /// Points in the buckets.
    points: usize,
    /// Points of new endpoints, not yet in the buckets.
    pending: Vec<Point>,
}

impl Default for Ring {
    fn default() -> Self {
        Ring::new(DEFAULT_VNODES)
    }
}

impl Ring {
    /// An empty ring whose endpoints put `vnodes` points each (1 to
    /// [`MAX_VNODES`]).
    pub(crate) fn new(vnodes: u32) -> Self {
        Ring {
            vnodes: vnodes.clamp(1, MAX_VNODES),
            seeds: Vec::new(),
            members: 0,
            buckets: vec![Vec::new(); 1 << MIN_BITS],
            bits: MIN_BITS,
            points: 0,
            pending: Vec::new(),
        }
    }

    /// How many endpoints are on the ring.
    pub(crate) fn len(&self) -> usize {
        self.members
    }

    /// Whether `slot` is on the ring.
    pub(crate) fn contains(&self, slot: u32) -> bool {
        self.seeds.get(slot as usize).is_some_and(Option::is_some)
    }

    fn bucket_of(&self, at: u64) -> usize {
        (at >> (64 - self.bits)) as usize
    }

    /// The order of points in a bucket: by position, then by seed.
    fn before(seeds: &[Option<u64>], a: Point, b: Point) -> bool {
        let (x, y) = (a.at(), b.at());
        x < y || (x == y && seeds[a.slot as usize] < seeds[b.slot as usize])
    }

    /// Puts `slot`, whose endpoint's key hashes to `seed`, on the ring
    /// (replacing it if it is there): O(vnodes), its points placed at the
    /// next [`settle`](Self::settle).
    pub(crate) fn insert(&mut self, slot: u32, seed: u64) {
        self.remove(slot);
        let index = slot as usize;
        if self.seeds.len() <= index {
            self.seeds.resize(index + 1, None);
        }
        self.seeds[index] = Some(seed);
        self.pending.extend((0..self.vnodes).map(|i| {
            let at = point(seed, i);
            Point {
                hi: (at >> 32) as u32,
                lo: at as u32,
                slot,
            }
        }));
        self.members += 1;
    }

    /// Places the points of the endpoints inserted since the last call:
    /// O(vnodes) per endpoint, one by one, or one pass over the whole ring
    /// when there are more new points than half those already placed.
    pub(crate) fn settle(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let total = self.points + self.pending.len();
        let mut bits = self.bits;
        while total > (1 << bits) * GROW && bits < MAX_BITS {
            bits += 1;
        }
        if bits != self.bits || self.pending.len() * 2 > self.points {
            self.rebuild(bits);
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        for new in &pending {
            let bucket = self.bucket_of(new.at());
            let seeds = &self.seeds;
            let points = &mut self.buckets[bucket];
            let position = points.partition_point(|&p| Ring::before(seeds, p, *new));
            points.insert(position, *new);
        }
        self.points = total;
        self.pending = pending;
        self.pending.clear();
    }

    /// Takes `slot` off the ring; whether it was on. O(vnodes).
    pub(crate) fn remove(&mut self, slot: u32) -> bool {
        if !self.contains(slot) {
            return false;
        }
        self.settle();
        let Some(seed) = self.seeds.get_mut(slot as usize).and_then(Option::take) else {
            return false;
        };
        for i in 0..self.vnodes {
            let at = point(seed, i);
            let bucket = self.bucket_of(at);
            // The seed of `slot` is gone: find the point by position and slot.
            let points = &mut self.buckets[bucket];
            let start = points.partition_point(|p| p.at() < at);
            if let Some(offset) = points[start..]
                .iter()
                .take_while(|p| p.at() == at)
                .position(|p| p.slot == slot)
            {
                points.remove(start + offset);
            }
        }
        self.members -= 1;
        self.points -= self.vnodes as usize;
        if self.points < self.buckets.len() * SHRINK && self.bits > MIN_BITS {
            self.rebuild(self.bits - 1);
        }
        true
    }

    /// Spreads the placed and the pending points over 2^`bits` buckets, in
    /// a few passes: count per bucket, allocate each bucket once (no
    /// slack), place, sort each (small) bucket.
    fn rebuild(&mut self, bits: u32) {
        let old = std::mem::take(&mut self.buckets);
        let pending = std::mem::take(&mut self.pending);
        self.bits = bits;
        let mut counts = vec![0u32; 1 << bits];
        for point in old.iter().flatten().chain(&pending) {
            counts[self.bucket_of(point.at())] += 1;
        }
        self.buckets = counts
            .into_iter()
            .map(|count| Vec::with_capacity(count as usize))
            .collect();
        self.points = 0;
        for point in old.into_iter().flatten().chain(pending) {
            let bucket = self.bucket_of(point.at());
            self.buckets[bucket].push(point);
            self.points += 1;
        }
        let seeds = &self.seeds;
        for bucket in &mut self.buckets {
            bucket.sort_unstable_by(|&a, &b| {
                if Ring::before(seeds, a, b) {
                    std::cmp::Ordering::Less
                } else if Ring::before(seeds, b, a) {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            });
        }
    }

    /// The slots of the points from `hash` round the ring, once round, in
    /// ring order (an endpoint comes up once per point of it). Settle first.
    pub(crate) fn walk(&self, hash: u64) -> impl Iterator<Item = u32> + '_ {
        debug_assert!(self.pending.is_empty(), "walk a settled ring");
        let first = self.bucket_of(hash);
        let start = self.buckets[first].partition_point(|p| p.at() < hash);
        let count = self.buckets.len();
        let (before, after) = self.buckets[first].split_at(start);
        let middle = (1..count).flat_map(move |step| &self.buckets[(first + step) % count]);
        after
            .iter()
            .chain(middle)
            .chain(before)
            .map(|point| point.slot)
    }

    /// The endpoint for `hash`: the first one round the ring from `hash`
    /// that `skip` does not refuse and that is not `full`; if the walk
    /// meets only full ones, the first of those (a bound is a preference,
    /// never a reason to fail). `None` when `skip` refuses every endpoint.
    /// Settle first.
    pub(crate) fn pick(
        &self,
        hash: u64,
        skip: impl Fn(u32) -> bool,
        full: impl Fn(u32) -> bool,
    ) -> Option<u32> {
        let mut fallback = None;
        let mut since_fallback = 0;
        for slot in self.walk(hash) {
            if fallback.is_some() {
                since_fallback += 1;
                if since_fallback > MAX_WALK {
                    break;
                }
            }
            if skip(slot) {
                continue;
            }
            if !full(slot) {
                return Some(slot);
            }
            fallback.get_or_insert(slot);
        }
        fallback
    }

    /// How many points the ring holds (for tests and sizing).
    #[cfg(test)]
    pub(crate) fn points(&self) -> usize {
        self.points
    }
}

#[cfg(test)]
mod tests;
