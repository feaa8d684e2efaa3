//! The example server when etcd cannot be reached at startup, or is given bad
//! flags: by default it fails fast with a clear message and a non-zero exit;
//! with `--etcd-wait-ms N` it waits for etcd and registers once it is up, or
//! fails after N ms.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support;
use crate::support::{wait_for, wait_until, Etcd};
use etcd_client::{Client, GetOptions};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// A helloworld-server with its stderr in a temp file.
struct Server {
    child: Child,
    stderr: tempfile::NamedTempFile,
}

impl Server {
    fn start(etcd: &str, service: &str, extra: &[&str]) -> Server {
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(support::example_bin("helloworld-server"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--etcd",
                etcd,
                "--service",
                service,
            ])
            .args(["--ttl", "3", "--drain-ms", "100"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap();
        Server { child, stderr }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap()
    }

    /// Waits for the process to exit, at most `within`.
    async fn exit(&mut self, within: Duration) -> ExitStatus {
        let child = &mut self.child;
        wait_for(within, "the server to exit", || {
            let status = child.try_wait().unwrap();
            async move { status }
        })
        .await
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn keys(client: &Client, prefix: &str) -> usize {
    let mut client = client.clone();
    match client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
    {
        Ok(resp) => resp.kvs().len(),
        Err(_) => 0,
    }
}

#[tokio::test]
async fn etcd_down_at_startup_fails_fast_by_default() -> Result {
    support::init_tracing();
    let mut etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    etcd.kill().await;

    let started = Instant::now();
    let mut server = Server::start(&endpoint, &support::unique("fast"), &[]);
    let status = server.exit(Duration::from_secs(5)).await;
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

    let mut server = Server::start(&endpoint, &service, &["--etcd-wait-ms", "20000"]);
    // etcd stays down for a while: the server waits, and says so.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(server.running(), "must wait: {}", server.stderr());
    assert!(server.stderr().contains("etcd not reachable yet, retrying"));

    etcd.restart().await;
    let up = Instant::now();
    wait_until(Duration::from_secs(5), "the server to register", || async {
        keys(&client, &prefix).await == 1 && server.stderr().contains(", registered ")
    })
    .await;
    eprintln!("registered {:?} after etcd came up", up.elapsed());

    // It is a normal server from then on: SIGTERM deregisters, exit 0.
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM)?;
    let status = server.exit(Duration::from_secs(5)).await;
    assert!(status.success(), "{status}: {}", server.stderr());
    assert_eq!(keys(&client, &prefix).await, 0);
    Ok(())
}

#[tokio::test]
async fn etcd_wait_ms_gives_up_at_its_deadline() -> Result {
    support::init_tracing();
    let mut etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    etcd.kill().await;

    let started = Instant::now();
    let mut server = Server::start(
        &endpoint,
        &support::unique("deadline"),
        &["--etcd-wait-ms", "1500"],
    );
    let status = server.exit(Duration::from_secs(6)).await;
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

    let mut server = Server::start(
        &endpoint,
        &support::unique("term"),
        &["--etcd-wait-ms", "30000"],
    );
    let stderr = &server.stderr;
    wait_until(Duration::from_secs(5), "a first failed attempt", || {
        let text = std::fs::read_to_string(stderr.path()).unwrap();
        async move { text.contains("etcd not reachable yet") }
    })
    .await;
    let t = Instant::now();
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM)?;
    let status = server.exit(Duration::from_secs(2)).await;
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
        let mut server = Server::start(&endpoint, &service, flags);
        let status = server.exit(Duration::from_secs(5)).await;
        let stderr = server.stderr();
        assert!(!status.success(), "{flags:?} must fail: {stderr}");
        assert!(
            stderr.contains("helloworld-server: error:"),
            "{flags:?}: {stderr}"
        );
        assert!(stderr.contains(message), "{flags:?}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(2), "{flags:?}");
    }
    let mut server = Server::start(&endpoint, "a/b", &[]);
    let status = server.exit(Duration::from_secs(5)).await;
    assert!(!status.success());
    assert!(server.stderr().contains("invalid service name \"a/b\""));

    assert_eq!(keys(&client, "/").await, 0, "nothing was registered");
    Ok(())
}
