//! Every helper of the integration tests (`tests/it/`), and first of all the
//! real-etcd fixture.
//!
//! - [`Etcd`]: one etcd member on 127.0.0.1 with free ports and a temporary data
//!   dir; stop, kill, restart with the same data, wipe and restart, compact.
//! - [`Cluster`]: three members; kill and restart one, find the leader.
//! - [`wait_until`] / [`wait_for`]: poll a condition with a deadline instead of
//!   sleeping.
//!
//! The etcd binary is `$ETCD_BIN`, else `etcd` on `PATH`; `etcdctl` is
//! `$ETCDCTL_BIN`, else `etcdctl` on `PATH`. Each member logs to `etcd.log` in its
//! temporary dir; a member that does not become healthy makes the test panic with
//! the tail of that log. Every process is killed (SIGKILL) when its fixture drops,
//! also when the test panics.
//!
//! The other helpers, by concern:
//!
//! - [`changes`]: instances in the native layout and a discovery's change stream.
//! - [`kv`]: plain reads of keys, values and leases.
//! - [`proxy`]: a TCP proxy that can cut, reset, delay or black-hole connections.
//! - [`freeze`]: SIGSTOP / SIGCONT of a member ([`Etcd::freeze`]).
//! - [`balancer`]: greeter servers to balance over, and requests through them.
//! - [`examples`]: the example binaries, driven as an operator's script would.
//! - [`scrape`]: a Prometheus text endpoint, read over HTTP.
//! - `secure` (feature `tls`): etcd with TLS, client certificates and users.
//! - [`free_port`], [`unique`], [`init_tracing`], [`Result`]: for any test.

#![allow(dead_code)]

pub mod balancer;
pub mod changes;
pub mod examples;
pub mod freeze;
pub mod kv;
pub mod proxy;
pub mod scrape;
#[cfg(feature = "tls")]
pub mod secure;

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use etcd_client::{Client, CompactionOptions};
use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a test returns, so that `?` works on any error.
pub type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// How long a member may take to answer its health check after a (re)start.
const HEALTHY_WITHIN: Duration = Duration::from_secs(15);
/// How long a member may take to exit after SIGTERM before it gets SIGKILL.
const STOP_WITHIN: Duration = Duration::from_secs(10);
/// Timing flags that let leases as short as 1 s work and elections finish fast.
const TIMING_FLAGS: [&str; 4] = ["--heartbeat-interval", "50", "--election-timeout", "500"];

