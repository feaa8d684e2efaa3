//! Row 4m: what the metrics cost per request with a Prometheus recorder
//! installed, next to the same balancer with the recorder switched off and a
//! plain tonic `Channel`, all in the same rounds.
//!
//! A global recorder cannot be uninstalled, so the row installs one that it
//! can switch: on, it is `metrics-exporter-prometheus`'s recorder; off, it
//! hands out no-op handles, which is what the facade does with no recorder
//! (the remaining difference, one virtual call per metric, is far below the
//! noise). A balancer asks for its endpoints' handles at their first request
//! (and once a minute after): the switch is set for each balancer before its
//! warm-up, and again before each of its runs for the renewals. Run it on its own (`--only 40`): once installed, the recorder
//! stays for the rows after it. The cost of the metrics with no recorder at
//! all is row 4 built with and without the `metrics` feature.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use tonic_etcd::endpoint::default_endpoint;
use tonic_etcd::{Discovery, Policy};

use crate::clients::{concurrent, reach, register, sequential, Budget, Client, Run, IN_FLIGHT};
use crate::common::{median_ci, rate, us1, Met, Row};
use crate::servers::Servers;
use crate::support;

/// The Prometheus recorder behind a switch.
struct Switch {
    on: Arc<AtomicBool>,
    inner: PrometheusRecorder,
}

impl Recorder for Switch {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, text: SharedString) {
        self.inner.describe_counter(key, unit, text)
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, text: SharedString) {
        self.inner.describe_gauge(key, unit, text)
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, text: SharedString) {
        self.inner.describe_histogram(key, unit, text)
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        if self.on.load(Ordering::Relaxed) {
            self.inner.register_counter(key, metadata)
        } else {
            Counter::noop()
        }
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        if self.on.load(Ordering::Relaxed) {
            self.inner.register_gauge(key, metadata)
        } else {
            Gauge::noop()
        }
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        if self.on.load(Ordering::Relaxed) {
            self.inner.register_histogram(key, metadata)
        } else {
            Histogram::noop()
        }
    }
}

/// The three compared clients of a round.
const NAMES: [&str; 3] = [
    "plain Channel",
    "round-robin, recorder off",
    "round-robin, Prometheus recorder",
];

/// Row 4m: sequential and concurrent calls through a plain channel (1
/// server) and round-robin balancers (3 servers) with the recorder off and
/// on, in rounds that rotate the order; the medians of per-round ratios.
pub(crate) async fn recorder_cost(
    etcd: &support::Etcd,
    rounds: usize,
    seq_calls: usize,
    conc_calls: usize,
) -> Vec<Row> {
    let on = Arc::new(AtomicBool::new(false));
    let inner = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(tonic_etcd::observe::CLIENT_REQUEST_DURATION_SECONDS.into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ],
        )
        .unwrap()
        .build_recorder();
    let handle = inner.handle();
    metrics::set_global_recorder(Switch {
        on: on.clone(),
        inner,
    })
    .expect("no other recorder installed (run this row alone: --only 40)");
    tonic_etcd::observe::describe();

    let client = etcd.client().await;
    let servers = Servers::start(&[Duration::ZERO; 3]);
    let service = support::unique("recorder");
    let mut registrations = Vec::new();
    for server in &servers.list {
        registrations.push(register(&client, server.instance(&service)).await);
    }
    let mut seq: Vec<Vec<Run>> = vec![Vec::new(); 3];
    let mut conc: Vec<Vec<Run>> = vec![Vec::new(); 3];
    let mut rendered = 0;
    for round in 0..rounds {
        eprintln!("  recorder round {}/{rounds}…", round + 1);
        let plain = default_endpoint(&servers.list[0].instance(&service))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut clients = vec![Client::channel(plain)];
        for _ in 0..2 {
            let balancer = Discovery::new(client.clone(), service.as_str())
                .balancer(Policy::RoundRobin)
                .await
                .unwrap();
            clients.push(Client::balancer(balancer));
        }
        for (i, c) in clients.iter_mut().enumerate() {
            on.store(i == 2, Ordering::Relaxed);
            for server in &servers.list[..if i == 0 { 1 } else { 3 }] {
                reach(c, server, 20_000).await;
            }
            sequential(c, seq_calls / 4).await;
        }
        for k in 0..3 {
            let i = (k + round) % 3;
            on.store(i == 2, Ordering::Relaxed);
            seq[i].push(sequential(&clients[i], seq_calls).await);
            conc[i].push(concurrent(&clients[i], Budget::Calls(conc_calls)).await);
        }
        on.store(false, Ordering::Relaxed);
        // As a scrape would, once per round.
        rendered = handle.render().len();
    }
    for r in registrations {
        r.deregister().await.unwrap();
    }

    let mut rows = Vec::new();
    for (mode, runs) in [
        ("sequential", &seq),
        (&*format!("{IN_FLIGHT} in flight"), &conc),
    ] {
        let ratio = |a: usize, b: usize| {
            median_ci(
                runs[a]
                    .iter()
                    .zip(&runs[b])
                    .map(|(x, y)| x.per_second / y.per_second)
                    .collect(),
            )
        };
        let medians: Vec<Run> = runs.iter().map(|r| Run::median(r)).collect();
        let (low, mid, high) = ratio(2, 1);
        let to_plain = ratio(2, 0).1;
        let off_to_plain = ratio(1, 0).1;
        let met = if low >= 0.97 {
            Met::Yes
        } else if high >= 0.97 {
            Met::Tie
        } else {
            Met::No
        };
        rows.push(Row {
            name: format!("4m. metrics with the Prometheus recorder, 3 servers, {mode}"),
            ours: format!(
                "{} {}, {} CPU/call, {:.1} allocations/call ({mid:.3}× recorder off, 95 % CI \
                 {low:.3}–{high:.3}; {to_plain:.2}× plain)",
                NAMES[2],
                rate(medians[2].per_second),
                us1(medians[2].cpu),
                medians[2].allocs,
            ),
            baseline: format!(
                "{} {}, {} CPU/call, {:.1} allocations/call ({off_to_plain:.2}× plain); {} \
                 (1 server) {}, {} CPU/call",
                NAMES[1],
                rate(medians[1].per_second),
                us1(medians[1].cpu),
                medians[1].allocs,
                NAMES[0],
                rate(medians[0].per_second),
                us1(medians[0].cpu),
            ),
            goal: "within 3 % of the recorder off (CI)".into(),
            met,
            reading: format!(
                "with the recorder on, the balancer runs at {mid:.3}× its throughput with \
                 the recorder off (medians of {rounds} per-round ratios, 95 % CI \
                 {low:.3}–{high:.3}), spending {:+.1} µs of client CPU and {:+.1} \
                 allocations per call; the last render was {rendered} bytes",
                (medians[2].cpu.as_secs_f64() - medians[1].cpu.as_secs_f64()) * 1e6,
                medians[2].allocs - medians[1].allocs,
            ),
        });
    }
    rows
}
