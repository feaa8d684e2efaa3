use std::collections::{BTreeMap, HashMap};

use super::*;

/// A well-spread key hash for key number `i`.
fn key(i: u64) -> u64 {
    point(0x5eed, i as u32) ^ (i << 40)
}

/// A ring of `slots`, each endpoint's seed derived from its slot.
fn ring(vnodes: u32, slots: impl IntoIterator<Item = u32>) -> Ring {
    let mut ring = Ring::new(vnodes);
    for slot in slots {
        ring.insert(slot, seed(slot));
    }
    ring.settle();
    ring
}

fn seed(slot: u32) -> u64 {
    rapidhash::v3::rapidhash_v3(format!("endpoint-{slot}").as_bytes())
}

fn owners(ring: &Ring, keys: u64) -> Vec<u32> {
    (0..keys)
        .map(|i| ring.pick(key(i), |_| false, |_| false).unwrap())
        .collect()
}

#[test]
fn each_key_goes_to_one_endpoint_whatever_the_order_of_changes() {
    let a = ring(DEFAULT_VNODES, 0..50);
    assert_eq!((a.len(), a.points()), (50, 5_000));
    // Another client sees the same set in another order, with churn on
    // the way (and the buckets grown and shrunk meanwhile).
    let mut b = ring(DEFAULT_VNODES, (0..400).rev());
    for slot in 50..400 {
        assert!(b.remove(slot));
    }
    b.settle();
    assert!(!b.remove(50));
    assert_eq!(b.len(), 50);
    // A third, one endpoint per batch: points placed one by one, not
    // by a rebuild.
    let mut c = Ring::new(DEFAULT_VNODES);
    for slot in (0..50).step_by(7).chain(0..50) {
        c.insert(slot, seed(slot));
        c.settle();
    }
    let (first, again) = (owners(&a, 20_000), owners(&a, 20_000));
    assert_eq!(first, again);
    assert_eq!(first, owners(&b, 20_000));
    assert_eq!(first, owners(&c, 20_000));
    assert!(a.contains(49) && !a.contains(50));
}

#[test]
fn keys_are_shared_evenly() {
    let n = 10;
    let r = ring(DEFAULT_VNODES, 0..n);
    let mut counts = BTreeMap::<u32, usize>::new();
    for owner in owners(&r, 100_000) {
        *counts.entry(owner).or_default() += 1;
    }
    assert_eq!(counts.len(), n as usize);
    // 100 points each: a share varies by about 10 %.
    let ideal = 100_000 / n as usize;
    for (&slot, &count) in &counts {
        assert!(
            count > ideal * 6 / 10 && count < ideal * 14 / 10,
            "slot {slot}: {count} keys of 100,000 ({counts:?})"
        );
    }
}

#[test]
fn a_leave_moves_only_its_keys_and_a_join_only_the_newcomers() {
    let keys = 100_000;
    let mut r = ring(DEFAULT_VNODES, 0..100);
    let before = owners(&r, keys);
    let mut worst: f64 = 0.0;
    for leaver in [0, 17, 42, 99] {
        r.remove(leaver);
        let after = owners(&r, keys);
        let moved: Vec<usize> = (0..keys as usize)
            .filter(|&i| before[i] != after[i])
            .collect();
        assert!(
            moved.iter().all(|&i| before[i] == leaver),
            "only the keys of the endpoint that left move"
        );
        let on_it = before.iter().filter(|&&owner| owner == leaver).count();
        assert_eq!(
            moved.len(),
            on_it,
            "every key of the endpoint that left moves"
        );
        worst = worst.max(moved.len() as f64 / keys as f64);
        // It joins again: exactly its keys come back.
        r.insert(leaver, seed(leaver));
        r.settle();
        assert_eq!(owners(&r, keys), before);
    }
    // The ideal is 1 % of the keys; 100 points each keep it within 1.5×.
    assert!(worst < 0.015, "worst share moved {worst}");

    // A newcomer takes keys from the others, and only those it now owns move.
    r.insert(100, seed(100));
    r.settle();
    let after = owners(&r, keys);
    let moved = (0..keys as usize).filter(|&i| before[i] != after[i]);
    assert!(moved.clone().all(|i| after[i] == 100));
    let share = moved.count() as f64 / keys as f64;
    assert!((0.004..0.015).contains(&share), "newcomer's share {share}");
}

