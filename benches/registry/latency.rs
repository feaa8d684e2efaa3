//! Rows 1 and 3: how fast discovery sees an added instance and a crashed one.

use std::time::{Duration, Instant};

use etcd_client::{EventType, WatchOptions};
use futures_util::StreamExt;
use tonic_etcd::{Discovery, Instance, Registrar};
use tower::discover::Change;

use crate::common::{ms, quantile, Met, Row};
use crate::instances::{addr_of, native_value};
use crate::support;

/// Row 1: put → Insert seen by Discovery, next to put → watch event with
/// etcd-client alone. Both clocks start when the put is sent.
pub(crate) async fn add_latency(etcd: &support::Etcd, n: usize) -> Row {
    let client = etcd.client().await;
    let service = support::unique("add");
    let prefix = format!("/services/{service}/");

    // Raw: one watch on the prefix, then sequential puts.
    let mut raw = Vec::with_capacity(n);
    {
        let mut watcher = client.clone();
        let mut stream = watcher
            .watch(
                format!("{prefix}raw/"),
                Some(WatchOptions::new().with_prefix()),
            )
            .await
            .unwrap();
        let mut kv = client.clone();
        for i in 0..n {
            let key = format!("{prefix}raw/{i}");
            let t = Instant::now();
            kv.put(key, native_value(&service, &addr_of(i)), None)
                .await
                .unwrap();
            'wait: loop {
                let resp = stream.message().await.unwrap().unwrap();
                for e in resp.events() {
                    if e.event_type() == EventType::Put {
                        break 'wait;
                    }
                }
            }
            raw.push(t.elapsed());
        }
    }

    // Ours: a Discovery of the service (its prefix excludes raw/ keys by id).
    let other = support::unique("add-ours");
    let mut discovered = Discovery::new(client.clone(), other.as_str())
        .changes()
        .await
        .unwrap();
    let mut kv = client.clone();
    let mut ours = Vec::with_capacity(n);
    for i in 0..n {
        let addr = addr_of(i);
        let key = format!("/services/{other}/{addr}");
        let t = Instant::now();
        kv.put(key, native_value(&other, &addr), None)
            .await
            .unwrap();
        match discovered.next().await {
            Some(Change::Insert(_, _)) => ours.push(t.elapsed()),
            other => panic!("expected an Insert, got {other:?}"),
        }
    }
    let (rp50, rp99) = (quantile(&mut raw, 0.5), quantile(&mut raw, 0.99));
    let (op50, op99) = (quantile(&mut ours, 0.5), quantile(&mut ours, 0.99));
    Row {
        name: format!("1. add latency (put → Insert), {n} puts"),
        ours: format!("p50 {} / p99 {}", ms(op50), ms(op99)),
        baseline: format!("raw watch p50 {} / p99 {}", ms(rp50), ms(rp99)),
        goal: "p99 ≤ raw p99 + 1 ms".into(),
        met: Met::from(op99 <= rp99 + Duration::from_millis(1)),
        reading: format!(
            "discovery adds {} at p50 over etcd's own watch delivery",
            ms(op50.saturating_sub(rp50))
        ),
    }
}

/// Row 3: registration task gone (its runtime dropped, as in a crash) → Remove.
pub(crate) async fn crash_detection(etcd: &support::Etcd, rounds: usize) -> Row {
    let client = etcd.client().await;
    let ttl = Duration::from_secs(2);
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let service = support::unique("crash");
        let mut discovered = Discovery::new(client.clone(), service.as_str())
            .changes()
            .await
            .unwrap();
        let endpoint = etcd.endpoint();
        let svc = service.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let client = tonic_etcd::connect([endpoint]).await.unwrap();
                let registration = Registrar::new(client)
                    .ttl(ttl)
                    .register(Instance::new(svc, "127.0.0.1:1").unwrap())
                    .await
                    .unwrap();
                std::mem::forget(registration);
            });
            runtime.shutdown_background();
        })
        .join()
        .unwrap();
        let crashed = Instant::now();
        loop {
            match discovered.next().await {
                Some(Change::Remove(_)) => break,
                Some(Change::Insert(..)) => {}
                None => panic!("discovery ended"),
            }
        }
        samples.push(crashed.elapsed());
    }
    let worst = *samples.iter().max().unwrap();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    Row {
        name: format!("3. crash detection, TTL 2 s, {rounds} crashes"),
        ours: format!("mean {} / max {}", ms(mean), ms(worst)),
        baseline: format!(
            "TTL {} (ratio max/TTL {:.2})",
            ms(ttl),
            worst.as_secs_f64() / ttl.as_secs_f64()
        ),
        goal: "≤ TTL + 1 s".into(),
        met: Met::from(worst <= ttl + Duration::from_secs(1)),
        reading:
            "bounded by etcd's lease expiry; the Remove follows the DELETE within milliseconds"
                .into(),
    }
}
