//! Row 6: the initial sync of a large service, in time and heap.

use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};
use futures_util::StreamExt;
use tonic_etcd::Discovery;
use tower::discover::Change;

use crate::common::{median, ms, quantile, Met, Row};
use crate::heap::heap;
use crate::instances::write_many;
use crate::support;

/// A raw paginated Get of `prefix` pinned at the first page's revision, as
/// discovery does it, with etcd-client alone: the keys read and the largest
/// page's key and value bytes.
async fn raw_get(client: &Client, prefix: &str) -> (usize, usize) {
    let mut kv = client.kv_client();
    let mut from = prefix.as_bytes().to_vec();
    let mut end = from.clone();
    *end.last_mut().unwrap() += 1;
    let (mut count, mut largest, mut revision) = (0, 0, 0);
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(1000);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let page = kv.get(from.clone(), Some(options)).await.unwrap();
        revision = page.header().unwrap().revision();
        count += page.kvs().len();
        largest = largest.max(
            page.kvs()
                .iter()
                .map(|kv| kv.key().len() + kv.value().len())
                .sum(),
        );
        match page.kvs().last() {
            Some(last) if page.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => break,
        }
    }
    (count, largest)
}

/// Row 6: Discovery start → last Insert, next to a raw paginated Get; and
/// what the discovery holds on the heap once synced.
pub(crate) async fn initial_sync(etcd: &support::Etcd, n: usize) -> Row {
    let client = etcd.client().await;
    let service = support::unique("sync");
    write_many(&client, &service, n).await;
    let prefix = format!("/services/{service}/");
    let reps = if n >= 100_000 { 3 } else { 5 };
    let (mut raw, mut ours, mut held, mut blocks) = (vec![], vec![], vec![], vec![]);
    let mut largest = 0;
    // Alternate raw and ours, and keep the medians.
    for _ in 0..reps {
        let t = Instant::now();
        let (count, page) = raw_get(&client, &prefix).await;
        raw.push(t.elapsed());
        assert_eq!(count, n);
        largest = page;

        let before = heap();
        let t = Instant::now();
        let mut discovered = Discovery::new(client.clone(), service.as_str())
            .changes()
            .await
            .unwrap();
        let mut inserts = 0;
        while inserts < n {
            if let Some(Change::Insert(..)) = discovered.next().await {
                inserts += 1;
            }
        }
        ours.push(t.elapsed());
        assert_eq!(discovered.snapshot().len(), n);
        // What the discovery holds is what its end gives back.
        let with = heap();
        drop(discovered);
        let mut after = heap();
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            after = heap();
            if after.0 <= before.0 {
                break;
            }
        }
        held.push((with.0 - after.0) as f64 / n as f64);
        blocks.push((with.1 - after.1) as f64 / n as f64);
    }
    let (raw, ours) = (quantile(&mut raw, 0.5), quantile(&mut ours, 0.5));
    let (per_instance, blocks_per_instance) = (median(held), median(blocks));
    let ratio = ours.as_secs_f64() / raw.as_secs_f64();
    const LIMIT: usize = 4 << 20;
    Row {
        name: format!("6. initial sync, {n} instances"),
        ours: format!(
            "{} ({ratio:.2}× raw); {per_instance:.0} B/instance on the heap \
             ({blocks_per_instance:.1} allocations)",
            ms(ours)
        ),
        baseline: format!("raw paginated Get {}", ms(raw)),
        goal: "≤ 3× raw, ≤ 1 KB/instance, no 4 MiB limit hit".into(),
        met: Met::from(ratio <= 3.0 && per_instance <= 1024.0 && largest < LIMIT),
        reading: format!(
            "median of {reps} alternating runs; pages of 1000 keys pinned at one revision, \
             the largest {:.0} KiB of keys and values, {:.1} % of tonic's 4 MiB limit; the \
             heap figure is what dropping the synced discovery gives back (its key → instance \
             state), counted by the harness's allocator",
            largest as f64 / 1024.0,
            largest as f64 * 100.0 / LIMIT as f64
        ),
    }
}
