//! [`Rotation`]: round robin in key order, over slot numbers, so that it is
//! tested alone.
//!
//! The candidates form a ring, linked in key order; a cursor marks the last
//! one picked. A pick follows one link: O(1) whatever n. A candidate joins
//! after its predecessor in key order (found in a `BTreeMap` of the keys,
//! O(log n)) and leaves by unlinking (O(log n) for its key). A candidate
//! that joins or leaves does not restart the rotation: the others keep their
//! turn.

use std::collections::BTreeMap;
use std::ops::Bound;

/// A slot with no place in the ring.
const ABSENT: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
}

const UNLINKED: Link = Link {
    prev: ABSENT,
    next: ABSENT,
};

/// Round robin in key order; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Rotation {
    keys: BTreeMap<String, u32>,
    /// Slot → its neighbours in the ring.
    links: Vec<Link>,
    /// The slot picked last, if it is still in the ring.
    cursor: Option<u32>,
}

impl Rotation {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn contains(&self, slot: u32) -> bool {
        self.links
            .get(slot as usize)
            .is_some_and(|link| link.next != ABSENT)
    }

    /// Adds `slot` under `key` (which must not be in the ring), after the
    /// greatest key below it.
    pub(crate) fn insert(&mut self, key: &str, slot: u32) {
        debug_assert!(!self.contains(slot), "slot {slot} inserted twice");
        if self.links.len() <= slot as usize {
            self.links.resize(slot as usize + 1, UNLINKED);
        }
        let before = self
            .keys
            .range::<str, _>((Bound::Unbounded, Bound::Excluded(key)))
            .next_back()
            .or_else(|| self.keys.last_key_value())
            .map(|(_, &slot)| slot);
        match before {
            None => {
                self.links[slot as usize] = Link {
                    prev: slot,
                    next: slot,
                }
            }
            Some(prev) => {
                let next = self.links[prev as usize].next;
                self.links[slot as usize] = Link { prev, next };
                self.links[prev as usize].next = slot;
                self.links[next as usize].prev = slot;
            }
        }
        self.keys.insert(key.to_owned(), slot);
    }

    /// Takes `key` out; its slot, if it was there. If it was the last one
    /// picked, the next pick is the one after it.
    pub(crate) fn remove(&mut self, key: &str) -> Option<u32> {
        let slot = self.keys.remove(key)?;
        let Link { prev, next } = std::mem::replace(&mut self.links[slot as usize], UNLINKED);
        if self.cursor == Some(slot) {
            self.cursor = (prev != slot).then_some(prev);
        }
        if prev != slot {
            self.links[prev as usize].next = next;
            self.links[next as usize].prev = prev;
        }
        Some(slot)
    }

    /// The slot after the last one picked (the first key at the start),
    /// passing over those `skip` refuses, at most once round the ring.
    pub(crate) fn pick(&mut self, skip: impl Fn(u32) -> bool) -> Option<u32> {
        let mut slot = match self.cursor {
            Some(cursor) => self.links[cursor as usize].next,
            None => *self.keys.first_key_value()?.1,
        };
        for _ in 0..self.keys.len() {
            if !skip(slot) {
                self.cursor = Some(slot);
                return Some(slot);
            }
            slot = self.links[slot as usize].next;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(rotation: &mut Rotation, names: &[&str], picks: usize) -> String {
        (0..picks)
            .map(|_| names[rotation.pick(|_| false).unwrap() as usize])
            .collect()
    }

    #[test]
    fn rotates_in_key_order_whatever_the_insertion_order() {
        let names = ["c", "a", "b"];
        let mut r = Rotation::default();
        assert_eq!(r.pick(|_| false), None);
        for (slot, name) in names.iter().enumerate() {
            r.insert(name, slot as u32);
        }
        assert_eq!(sequence(&mut r, &names, 7), "abcabca");
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn follows_removals_and_insertions_without_restarting() {
        let names = ["a", "b", "c", "d"];
        let mut r = Rotation::default();
        for (slot, name) in names[..3].iter().enumerate() {
            r.insert(name, slot as u32);
        }
        assert_eq!(sequence(&mut r, &names, 2), "ab");
        // The last one picked leaves: its successor is next.
        assert_eq!(r.remove("b"), Some(1));
        assert_eq!(r.remove("b"), None);
        assert_eq!(sequence(&mut r, &names, 3), "cac");
        // d joins after c, b comes back between a and c.
        r.insert("d", 3);
        r.insert("b", 1);
        assert_eq!(sequence(&mut r, &names, 8), "dabcdabc");
        assert!(r.contains(1) && !r.contains(7));
        // Down to one, then none, then one again.
        for key in ["a", "b", "c"] {
            r.remove(key);
        }
        assert_eq!(sequence(&mut r, &names, 2), "dd");
        r.remove("d");
        assert_eq!(r.pick(|_| false), None);
        r.insert("a", 0);
        assert_eq!(sequence(&mut r, &names, 2), "aa");
    }

    #[test]
    fn passes_over_refused_slots_once_round() {
        let names = ["a", "b", "c"];
        let mut r = Rotation::default();
        for (slot, name) in names.iter().enumerate() {
            r.insert(name, slot as u32);
        }
        assert_eq!(r.pick(|slot| slot == 0), Some(1));
        assert_eq!(r.pick(|slot| slot != 0), Some(0));
        assert_eq!(r.pick(|_| true), None);
        assert_eq!(sequence(&mut r, &names, 3), "bca");
    }

    #[test]
    fn is_exact_over_whole_rotations() {
        let mut r = Rotation::default();
        for slot in 0..100u32 {
            r.insert(&format!("{slot:03}"), slot);
        }
        let mut counts = [0; 100];
        for _ in 0..1000 {
            counts[r.pick(|_| false).unwrap() as usize] += 1;
        }
        assert!(counts.iter().all(|&n| n == 10));
    }
}