/// One etcd member process. Killed (SIGKILL) on drop; its temp dir is removed.
pub struct Etcd {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// `name=http://127.0.0.1:peer,...` of every member of the cluster.
    initial_cluster: String,
    token: String,
    /// Flags added to every start, e.g. `--quota-backend-bytes`.
    extra: Vec<String>,
    child: Option<Child>,
    // Declared last: dropped after the process is killed in `Drop`.
    dir: TempDir,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint())
            .field("pid", &self.pid())
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Etcd {
    /// Starts a single-member cluster and waits until it is healthy.
    pub async fn start() -> Etcd {
        Etcd::start_with(&[]).await
    }

    /// Like [`start`](Etcd::start), with `extra` flags for etcd on every
    /// (re)start, e.g. `["--quota-backend-bytes", "65536"]`.
    pub async fn start_with(extra: &[&str]) -> Etcd {
        // A free port can be taken by someone else between our probe and etcd's
        // bind; try fresh ports a few times before giving up.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let name = "default".to_owned();
            let [client_port, peer_port] = free_ports::<2>();
            let initial_cluster = format!("{name}=http://127.0.0.1:{peer_port}");
            let mut etcd = Etcd::prepare(name, client_port, peer_port, initial_cluster);
            etcd.extra = extra.iter().map(|s| (*s).to_owned()).collect();
            etcd.spawn();
            match etcd.wait_healthy().await {
                Ok(()) => return etcd,
                Err(error) if attempt < 3 && etcd.log_tail().contains("address already in use") => {
                    eprintln!("etcd fixture: {error}; retrying on other ports");
                }
                Err(error) => panic!("{error}"),
            }
        }
    }

    /// A member that is not running yet.
    fn prepare(name: String, client_port: u16, peer_port: u16, initial_cluster: String) -> Etcd {
        let dir = tempfile::Builder::new()
            .prefix("tonic-etcd-test-")
            .tempdir()
            .expect("create a temp dir for etcd");
        fs::create_dir(dir.path().join("data")).expect("create etcd data dir");
        Etcd {
            token: format!("tonic-etcd-{}", unique("cluster")),
            name,
            client_port,
            peer_port,
            initial_cluster,
            extra: Vec::new(),
            child: None,
            dir,
        }
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    /// A client of this member, with the crate's connect options.
    pub async fn client(&self) -> Client {
        tonic_etcd::connect([self.endpoint()]).await.unwrap()
    }

    /// The process id, if the member is running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM and waits for the process to exit (SIGKILL after 10 s).
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(&child, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_WITHIN;
        loop {
            if child.try_wait().expect("wait for etcd").is_some() {
                return;
            }
            if Instant::now() > deadline {
                eprintln!("etcd fixture: {} ignored SIGTERM; killing it", self.name);
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGKILL and waits for the process to exit.
    pub async fn kill(&mut self) {
        self.kill_now();
    }

    fn kill_now(&mut self) {
        kill_now(&mut self.child);
    }

    /// Starts the member again on the same ports with the same data and waits until
    /// it is healthy. A running member is killed first.
    pub async fn restart(&mut self) {
        self.kill_now();
        self.spawn();
        if let Err(error) = self.wait_healthy().await {
            panic!("{error}");
        }
    }

    /// Kills the member, deletes its data and starts a fresh cluster on the same
    /// ports. Revisions start again from 1; every key and lease is gone.
    pub async fn wipe_and_restart(&mut self) {
        self.kill_now();
        let data = self.data_dir();
        fs::remove_dir_all(&data).expect("remove etcd data dir");
        fs::create_dir(&data).expect("create etcd data dir");
        self.restart().await;
    }

    /// Compacts (physically) at the current revision and returns that revision.
    pub async fn compact(&self) -> i64 {
        let mut client = self.client().await;
        let revision = client
            .get("compact-probe", None)
            .await
            .expect("read the current revision")
            .header()
            .expect("response header")
            .revision();
        client
            .compact(revision, Some(CompactionOptions::new().with_physical()))
            .await
            .expect("compact");
        revision
    }

    /// Runs `etcdctl` (or `$ETCDCTL_BIN`) against this member with `ETCDCTL_API=3`;
    /// returns its stdout, panics with its stderr if it fails.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let bin = std::env::var("ETCDCTL_BIN").unwrap_or_else(|_| "etcdctl".to_owned());
        let output = Command::new(&bin)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("cannot run {bin}: {error}"));
        if !output.status.success() {
            panic!(
                "{bin} {args:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        String::from_utf8(output.stdout).expect("etcdctl prints UTF-8")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// `Some(status)` if the process has exited (or was never started).
    /// Spawns the process (not waiting for health).
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "etcd {} already running", self.name);
        let client_url = self.endpoint();
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let child = spawn_etcd(&self.log_path(), &self.extra, |command| {
            command
                .arg("--name")
                .arg(&self.name)
                .arg("--data-dir")
                .arg(self.data_dir())
                .arg("--listen-client-urls")
                .arg(&client_url)
                .arg("--advertise-client-urls")
                .arg(&client_url)
                .arg("--listen-peer-urls")
                .arg(&peer_url)
                .arg("--initial-advertise-peer-urls")
                .arg(&peer_url)
                .arg("--initial-cluster")
                .arg(&self.initial_cluster)
                .arg("--initial-cluster-token")
                .arg(&self.token)
                .arg("--initial-cluster-state")
                .arg("new");
        });
        self.child = Some(child);
    }

    /// Polls `/health` until it answers `"health":"true"`.
    async fn wait_healthy(&mut self) -> Result<(), String> {
        let (what, endpoint, log) = (
            format!("etcd {}", self.name),
            self.endpoint(),
            self.log_path(),
        );
        wait_healthy(&mut self.child, &what, &endpoint, self.client_port, &log).await
    }

    /// The last 4 KiB of the member's log.
    fn log_tail(&self) -> String {
        tail(&self.log_path(), 4096)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Three etcd members forming one cluster.
#[derive(Debug)]
pub struct Cluster {
    members: Vec<Etcd>,
}

impl Cluster {
    /// Starts three members and waits until all are healthy and one leads.
    pub async fn start() -> Cluster {
        let ports = free_ports::<6>();
        let names = ["m0", "m1", "m2"];
        let initial_cluster = names
            .iter()
            .enumerate()
            .map(|(i, name)| format!("{name}=http://127.0.0.1:{}", ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("tonic-etcd-{}", unique("cluster"));
        let mut members: Vec<Etcd> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut member = Etcd::prepare(
                    (*name).to_owned(),
                    ports[2 * i],
                    ports[2 * i + 1],
                    initial_cluster.clone(),
                );
                member.token = token.clone();
                member
            })
            .collect();
        // All must run before any can be healthy: health needs a quorum.
        for member in &mut members {
            member.spawn();
        }
        for member in &mut members {
            if let Err(error) = member.wait_healthy().await {
                panic!("{error}");
            }
        }
        let cluster = Cluster { members };
        cluster.leader().await;
        cluster
    }

    /// The client URLs of the three members.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Etcd::endpoint).collect()
    }

    /// A client of all three members, with the crate's connect options.
    pub async fn client(&self) -> Client {
        tonic_etcd::connect(self.endpoints()).await.unwrap()
    }

    /// The index of the current leader; waits (15 s at most) until there is one.
    pub async fn leader(&self) -> usize {
        let members = &self.members;
        wait_for(HEALTHY_WITHIN, "an etcd leader", move || async move {
            for (i, member) in members.iter().enumerate() {
                if member.child.is_none() {
                    continue;
                }
                let Ok(mut client) = tonic_etcd::connect([member.endpoint()]).await else {
                    continue;
                };
                let status = tokio::time::timeout(Duration::from_secs(1), client.status()).await;
                if let Ok(Ok(status)) = status {
                    let Some(header) = status.header() else {
                        continue;
                    };
                    if status.leader() != 0 && status.leader() == header.member_id() {
                        return Some(i);
                    }
                }
            }
            None
        })
        .await
    }

    /// Kills member `i` (SIGKILL) and waits for it to exit.
    pub async fn kill(&mut self, i: usize) {
        self.members[i].kill().await;
    }

    /// Starts member `i` again with the same data and ports; waits until healthy.
    pub async fn restart(&mut self, i: usize) {
        self.members[i].restart().await;
    }

    /// Member `i`, e.g. for its endpoint or a client of that member alone.
    pub fn member(&self, i: usize) -> &Etcd {
        &self.members[i]
    }
}

/// Polls `f` every 20 ms until it returns true; panics after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(timeout, what, || {
        let fut = f();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls `f` every 20 ms until it returns `Some`; panics after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    // Wall-clock deadline, so that tests that pause tokio's clock still end.
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A name unique to this call, usable as a service name or a key segment:
/// `{prefix}-{pid}-{counter}-{time bits}`, without `/` or whitespace.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{:x}", std::process::id(), nanos & 0xf_ffff)
}

/// Installs a `tracing` subscriber for tests: filter from `RUST_LOG` (default
/// `warn`), output captured per test. Safe to call many times.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A port of 127.0.0.1 where nothing listens, for a server to bind or as an
/// address nobody answers on. Never handed out twice in this process, so that
/// tests running in parallel do not get the same one.
pub fn free_port() -> u16 {
    let [port] = free_ports::<1>();
    port
}

/// `N` distinct free ports on 127.0.0.1, never handed out before by this process.
fn free_ports<const N: usize>() -> [u16; N] {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    // Hold every listener until all ports are chosen, so that they differ.
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0; N];
    let mut i = 0;
    while i < N {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        listeners.push(listener);
        if given.insert(port) {
            ports[i] = port;
            i += 1;
        }
    }
    ports
}

/// Whether etcd on `port` answers its health check with `"health":"true"`.
async fn health(port: u16) -> bool {
    let check = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let response = String::from_utf8_lossy(&response);
        Some(response.contains("\"health\":\"true\""))
    };
    // etcd's own health check may wait up to a few seconds for a quorum read.
    matches!(
        tokio::time::timeout(Duration::from_secs(3), check).await,
        Ok(Some(true))
    )
}

