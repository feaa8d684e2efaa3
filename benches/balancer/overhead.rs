//! Row 4: what balancing costs per request, next to a plain tonic `Channel`
//! and tonic's `balance_channel`.

use std::fmt::Write as _;
use std::time::Duration;

use tonic_etcd::endpoint::default_endpoint;
use tonic_etcd::{Discovery, Policy, Registration};

use crate::clients::{concurrent, reach, register, sequential, Budget, Client, Run, IN_FLIGHT};
use crate::common::{median_ci, rate, us, us1, Met, Row};
use crate::servers::Servers;
use crate::support;

/// One compared service.
struct Config {
    name: String,
    servers: usize,
    client: Client,
}

/// The two services of row 4, registered once: one with the first server,
/// one with all three.
async fn services(
    etcd: &etcd_client::Client,
    servers: &Servers,
) -> ([String; 2], Vec<Registration>) {
    let one = support::unique("overhead-1");
    let three = support::unique("overhead-3");
    let mut registrations = vec![register(etcd, servers.list[0].instance(&one)).await];
    for server in &servers.list {
        registrations.push(register(etcd, server.instance(&three)).await);
    }
    ([one, three], registrations)
}

/// Fresh clients of every compared service, connected and warmed up: each
/// round makes its own, with new connections, so that where their buffers
/// happen to lie in memory (which moves throughput by several per cent on
/// this kind of machine, the same way for a whole process) varies from round
/// to round instead of favouring one service for the whole run.
async fn configs(
    etcd: &etcd_client::Client,
    servers: &Servers,
    [one, three]: &[String; 2],
    warm_calls: usize,
) -> Vec<Config> {
    let plain = default_endpoint(&servers.list[0].instance(one))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut configs = vec![Config {
        name: "plain Channel".into(),
        servers: 1,
        client: Client::channel(plain),
    }];
    for (service, n) in [(one, 1), (three, 3)] {
        let channel = Discovery::new(etcd.clone(), service.as_str())
            .tonic_channel()
            .await
            .unwrap();
        configs.push(Config {
            name: "balance_channel".into(),
            servers: n,
            client: Client::channel(channel),
        });
    }
    for policy in Policy::ALL {
        for (service, n) in [(one, 1), (three, 3)] {
            let balancer = Discovery::new(etcd.clone(), service.as_str())
                .balancer(policy)
                .await
                .unwrap();
            configs.push(Config {
                name: policy.to_string(),
                servers: n,
                client: Client::balancer(balancer),
            });
        }
    }
    for config in &mut configs {
        // Connect, and let tonic's channel take in its endpoints.
        for server in &servers.list[..config.servers] {
            // tonic's balanced channel takes in an endpoint in the
            // background: on a loaded machine a thousand fast calls can all
            // go before it has.
            reach(&mut config.client, server, 20_000).await;
        }
        sequential(&config.client, warm_calls).await;
    }
    configs
}

