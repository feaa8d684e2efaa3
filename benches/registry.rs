//! The registry benchmarks of `make bench`: discovery latency, crash detection,
//! initial sync at scale, churn and keepalive cost, each next to a baseline
//! measured in the same run against the same local etcd.
//!
//! Run with `cargo bench --bench registry` (or `make bench`). Without `--bench`
//! (as under `cargo test --all-targets`) it exits at once: benchmarks never run
//! in CI. Output: a markdown table on stdout; `--out FILE` also writes it there.
//! `--quick` runs smaller sizes (for trying the harness out).

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use common::{median, ms, quantile, section, Args, Met, Row};
use etcd_client::{Client, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use futures_util::StreamExt;
use tonic_etcd::codec::{Codec, Native};
use tonic_etcd::{Discovery, Instance, Registrar};
use tower::discover::Change;

/// The system allocator, counting the bytes and blocks in use, so that row 6
/// can tell what a discovery holds on the heap (RSS moves in whole pages and
/// keeps what the allocator does not return).
struct Counting;

static HEAP_BYTES: AtomicIsize = AtomicIsize::new(0);
static HEAP_BLOCKS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            HEAP_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            HEAP_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            HEAP_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            HEAP_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        HEAP_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        HEAP_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            HEAP_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes and blocks on the heap now.
fn heap() -> (isize, isize) {
    (
        HEAP_BYTES.load(Ordering::Relaxed),
        HEAP_BLOCKS.load(Ordering::Relaxed),
    )
}

fn native_value(service: &str, addr: &str) -> Vec<u8> {
    Native
        .encode(&Instance::new(service, addr).unwrap())
        .unwrap()
}

fn addr_of(i: usize) -> String {
    format!(
        "10.{}.{}.{}:50051",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

/// Row 1: put → Insert seen by Discovery, next to put → watch event with
/// etcd-client alone. Both clocks start when the put is sent.
async fn add_latency(etcd: &support::Etcd, n: usize) -> Row {
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
        .start()
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
async fn crash_detection(etcd: &support::Etcd, rounds: usize) -> Row {
    let client = etcd.client().await;
    let ttl = Duration::from_secs(2);
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let service = support::unique("crash");
        let mut discovered = Discovery::new(client.clone(), service.as_str())
            .start()
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

async fn write_many(client: &Client, service: &str, n: usize) {
    let mut kv = client.clone();
    let mut batch = Vec::with_capacity(128);
    for i in 0..n {
        let addr = addr_of(i);
        batch.push(TxnOp::put(
            format!("/services/{service}/{addr}"),
            native_value(service, &addr),
            None::<PutOptions>,
        ));
        if batch.len() == 128 || i + 1 == n {
            kv.txn(Txn::new().and_then(std::mem::take(&mut batch)))
                .await
                .unwrap();
        }
    }
}

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
async fn initial_sync(etcd: &support::Etcd, n: usize) -> Row {
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
            .start()
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

/// Row 7: register/deregister churn with a watching client: event lag and an
/// exact final set.
async fn churn(etcd: &support::Etcd, ops: usize, over: Duration) -> Row {
    let client = etcd.client().await;
    let service = support::unique("churn");
    let mut discovered = Discovery::new(client.clone(), service.as_str())
        .start()
        .await
        .unwrap();
    let registrar = Registrar::new(client.clone()).ttl(Duration::from_secs(10));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, bool, Instant)>();
    let collector = tokio::spawn(async move {
        let mut pending: HashMap<(String, bool), Instant> = HashMap::new();
        let mut lags = Vec::new();
        let mut seen: Vec<(String, bool, Instant)> = Vec::new();
        loop {
            tokio::select! {
                op = rx.recv() => match op {
                    Some((key, insert, at)) => { pending.insert((key, insert), at); }
                    None => break,
                },
                change = discovered.next() => {
                    let now = Instant::now();
                    let (key, insert) = match change.unwrap() {
                        Change::Insert(k, _) => (k, true),
                        Change::Remove(k) => (k, false),
                    };
                    seen.push((key, insert, now));
                }
            }
            seen.retain(|(key, insert, at)| {
                if let Some(start) = pending.remove(&(key.clone(), *insert)) {
                    lags.push(at.saturating_duration_since(start));
                    false
                } else {
                    true
                }
            });
        }
        // Drain the rest for a short while.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !pending.is_empty() && Instant::now() < deadline {
            if let Ok(Some(change)) =
                tokio::time::timeout(Duration::from_millis(100), discovered.next()).await
            {
                let now = Instant::now();
                let (key, insert) = match change {
                    Change::Insert(k, _) => (k, true),
                    Change::Remove(k) => (k, false),
                };
                if let Some(start) = pending.remove(&(key, insert)) {
                    lags.push(now.saturating_duration_since(start));
                }
            }
        }
        (lags, discovered.snapshot())
    });

    let gap = over / ops as u32;
    let mut live: BTreeMap<usize, tonic_etcd::Registration> = BTreeMap::new();
    let mut next = 0usize;
    let start = Instant::now();
    for op in 0..ops {
        let target = start + gap * op as u32;
        tokio::time::sleep_until(target.into()).await;
        // Alternate: register two, deregister one, so the set grows and shrinks.
        if op % 3 == 2 && !live.is_empty() {
            let (&id, _) = live.iter().next().unwrap();
            let registration = live.remove(&id).unwrap();
            let key = registration.key().to_owned();
            tx.send((key, false, Instant::now())).unwrap();
            registration.deregister().await.unwrap();
        } else {
            let instance = Instance::new(service.as_str(), addr_of(next)).unwrap();
            next += 1;
            let key = registrar.key_of(&instance).unwrap();
            tx.send((key, true, Instant::now())).unwrap();
            live.insert(next, registrar.register(instance).await.unwrap());
        }
    }
    let elapsed = start.elapsed();
    drop(tx);
    let (mut lags, snapshot) = collector.await.unwrap();
    let mut kv = client.clone();
    let etcd_state = kv
        .get(
            format!("/services/{service}/"),
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .unwrap()
        .kvs()
        .len();
    let exact = snapshot.len() == etcd_state && etcd_state == live.len();
    for (_, r) in live {
        r.deregister().await.unwrap();
    }
    let (p50, p99) = (quantile(&mut lags, 0.5), quantile(&mut lags, 0.99));
    Row {
        name: format!(
            "7. churn, {ops} register/deregister in {:.1} s",
            elapsed.as_secs_f64()
        ),
        ours: format!(
            "lag p50 {} / p99 {}; final set {}",
            ms(p50),
            ms(p99),
            if exact { "exact" } else { "WRONG" }
        ),
        baseline: format!("etcd holds {etcd_state} keys, discovery {}", snapshot.len()),
        goal: "p99 ≤ 20 ms, exact final set".into(),
        met: Met::from(exact && p99 <= Duration::from_millis(20)),
        reading:
            "lag from the operation's start to the Change; registration is a lease grant + put"
                .into(),
    }
}

async fn metric(etcd: &support::Etcd, name: &str, label: &str) -> f64 {
    let addr = etcd.endpoint().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Row 8: etcd requests per instance and the CPU of idle registrations.
async fn keepalive_cost(etcd: &support::Etcd, n: usize, window: Duration) -> Row {
    let client = etcd.client().await;
    let service = support::unique("idle");
    let ttl = Duration::from_secs(6);
    let registrar = Registrar::new(client).ttl(ttl);
    let mut registrations = Vec::with_capacity(n);
    for i in 0..n {
        registrations.push(
            registrar
                .register(Instance::new(service.as_str(), addr_of(i)).unwrap())
                .await
                .unwrap(),
        );
    }
    // Let the first keepalives settle, then measure a window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let label = "grpc_method=\"LeaseKeepAlive\"";
    let msgs_before = metric(etcd, "grpc_server_msg_received_total", label).await;
    let all_before = metric(etcd, "grpc_server_msg_received_total", "grpc_type").await;
    let cpu_before = cpu_time();
    let t = Instant::now();
    tokio::time::sleep(window).await;
    let wall = t.elapsed();
    let cpu = cpu_time() - cpu_before;
    let msgs = metric(etcd, "grpc_server_msg_received_total", label).await - msgs_before;
    let all = metric(etcd, "grpc_server_msg_received_total", "grpc_type").await - all_before;
    for r in registrations {
        r.deregister().await.unwrap();
    }
    let ttls = wall.as_secs_f64() / ttl.as_secs_f64();
    let per_ttl = all / n as f64 / ttls;
    let per_minute = all / n as f64 * 60.0 / wall.as_secs_f64();
    let core = cpu.as_secs_f64() / wall.as_secs_f64() * 100.0;
    Row {
        name: format!(
            "8. keepalive cost, {n} idle registrations, TTL 6 s, {:.0} s window",
            wall.as_secs_f64()
        ),
        ours: format!(
            "{per_ttl:.2} requests/instance/TTL ({per_minute:.1}/min); CPU {core:.2} % of a core"
        ),
        baseline: format!(
            "{:.0} keepalive messages of {:.0} gRPC messages received by etcd",
            msgs, all
        ),
        goal: "≤ 3 requests/instance/TTL, < 2 % of a core".into(),
        met: Met::from(per_ttl <= 3.0 + 0.05 && core < 2.0),
        reading: "one keepalive message per lease every TTL/3, and nothing else (the watch \
                  of each registration's own key is an idle stream); the keepalives of one \
                  process start on a shared 100 ms grid, so many leases share one wake-up and a \
                  few socket writes; the CPU is the whole harness process's"
            .into(),
    }
}

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
