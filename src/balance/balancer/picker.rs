//! Power of two choices, over plain data so that it is tested alone (round
//! robin is `rotation`, weighted round robin `schedule`).
//!
//! It picks among `n` candidates and returns the index of the one chosen.

use rand::Rng;

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
