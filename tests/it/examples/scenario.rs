//! The helloworld examples, driven through their command-line contract against a
//! real etcd, as an operator's script would: three servers, a client, SIGTERM,
//! SIGKILL, etcd restarted and wiped, and a service with no instance.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support;
use crate::support::{wait_until, Etcd};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    addr: String,
    child: Child,
}

impl Server {
    fn start(etcd: &str, service: &str, port: u16) -> Server {
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(support::example_bin("helloworld-server"))
            .args(["--listen", &addr, "--etcd", etcd, "--service", service])
            .args(["--ttl", "3", "--drain-ms", "300"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Server { addr, child }
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(etcd: &str, service: &str, requests: u32) -> Output {
    Command::new(support::example_bin("helloworld-client"))
        .args(["--etcd", etcd, "--service", service])
        .args(["--requests", &requests.to_string(), "--timeout-ms", "2000"])
        .output()
        .unwrap()
}

async fn keys(client: &etcd_client::Client, prefix: &str) -> Vec<(String, i64)> {
    let mut client = client.clone();
    let resp = client
        .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .unwrap();
    resp.kvs()
        .iter()
        .map(|kv| (kv.key_str().unwrap().to_owned(), kv.lease()))
        .collect()
}

async fn wait_keys(client: &etcd_client::Client, prefix: &str, n: usize, within: Duration) {
    wait_until(within, &format!("{n} keys under {prefix}"), || async move {
        keys(client, prefix).await.len() == n
    })
    .await;
}

fn replies(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn summary(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_follow_the_operator_scenario() {
    let mut etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let client = etcd.client().await;
    let service = support::unique("hello");
    let prefix = format!("/services/{service}/");

    let mut servers: Vec<Server> = (0..3)
        .map(|_| Server::start(&endpoint, &service, free_port()))
        .collect();
    wait_keys(&client, &prefix, 3, Duration::from_secs(20)).await;
    assert!(
        keys(&client, &prefix)
            .await
            .iter()
            .all(|(_, lease)| *lease != 0),
        "every key carries a lease"
    );

    // 30 requests reach all three servers.
    let out = {
        let (e, s) = (endpoint.clone(), service.clone());
        tokio::task::spawn_blocking(move || client_run(&e, &s, 30))
            .await
            .unwrap()
    };
    assert!(out.status.success(), "client failed: {}", summary(&out));
    assert_eq!(summary(&out), "summary: ok=30 failed=0");
    let lines = replies(&out);
    assert_eq!(lines.len(), 30);
    for server in &servers {
        assert!(
            lines
                .iter()
                .any(|l| l.ends_with(&format!("from {}", server.addr))),
            "no reply from {}: {lines:?}",
            server.addr
        );
    }

    // SIGTERM: the key is gone within 0.5 s and the server exits 0.
    let stopped = servers.remove(0);
    let stopped_key = format!("{prefix}{}", stopped.addr);
    stopped.signal(Signal::SIGTERM);
    let t = Instant::now();
    wait_until(Duration::from_millis(500), "SIGTERM'd key removed", || {
        let key = stopped_key.clone();
        let client = &client;
        async move { !keys(client, &key).await.iter().any(|(k, _)| *k == key) }
    })
    .await;
    let removed_after = t.elapsed();
    let mut stopped = stopped;
    let status = stopped.child.wait().unwrap();
    assert!(status.success(), "graceful stop must exit 0, got {status}");
    eprintln!("SIGTERM: key removed after {removed_after:?}");

    // No request reaches the stopped server.
    let out = {
        let (e, s) = (endpoint.clone(), service.clone());
        tokio::task::spawn_blocking(move || client_run(&e, &s, 20))
            .await
            .unwrap()
    };
    assert!(out.status.success(), "client failed: {}", summary(&out));
    assert!(
        !replies(&out).iter().any(|l| l.ends_with(&stopped.addr)),
        "a request reached the stopped server"
    );

    // SIGKILL: the key is gone within TTL + 1.5 s.
    let killed = servers.remove(0);
    let killed_key = format!("{prefix}{}", killed.addr);
    killed.signal(Signal::SIGKILL);
    let t = Instant::now();
    wait_until(Duration::from_millis(4500), "SIGKILL'd key expired", || {
        let key = killed_key.clone();
        let client = &client;
        async move { !keys(client, &key).await.iter().any(|(k, _)| *k == key) }
    })
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
        let out = {
            let (e, s) = (endpoint.clone(), service.clone());
            tokio::task::spawn_blocking(move || client_run(&e, &s, 5))
                .await
                .unwrap()
        };
        assert!(out.status.success(), "client failed: {}", summary(&out));
        assert!(replies(&out).iter().all(|l| l.ends_with(&survivor.addr)));
    }

    // A service with no instance fails, fast.
    let t = Instant::now();
    let out = {
        let e = endpoint.clone();
        tokio::task::spawn_blocking(move || client_run(&e, "nobody-home", 10))
            .await
            .unwrap()
    };
    assert!(!out.status.success());
    assert_eq!(summary(&out), "summary: ok=0 failed=10");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}

fn client_run(etcd: &str, service: &str, requests: u32) -> Output {
    client(etcd, service, requests)
}
