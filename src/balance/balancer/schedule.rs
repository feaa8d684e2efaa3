//! [`Schedule`]: weighted round robin as earliest deadline first, over slot
//! numbers, so that it is tested alone.
//!
//! Each candidate of weight `w` is due at the virtual times
//! `(2m - 1) / 2w` for `m = 1, 2, …`: `w` times in every unit of virtual time,
//! half a period off the unit's ends so that heavy and light candidates
//! interleave. A pick takes the candidate due first (the lowest slot on a
//! tie), moves the virtual clock to its deadline, and makes it due one period
//! later. Over each unit of virtual time, a *round* of `sum(weights)` picks,
//! every candidate is picked exactly `w` times: weights 1, 2, 3 over 600
//! picks give exactly 100, 200 and 300.
//!
//! The candidates sit in a binary heap indexed by slot, so a pick, an
//! insertion, a removal and a weight change each cost O(log n), whatever the
//! weights. A candidate that joins (or comes back, or changes weight) is due
//! at its next deadline on its own grid after the clock: every round that
//! starts after the change is exact again; the clock moves to the end of a
//! round once the round's picks are all made, so that a change between two
//! rounds leaves the next one exact. Deadlines are exact fractions
//! (`num / 2w`, compared by cross-multiplying in 128 bits), so no rounding
//! ever drifts a round. The same structure takes weights that change often
//! (a slow start ramping one endpoint up) at O(log n) per change.

/// A slot with no place in the heap.
const ABSENT: u32 = u32::MAX;

/// One candidate in the heap: due at `num / (2 * weight)`.
#[derive(Debug, Clone, Copy)]
struct Due {
    num: u64,
    weight: u32,
    slot: u32,
}

impl Due {
    /// Whether `self` is due strictly before `other` (ties: the lower slot).
    fn before(&self, other: &Due) -> bool {
        let a = u128::from(self.num) * u128::from(other.weight);
        let b = u128::from(other.num) * u128::from(self.weight);
        a < b || (a == b && self.slot < other.slot)
    }
}

/// Earliest-deadline-first weighted round robin; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    heap: Vec<Due>,
    /// Slot → index in `heap`, or [`ABSENT`].
    place: Vec<u32>,
    /// The virtual clock, `num / (2 * weight)`: the deadline of the last pick.
    now: (u64, u32),
}

impl Schedule {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    pub(crate) fn contains(&self, slot: u32) -> bool {
        self.place.get(slot as usize).is_some_and(|&p| p != ABSENT)
    }

    /// The weight `slot` is scheduled with, if it is scheduled.
    pub(crate) fn weight(&self, slot: u32) -> Option<u32> {
        self.contains(slot)
            .then(|| self.heap[self.place[slot as usize] as usize].weight)
    }

    /// Schedules `slot` with `weight` (0 counts as 1), due at its first
    /// deadline after the clock. Replaces its weight if it is there already.
    pub(crate) fn insert(&mut self, slot: u32, weight: u32) {
        self.remove(slot);
        let weight = weight.max(1);
        // The least m with (2m - 1) / 2w > p / 2q, the clock being p / 2q:
        // m = floor((w p + q) / 2q) + 1.
        let (p, q) = (u128::from(self.now.0), u128::from(self.now.1.max(1)));
        let m = (u128::from(weight) * p + q) / (2 * q) + 1;
        let num = u64::try_from(2 * m - 1).unwrap_or(u64::MAX);
        if self.place.len() <= slot as usize {
            self.place.resize(slot as usize + 1, ABSENT);
        }
        let index = self.heap.len();
        self.heap.push(Due { num, weight, slot });
        self.place[slot as usize] = index as u32;
        self.sift_up(index);
    }

    /// Changes the weight of a scheduled `slot`, from the clock on; whether it
    /// was scheduled.
    pub(crate) fn set_weight(&mut self, slot: u32, weight: u32) -> bool {
        if !self.contains(slot) {
            return false;
        }
        if self.weight(slot) != Some(weight.max(1)) {
            self.insert(slot, weight);
        }
        true
    }