/// Starts etcd (`$ETCD_BIN`, else `etcd`) logging to `log`: the member's own
/// flags from `member`, then the shared timing and logging flags, then
/// `extra`. Panics if the binary cannot be started.
fn spawn_etcd(log: &Path, extra: &[String], member: impl FnOnce(&mut Command)) -> Child {
    let bin = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".to_owned());
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open etcd log");
    let mut command = Command::new(&bin);
    // etcd reads ETCD_* variables as flags and warns about (or trips over)
    // those it does not know, such as ETCD_ENDPOINTS or ETCD_BIN.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ETCD_") {
            command.env_remove(key);
        }
    }
    member(&mut command);
    command
        .args(TIMING_FLAGS)
        .args(["--logger", "zap", "--log-outputs", "stderr"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log file"))
        .stderr(log);
    command
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {bin} (set $ETCD_BIN?): {error}"))
}

/// Polls the `/health` of the etcd in `child` on `health_port` until it
/// answers `"health":"true"`; fails when the process exits or after
/// [`HEALTHY_WITHIN`], with `what` and the tail of `log` in the message.
async fn wait_healthy(
    child: &mut Option<Child>,
    what: &str,
    endpoint: &str,
    health_port: u16,
    log: &Path,
) -> Result<(), String> {
    let deadline = Instant::now() + HEALTHY_WITHIN;
    loop {
        let exited = match child {
            Some(child) => child
                .try_wait()
                .expect("wait for etcd")
                .map(|status| status.to_string()),
            None => Some("not started".to_owned()),
        };
        if let Some(status) = exited {
            return Err(format!(
                "{what} exited ({status}) before becoming healthy; log tail:\n{}",
                tail(log, 4096)
            ));
        }
        if health(health_port).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what} at {endpoint} not healthy after {HEALTHY_WITHIN:?}; log tail:\n{}",
                tail(log, 4096)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills (SIGKILL) the process in `child`, if any, and waits for it.
fn kill_now(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn signal(child: &Child, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));
    // The process may have exited already; the caller waits for it either way.
    let _ = send_signal(pid, signal);
}

/// The last `max` bytes of the file at `path`, lossily as UTF-8.
fn tail(path: &Path, max: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The path of an example binary, e.g. `helloworld-server`.
///
/// Tests that drive the examples need them built as binaries first:
/// `cargo build --examples` (which `make test` runs before `cargo test`);
/// `cargo test --all-targets` alone builds examples only as test harnesses.
pub fn example_bin(name: &str) -> PathBuf {
    // target/{profile}/deps/this-test → target/{profile}/examples/{name}
    let exe = std::env::current_exe().expect("path of the test binary");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary under target/{profile}/deps")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --examples` first (`make test` does)",
        path.display()
    );
    path
}
