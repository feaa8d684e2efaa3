//! Row 10: what a pick costs per policy at 3, 1,000 and 100,000 endpoints,
//! and what one change costs to apply; through the crate's hidden
//! `PickBench` hook (the balancer's set and pickers with no etcd and no
//! connection).

use std::hint::black_box;
use std::time::{Duration, Instant};

use tonic_etcd::balance::PickBench;
use tonic_etcd::{Change, Instance, Policy};

use crate::common::{median, Met, Row};

/// The `i`th of up to 2^24 distinct loopback addresses (127.0.0.0/8).
pub(crate) fn loopback(i: usize) -> String {
    format!(
        "127.{}.{}.{}:50051",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

fn instance(i: usize) -> Instance {
    Instance::new("picks", loopback(i))
        .unwrap()
        .with_weight(1 + (i % 5) as u32)
}

fn bench(policy: Policy, n: usize) -> PickBench {
    let bench = PickBench::new(policy);
    bench.apply(
        (0..n)
            .map(|i| Change::Insert(format!("key-{i:06}"), instance(i)))
            .collect(),
    );
    assert_eq!(bench.len(), n);
    bench
}

/// How many timed runs each size gets.
const RUNS: usize = 7;

/// Nanoseconds per pick over one run of `picks`, after a tenth as many to
/// warm up (the other sizes' runs in between evict this one's lines).
fn run(bench: &PickBench, picks: usize) -> f64 {
    for _ in 0..picks / 10 {
        black_box(bench.pick_any());
    }
    let t = Instant::now();
    for _ in 0..picks {
        black_box(bench.pick_any());
    }
    t.elapsed().as_nanos() as f64 / picks as f64
}

/// The median and range of `runs`.
fn summary(mut runs: Vec<f64>) -> (f64, f64, f64) {
    runs.sort_by(f64::total_cmp);
    let (lo, hi) = (runs[0], runs[runs.len() - 1]);
    (median(runs), lo, hi)
}

/// Row 10, one row per policy. The sizes' runs alternate, so that a change
/// in the machine's load (it is shared) weighs on every size alike.
pub(crate) fn pick_cost(sizes: &[usize], picks: usize) -> Vec<Row> {
    Policy::ALL
        .iter()
        .map(|&policy| {
            let benches: Vec<PickBench> = sizes.iter().map(|&n| bench(policy, n)).collect();
            let mut runs = vec![Vec::with_capacity(RUNS); sizes.len()];
            for _ in 0..RUNS {
                for (bench, runs) in benches.iter().zip(&mut runs) {
                    runs.push(run(bench, picks));
                }
            }
            drop(benches);
            let costs: Vec<(usize, (f64, f64, f64))> = sizes
                .iter()
                .copied()
                .zip(runs.into_iter().map(summary))
                .collect();
            let (_, (small, _, _)) = costs[0];
            let (large_n, (large, _, _)) = *costs.last().unwrap();
            let ratio = large / small;
            let ours = costs
                .iter()
                .map(|(n, (ns, lo, hi))| format!("{ns:.0} ns at {n} ({lo:.0}–{hi:.0})"))
                .collect::<Vec<_>>()
                .join(", ");
            Row {
                name: format!("10. pick cost, {policy}"),
                ours: format!("{ours}; {ratio:.1}× at {large_n}"),
                baseline: format!("{small:.0} ns at {}", costs[0].0),
                goal: format!("< 1 µs at {large_n}, ≤ 10× the cost at {}", costs[0].0),
                met: Met::from(large < 1000.0 && ratio <= 10.0),
                reading: format!(
                    "median (and range) of {RUNS} runs of {picks} picks on one thread (a lock, \
                     the policy's structure, a clone of the target's Arc), each after a tenth \
                     as many to warm up, the sizes' runs alternating; weights 1 to 5; no \
                     request is sent"
                ),
            }
        })
        .collect()
}

/// Microseconds to apply one change (an Insert of a new key, or its Remove)
/// to a set of `n`: the median of `k` of each.
fn per_change(policy: Policy, n: usize, k: usize) -> f64 {
    let bench = bench(policy, n);
    let mut samples = Vec::with_capacity(2 * k);
    for i in 0..k {
        let key = format!("extra-{i}");
        let t = Instant::now();
        bench.apply(vec![Change::Insert(key.clone(), instance(n + i))]);
        samples.push(t.elapsed());
        let t = Instant::now();
        bench.apply(vec![Change::Remove(key)]);
        samples.push(t.elapsed());
    }
    median(samples.iter().map(Duration::as_secs_f64).collect()) * 1e6
}

/// Row 9b: one change at `large` endpoints against one at 3, per policy.
pub(crate) fn change_cost(large: usize, k: usize) -> Row {
    let mut ours = Vec::new();
    let mut baseline = Vec::new();
    let mut worst: f64 = 0.0;
    for policy in Policy::ALL {
        let (small, big) = (per_change(policy, 3, k), per_change(policy, large, k));
        worst = worst.max(big);
        ours.push(format!("{policy} {big:.1} µs"));
        baseline.push(format!("{policy} {small:.1} µs"));
    }
    Row {
        name: format!("9b. one change applied, {large} endpoints"),
        ours: ours.join(", "),
        baseline: format!("at 3 endpoints: {}", baseline.join(", ")),
        goal: "microseconds whatever n".into(),
        met: Met::from(worst < 100.0),
        reading: format!(
            "median of {k} Inserts of a new key and {k} Removes of it, each applied alone \
             as the driver applies a batch (the endpoint template included, no connection)"
        ),
    }
}
