//! The three picking rules, over plain data so that they are tested alone.
//!
//! Each picks among `n` candidates, given in a stable order (sorted by key),
//! and returns the index of the one chosen.

use rand::Rng;

/// Strict rotation: candidate `k % n` for the k-th pick.
#[derive(Debug, Default)]
pub(crate) struct RoundRobin {
    next: usize,
}

impl RoundRobin {
    pub(crate) fn pick(&mut self, n: usize) -> Option<usize> {
        if n == 0 {
            return None;
        }
        let index = self.next % n;
        self.next = self.next.wrapping_add(1);
        Some(index)
    }
}

/// Smooth weighted round robin (nginx's): every candidate's current weight
/// grows by its weight, the largest is picked and loses the total. Over any
/// `sum(weights)` consecutive picks each candidate is picked exactly `weight`
/// times, spread out rather than in runs: weights 5, 1, 1 give
/// `a a b a c a a`.
///
/// `slots` holds `(weight, current)` per candidate; the currents are the
/// picker's state, kept by the caller next to each candidate. Candidates for
/// which `skip` is true take no part in this pick. Ties go to the first.
pub(crate) fn smooth_weighted(
    slots: &mut [(u32, i64)],
    skip: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut total = 0i64;
    let mut best: Option<(usize, i64)> = None;
    for (index, (weight, current)) in slots.iter_mut().enumerate() {
        if skip(index) {
            continue;
        }
        total += i64::from(*weight);
        *current += i64::from(*weight);
        match best {
            Some((_, max)) if *current <= max => {}
            _ => best = Some((index, *current)),
        }
    }
    let (best, _) = best?;
    slots[best].1 -= total;
    Some(best)
}

/// Power of two choices: two distinct candidates at random, the one with the
/// lower cost wins (the first on a tie). With one candidate, that one.
pub(crate) fn p2c(n: usize, cost: impl Fn(usize) -> f64, rng: &mut impl Rng) -> Option<usize> {
    match n {
        0 => None,
        1 => Some(0),
        _ => {
            let a = rng.random_range(0..n);
            // A second index uniformly among the other n - 1.
            let mut b = rng.random_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            Some(if cost(b) < cost(a) { b } else { a })
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn round_robin_rotates_strictly() {
        let mut rr = RoundRobin::default();
        let picks: Vec<usize> = (0..9).map(|_| rr.pick(3).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0, 1, 2]);
        assert_eq!(rr.pick(0), None);
        // 30 picks over 3: exactly 10 each.
        let mut rr = RoundRobin::default();
        let mut counts = [0; 3];
        for _ in 0..30 {
            counts[rr.pick(3).unwrap()] += 1;
        }
        assert_eq!(counts, [10, 10, 10]);
    }

    #[test]
    fn round_robin_follows_a_shrinking_set() {
        let mut rr = RoundRobin::default();
        assert_eq!(rr.pick(3), Some(0));
        assert_eq!(rr.pick(3), Some(1));
        // One candidate left the set: the rotation goes on over two.
        assert_eq!(rr.pick(2), Some(0));
        assert_eq!(rr.pick(2), Some(1));
        assert_eq!(rr.pick(2), Some(0));
    }

    fn weighted_sequence(weights: &[u32], picks: usize) -> String {
        let mut slots: Vec<(u32, i64)> = weights.iter().map(|&w| (w, 0)).collect();
        (0..picks)
            .map(|_| {
                let index = smooth_weighted(&mut slots, |_| false).unwrap();
                char::from(b'a' + index as u8)
            })
            .collect()
    }

    #[test]
    fn smooth_weighted_spreads_picks_like_nginx() {
        assert_eq!(weighted_sequence(&[5, 1, 1], 7), "aabacaa");
        assert_eq!(weighted_sequence(&[5, 1, 1], 14), "aabacaaaabacaa");
        assert_eq!(weighted_sequence(&[1, 1, 1], 6), "abcabc");
        assert_eq!(weighted_sequence(&[1, 2, 3], 6), "cbacbc");
        assert_eq!(weighted_sequence(&[7], 3), "aaa");
        assert_eq!(smooth_weighted(&mut [], |_| false), None);
    }

    #[test]
    fn smooth_weighted_leaves_skipped_candidates_out() {
        let mut slots = vec![(5, 0), (1, 0), (1, 0)];
        let picks: String = (0..4)
            .map(|_| {
                let index = smooth_weighted(&mut slots, |i| i == 0).unwrap();
                char::from(b'a' + index as u8)
            })
            .collect();
        assert_eq!(picks, "bcbc");
        assert_eq!(slots[0].1, 0, "a skipped candidate's state is untouched");
        assert_eq!(smooth_weighted(&mut slots, |_| true), None);
    }

    #[test]
    fn smooth_weighted_is_exact_over_whole_rounds() {
        let sequence = weighted_sequence(&[1, 2, 3], 600);
        let count = |c| sequence.chars().filter(|&x| x == c).count();
        assert_eq!((count('a'), count('b'), count('c')), (100, 200, 300));
    }

    #[test]
    fn p2c_never_picks_the_most_loaded_of_three() {
        let mut rng = StdRng::seed_from_u64(7);
        let cost = [2.0, 1.0, 3.0];
        let mut counts = [0; 3];
        for _ in 0..3000 {
            counts[p2c(3, |i| cost[i], &mut rng).unwrap()] += 1;
        }
        assert_eq!(counts[2], 0, "{counts:?}");
        // The cheapest wins both pairs it is in (2/3 of the draws), the middle
        // one only the pair without the cheapest.
        assert!(counts[1] > 1800 && counts[0] > 800, "{counts:?}");
    }

    #[test]
    fn p2c_picks_the_lower_load_of_two_and_the_only_one_of_one() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            assert_eq!(p2c(2, |i| [5.0, 1.0][i], &mut rng), Some(1));
            assert_eq!(p2c(2, |i| [1.0, 5.0][i], &mut rng), Some(0));
        }
        assert_eq!(p2c(1, |_| 9.0, &mut rng), Some(0));
        assert_eq!(p2c(0, |_| 9.0, &mut rng), None);
    }

    #[test]
    fn p2c_draws_two_distinct_candidates() {
        // Equal costs: the first drawn wins, so every candidate is reachable.
        let mut rng = StdRng::seed_from_u64(3);
        let mut counts = [0; 4];
        for _ in 0..4000 {
            counts[p2c(4, |_| 1.0, &mut rng).unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