    /// Takes `slot` out; whether it was there.
    pub(crate) fn remove(&mut self, slot: u32) -> bool {
        if !self.contains(slot) {
            return false;
        }
        let index = self.place[slot as usize] as usize;
        self.place[slot as usize] = ABSENT;
        let last = self.heap.pop().expect("a scheduled slot is in the heap");
        if index < self.heap.len() {
            self.heap[index] = last;
            self.place[last.slot as usize] = index as u32;
            self.sift_up(index);
            self.sift_down(index);
        }
        true
    }

    /// The slot due first among those `skip` does not refuse; it becomes due
    /// one period later. The refused ones keep their deadlines. `skip` is
    /// asked about the slots in deadline order until one is accepted, so a
    /// few refusals cost a few heap operations.
    pub(crate) fn pick(&mut self, skip: impl Fn(u32) -> bool) -> Option<u32> {
        let mut refused = Vec::new();
        let picked = loop {
            let Some(&first) = self.heap.first() else {
                break None;
            };
            if skip(first.slot) {
                self.remove(first.slot);
                refused.push(first);
                continue;
            }
            self.now = (first.num, first.weight);
            self.heap[0].num = first.num.saturating_add(2);
            self.sift_down(0);
            break Some(first.slot);
        };
        for due in refused {
            let index = self.heap.len();
            self.heap.push(due);
            self.place[due.slot as usize] = index as u32;
            self.sift_up(index);
        }
        self.end_round();
        picked
    }

