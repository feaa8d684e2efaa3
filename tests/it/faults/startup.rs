//! The example server when etcd cannot be reached at startup, or is given bad
//! flags: by default it fails fast with a clear message and a non-zero exit;
//! with `--etcd-wait-ms N` it waits for etcd and registers once it is up, or
//! fails after N ms.

use std::time::{Duration, Instant};

use crate::support;
use crate::support::examples::{Cmd, Proc, Server};
use crate::support::kv::keys;
use crate::support::{wait_until, Etcd, Result};
use nix::sys::signal::Signal;

/// A helloworld-server of `service` (TTL 3 s) with `extra` flags.
fn start(etcd: &str, service: &str, extra: &[&str]) -> Proc {
    let cmd = Cmd::server()
        .args(["--etcd", etcd, "--service", service, "--ttl", "3"])
        .args(extra);
    Server::start(cmd).proc
}

#[tokio::test]
async fn etcd_down_at_startup_fails_fast_by_default() -> Result {
    support::init_tracing();
    let mut etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    etcd.kill().await;

    let started = Instant::now();
    let mut server = start(&endpoint, &support::unique("fast"), &[]);
    let status = server.wait_exit(Duration::from_secs(5)).await;
    let took = started.elapsed();
    let stderr = server.stderr();
    eprintln!("default: exit {status} after {took:?}\n{stderr}");
    assert!(!status.success(), "must fail: {stderr}");
    assert!(
        stderr.contains(&format!("cannot register with etcd at {endpoint}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("--etcd-wait-ms"),
        "names the way out: {stderr}"
    );
    assert!(took < Duration::from_secs(3), "fails fast, took {took:?}");
    Ok(())
}

#[tokio::test]
async fn etcd_wait_ms_waits_for_etcd_then_registers() -> Result {
    support::init_tracing();
    let mut etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let client = etcd.client().await;
    let service = support::unique("wait");
    let prefix = format!("/services/{service}/");
    etcd.kill().await;

    let mut server = start(&endpoint, &service, &["--etcd-wait-ms", "20000"]);
    // etcd stays down for a while: the server waits, and says so.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(server.running(), "must wait: {}", server.stderr());
    assert!(server.stderr().contains("etcd not reachable yet, retrying"));

    etcd.restart().await;
    let up = Instant::now();
    wait_until(Duration::from_secs(5), "the server to register", || async {
        keys(&client, &prefix)
            .await
            .is_ok_and(|keys| keys.len() == 1)
            && server.stderr().contains(", registered ")
    })
    .await;
    eprintln!("registered {:?} after etcd came up", up.elapsed());

    // It is a normal server from then on: SIGTERM deregisters, exit 0.
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(5)).await;
    assert!(status.success(), "{status}: {}", server.stderr());
    assert!(keys(&client, &prefix).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn etcd_wait_ms_gives_up_at_its_deadline() -> Result {
    support::init_tracing();
    let mut etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    etcd.kill().await;

    let started = Instant::now();
    let mut server = start(
        &endpoint,
        &support::unique("deadline"),
        &["--etcd-wait-ms", "1500"],
    );
    let status = server.wait_exit(Duration::from_secs(6)).await;
    let took = started.elapsed();
    let stderr = server.stderr();
    eprintln!("--etcd-wait-ms 1500: exit {status} after {took:?}");
    assert!(!status.success());
    assert!(
        stderr.contains(&format!(
            "cannot register with etcd at {endpoint} within 1500ms"
        )),
        "{stderr}"
    );
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(4),
        "gives up near its deadline, took {took:?}"
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_while_waiting_for_etcd_stops_at_once() -> Result {
    support::init_tracing();
    let mut etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    etcd.kill().await;

    let mut server = start(
        &endpoint,
        &support::unique("term"),
        &["--etcd-wait-ms", "30000"],
    );
    wait_until(Duration::from_secs(5), "a first failed attempt", || {
        let text = server.stderr();
        async move { text.contains("etcd not reachable yet") }
    })
    .await;
    let t = Instant::now();
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(2)).await;
    assert!(status.success(), "{status}: {}", server.stderr());
    assert!(server.stderr().contains("SIGTERM before registering"));
    eprintln!(
        "SIGTERM while waiting: exit {status} after {:?}",
        t.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn bad_flags_fail_at_once_and_register_nothing() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let client = etcd.client().await;
    let service = support::unique("flags");

    let cases: &[(&[&str], &str)] = &[
        (&["--advertise", "nope"], "invalid address \"nope\""),
        (&["--advertise", "127.0.0.1:0"], "port 0"),
        (
            &["--advertise", "http://127.0.0.1:50051"],
            "without a scheme",
        ),
        (&["--advertise", "::1:50051"], "brackets"),
        (&["--advertise", "[::1:50051"], "invalid address"),
        (&["--advertise", "bad host:1"], "invalid address"),
        (&["--namespace", "services"], "must start with '/'"),
        (&["--weight", "0"], "invalid weight 0"),
    ];
    for (flags, message) in cases {
        let started = Instant::now();
        let mut server = start(&endpoint, &service, flags);
        let status = server.wait_exit(Duration::from_secs(5)).await;
        let stderr = server.stderr();
        assert!(!status.success(), "{flags:?} must fail: {stderr}");
        assert!(
            stderr.contains("helloworld-server: error:"),
            "{flags:?}: {stderr}"
        );
        assert!(stderr.contains(message), "{flags:?}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(2), "{flags:?}");
    }
    let mut server = start(&endpoint, "a/b", &[]);
    let status = server.wait_exit(Duration::from_secs(5)).await;
    assert!(!status.success());
    assert!(server.stderr().contains("invalid service name \"a/b\""));

    assert!(
        keys(&client, "/").await?.is_empty(),
        "nothing was registered"
    );
    Ok(())
}
