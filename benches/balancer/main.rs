//! The balancer benchmarks of `make bench`: how fast an idle client drops a
//! deregistered server, what balancing costs per request, and the tail under
//! one slow server, each next to a baseline measured in the same run: a plain
//! tonic `Channel` and tonic's `balance_channel`, fed by the same discovery.
//!
//! Run with `cargo bench --bench balancer` (or `make bench`). Without `--bench`
//! (as under `cargo test --all-targets`) it exits at once: benchmarks never run
//! in CI. Output: a markdown section on stdout; `--out FILE` also writes it
//! there. `--quick` runs smaller sizes (for trying the harness out).
//!
//! The client runs on a single-threaded runtime on the main thread; the
//! Greeter servers run on another thread with their own runtime, so that on a
//! small machine the client's cost is not hidden behind the servers'.
//!
//! One module per concern: `measure` (allocations, CPU time, pinning),
//! `servers`, `clients` (the compared clients and the runs), then one module
//! per row: `remove` (2), `overhead` (4), `slow` (5), `scale` (9, 11: the
//! initial set of a large service, memory per idle endpoint), `picks`
//! (9b, 10: one change, pick cost per policy), `bad_instance` (12,
//! 13: one failing or frozen instance of three), `hashing` (17a–d:
//! consistent hashing's keyed pick, keys moved, ring memory, one change),
//! `routing` (20, 21: pick cost with locality and with slow start), and
//! `recorder` (4m:
//! `--only 40`, never by default, as it installs a global recorder).

#[path = "../../tests/support/mod.rs"]
mod support;

#[path = "../common/mod.rs"]
mod common;

mod bad_instance;
mod clients;
mod hashing;
mod measure;
mod overhead;
mod picks;
#[cfg(feature = "metrics")]
mod recorder;
mod remove;
mod routing;
mod scale;
mod servers;
mod slow;
mod subset;

use std::time::Duration;

use bad_instance::bad_instance;
use common::{section, Args};
use measure::pin_to_cpu;
use overhead::overhead;
use remove::remove_latency;
use slow::slow_instance;

pub mod hello {
    tonic::include_proto!("helloworld");
}

fn main() {
    let Some(args) = Args::parse() else {
        return;
    };
    pin_to_cpu(0);
    let quick = args.quick;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let text = runtime.block_on(async {
        // Row 17c measures RSS growth: before any other row, whose freed
        // memory would hide it.
        let mut ring_memory = args
            .runs(17)
            .then(|| hashing::ring_memory(if quick { 10_000 } else { 100_000 }));
        let etcd = support::Etcd::start().await;
        let mut rows = Vec::new();
        let mut details = String::new();
        if args.runs(2) {
            eprintln!("remove latency…");
            rows.push(
                remove_latency(
                    &etcd,
                    if quick { 50 } else { 300 },
                    if quick { 10 } else { 50 },
                )
                .await,
            );
        }
        if args.runs(4) {
            eprintln!("balancer overhead…");
            let (overhead_rows, overhead_details) = if quick {
                overhead(&etcd, 4, 100, 1_000).await
            } else {
                overhead(&etcd, 100, 300, 3_000).await
            };
            rows.extend(overhead_rows);
            details = overhead_details;
        }
        if args.runs(5) {
            eprintln!("tail under a slow instance…");
            rows.push(
                slow_instance(
                    &etcd,
                    Duration::from_secs(1),
                    Duration::from_secs(if quick { 2 } else { 5 }),
                )
                .await,
            );
        }
        for (row, fault) in [
            (12, support::balancer::Fault::Fail),
            (13, support::balancer::Fault::Silent),
        ] {
            if args.runs(row) {
                eprintln!("one bad instance of three (row {row})…");
                let seconds = if quick { 3 } else { 10 };
                rows.push(bad_instance(fault, Duration::from_secs(seconds)).await);
            }
        }
        if args.runs(9) {
            for n in if quick {
                vec![1_000]
            } else {
                vec![1_000, 10_000, 100_000]
            } {
                eprintln!("initial set {n}…");
                rows.push(scale::initial_set(&etcd, n).await);
            }
            eprintln!("one change…");
            rows.push(picks::change_cost(
                if quick { 10_000 } else { 100_000 },
                1_000,
            ));
        }
        if args.runs(10) {
            eprintln!("pick cost…");
            let sizes = if quick {
                vec![3, 1_000, 10_000]
            } else {
                vec![3, 1_000, 100_000]
            };
            rows.extend(picks::pick_cost(
                &sizes,
                if quick { 20_000 } else { 200_000 },
            ));
        }
        if args.runs(20) || args.runs(21) {
            eprintln!("pick cost with locality and slow start…");
            let sizes = if quick {
                vec![3, 1_000, 10_000]
            } else {
                vec![3, 1_000, 100_000]
            };
            let picks = if quick { 20_000 } else { 200_000 };
            if args.runs(20) {
                rows.extend(routing::locality_cost(&sizes, picks));
            }
            if args.runs(21) {
                rows.extend(routing::slow_start_cost(&sizes, picks));
            }
        }
        if args.runs(11) {
            eprintln!("idle endpoints…");
            rows.push(scale::idle_memory(if quick { 10_000 } else { 100_000 }, 1_000).await);
        }
        if args.runs(17) {
            eprintln!("consistent hashing…");
            let sizes = if quick {
                vec![3, 1_000, 10_000]
            } else {
                vec![3, 1_000, 100_000]
            };
            rows.push(hashing::pick_cost(
                &sizes,
                if quick { 20_000 } else { 200_000 },
            ));
            rows.push(hashing::keys_moved(
                if quick { 20_000 } else { 100_000 },
                20,
            ));
            rows.push(hashing::change_cost(
                if quick { 10_000 } else { 100_000 },
                1_000,
            ));
            rows.extend(ring_memory.take());
        }
        if args.runs(16) {
            eprintln!("subset spread…");
            rows.extend(subset::subset_rows(quick));
        }
        // Row 4m (`--only 40`) installs a global recorder: after the others.
        #[cfg(feature = "metrics")]
        if args.runs(40) && args.only.is_some() {
            eprintln!("metrics with the Prometheus recorder…");
            rows.extend(if quick {
                recorder::recorder_cost(&etcd, 4, 100, 1_000).await
            } else {
                recorder::recorder_cost(&etcd, 30, 300, 3_000).await
            });
        }
        section(
            "Balancing",
            "The client runs on a single-threaded tokio runtime; the Greeter servers \
             (tonic, 127.0.0.1, `tcp_nodelay`) on another thread with their own \
             single-threaded runtime. Every client uses the endpoint settings of \
             `default_endpoint` (the plain Channel too) and is fed by a `Discovery` of \
             the same local etcd.",
            &rows,
            &details,
        )
    });
    args.finish(&text);
}