    /// Moves the clock to the end of its round once nothing is due before
    /// it: a candidate that joins then starts with the next round, which is
    /// then exact at once.
    fn end_round(&mut self) {
        let Some(first) = self.heap.first() else {
            return;
        };
        let end = u128::from(self.now.0) / (2 * u128::from(self.now.1.max(1))) + 1;
        if u128::from(first.num) >= 2 * u128::from(first.weight) * end {
            self.now = (u64::try_from(2 * end).unwrap_or(u64::MAX), 1);
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.place[self.heap[a].slot as usize] = a as u32;
        self.place[self.heap[b].slot as usize] = b as u32;
    }

    fn sift_up(&mut self, mut index: usize) {
        while index > 0 {
            let parent = (index - 1) / 2;
            if !self.heap[index].before(&self.heap[parent]) {
                break;
            }
            self.swap(index, parent);
            index = parent;
        }
    }

    fn sift_down(&mut self, mut index: usize) {
        loop {
            let left = 2 * index + 1;
            if left >= self.heap.len() {
                break;
            }
            let right = left + 1;
            let child = if right < self.heap.len() && self.heap[right].before(&self.heap[left]) {
                right
            } else {
                left
            };
            if !self.heap[child].before(&self.heap[index]) {
                break;
            }
            self.swap(index, child);
            index = child;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(weights: &[u32]) -> Schedule {
        let mut schedule = Schedule::default();
        for (slot, &weight) in weights.iter().enumerate() {
            schedule.insert(slot as u32, weight);
        }
        schedule
    }

    fn sequence(schedule: &mut Schedule, picks: usize) -> String {
        (0..picks)
            .map(|_| char::from(b'a' + schedule.pick(|_| false).unwrap() as u8))
            .collect()
    }

    fn counts(schedule: &mut Schedule, slots: usize, picks: usize) -> Vec<usize> {
        let mut counts = vec![0; slots];
        for _ in 0..picks {
            counts[schedule.pick(|_| false).unwrap() as usize] += 1;
        }
        counts
    }

    /// Picks until the clock is at the end of a round.
    fn finish_round(schedule: &mut Schedule) {
        schedule.pick(|_| false).unwrap();
        while !schedule.now.0.is_multiple_of(2 * u64::from(schedule.now.1)) {
            schedule.pick(|_| false).unwrap();
        }
    }

    #[test]
    fn picks_spread_within_a_round() {
        assert_eq!(sequence(&mut schedule(&[5, 1, 1]), 14), "aaabcaaaaabcaa");
        assert_eq!(sequence(&mut schedule(&[1, 1, 1]), 6), "abcabc");
        assert_eq!(sequence(&mut schedule(&[1, 2, 3]), 6), "cbacbc");
        assert_eq!(sequence(&mut schedule(&[7]), 3), "aaa");
        assert_eq!(Schedule::default().pick(|_| false), None);
    }

    #[test]
    fn is_exact_over_whole_rounds() {
        assert_eq!(counts(&mut schedule(&[1, 2, 3]), 3, 600), [100, 200, 300]);
        assert_eq!(counts(&mut schedule(&[5, 1, 1]), 3, 7 * 13), [65, 13, 13]);
        // Large and coprime weights: one round of 1000 + 999 + 1.
        assert_eq!(
            counts(&mut schedule(&[1000, 999, 1]), 3, 2000),
            [1000, 999, 1]
        );
        // Weight 0 counts as 1.
        assert_eq!(counts(&mut schedule(&[0, 1]), 2, 10), [5, 5]);
    }

    #[test]
    fn every_round_is_exact_after_incremental_changes() {
        let mut s = schedule(&[1, 2, 3]);
        // Mid-round: a joins with weight 4, b leaves, c becomes 1.
        sequence(&mut s, 4);
        s.insert(3, 4);
        assert!(s.remove(1));
        assert!(s.set_weight(2, 1));
        finish_round(&mut s);
        // Rounds of 1 + 1 + 4 from now on.
        assert_eq!(counts(&mut s, 4, 6 * 50), [50, 0, 50, 200]);
        // b comes back at the end of a round: that round is exact at once.
        s.insert(1, 2);
        assert_eq!(counts(&mut s, 4, 8 * 10), [10, 20, 10, 40]);
        assert!(!s.remove(9) && !s.set_weight(9, 3));
        assert_eq!(s.len(), 4);
        assert_eq!(s.weight(3), Some(4));
    }

    #[test]
    fn many_random_changes_keep_the_heap_exact() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(5);
        let mut s = Schedule::default();
        let mut weights = vec![0u32; 64];
        for _ in 0..5_000 {
            let slot = rng.random_range(0..64u32);
            match rng.random_range(0..4) {
                0 => {
                    s.remove(slot);
                    weights[slot as usize] = 0;
                }
                1 | 2 => {
                    let weight = rng.random_range(1..20);
                    s.insert(slot, weight);
                    weights[slot as usize] = weight;
                }
                _ => {
                    s.pick(|_| false);
                }
            }
        }
        finish_round(&mut s);
        let total: u32 = weights.iter().sum();
        let got = counts(&mut s, 64, total as usize * 3);
        let wanted: Vec<usize> = weights.iter().map(|&w| w as usize * 3).collect();
        assert_eq!(got, wanted);
    }

    #[test]
    fn weight_changes_between_rounds_apply_from_the_next_round() {
        // As a registry update between two bursts of requests: 1:2:3 for 600,
        // then 4:2:1 for 700, exact both times.
        let mut s = schedule(&[1, 2, 3]);
        assert_eq!(counts(&mut s, 3, 600), [100, 200, 300]);
        assert!(s.set_weight(0, 4) && s.set_weight(2, 1));
        assert_eq!(counts(&mut s, 3, 700), [400, 200, 100]);
    }

    #[test]
    fn refused_slots_keep_their_deadlines() {
        let mut s = schedule(&[1, 1, 1]);
        assert_eq!(s.pick(|slot| slot == 0), Some(1));
        assert_eq!(s.pick(|slot| slot != 2), Some(2));
        assert_eq!(s.pick(|_| true), None);
        assert_eq!(s.len(), 3);
        // a was refused twice but is still due first, and due again with the
        // others after that.
        assert_eq!(sequence(&mut s, 4), "aabc");
    }

    #[test]
    fn excluded_and_included_again() {
        let mut s = schedule(&[1, 1]);
        assert_eq!(sequence(&mut s, 2), "ab");
        assert!(s.remove(0));
        assert!(!s.contains(0));
        assert_eq!(sequence(&mut s, 3), "bbb");
        s.insert(0, 1);
        assert!(s.contains(0));
        assert_eq!(counts(&mut s, 2, 10), [5, 5]);
    }
}
