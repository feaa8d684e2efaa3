use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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

/// Whether the virtual clock is at the end of a round.
fn at_round_end(schedule: &Schedule) -> bool {
    let (num, weight) = schedule.edf.now;
    num.is_multiple_of(2 * weight)
}

/// Picks until the clock is at the end of a round.
fn finish_round(schedule: &mut Schedule) {
    schedule.pick(|_| false).unwrap();
    while !at_round_end(schedule) {
        schedule.pick(|_| false).unwrap();
    }
}

#[test]
fn picks_spread_within_a_round() {
    // Classes interleave by deadline: the weight-5 class (a) is due at
    // 1/10, 3/10, …; the weight-1 class of b and c (weight 2) at 1/4, 3/4.
    assert_eq!(sequence(&mut schedule(&[5, 1, 1]), 14), "abaaacaabaaaca");
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
    // Members of one class share it exactly: 4 of weight 3 and 2 of 1.
    assert_eq!(
        counts(&mut schedule(&[3, 1, 3, 3, 1, 3]), 6, 14 * 5),
        [15, 5, 15, 15, 5, 15]
    );
}

#[test]
fn the_heaviest_weights_fit() {
    // Classes of weight k · u32::MAX: the deadlines stay exact.
    let mut s = schedule(&[u32::MAX, u32::MAX, 1]);
    let mut third = 0;
    for _ in 0..10_000 {
        if s.pick(|_| false) == Some(2) {
            third += 1;
        }
    }
    assert_eq!(third, 0, "slot 2 is due once per 2^33 picks");
    assert_eq!(s.weight(0), Some(u32::MAX));
}

#[test]
fn classes_follow_the_distinct_weights() {
    let mut s = Schedule::default();
    for slot in 0..3_000u32 {
        s.insert(slot, 1 + slot % 3);
    }
    assert_eq!((s.len(), s.edf.heap.len()), (3_000, 3));
    // Emptying a class takes it out of the heap; its number is reused.
    for slot in (1..3_000u32).step_by(3) {
        assert!(s.remove(slot));
    }
    assert_eq!((s.len(), s.edf.heap.len()), (2_000, 2));
    s.insert(1, 7);
    assert_eq!((s.edf.heap.len(), s.classes.len()), (3, 3));
    assert_eq!(s.weight(1), Some(7));
}

#[test]
fn every_round_is_exact_after_incremental_changes() {
    let mut s = schedule(&[1, 2, 3]);
    // Mid-round: d joins with weight 4, b leaves, c becomes 1.
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

/// Random inserts, removals, weight changes and picks (some refusing
/// slots) on `slots` slots; the weights they leave.
fn churn(s: &mut Schedule, weights: &mut [u32], rng: &mut StdRng, steps: usize, max: u32) {
    let slots = weights.len() as u32;
    for _ in 0..steps {
        let slot = rng.random_range(0..slots);
        match rng.random_range(0..6) {
            0 => {
                assert_eq!(s.remove(slot), weights[slot as usize] != 0);
                weights[slot as usize] = 0;
            }
            1 | 2 => {
                let weight = rng.random_range(1..=max);
                s.insert(slot, weight);
                weights[slot as usize] = weight;
            }
            3 => {
                let weight = rng.random_range(1..=max);
                let there = weights[slot as usize] != 0;
                assert_eq!(s.set_weight(slot, weight), there);
                if there {
                    weights[slot as usize] = weight;
                }
            }
            4 => {
                let refused = rng.random_range(0..slots);
                if let Some(picked) = s.pick(|slot| slot == refused) {
                    assert_ne!(picked, refused);
                    assert_ne!(weights[picked as usize], 0);
                }
            }
            _ => {
                s.pick(|_| false);
            }
        }
        // The kept end of the round is the one the clock implies.
        let (num, weight) = s.edf.now;
        assert_eq!(
            u128::from(s.edf.end),
            u128::from(num) / (2 * u128::from(weight)) + 1
        );
    }
}

#[test]
fn many_random_changes_keep_every_round_exact() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut s = Schedule::default();
    let mut weights = vec![0u32; 64];
    for round in 0..200 {
        // Few distinct weights (shared classes) or many (one slot each).
        let max = if round % 2 == 0 { 4 } else { 40 };
        churn(&mut s, &mut weights, &mut rng, 50, max);
        let total: u32 = weights.iter().sum();
        if total == 0 {
            continue;
        }
        assert_eq!(s.len(), weights.iter().filter(|&&w| w != 0).count());
        finish_round(&mut s);
        let got = counts(&mut s, 64, total as usize * 2);
        let wanted: Vec<usize> = weights.iter().map(|&w| w as usize * 2).collect();
        assert_eq!(got, wanted, "after round {round}");
        assert!(at_round_end(&s));
    }
}

#[test]
fn a_ramp_of_weight_changes_keeps_the_next_round_exact() {
    // A slow start ramps several endpoints up one step at a time, between
    // picks: once the ramp ends, rounds are exact.
    let mut s = schedule(&[10; 20]);
    for step in 1..=10u32 {
        for slot in 0..5 {
            assert!(s.set_weight(slot, step));
        }
        sequence(&mut s, 7);
    }
    finish_round(&mut s);
    assert_eq!(counts(&mut s, 20, 200 * 3), vec![30; 20]);
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
fn refused_slots_keep_their_turn() {
    let mut s = schedule(&[1, 1, 1]);
    assert_eq!(s.pick(|slot| slot == 0), Some(1));
    assert_eq!(s.pick(|slot| slot != 2), Some(2));
    assert_eq!(s.pick(|_| true), None);
    assert_eq!(s.len(), 3);
    // a was refused twice but is next, then the ring goes on.
    assert_eq!(sequence(&mut s, 4), "abca");
    // A refused class keeps its deadline: a, b, c (a class of weight 3) are
    // refused, d (3) is picked; their class is still due first.
    let mut s = schedule(&[1, 1, 1, 3]);
    assert_eq!(s.pick(|slot| slot < 3), Some(3));
    assert_eq!(sequence(&mut s, 3), "abd");
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
