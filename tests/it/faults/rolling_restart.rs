//! A rolling restart under load, through the example binaries: three servers
//! and a client sending every 10 ms; each server in turn gets SIGTERM, exits,
//! and starts again on the same port; the next one goes only once it is
//! registered again. Not one request may fail.

use std::time::{Duration, Instant};

use crate::support;
use crate::support::examples::{Cmd, Server};
use crate::support::kv::lease_of;
use crate::support::{wait_until, Etcd, Result};
use etcd_client::Client;
use nix::sys::signal::Signal;

/// Requests the client sends, one every 10 ms: enough to outlast the restarts.
const REQUESTS: u32 = 600;

/// A server of `service` on 127.0.0.1:`port`, draining for the example's
/// default second, so that the client sees it go before it stops serving.
fn server(etcd: &str, service: &str, port: u16) -> Server {
    Server::start_on(
        port,
        Cmd::server()
            .args(["--etcd", etcd, "--service", service])
            .args(["--ttl", "5", "--drain-ms", "1000"]),
    )
}

async fn registered(client: &Client, key: String) -> bool {
    lease_of(client, &key).await.is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_load_fails_no_request() -> Result {
    rolling_restart(&[]).await
}

/// The same with tonic's balanced channel in the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_with_tonic_balance_channel_fails_no_request() -> Result {
    rolling_restart(&["--balancer", "tonic"]).await
}

/// Three servers restarted in turn under a client run with `client_args`.
async fn rolling_restart(client_args: &[&str]) -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let client = etcd.client().await;
    let service = support::unique("rolling");
    let ports = [
        support::free_port(),
        support::free_port(),
        support::free_port(),
    ];
    let key = |port: u16| format!("/services/{service}/127.0.0.1:{port}");

    let mut servers: Vec<Server> = ports
        .iter()
        .map(|port| server(&endpoint, &service, *port))
        .collect();
    for port in ports {
        wait_until(Duration::from_secs(10), "a server to register", || {
            registered(&client, key(port))
        })
        .await;
    }

    let mut load = Cmd::client()
        .args(["--etcd", &endpoint, "--service", &service])
        .args(["--requests", &REQUESTS.to_string(), "--interval-ms", "10"])
        .args(client_args)
        .spawn();
    wait_until(Duration::from_secs(10), "the client to get going", || {
        let n = load.stdout().lines().count();
        async move { n >= 50 }
    })
    .await;

    for (i, port) in ports.into_iter().enumerate() {
        let t = Instant::now();
        let stopping = &mut servers[i].proc;
        stopping.signal(Signal::SIGTERM);
        let status = stopping.wait_exit(Duration::from_secs(10)).await;
        assert!(
            status.success(),
            "graceful stop exits 0\n{}",
            stopping.output()
        );
        let stopped = t.elapsed();
        servers[i] = server(&endpoint, &service, port);
        wait_until(
            Duration::from_secs(10),
            "the server to register again",
            || registered(&client, key(port)),
        )
        .await;
        eprintln!(
            "server {i} (port {port}): exited {stopped:?} after SIGTERM, registered again after {:?}",
            t.elapsed()
        );
        assert!(load.running(), "the client ended before the restarts did");
    }
    let restarted = load.stdout().lines().count();

    let status = load.wait_exit(Duration::from_secs(60)).await;
    let stderr = load.stderr();
    let summary = stderr.lines().last().unwrap_or_default();
    eprintln!(
        "{client_args:?}: {restarted} replies when the last server was back; client: {summary}"
    );
    assert_eq!(
        summary,
        format!("summary: ok={REQUESTS} failed=0"),
        "client stderr:\n{stderr}"
    );
    assert!(status.success());

    // Every server, each restarted once, answered.
    let replies = load.stdout();
    for port in ports {
        let from = format!("from 127.0.0.1:{port}");
        assert!(replies.lines().any(|l| l.ends_with(&from)), "none {from}");
    }
    for server in &servers {
        server.proc.signal(Signal::SIGTERM);
    }
    Ok(())
}
