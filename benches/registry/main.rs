//! The registry benchmarks of `make bench`: discovery latency, crash detection,
//! initial sync at scale, churn and keepalive cost, each next to a baseline
//! measured in the same run against the same local etcd.
//!
//! Run with `cargo bench --bench registry` (or `make bench`). Without `--bench`
//! (as under `cargo test --all-targets`) it exits at once: benchmarks never run
//! in CI. Output: a markdown table on stdout; `--out FILE` also writes it there.
//! `--quick` runs smaller sizes (for trying the harness out).
//!
//! One module per concern: `heap` (the counting allocator), `instances` (what
//! the rows write), then the rows: `latency` (1 and 3), `sync` (6), `churn`
//! (7), `keepalive` (8), `hung` (9).

#[path = "../../tests/support/mod.rs"]
mod support;

#[path = "../common/mod.rs"]
mod common;

mod churn;
mod heap;
mod hung;
mod instances;
mod keepalive;
mod latency;
mod sync;

use std::time::Duration;

use churn::churn;
use common::{section, Args};
use hung::hung_endpoint;
use keepalive::keepalive_cost;
use latency::{add_latency, crash_detection};
use sync::initial_sync;

fn main() {
    let Some(args) = Args::parse() else {
        // `cargo test --all-targets` runs bench targets without `--bench`.
        return;
    };
    let quick = args.quick;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let text = runtime.block_on(async {
        let etcd = support::Etcd::start().await;
        let mut rows = Vec::new();
        if args.runs(1) {
            eprintln!("add latency…");
            rows.push(add_latency(&etcd, if quick { 100 } else { 500 }).await);
        }
        if args.runs(3) {
            eprintln!("crash detection…");
            rows.push(crash_detection(&etcd, if quick { 2 } else { 5 }).await);
        }
        if args.runs(6) {
            for n in if quick {
                vec![1_000]
            } else {
                vec![1_000, 10_000, 100_000]
            } {
                eprintln!("initial sync {n}…");
                rows.push(initial_sync(&etcd, n).await);
            }
        }
        if args.runs(7) {
            eprintln!("churn…");
            rows.push(
                churn(
                    &etcd,
                    if quick { 200 } else { 1_000 },
                    Duration::from_secs(if quick { 2 } else { 10 }),
                )
                .await,
            );
        }
        if args.runs(8) {
            eprintln!("keepalive cost…");
            rows.push(
                keepalive_cost(
                    &etcd,
                    if quick { 100 } else { 1_000 },
                    Duration::from_secs(if quick { 12 } else { 60 }),
                )
                .await,
            );
        }
        if args.runs(9) {
            eprintln!("a black-holed endpoint of three…");
            rows.push(hung_endpoint(&etcd, if quick { 6 } else { 30 }).await);
        }
        section(
            "Registry and discovery",
            "One etcd member on 127.0.0.1 with a temp data dir and \
             `--heartbeat-interval 50 --election-timeout 500`; the harness runs on a \
             two-worker tokio runtime.",
            &rows,
            "",
        )
    });
    args.finish(&text);
}
