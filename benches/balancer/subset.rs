//! Row 16 (issue 16, item 6): subset spread and moves on a leave. The
//! subsets are computed by the crate's own algorithm
//! (`tonic_etcd::discovery::subset::choose`, what every subsetting client
//! runs) over random-looking client ids, like the default `{host}-{pid}`;
//! the baseline is rendezvous hashing of the id alone (gRPC A68's random
//! subsetting, the crate's fallback), in the same run. No etcd: the spread is
//! a property of the algorithm; `tests/it/subset/` checks it through etcd.

use std::collections::{BTreeMap, BTreeSet};

use tonic_etcd::discovery::subset::{choose, rendezvous};

use crate::common::{Met, Row};

/// A deterministic stream of random-looking numbers (splitmix64).
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `n` ids like `host-a-31337`.
    fn clients(&mut self, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| format!("host-{}-{}", self.next() % 8, self.next() % 4_000_000))
            .collect()
    }
}

fn servers(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("/services/bench/127.0.0.1:{}", 20_000 + i))
        .collect()
}

/// Every client's subset, by the aperture or by rendezvous hashing.
fn subsets(
    servers: &[String],
    clients: &[String],
    k: usize,
    aperture: bool,
) -> Vec<BTreeSet<String>> {
    let servers: Vec<&str> = servers.iter().map(String::as_str).collect();
    let ids: Vec<&str> = clients.iter().map(String::as_str).collect();
    ids.iter()
        .map(|client| {
            let chosen = if aperture {
                choose(&servers, &ids, client, k)
            } else {
                rendezvous(&servers, client, k)
            };
            chosen.into_iter().map(str::to_owned).collect()
        })
        .collect()
}

/// The number of clients of each server, every server counted (0 if unused).
fn loads(servers: &[String], subsets: &[BTreeSet<String>]) -> Vec<usize> {
    let mut loads: BTreeMap<&str, usize> = servers.iter().map(|s| (s.as_str(), 0)).collect();
    for server in subsets.iter().flatten() {
        *loads.get_mut(server.as_str()).unwrap() += 1;
    }
    loads.into_values().collect()
}

/// Mean over `draws` sets of client ids of (max/mean load, any server unused, max load).
fn spread(n: usize, c: usize, k: usize, draws: usize, aperture: bool) -> (f64, f64, f64) {
    let mut ids = Ids(42);
    let servers = servers(n);
    let mean = (c * k) as f64 / n as f64;
    let (mut ratio, mut uncovered, mut over5) = (0.0, 0, 0);
    for _ in 0..draws {
        let loads = loads(&servers, &subsets(&servers, &ids.clients(c), k, aperture));
        let max = *loads.iter().max().unwrap();
        ratio += max as f64 / mean;
        uncovered += usize::from(loads.contains(&0));
        over5 += usize::from(max > 5);
    }
    let d = draws as f64;
    (ratio / d, uncovered as f64 / d, over5 as f64 / d)
}

/// Over every server leaving in turn: (mean, max) clients whose subset changed.
fn moves(n: usize, c: usize, k: usize, aperture: bool) -> (f64, usize) {
    let servers = servers(n);
    let clients = Ids(7).clients(c);
    let before = subsets(&servers, &clients, k, aperture);
    let (mut total, mut max) = (0, 0);
    for gone in 0..n {
        let mut rest = servers.clone();
        rest.remove(gone);
        let after = subsets(&rest, &clients, k, aperture);
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        total += moved;
        max = max.max(moved);
    }
    (total as f64 / n as f64, max)
}

pub(crate) fn subset_rows(quick: bool) -> Vec<Row> {
    let draws = if quick { 5 } else { 50 };
    let (ours, _, _) = spread(100, 100, 10, draws, true);
    let (theirs, _, _) = spread(100, 100, 10, draws, false);
    let spread_row = Row {
        name: format!(
            "16a. subset spread, 100 clients, N = 100, K = 10 (busiest / mean, {draws} id draws)"
        ),
        ours: format!("{ours:.2}"),
        baseline: format!("rendezvous hashing: {theirs:.2}"),
        goal: "≤ 1.2".into(),
        met: Met::from(ours <= 1.2),
        reading: "deterministic aperture over the registered clients' ranks gives every server \
                  ⌊C·K/N⌋ or ⌈C·K/N⌉ clients; hashing the id alone is binomial"
            .into(),
    };

    let draws = if quick { 20 } else { 1_000 };
    let (_, ours_uncovered, ours_over) = spread(10, 10, 3, draws, true);
    let (_, theirs_uncovered, theirs_over) = spread(10, 10, 3, draws, false);
    let ten_row = Row {
        name: format!("16b. ten clients, K = 3 over ten servers ({draws} id draws)"),
        ours: format!(
            "a server unused in {:.1} % of draws, one over 5 clients in {:.1} %",
            ours_uncovered * 100.0,
            ours_over * 100.0
        ),
        baseline: format!(
            "rendezvous hashing: {:.1} %, {:.1} %",
            theirs_uncovered * 100.0,
            theirs_over * 100.0
        ),
        goal: "0 %, 0 % (all ten covered, none over 5)".into(),
        met: Met::from(ours_uncovered == 0.0 && ours_over == 0.0),
        reading: "the issue's outside check, with random-looking ids as the default host-pid"
            .into(),
    };

    let (ours_mean, ours_max) = moves(100, 100, 10, true);
    let (theirs_mean, theirs_max) = moves(100, 100, 10, false);
    let moves_row = Row {
        name:
            "16c. clients moved when one server leaves, C = N = 100, K = 10 (each server in turn)"
                .into(),
        ours: format!("mean {ours_mean:.1}, max {ours_max} of 100"),
        baseline: format!("rendezvous hashing: mean {theirs_mean:.1}, max {theirs_max}"),
        goal: "few (10 must move: the leaving server's clients)".into(),
        met: Met::from(ours_max <= 60),
        reading: "a moved client changes one of its 10 servers; the evenly spread starts are \
                  rescaled around the middle of the ring, so the clients between it and the \
                  leaving server shift by one"
            .into(),
    };
    vec![spread_row, ten_row, moves_row]
}
