//! [`Schedule`]: weighted round robin, exact over a round, over slot
//! numbers, so that it is tested alone.
//!
//! The slots are grouped by weight into *classes*: the `k` slots of weight
//! `w` share one class of weight `k·w`. Earliest deadline first chooses the
//! class ([`Edf`]); inside it, the members take turns in a ring. A pick
//! costs O(log C) for C distinct weights (a handful in practice, at most
//! n), plus O(1) in the ring, whatever the number of slots; an insertion, a
//! removal and a weight change cost O(log C) plus one hash lookup.
//!
//! Exactness: over each unit of virtual time, a *round* of `sum(weights)`
//! picks, EDF gives each class exactly its weight `k·w` in picks (see
//! [`Edf`]), and `k·w` consecutive turns of a ring of `k` give each member
//! exactly `w`, wherever the ring started. So weights 1, 2, 3 over 600 picks
//! give exactly 100, 200 and 300, and every round that starts after a change
//! (a slot joining, leaving, or changing weight) is exact again.

use std::collections::HashMap;

/// A slot (or class) with no place.
const ABSENT: u32 = u32::MAX;

/// Weighted round robin by weight classes; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    edf: Edf,
    /// Class number → its members; emptied classes are reused.
    classes: Vec<Class>,
    /// Weight → its class, for the weights some slot has.
    by_weight: HashMap<u32, u32>,
    free: Vec<u32>,
    /// Slot → its class and place in the class's ring.
    members: Vec<Member>,
    len: usize,
}

#[derive(Debug, Default)]
struct Class {
    weight: u32,
    ring: Vec<u32>,
    /// The place in `ring` of the next turn.
    next: usize,
}

#[derive(Debug, Clone, Copy)]
struct Member {
    class: u32,
    place: u32,
}

const NOT_MEMBER: Member = Member {
    class: ABSENT,
    place: ABSENT,
};

impl Schedule {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn contains(&self, slot: u32) -> bool {
        self.members
            .get(slot as usize)
            .is_some_and(|member| member.class != ABSENT)
    }

    /// The weight `slot` is scheduled with, if it is scheduled.
    pub(crate) fn weight(&self, slot: u32) -> Option<u32> {
        let member = self.members.get(slot as usize)?;
        (member.class != ABSENT).then(|| self.classes[member.class as usize].weight)
    }

    /// Schedules `slot` with `weight` (0 counts as 1) from the next turn of
    /// its class. Replaces its weight if it is there already.
    pub(crate) fn insert(&mut self, slot: u32, weight: u32) {
        self.remove(slot);
        let weight = weight.max(1);
        let class = match self.by_weight.get(&weight) {
            Some(&class) => class,
            None => {
                let class = self.free.pop().unwrap_or_else(|| {
                    self.classes.push(Class::default());
                    self.classes.len() as u32 - 1
                });
                self.classes[class as usize].weight = weight;
                self.by_weight.insert(weight, class);
                class
            }
        };
        if self.members.len() <= slot as usize {
            self.members.resize(slot as usize + 1, NOT_MEMBER);
        }
        let ring = &mut self.classes[class as usize].ring;
        self.members[slot as usize] = Member {
            class,
            place: ring.len() as u32,
        };
        ring.push(slot);
        self.len += 1;
        self.edf.insert(class, class_weight(ring.len(), weight));
    }

    /// Changes the weight of a scheduled `slot`, from the clock on; whether it
    /// was scheduled.
    pub(crate) fn set_weight(&mut self, slot: u32, weight: u32) -> bool {
        let Some(old) = self.weight(slot) else {
            return false;
        };
        if old != weight.max(1) {
            self.insert(slot, weight);
        }
        true
    }

    /// Takes `slot` out; whether it was there.
    pub(crate) fn remove(&mut self, slot: u32) -> bool {
        if !self.contains(slot) {
            return false;
        }
        let Member { class, place } =
            std::mem::replace(&mut self.members[slot as usize], NOT_MEMBER);
        let entry = &mut self.classes[class as usize];
        let place = place as usize;
        entry.ring.swap_remove(place);
        if let Some(&moved) = entry.ring.get(place) {
            self.members[moved as usize].place = place as u32;
        }
        if entry.next >= entry.ring.len() {
            entry.next = 0;
        }
        self.len -= 1;
        if entry.ring.is_empty() {
            self.by_weight.remove(&entry.weight);
            self.free.push(class);
            self.edf.remove(class);
        } else {
            self.edf
                .insert(class, class_weight(entry.ring.len(), entry.weight));
        }
        true
    }

    /// The next slot by weight among those `skip` does not refuse. A refused
    /// slot keeps its turn: it is the next of its class that `skip` accepts.
    /// `skip` is asked about a slot of each class due, in deadline order,
    /// until one accepts: a few refusals cost a few steps.
    pub(crate) fn pick(&mut self, skip: impl Fn(u32) -> bool) -> Option<u32> {
        let (classes, members) = (&mut self.classes, &mut self.members);
        self.edf
            .pick(|class| classes[class as usize].turn(&skip, members))
    }
}

impl Class {
    /// The member whose turn it is, or the first after it that `skip`
    /// accepts, which then swaps places with it so that the refused one
    /// keeps its turn.
    fn turn(&mut self, skip: impl Fn(u32) -> bool, members: &mut [Member]) -> Option<u32> {
        let n = self.ring.len();
        let mut place = self.next;
        for _ in 0..n {
            let slot = self.ring[place];
            if !skip(slot) {
                if place != self.next {
                    self.ring.swap(place, self.next);
                    members[self.ring[place] as usize].place = place as u32;
                    members[slot as usize].place = self.next as u32;
                }
                self.next = if self.next + 1 == n { 0 } else { self.next + 1 };
                return Some(slot);
            }
            place = if place + 1 == n { 0 } else { place + 1 };
        }
        None
    }
}

