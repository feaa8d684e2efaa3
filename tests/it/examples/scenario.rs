//! The helloworld examples, driven through their command-line contract against a
//! real etcd, as an operator's script would: three servers, a client, SIGTERM,
//! SIGKILL, etcd restarted and wiped, and a service with no instance.

use std::time::{Duration, Instant};

use crate::support;
use crate::support::examples::{Cmd, Run, Server};
use crate::support::kv::{get, keys};
use crate::support::{wait_until, Etcd};
use nix::sys::signal::Signal;

/// How long a client run may take (before being killed).
const CLIENT_WITHIN: Duration = Duration::from_secs(30);

/// A server of `service` with a 3 s TTL and a 300 ms drain.
fn server(etcd: &str, service: &str) -> Server {
    Server::start(Cmd::server().args([
        "--etcd",
        etcd,
        "--service",
        service,
        "--ttl",
        "3",
        "--drain-ms",
        "300",
    ]))
}

/// A client run of `requests` requests to `service`.
async fn run_client(etcd: &str, service: &str, requests: u32) -> Run {
    Cmd::client()
        .args(["--etcd", etcd, "--service", service])
        .args(["--requests", &requests.to_string(), "--timeout-ms", "2000"])
        .run(CLIENT_WITHIN)
        .await
}

/// Waits until there are `n` keys under `prefix` (an error counts as none
/// yet: etcd may be restarting).
async fn wait_keys(client: &etcd_client::Client, prefix: &str, n: usize, within: Duration) {
    wait_until(within, &format!("{n} keys under {prefix}"), || async move {
        keys(client, prefix).await.is_ok_and(|keys| keys.len() == n)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_follow_the_operator_scenario() {
    let mut etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let client = etcd.client().await;
    let service = support::unique("hello");
    let prefix = format!("/services/{service}/");

    let mut servers: Vec<Server> = (0..3).map(|_| server(&endpoint, &service)).collect();
    wait_keys(&client, &prefix, 3, Duration::from_secs(20)).await;
    assert!(
        keys(&client, &prefix)
            .await
            .unwrap()
            .iter()
            .all(|(_, lease)| *lease != 0),
        "every key carries a lease"
    );

    // 30 requests reach all three servers.
    let run = run_client(&endpoint, &service, 30).await;
    run.assert_all_ok(30);
    for server in &servers {
        let from = format!("from {}", server.addr);
        assert!(
            run.replies().iter().any(|l| l.ends_with(&from)),
            "no reply from {}\n{run}",
            server.addr
        );
    }

    // SIGTERM: the key is gone within 0.5 s and the server exits 0.
    let mut stopped = servers.remove(0);
    let stopped_key = format!("{prefix}{}", stopped.addr);
    stopped.proc.signal(Signal::SIGTERM);
    let t = Instant::now();
    wait_until(
        Duration::from_millis(500),
        "SIGTERM'd key removed",
        || async { get(&client, &stopped_key).await.is_none() },
    )
    .await;
    let removed_after = t.elapsed();
    let status = stopped.proc.wait_exit(Duration::from_secs(5)).await;
    assert!(status.success(), "graceful stop must exit 0, got {status}");
    eprintln!("SIGTERM: key removed after {removed_after:?}");

    // No request reaches the stopped server.
    let run = run_client(&endpoint, &service, 20).await;
    run.assert_all_ok(20);
    assert!(
        !run.replies().iter().any(|l| l.ends_with(&stopped.addr)),
        "a request reached the stopped server\n{run}"
    );

    // SIGKILL: the key is gone within TTL + 1.5 s.
    let killed = servers.remove(0);
    let killed_key = format!("{prefix}{}", killed.addr);
    killed.proc.signal(Signal::SIGKILL);
    let t = Instant::now();
    wait_until(
        Duration::from_millis(4500),
        "SIGKILL'd key expired",
        || async { get(&client, &killed_key).await.is_none() },
    )
    .await;
    eprintln!("SIGKILL: key expired after {:?}", t.elapsed());
    drop(killed);

    // etcd restarted, then wiped: the survivor is back within TTL + 3 s and serves.
    let survivor = &servers[0];
    for wipe in [false, true] {
        if wipe {
            etcd.wipe_and_restart().await;
        } else {
            etcd.kill().await;
            etcd.restart().await;
        }
        let t = Instant::now();
        wait_keys(&client, &prefix, 1, Duration::from_secs(6)).await;
        eprintln!("wipe={wipe}: registered again after {:?}", t.elapsed());
        let run = run_client(&endpoint, &service, 5).await;
        run.assert_all_ok(5);
        run.assert_all_from(&survivor.addr);
    }

    // A service with no instance fails, fast.
    let run = run_client(&endpoint, "nobody-home", 10).await;
    run.assert_all_failed(10);
    assert!(
        run.elapsed < Duration::from_secs(5),
        "took {:?}",
        run.elapsed
    );
}