#[test]
fn a_full_endpoint_passes_the_key_to_the_next_one_on_the_ring() {
    let r = ring(DEFAULT_VNODES, 0..5);
    let hot = key(7);
    let home = r.pick(hot, |_| false, |_| false).unwrap();
    // The next endpoint round the ring, other than the home one.
    let next = r.walk(hot).find(|&slot| slot != home).unwrap();
    assert_eq!(r.pick(hot, |_| false, |slot| slot == home), Some(next));
    // Two full: the third distinct one in ring order.
    let mut distinct = Vec::new();
    for slot in r.walk(hot) {
        if !distinct.contains(&slot) {
            distinct.push(slot);
        }
    }
    assert_eq!(distinct.len(), 5);
    assert_eq!(distinct[..2], [home, next]);
    let full = |slot| slot == home || slot == next;
    assert_eq!(r.pick(hot, |_| false, full), Some(distinct[2]));
    // All full: the home one still (the bound is a preference).
    assert_eq!(r.pick(hot, |_| false, |_| true), Some(home));
    // A hot key spills, a cool one stays home: the others keep their keys.
    let cool: Vec<u64> = (0..1000)
        .map(key)
        .filter(|&k| r.pick(k, |_| false, |_| false) != Some(home))
        .collect();
    assert!(cool
        .iter()
        .all(|&k| r.pick(k, |_| false, |slot| slot == home) == r.pick(k, |_| false, |_| false)));
}

#[test]
fn a_refused_endpoint_is_passed_over_as_a_retry_does() {
    let r = ring(DEFAULT_VNODES, 0..3);
    let k = key(1);
    let home = r.pick(k, |_| false, |_| false).unwrap();
    let next = r.walk(k).find(|&slot| slot != home).unwrap();
    assert_eq!(r.pick(k, |slot| slot == home, |_| false), Some(next));
    // Refused beats full: a tried endpoint is never the fallback.
    assert_eq!(r.pick(k, |slot| slot == home, |_| true), Some(next));
    assert_eq!(r.pick(k, |_| true, |_| false), None);
    assert_eq!(Ring::default().pick(k, |_| false, |_| false), None);
}

#[test]
fn buckets_grow_and_shrink_with_the_ring() {
    let mut r = ring(100, 0..1000);
    assert_eq!(r.points(), 100_000);
    assert!(r.buckets.len() * GROW >= r.points());
    let mean = r.points() / r.buckets.len();
    assert!(mean >= SHRINK, "{mean} points per bucket");
    for slot in 1..1000 {
        r.remove(slot);
    }
    assert_eq!((r.len(), r.points()), (1, 100));
    assert!(r.buckets.len() < 1000, "{} buckets", r.buckets.len());
    assert!(r.points() >= r.buckets.len() * SHRINK || r.bits == MIN_BITS);
    let mut counts = HashMap::<u32, usize>::new();
    for owner in owners(&r, 1000) {
        *counts.entry(owner).or_default() += 1;
    }
    assert_eq!(counts, HashMap::from([(0, 1000)]));
}

#[test]
fn the_points_of_an_endpoint_are_distinct_and_stable() {
    // Fixed values: the positions are part of the contract between clients
    // of one fleet, built from different versions of the crate.
    assert_eq!(point(0, 0), 0xe220_a839_7b1d_cdaf);
    let points: std::collections::HashSet<u64> = (0..MAX_VNODES).map(|i| point(42, i)).collect();
    assert_eq!(points.len(), MAX_VNODES as usize);
    assert_eq!(Ring::new(0).vnodes, 1);
    assert_eq!(Ring::new(u32::MAX).vnodes, MAX_VNODES);
}