/// The weight of a class of `members` slots of weight `weight`: at most
/// 2^32 · 2^32, so it fits in a u64.
fn class_weight(members: usize, weight: u32) -> u64 {
    members as u64 * u64::from(weight)
}

/// One candidate in the heap: due at `num / (2 * weight)`.
#[derive(Debug, Clone, Copy)]
struct Due {
    num: u64,
    weight: u64,
    id: u32,
}

impl Due {
    /// Whether `self` is due strictly before `other` (ties: the lower id).
    fn before(&self, other: &Due) -> bool {
        let a = u128::from(self.num) * u128::from(other.weight);
        let b = u128::from(other.num) * u128::from(self.weight);
        a < b || (a == b && self.id < other.id)
    }
}

/// Earliest-deadline-first weighted round robin over ids (the schedule's
/// classes).
///
/// Each candidate of weight `w` is due at the virtual times
/// `(2m - 1) / 2w` for `m = 1, 2, …`: `w` times in every unit of virtual
/// time, half a period off the unit's ends so that heavy and light candidates
/// interleave. A pick takes the candidate due first (the lowest id on a
/// tie), moves the virtual clock to its deadline, and makes it due one period
/// later. Over each unit of virtual time, every candidate is picked exactly
/// `w` times.
///
/// The candidates sit in a binary heap indexed by id, so a pick, an
/// insertion, a removal and a weight change each cost O(log n). A candidate
/// that joins (or changes weight) is due at its next deadline on its own grid
/// after the clock: every round that starts after the change is exact again;
/// the clock moves to the end of a round once the round's picks are all
/// made, so that a change between two rounds leaves the next one exact.
/// Deadlines are exact fractions (`num / 2w`, compared by cross-multiplying
/// in 128 bits), so no rounding ever drifts a round.
#[derive(Debug)]
struct Edf {
    heap: Vec<Due>,
    /// Id → index in `heap`, or [`ABSENT`].
    place: Vec<u32>,
    /// The virtual clock, `num / (2 * weight)`: the deadline of the last pick.
    now: (u64, u64),
    /// The end of the clock's round: the least whole time after it. Kept
    /// rather than divided out at every pick (a 128-bit division costs as
    /// much as the rest of a pick).
    end: u64,
}

impl Default for Edf {
    fn default() -> Self {
        Self {
            heap: Vec::new(),
            place: Vec::new(),
            now: (0, 1),
            end: 1,
        }
    }
}

/// Whether `num / 2·weight` is at or after the whole time `time`.
fn reaches(num: u64, weight: u64, time: u64) -> bool {
    u128::from(num) >= 2 * u128::from(weight) * u128::from(time)
}

impl Edf {
    fn contains(&self, id: u32) -> bool {
        self.place.get(id as usize).is_some_and(|&p| p != ABSENT)
    }

    /// Schedules `id` with `weight` (at least 1), due at its first deadline
    /// after the clock; if it is there with another weight, it is
    /// rescheduled so.
    fn insert(&mut self, id: u32, weight: u64) {
        if self.contains(id) {
            if self.heap[self.place[id as usize] as usize].weight == weight {
                return;
            }
            self.remove(id);
        }
        // The least m with (2m - 1) / 2w > p / 2q, the clock being p / 2q:
        // m = floor((w p + q) / 2q) + 1.
        let (p, q) = (u128::from(self.now.0), u128::from(self.now.1));
        let m = (u128::from(weight) * p + q) / (2 * q) + 1;
        let num = u64::try_from(2 * m - 1).unwrap_or(u64::MAX);
        if self.place.len() <= id as usize {
            self.place.resize(id as usize + 1, ABSENT);
        }
        let index = self.heap.len();
        self.heap.push(Due { num, weight, id });
        self.place[id as usize] = index as u32;
        self.sift_up(index);
    }

    /// Takes `id` out; whether it was there.
    fn remove(&mut self, id: u32) -> bool {
        if !self.contains(id) {
            return false;
        }
        let index = self.place[id as usize] as usize;
        self.place[id as usize] = ABSENT;
        let last = self.heap.pop().expect("a scheduled id is in the heap");
        if index < self.heap.len() {
            self.heap[index] = last;
            self.place[last.id as usize] = index as u32;
            self.sift_up(index);
            self.sift_down(index);
        }
        true
    }

    /// Offers the ids to `take` in deadline order until it takes one (returns
    /// `Some`); that one becomes due one period later, the refused ones keep
    /// their deadlines.
    fn pick<T>(&mut self, mut take: impl FnMut(u32) -> Option<T>) -> Option<T> {
        let mut refused = Vec::new();
        let picked = loop {
            let Some(&first) = self.heap.first() else {
                break None;
            };
            let Some(taken) = take(first.id) else {
                self.remove(first.id);
                refused.push(first);
                continue;
            };
            self.now = (first.num, first.weight);
            if reaches(first.num, first.weight, self.end) {
                // Past the round's end (only after a change): a division.
                let whole = u128::from(first.num) / (2 * u128::from(first.weight));
                self.end = u64::try_from(whole + 1).unwrap_or(u64::MAX);
            }
            self.heap[0].num = first.num.saturating_add(2);
            self.sift_down(0);
            break Some(taken);
        };
        for due in refused {
            let index = self.heap.len();
            self.heap.push(due);
            self.place[due.id as usize] = index as u32;
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
        if reaches(first.num, first.weight, self.end) {
            self.now = (self.end.saturating_mul(2), 1);
            self.end = self.end.saturating_add(1);
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.place[self.heap[a].id as usize] = a as u32;
        self.place[self.heap[b].id as usize] = b as u32;
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
mod tests;
