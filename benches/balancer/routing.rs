//! Rows 20 and 21: what a pick costs with locality-aware routing (two even
//! zones; the local one taking every pick, the usual state, or half of them,
//! spilling over, so that both groups are used) and with slow start (1 % of
//! the endpoints ramping), per policy, at 3, 1,000 and 100,000 endpoints;
//! through the crate's hidden `PickBench` hook.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tonic_etcd::balance::PickBench;
use tonic_etcd::{Change, Instance, Locality, Policy, SlowStart};

use crate::common::{median, Met, Row};
use crate::picks::loopback;

fn instance(i: usize, zone: &str) -> Instance {
    Instance::new("routing", loopback(i))
        .unwrap()
        .with_weight(1 + (i % 5) as u32)
        .with_metadata("zone", zone)
}

fn insert(
    range: std::ops::Range<usize>,
    zone: impl Fn(usize) -> &'static str,
) -> Vec<Change<String, Instance>> {
    range
        .map(|i| Change::Insert(format!("key-{i:06}"), instance(i, zone(i))))
        .collect()
}

/// `n` endpoints, every other one in zone `a`, with `locality`.
fn zoned(policy: Policy, n: usize, locality: Locality) -> PickBench {
    let bench = PickBench::routed(policy, Some(locality), None);
    bench.apply(insert(0..n, |i| if i % 2 == 0 { "a" } else { "b" }));
    assert_eq!(bench.len(), n);
    bench
}

/// Zone `a` takes every pick (all its endpoints ready).
fn all_local(policy: Policy, n: usize) -> PickBench {
    zoned(policy, n, Locality::new("a"))
}

/// Zone `a` takes half of the picks: the locality needs twice as many
/// endpoints as it has (`min_ready(n)`).
fn half_local(policy: Policy, n: usize) -> PickBench {
    zoned(policy, n, Locality::new("a").min_ready(n))
}

/// `n` endpoints, then 1 % more (at least one) that ramp.
fn ramping(policy: Policy, n: usize) -> PickBench {
    let bench = PickBench::routed(
        policy,
        None,
        Some(SlowStart::new(Duration::from_secs(3600))),
    );
    bench.apply(insert(0..n, |_| "a"));
    bench.apply(insert(n..n + (n / 100).max(1), |_| "a"));
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

fn row(
    number: u32,
    what: &str,
    sizes: &[usize],
    picks: usize,
    make: fn(Policy, usize) -> PickBench,
) -> Vec<Row> {
    Policy::ALL
        .iter()
        .map(|&policy| {
            let costs: Vec<(usize, f64, f64)> = sizes
                .iter()
                .map(|&n| {
                    let plain = PickBench::new(policy);
                    plain.apply(insert(0..n, |_| "a"));
                    (
                        n,
                        per_pick(&make(policy, n), picks),
                        per_pick(&plain, picks),
                    )
                })
                .collect();
            let (_, small, _) = costs[0];
            let &(large_n, large, _) = costs.last().unwrap();
            let ours = costs
                .iter()
                .map(|(n, ns, _)| format!("{ns:.0} ns at {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let baseline = costs
                .iter()
                .map(|(n, _, ns)| format!("{ns:.0} ns at {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            Row {
                name: format!("{number}. pick cost with {what}, {policy}"),
                ours: format!("{ours} ({:.1}× at {large_n})", large / small),
                baseline: format!("without, same run: {baseline}"),
                goal: format!("< 1 µs at {large_n}"),
                met: Met::from(large < 1000.0),
                reading: format!(
                    "median of 7 runs of {picks} picks on one thread, after as many to warm \
                     up; weights 1 to 5; no request is sent"
                ),
            }
        })
        .collect()
}

/// Row 20: locality, the local zone taking every pick, then half of them.
pub(crate) fn locality_cost(sizes: &[usize], picks: usize) -> Vec<Row> {
    let mut rows = row(20, "locality (all local)", sizes, picks, all_local);
    rows.extend(row(20, "locality (half spilled)", sizes, picks, half_local));
    rows
}

/// Row 21: slow start, 1 % of the endpoints ramping.
pub(crate) fn slow_start_cost(sizes: &[usize], picks: usize) -> Vec<Row> {
    row(21, "slow start (1 % ramping)", sizes, picks, ramping)
}
