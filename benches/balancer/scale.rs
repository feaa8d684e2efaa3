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
use crate::measure::allocations;
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
    for _ in 0..reps {
        discovery.push(discovery_start(&client, &service, n).await);
        balancer.push(balancer_start(&client, &service, n).await);
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
             start included)"
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

/// A balancer over a static list of `n` instances (made as the list is
/// read, so that they count as the balancer's), with the RSS it added and
/// the allocations it made.
fn idle_balancer(n: usize) -> (Balancer, usize, u64) {
    let service = support::unique("idle");
    let (before, allocated) = (rss(), allocations());
    let changes = stream::iter((0..n).map(move |i| {
        let instance = instance(&service, i);
        Change::Insert(instance.addr.clone(), instance)
    }));
    let balancer = Balancer::builder(Policy::RoundRobin).build(changes.chain(stream::pending()));
    assert_eq!(balancer.endpoints().len(), n);
    let grown = rss().saturating_sub(before);
    (balancer, grown, allocations() - allocated)
}

/// Row 11: what an endpoint never picked costs, at `n` endpoints, next to
/// the same measure at `small` endpoints.
pub(crate) async fn idle_memory(n: usize, small: usize) -> Row {
    let per = |(balancer, grown, allocated): (Balancer, usize, u64), n: usize| {
        drop(balancer);
        (grown as f64 / n as f64, allocated as f64 / n as f64)
    };
    let mut large = vec![];
    let mut large_allocations = vec![];
    let mut smalls = vec![];
    for _ in 0..3 {
        let (bytes, allocated) = per(idle_balancer(small), small);
        smalls.push(bytes);
        // Let the dropped balancers' tasks (if any) finish.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (bytes, allocated_large) = per(idle_balancer(n), n);
        large.push(bytes);
        large_allocations.push(allocated_large);
        let _ = allocated;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (bytes, small_bytes, blocks) = (median(large), median(smalls), median(large_allocations));
    Row {
        name: format!("11. memory per idle endpoint, {n} endpoints"),
        ours: format!("{:.0} B/endpoint ({blocks:.1} allocations)", bytes),
        baseline: format!("{small_bytes:.0} B/endpoint at {small} endpoints"),
        goal: "≤ ~1 KB per endpoint never picked".into(),
        met: Met::from(bytes <= 1100.0),
        reading: format!(
            "RSS growth of the process (from /proc/self/statm, so the allocator's overhead \
             counts) while a round-robin balancer takes a static list of {n} instances, \
             divided by {n}, median of 3; instances are made as the list is read, so they \
             count; allocations counted by the harness's allocator; no endpoint is picked, \
             so no channel (and no task) exists"
        ),
    }
}
