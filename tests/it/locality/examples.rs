//! The issue's outside check, through the example binaries: two servers in
//! zone `a`, two in `b`; a client with `--zone a` reaches only `a`, and when
//! both `a` servers stop (SIGTERM) its requests go to `b`, none failed.

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
