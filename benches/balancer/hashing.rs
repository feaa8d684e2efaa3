//! Rows 17a–d: consistent hashing (`Policy::ConsistentHash`), through the
//! crate's hidden `PickBench` hook (the balancer's set and ring, no etcd, no
//! connection): the cost of a keyed pick at 3, 1,000 and 100,000 endpoints
//! (the key hashed in each pick, as the header's value is), the keys moved
//! when one of 100 endpoints leaves, the ring's memory per endpoint, and
//! the cost of one change.

use std::hint::black_box;
use std::time::Instant;

use tonic_etcd::balance::PickBench;
use tonic_etcd::{Change, Instance, Policy};

use crate::common::{median, Met, Row};
use crate::picks::loopback;
use crate::scale::rss;

fn instance(i: usize) -> Instance {
    Instance::new("hashing", loopback(i)).unwrap()
}

fn insert(i: usize) -> Change<String, Instance> {
    Change::Insert(format!("/services/hashing/key-{i:06}"), instance(i))
}

fn bench(policy: Policy, n: usize) -> PickBench {
    let bench = PickBench::new(policy);
    bench.apply((0..n).map(insert).collect());
    assert_eq!(bench.len(), n);
    bench
}

/// The request keys the picks cycle through: more than fit in a cache line
/// or two, as a service's users would be.
fn keys() -> Vec<Vec<u8>> {
    (0..4096)
        .map(|i| format!("user-{i}").into_bytes())
        .collect()
}

/// Nanoseconds per keyed pick, one value per run of `picks`.
fn per_pick(bench: &PickBench, keys: &[Vec<u8>], picks: usize, runs: usize) -> Vec<f64> {
    let round = |bench: &PickBench| {
        for i in 0..picks {
            black_box(bench.pick_hashed_any(&keys[i % keys.len()]));
        }
    };
    round(bench);
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            round(bench);
            t.elapsed().as_nanos() as f64 / picks as f64
        })
        .collect()
}

fn spread(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(0.0, f64::max);
    (min, max)
}

/// Row 17a: a keyed pick at each of `sizes`.
pub(crate) fn pick_cost(sizes: &[usize], picks: usize) -> Row {
    let keys = keys();
    let mut costs = Vec::new();
    for &n in sizes {
        let setup = Instant::now();
        let bench = bench(Policy::ConsistentHash, n);
        let setup = setup.elapsed();
        let runs = per_pick(&bench, &keys, picks, 7);
        let (low, high) = spread(&runs);
        eprintln!("  {n} endpoints: set applied in {setup:?}, picks {runs:.0?} ns");
        costs.push((n, median(runs), low, high));
    }
    // The time to apply the largest set, against round robin's.
    let large_n = *sizes.last().unwrap();
    let timed = |policy| {
        let t = Instant::now();
        drop(bench(policy, large_n));
        t.elapsed()
    };
    let (ring_apply, plain_apply) = (timed(Policy::ConsistentHash), timed(Policy::RoundRobin));
    let (small_n, small, ..) = costs[0];
    let (large_n, large, ..) = *costs.last().unwrap();
    let ratio = large / small;
    let ours = costs
        .iter()
        .map(|(n, ns, low, high)| format!("{ns:.0} ns at {n} ({low:.0}–{high:.0})"))
        .collect::<Vec<_>>()
        .join(", ");
    Row {
        name: "17a. pick cost, consistent-hash with keys".into(),
        ours: format!(
            "{ours}; {ratio:.1}× at {large_n}; the set of {large_n} applied in {:.2} s \
             (round robin {:.2} s)",
            ring_apply.as_secs_f64(),
            plain_apply.as_secs_f64()
        ),
        baseline: format!("{small:.0} ns at {small_n}"),
        goal: format!("< 1 µs at {large_n}, ≤ 10× the cost at {small_n}"),
        met: Met::from(large < 1000.0 && ratio <= 10.0),
        reading: format!(
            "median (min–max) of 7 runs of {picks} picks on one thread, after as many to \
             warm up, cycling through 4,096 keys: the key hashed (rapidhash V3), the lock, \
             the ring's bucket and walk, a clone of the target's Arc; 100 points per \
             endpoint; nothing in flight (below the load bound no load is read; under load, \
             one atomic per endpoint met), no request sent; the set applied in one batch \
             (one change per key), timed once"
        ),
    }
}

