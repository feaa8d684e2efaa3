//! Row 10: what a pick costs per policy at 3, 1,000 and 100,000 endpoints,
//! and what one change costs to apply; through the crate's hidden
//! `PickBench` hook (the balancer's set and pickers with no etcd and no
//! connection).

use std::hint::black_box;
use std::time::{Duration, Instant};

use tonic_etcd::balance::PickBench;
use tonic_etcd::{Change, Instance, Policy};

use crate::common::{median, Met, Row};

fn instance(i: usize) -> Instance {
    let addr = format!(
        "127.{}.{}.{}:50051",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    );
    Instance::new("picks", addr)
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

/// Nanoseconds per pick: the median of 7 runs of `picks`.
fn per_pick(bench: &PickBench, picks: usize) -> f64 {
    for _ in 0..picks {
        black_box(bench.pick_any());
    }
    let runs = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..picks {
                black_box(bench.pick_any());
            }
            t.elapsed().as_nanos() as f64 / picks as f64
        })
        .collect();
    median(runs)
}

/// Row 10, one row per policy.
pub(crate) fn pick_cost(sizes: &[usize], picks: usize) -> Vec<Row> {
    Policy::ALL
        .iter()
        .map(|&policy| {
            let costs: Vec<(usize, f64)> = sizes
                .iter()
                .map(|&n| (n, per_pick(&bench(policy, n), picks)))
                .collect();
            let (_, small) = costs[0];
            let (large_n, large) = *costs.last().unwrap();
            let ratio = large / small;
            let ours = costs
                .iter()
                .map(|(n, ns)| format!("{ns:.0} ns at {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            Row {
                name: format!("10. pick cost, {policy}"),
                ours: format!("{ours} ({ratio:.1}× at {large_n})"),
                baseline: format!("{small:.0} ns at {}", costs[0].0),
                goal: format!("< 1 µs at {large_n}, ≤ 10× the cost at {}", costs[0].0),
                met: Met::from(large < 1000.0 && ratio <= 10.0),
                reading: format!(
                    "median of 7 runs of {picks} picks on one thread (a lock, the policy's \
                     structure, a clone of the target's Arc), after as many to warm up; \
                     weights 1 to 5; no request is sent"
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
