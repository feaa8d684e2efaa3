//! A rolling restart under load, through the example binaries: three servers
//! and a client sending every 10 ms; each server in turn gets SIGTERM, exits,
//! and starts again on the same port; the next one goes only once it is
//! registered again. Not one request may fail.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support;
use crate::support::{wait_for, wait_until, Etcd};
use etcd_client::Client;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// Requests the client sends, one every 10 ms: enough to outlast the restarts.
const REQUESTS: u32 = 600;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed on drop, its stderr in a temp file.
struct Process {
    child: Child,
    stderr: tempfile::NamedTempFile,
}

impl Process {
    fn spawn(command: &mut Command) -> Process {
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let child = command.stderr(stderr.reopen().unwrap()).spawn().unwrap();
        Process { child, stderr }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap()
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server(etcd: &str, service: &str, port: u16) -> Process {
    Process::spawn(
        Command::new(support::example_bin("helloworld-server"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--etcd", etcd, "--service", service, "--ttl", "5"])
            .stdout(Stdio::null()),
    )
}

async fn registered(client: &Client, key: String) -> bool {
    let mut client = client.clone();
    matches!(client.get(key, None).await, Ok(resp) if resp.kvs().len() == 1)
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
    let ports = [free_port(), free_port(), free_port()];
    let key = |port: u16| format!("/services/{service}/127.0.0.1:{port}");

    let mut servers: Vec<Process> = ports
        .iter()
        .map(|port| server(&endpoint, &service, *port))
        .collect();
    for port in ports {
        wait_until(Duration::from_secs(10), "a server to register", || {
            registered(&client, key(port))
        })
        .await;
    }

    let out = tempfile::NamedTempFile::new()?;
    let mut load = Process::spawn(
        Command::new(support::example_bin("helloworld-client"))
            .args(["--etcd", &endpoint, "--service", &service])
            .args(["--requests", &REQUESTS.to_string(), "--interval-ms", "10"])
            .args(client_args)
            .stdout(out.reopen()?),
    );
    let replies = || std::fs::read_to_string(out.path()).unwrap().lines().count();
    wait_until(Duration::from_secs(10), "the client to get going", || {
        let n = replies();
        async move { n >= 50 }
    })
    .await;

    for (i, port) in ports.into_iter().enumerate() {
        let t = Instant::now();
        servers[i].signal(Signal::SIGTERM);
        let stopping = &mut servers[i];
        let status = wait_for(Duration::from_secs(10), "the server to exit", || {
            let status = stopping.child.try_wait().unwrap();
            async move { status }
        })
        .await;
        assert!(
            status.success(),
            "graceful stop exits 0: {}",
            stopping.stderr()
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
    let restarted = replies();

    let status = wait_for(Duration::from_secs(60), "the client to finish", || {
        let status = load.child.try_wait().unwrap();
        async move { status }
    })
    .await;
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
    let replies = std::fs::read_to_string(out.path())?;
    for port in ports {
        let from = format!("from 127.0.0.1:{port}");
        assert!(replies.lines().any(|l| l.ends_with(&from)), "none {from}");
    }
    for server in &servers {
        server.signal(Signal::SIGTERM);
    }
    Ok(())
}