/// Row 17b: the share of `keys` keys that move when one of 100 endpoints
/// leaves, for each of `leaves` of them in turn (each joins again before
/// the next leaves), against the ideal 1 %.
pub(crate) fn keys_moved(keys: usize, leaves: usize) -> Row {
    let n = 100;
    let bench = bench(Policy::ConsistentHash, n);
    let keys: Vec<Vec<u8>> = (0..keys).map(|i| format!("key-{i}").into_bytes()).collect();
    let owners = |bench: &PickBench| -> Vec<String> {
        keys.iter()
            .map(|key| bench.pick_hashed(key).unwrap())
            .collect()
    };
    let before = owners(&bench);
    let mut shares = Vec::new();
    let mut strays = 0;
    for leaver in (0..n).step_by(n / leaves).take(leaves) {
        let Change::Insert(name, instance) = insert(leaver) else {
            unreachable!()
        };
        bench.apply(vec![Change::Remove(name.clone())]);
        let after = owners(&bench);
        let moved: Vec<usize> = (0..keys.len()).filter(|&i| before[i] != after[i]).collect();
        // A key that was not on the leaver and moved anyway.
        strays += moved.iter().filter(|&&i| before[i] != name).count();
        shares.push(moved.len() as f64 / keys.len() as f64 * 100.0);
        bench.apply(vec![Change::Insert(name, instance)]);
    }
    assert_eq!(owners(&bench), before, "a join puts back exactly its keys");
    let (low, high) = spread(&shares);
    let mean = shares.iter().sum::<f64>() / shares.len() as f64;
    Row {
        name: "17b. keys moved when one of 100 endpoints leaves, consistent-hash".into(),
        ours: format!(
            "mean {mean:.2} %, min {low:.2} %, max {high:.2} % of {} keys over {leaves} leaves; \
             {strays} moved that were not on the leaver",
            keys.len()
        ),
        baseline: "ideal 1.00 %".into(),
        goal: "≤ 1.5 % (1.5× the ideal), only the leaver's keys".into(),
        met: Met::from(high <= 1.5 && strays == 0),
        reading: format!(
            "100 endpoints, 100 points each; {leaves} endpoints spread over the key order \
             leave in turn (each joins again before the next leaves, and its keys come \
             back exactly); a key moved if its pick (no load) differs from before"
        ),
    }
}

/// Row 17d: one change (an Insert of a new key, or its Remove) applied to a
/// consistent-hash set of `n`, against one at 3: microseconds, median of `k`
/// of each, with the 90th percentile.
pub(crate) fn change_cost(n: usize, k: usize) -> Row {
    let per_change = |n: usize| {
        let bench = bench(Policy::ConsistentHash, n);
        let mut samples = Vec::with_capacity(2 * k);
        for i in 0..k {
            let Change::Insert(key, instance) = insert(n + i) else {
                unreachable!()
            };
            let t = Instant::now();
            bench.apply(vec![Change::Insert(key.clone(), instance)]);
            samples.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            bench.apply(vec![Change::Remove(key)]);
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
        samples.sort_by(f64::total_cmp);
        (median(samples.clone()), samples[samples.len() * 9 / 10])
    };
    let ((small, small_p90), (large, large_p90)) = (per_change(3), per_change(n));
    Row {
        name: format!("17d. one change applied, {n} endpoints, consistent-hash"),
        ours: format!("{large:.1} µs (p90 {large_p90:.1} µs)"),
        baseline: format!("{small:.1} µs (p90 {small_p90:.1} µs) at 3 endpoints"),
        goal: "microseconds whatever n".into(),
        met: Met::from(large < 100.0),
        reading: format!(
            "median of {k} Inserts of a new key and {k} Removes of it, each applied alone as \
             the driver applies a batch (the endpoint template included, no connection): \
             100 points placed in or taken out of their buckets"
        ),
    }
}

/// Row 17c: the memory consistent hashing adds per endpoint at `n`: the RSS
/// growth of a consistent-hash set minus that of a round-robin one, both
/// kept alive (so that neither reuses the other's freed memory), one run:
/// later runs would reuse what the first freed.
pub(crate) fn ring_memory(n: usize) -> Row {
    let grown = |policy: Policy| {
        let before = rss();
        let bench = bench(policy, n);
        (bench, rss().saturating_sub(before) as f64 / n as f64)
    };
    let (plain_set, plain) = grown(Policy::RoundRobin);
    let (ring_set, ring) = grown(Policy::ConsistentHash);
    drop((plain_set, ring_set));
    Row {
        name: format!("17c. memory of the ring per endpoint, {n} endpoints"),
        ours: format!("{:.0} B/endpoint more than round robin", ring - plain),
        baseline: format!("round robin's set: {plain:.0} B/endpoint"),
        goal: "reported (100 points of 12 B each, in buckets)".into(),
        met: Met::Yes,
        reading: format!(
            "RSS growth of the process (/proc/self/statm) while the hidden PickBench hook \
             takes {n} instances, per endpoint, consistent-hash minus round robin (the same \
             instances, template and targets), one run, both sets alive at the end"
        ),
    }
}