/// Row 4: sequential and concurrent calls through each service, in rounds
/// that alternate between them; the median of each figure over the rounds.
pub(crate) async fn overhead(
    etcd: &support::Etcd,
    rounds: usize,
    seq_calls: usize,
    conc_calls: usize,
) -> (Vec<Row>, String) {
    let client = etcd.client().await;
    let servers = Servers::start(&[Duration::ZERO; 3]);
    let (services, registrations) = services(&client, &servers).await;
    let mut names: Vec<(String, usize)> = Vec::new();
    let mut seq: Vec<Vec<Run>> = Vec::new();
    let mut conc: Vec<Vec<Run>> = Vec::new();
    for round in 0..rounds {
        eprintln!("  overhead round {}/{rounds}…", round + 1);
        let configs = configs(&client, &servers, &services, seq_calls / 4).await;
        if names.is_empty() {
            names = configs
                .iter()
                .map(|c| (c.name.clone(), c.servers))
                .collect();
            seq = vec![Vec::new(); configs.len()];
            conc = vec![Vec::new(); configs.len()];
        }
        // Each round starts with another service, so that none is always
        // measured first or last.
        for k in 0..configs.len() {
            let i = (k + round * 3) % configs.len();
            seq[i].push(sequential(&configs[i].client, seq_calls).await);
            conc[i].push(concurrent(&configs[i].client, Budget::Calls(conc_calls)).await);
        }
    }
    let configs = names;
    for r in registrations {
        r.deregister().await.unwrap();
    }

    let medians =
        |rounds: &[Vec<Run>]| -> Vec<Run> { rounds.iter().map(|r| Run::median(r)).collect() };
    let (seq_median, conc_median) = (medians(&seq), medians(&conc));
    let mut details = String::new();
    let _ = writeln!(
        details,
        "Row 4 in detail (medians of {rounds} rounds; per service and round, {seq_calls} \
         sequential calls, then {conc_calls} calls with {IN_FLIGHT} in flight; client CPU is \
         the client thread's CPU time per call, tonic's and hyper's tasks included, and \
         allocations/call what that thread allocates per call):\n"
    );
    let _ = writeln!(
        details,
        "| service | servers | sequential req/s | p50 | p99 | client CPU/call | allocations/call | \
         {IN_FLIGHT} in flight req/s | p50 | p99 | client CPU/call | allocations/call |"
    );
    let _ = writeln!(details, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, (name, servers)) in configs.iter().enumerate() {
        let (a, b) = (&seq_median[i], &conc_median[i]);
        let _ = writeln!(
            details,
            "| {name} | {servers} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {:.1} |",
            rate(a.per_second),
            us(a.p50),
            us(a.p99),
            us1(a.cpu),
            a.allocs,
            rate(b.per_second),
            us(b.p50),
            us(b.p99),
            us1(b.cpu),
            b.allocs,
        );
    }

    let find = |name: &str, n: usize| {
        configs
            .iter()
            .position(|(c, servers)| c == name && *servers == n)
            .unwrap()
    };
    let plain = find("plain Channel", 1);
    let mut rows = Vec::new();
    for (mode, rounds, runs) in [
        ("sequential", &seq, &seq_median),
        ("64 in flight", &conc, &conc_median),
    ] {
        // The median of the per-round ratios: the runs of one round are
        // a fraction of a second apart, so background noise mostly cancels
        // out. With its distribution-free 95 % confidence interval.
        let ratio = |a: usize, b: usize| {
            median_ci(
                rounds[a]
                    .iter()
                    .zip(&rounds[b])
                    .map(|(x, y)| x.per_second / y.per_second)
                    .collect(),
            )
        };
        for n in [1, 3] {
            let tonic = find("balance_channel", n);
            let ours: Vec<(Policy, usize)> = Policy::ALL
                .into_iter()
                .map(|p| (p, find(p.name(), n)))
                .collect();
            let to_plain: Vec<f64> = ours.iter().map(|&(_, i)| ratio(i, plain).1).collect();
            let to_tonic_ci: Vec<(f64, f64, f64)> =
                ours.iter().map(|&(_, i)| ratio(i, tonic)).collect();
            let to_tonic: Vec<f64> = to_tonic_ci.iter().map(|ci| ci.1).collect();
            let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
            // "Ahead" counts only where the whole confidence interval is:
            // a median above 1.00 inside an interval that holds 1.00 is a tie.
            let ahead = to_tonic_ci.iter().filter(|ci| ci.0 > 1.0).count();
            let behind = to_tonic_ci.iter().filter(|ci| ci.2 < 1.0).count();
            let met = if n == 1 && min(&to_plain) < 0.95 || behind > 0 {
                Met::No
            } else if ahead == ours.len() {
                Met::Yes
            } else {
                Met::Tie
            };
            let ours_text = ours
                .iter()
                .enumerate()
                .map(|(k, &(p, i))| {
                    let (low, mid, high) = to_tonic_ci[k];
                    format!(
                        "{p} {}, {} CPU/call ({:.2}× plain, {mid:.2}× balance_channel, \
                         95 % CI {low:.2}–{high:.2})",
                        rate(runs[i].per_second),
                        us1(runs[i].cpu),
                        to_plain[k],
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let baseline = format!(
                "balance_channel {}, {} CPU/call; plain Channel (1 server) {}, {} CPU/call",
                rate(runs[tonic].per_second),
                us1(runs[tonic].cpu),
                rate(runs[plain].per_second),
                us1(runs[plain].cpu),
            );
            let goal = if n == 1 {
                "≥ 0.95× plain Channel, ahead of balance_channel"
            } else {
                "ahead of balance_channel"
            };
            let cpu_ours: Vec<f64> = ours
                .iter()
                .map(|&(_, i)| runs[i].cpu.as_secs_f64() * 1e6)
                .collect();
            let cpu_mean = cpu_ours.iter().sum::<f64>() / cpu_ours.len() as f64;
            rows.push(Row {
                name: format!(
                    "4. balancer overhead, {n} server{}, {mode}",
                    if n == 1 { "" } else { "s" }
                ),
                ours: ours_text,
                baseline,
                goal: goal.into(),
                met,
                reading: format!(
                    "our policies run at {:.2}–{:.2}× balance_channel's throughput and \
                     {:.2}–{:.2}× the plain Channel's (medians of per-round ratios); \
                     measurably ahead of balance_channel (95 % CI above 1.00) with {ahead} \
                     of {} policies, measurably behind with {behind}; the client spends \
                     {:+.1} µs of CPU per call against balance_channel and {:+.1} µs against \
                     the plain Channel",
                    min(&to_tonic),
                    to_tonic.iter().copied().fold(0.0, f64::max),
                    min(&to_plain),
                    to_plain.iter().copied().fold(0.0, f64::max),
                    ours.len(),
                    cpu_mean - runs[tonic].cpu.as_secs_f64() * 1e6,
                    cpu_mean - runs[plain].cpu.as_secs_f64() * 1e6,
                ),
            });
        }
    }
    (rows, details)
}
