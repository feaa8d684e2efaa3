//! The issue's outside check, through the example binaries: two servers in
//! zone `a`, two in `b`; a client with `--zone a` reaches only `a`, and when
//! both `a` servers stop (SIGTERM) its requests go to `b`, none failed. And
//! `--slow-start-ms`: a server that joins gets few requests at first.

use std::time::{Duration, Instant};

use crate::support;
use crate::support::examples::{Cmd, Server, CLIENT_WITHIN, REGISTER_WITHIN};
use crate::support::Etcd;
use nix::sys::signal::Signal;

/// A server of `service` in `zone`, draining 1 s after its SIGTERM.
fn server(etcd: &str, service: &str, zone: &str) -> Server {
    Server::start(Cmd::server().args([
        "--etcd",
        etcd,
        "--service",
        service,
        "--zone",
        zone,
        "--drain-ms",
        "1000",
    ]))
}

fn client(etcd: &str, service: &str, requests: u32, interval_ms: u32) -> Cmd {
    Cmd::client().args([
        "--etcd",
        etcd,
        "--service",
        service,
        "--zone",
        "a",
        "--requests",
        &requests.to_string(),
        "--interval-ms",
        &interval_ms.to_string(),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_zone_a_reaches_only_a_then_spills_over_to_b_on_sigterm() {
    let etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let client_etcd = etcd.client().await;
    let service = support::unique("zone");
    let mut servers: Vec<Server> = ["a", "a", "b", "b"]
        .into_iter()
        .map(|zone| server(&endpoint, &service, zone))
        .collect();
    for server in &mut servers {
        let key = format!("/services/{service}/{}", server.addr);
        let (value, _) = server
            .wait_registered(&client_etcd, &key, REGISTER_WITHIN)
            .await;
        let value = String::from_utf8(value).unwrap();
        assert!(value.contains(r#""zone":"#), "{value}");
    }
    let (a, b) = servers.split_at_mut(2);
    let a_addrs: Vec<String> = a.iter().map(|s| s.addr.clone()).collect();
    let in_a = |reply: &str| a_addrs.iter().any(|addr| reply.ends_with(addr.as_str()));

    // Only a, and both of a.
    let run = client(&endpoint, &service, 20, 0).run(CLIENT_WITHIN).await;
    run.assert_all_ok(20);
    assert!(run.replies().iter().all(|r| in_a(r)), "only zone a\n{run}");
    for server in a.iter() {
        assert!(
            run.replies().iter().any(|r| r.ends_with(&server.addr)),
            "{run}"
        );
    }

    // A client running while both a servers stop.
    let mut running = client(&endpoint, &service, 100, 40).spawn();
    support::wait_until(Duration::from_secs(10), "10 replies", || {
        let lines = running.stdout().lines().count();
        async move { lines >= 10 }
    })
    .await;
    for server in a.iter() {
        server.proc.signal(Signal::SIGTERM);
    }
    let stopped = Instant::now();
    for server in a.iter_mut() {
        let status = server.proc.wait_exit(Duration::from_secs(10)).await;
        assert!(status.success(), "{status}\n{}", server.proc.output());
    }
    eprintln!(
        "both a servers exited {:?} after SIGTERM",
        stopped.elapsed()
    );
    let status = running.wait_exit(Duration::from_secs(30)).await;
    let stdout = running.stdout();
    let replies: Vec<&str> = stdout.lines().collect();
    assert!(
        status.success() && running.stderr().ends_with("summary: ok=100 failed=0\n"),
        "no request failed: {status}\n{}",
        running.output()
    );
    assert_eq!(replies.len(), 100);
    // Before the stop only a; after it only b, with a switch in between.
    let switch = replies
        .iter()
        .position(|r| !in_a(r))
        .expect("some reached b");
    assert!(switch >= 10, "{stdout}");
    assert!(
        replies[switch..]
            .iter()
            .all(|r| b.iter().any(|s| r.ends_with(&s.addr))),
        "after the switch, only b\n{stdout}"
    );
    eprintln!("switched to b after {switch} of 100 replies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_ms_ramps_a_server_that_joins_a_running_client() {
    let etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let client_etcd = etcd.client().await;
    let service = support::unique("ramp");
    let plain =
        |etcd: &str| Server::start(Cmd::server().args(["--etcd", etcd, "--service", &service]));
    let mut servers = [plain(&endpoint), plain(&endpoint)];
    for server in &mut servers {
        let key = format!("/services/{service}/{}", server.addr);
        server
            .wait_registered(&client_etcd, &key, REGISTER_WITHIN)
            .await;
    }
    // 500 requests, one every 10 ms and more: over 5 s; the window is 4 s.
    let mut running = Cmd::client()
        .args(["--etcd", &endpoint, "--service", &service])
        .args(["--balancer", "weighted", "--slow-start-ms", "4000"])
        .args(["--requests", "500", "--interval-ms", "10"])
        .spawn();
    support::wait_until(Duration::from_secs(10), "20 replies", || {
        let lines = running.stdout().lines().count();
        async move { lines >= 20 }
    })
    .await;
    let mut newcomer = plain(&endpoint);
    let key = format!("/services/{service}/{}", newcomer.addr);
    newcomer
        .wait_registered(&client_etcd, &key, REGISTER_WITHIN)
        .await;
    let from = running.stdout().lines().count();
    let status = running.wait_exit(Duration::from_secs(60)).await;
    assert!(status.success(), "{status}\n{}", running.output());
    let stdout = running.stdout();
    let replies: Vec<&str> = stdout.lines().collect();
    let new = |r: &&&str| r.ends_with(newcomer.addr.as_str());
    // The 40 replies after it registered (half a second, a second on a busy
    // machine): its weight from 10 to about 25 against 100 and 100, so a
    // few; a third would be 13.
    let early = replies[from..from + 40].iter().filter(new).count();
    // The last 40, after the window: a third.
    let late = replies[replies.len() - 40..].iter().filter(new).count();
    eprintln!("newcomer: {early} of the first 40 replies after it joined, {late} of the last 40");
    assert!(early <= 7, "{early} of 40 early\n{stdout}");
    assert!((11..=16).contains(&late), "{late} of 40 late\n{stdout}");
}
