//! Rows 9 and 11: the balancer over a large service. Row 9, the time to
//! apply the initial set of N instances, next to the discovery's own start;
//! row 11, the memory an endpoint that was never picked costs.
//!
//! Uses the public API only, so that the same file measures older versions
//! of the crate.

use std::time::{Duration, Instant};

use etcd_client::{Client, PutOptions, Txn, TxnOp};
use futures_util::stream::{self, StreamExt};
use tonic_etcd::codec::{Codec, Native};
use tonic_etcd::{Balancer, Change, Discovery, Instance, Policy};

use crate::common::{median, ms, quantile, Met, Row};
use crate::measure::{allocations, heap_bytes};
use crate::support;

/// How long the discoveries may take to start: 100,000 instances take
/// longer than the default on a loaded machine.
const STARTUP: Duration = Duration::from_secs(120);

/// The address of the `i`-th fake instance: in 127.0.0.0/8, never connected
/// to (the balancer's channels are lazy).
fn addr_of(i: usize) -> String {
    format!(
        "127.{}.{}.{}:50051",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

fn instance(service: &str, i: usize) -> Instance {
    Instance::new(service, addr_of(i)).unwrap()
}

/// Writes `n` native-format instances of `service`, 128 puts per
/// transaction.
async fn write_many(client: &Client, service: &str, n: usize) {
    let mut kv = client.clone();
    let mut batch = Vec::with_capacity(128);
    for i in 0..n {
        let instance = instance(service, i);
        batch.push(TxnOp::put(
            format!("/services/{service}/{}", instance.addr),
            Native.encode(&instance).unwrap(),
            None::<PutOptions>,
        ));
        if batch.len() == 128 || i + 1 == n {
            kv.txn(Txn::new().and_then(std::mem::take(&mut batch)))
                .await
                .unwrap();
        }
    }
}

/// Discovery start → its N-th Insert.
async fn discovery_start(client: &Client, service: &str, n: usize) -> Duration {
    let t = Instant::now();
    let mut changes = Discovery::new(client.clone(), service)
        .startup_timeout(STARTUP)
        .changes()
        .await
        .unwrap();
    let mut inserts = 0;
    while inserts < n {
        if let Some(Change::Insert(..)) = changes.next().await {
            inserts += 1;
        }
    }
    t.elapsed()
}

/// Balancer start (its discovery's included) → `Balancer::endpoints()`
/// lists all N.
async fn balancer_start(client: &Client, service: &str, n: usize) -> Duration {
    let t = Instant::now();
    let balancer = Discovery::new(client.clone(), service)
        .startup_timeout(STARTUP)
        .balancer(Policy::RoundRobin)
        .await
        .unwrap();
    // Polled through the Debug output's count, O(1), then confirmed by one
    // `endpoints()`, which copies every instance.
    let wanted = format!("endpoints: {n},");
    loop {
        if format!("{balancer:?}").contains(&wanted) && balancer.endpoints().len() == n {
            return t.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Row 9: the time to apply the initial set of `n` instances, next to the
/// discovery's start alone (median of alternating runs).
pub(crate) async fn initial_set(etcd: &support::Etcd, n: usize) -> Row {
    let client = etcd.client().await;
    let service = support::unique("scale");
    write_many(&client, &service, n).await;
    let reps = if n >= 100_000 { 3 } else { 5 };
    let (mut discovery, mut balancer) = (vec![], vec![]);
    // A connection of its own per start: discoveries of one connection
    // share a running watch (and skip the Get), and a balancer's watch may
    // outlive it by a moment, so a reused connection could measure a join.
    for _ in 0..reps {
        discovery.push(discovery_start(&etcd.client().await, &service, n).await);
        balancer.push(balancer_start(&etcd.client().await, &service, n).await);
    }
    let (discovery, balancer) = (quantile(&mut discovery, 0.5), quantile(&mut balancer, 0.5));
    let ratio = balancer.as_secs_f64() / discovery.as_secs_f64();
    Row {
        name: format!("9. balancer has the initial set, {n} instances"),
        ours: format!("{} ({ratio:.2}× the discovery)", ms(balancer)),
        baseline: format!("discovery start {}", ms(discovery)),
        goal: "≤ 2× the discovery's start".into(),
        met: Met::from(ratio <= 2.0),
        reading: format!(
            "median of {reps} alternating runs over {n} native-format instances in etcd: \
             `Discovery::changes` until its {n}th Insert, against `Discovery::balancer` \
             (round robin) until `Balancer::endpoints()` lists all {n} (the discovery's \
             start included), each on a new connection"
        ),
    }
}

/// The resident set size of the process, in bytes.
pub(crate) fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// What a balancer over a static list of `n` instances added (made as the
/// list is read, so that they count as the balancer's): RSS, heap bytes
/// held, allocations.
struct Idle {
    rss: usize,
    heap: i64,
    allocations: u64,
}

fn idle_balancer(n: usize) -> Idle {
    let service = support::unique("idle");
    let (rss_before, heap_before, allocated) = (rss(), heap_bytes(), allocations());
    let changes = stream::iter((0..n).map(move |i| {
        let instance = instance(&service, i);
        Change::Insert(instance.addr.clone(), instance)
    }));
    let balancer = Balancer::builder(Policy::RoundRobin).build(changes.chain(stream::pending()));
    assert_eq!(balancer.endpoints().len(), n);
    let idle = Idle {
        rss: rss().saturating_sub(rss_before),
        heap: heap_bytes() - heap_before,
        allocations: allocations() - allocated,
    };
    drop(balancer);
    idle
}

/// Row 11: what an endpoint never picked costs, at `n` endpoints, next to
/// the same measure at `small` endpoints.
///
/// Two readings, each a lower bound: the RSS growth, read on the first
/// balancer of `n` of this row (a balancer made after freed memory, from an
/// earlier one or an earlier row, reuses it and grows the RSS by less); and
/// the heap bytes held (from the harness's counting allocator), which do not
/// depend on that reuse but leave out the allocator's own overhead, the
/// median of 3. The goal is judged on the larger.
pub(crate) async fn idle_memory(n: usize, small: usize) -> Row {
    let per = |bytes: f64, n: usize| bytes / n as f64;
    let first = idle_balancer(n);
    let rss_bytes = per(first.rss as f64, n);
    let (mut heap, mut blocks, mut small_heap) = (vec![], vec![], vec![]);
    heap.push(per(first.heap as f64, n));
    blocks.push(per(first.allocations as f64, n));
    for round in 0..3 {
        // Let the dropped balancers' tasks (if any) finish.
        tokio::time::sleep(Duration::from_millis(50)).await;
        small_heap.push(per(idle_balancer(small).heap as f64, small));
        if round < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let again = idle_balancer(n);
            heap.push(per(again.heap as f64, n));
            blocks.push(per(again.allocations as f64, n));
        }
    }
    let spread = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        format!("{lo:.0}–{hi:.0}")
    };
    let heap_spread = spread(&heap);
    let (heap_bytes, small_bytes, blocks) = (median(heap), median(small_heap), median(blocks));
    let bytes = rss_bytes.max(heap_bytes);
    Row {
        name: format!("11. memory per idle endpoint, {n} endpoints"),
        ours: format!(
            "{bytes:.0} B/endpoint: heap held {heap_bytes:.0} ({heap_spread}; {blocks:.1} \
             allocations), RSS growth {rss_bytes:.0}"
        ),
        baseline: format!("heap held {small_bytes:.0} B/endpoint at {small} endpoints"),
        goal: "≤ ~1 KB per endpoint never picked".into(),
        met: Met::from(bytes <= 1100.0),
        reading: format!(
            "the larger of two lower bounds, per endpoint while a round-robin balancer takes \
             a static list of {n} instances: the heap held (bytes asked of the allocator \
             less bytes given back; median of 3, range shown; leaves out the allocator's \
             overhead) and the RSS growth of the process (from /proc/self/statm, on this \
             row's first such balancer; less when earlier rows left freed memory to \
             reuse); instances are made as the list is read, so they count; no endpoint \
             is picked, so no tonic Endpoint, no channel and no task exists"
        ),
    }
}
