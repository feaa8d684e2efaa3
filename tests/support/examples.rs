//! Drives the example binaries as an operator's script would
//! (`support::examples`).
//!
//! - [`Cmd`]: `helloworld-server` or `helloworld-client` with flags and
//!   environment; [`Cmd::spawn`] starts it in the background, [`Cmd::run`]
//!   runs it to the end within a deadline.
//! - [`Proc`]: a running example; its stdout and stderr go to files that the
//!   test can read at any time. Killed (SIGKILL) on drop.
//! - [`Server`]: a `helloworld-server` on a free port of 127.0.0.1, with
//!   [`Server::wait_registered`] polling etcd for its key.
//! - [`REGISTER_WITHIN`], [`CLIENT_WITHIN`]: the deadlines the tests share.
//!
//! The binaries must be built first: `cargo build --examples`.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use etcd_client::Client;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::kv::{get, keys};
use super::{example_bin, free_port};

/// Environment variables of the examples that the test sets explicitly, never
/// inherits: the endpoints come from `--etcd`, the password from the test.
const CLEARED_ENV: [&str; 3] = ["ETCD_ENDPOINTS", "ETCD_PASSWORD", "LISTEN_ADDR"];

/// How often the polls below look again.
const POLL: Duration = Duration::from_millis(20);

/// How long a server may take to register.
pub const REGISTER_WITHIN: Duration = Duration::from_secs(10);
/// How long a client run of a few requests may take (before being killed).
pub const CLIENT_WITHIN: Duration = Duration::from_secs(15);

/// A command line of one of the examples.
#[derive(Debug, Clone)]
pub struct Cmd {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Cmd {
    /// `helloworld-server` with no flags yet.
    pub fn server() -> Cmd {
        Cmd::new("helloworld-server")
    }

    /// `helloworld-client` with no flags yet.
    pub fn client() -> Cmd {
        Cmd::new("helloworld-client")
    }

    /// The example binary `name` (e.g. `quickstart-server`) with no flags yet.
    pub fn new(name: &'static str) -> Cmd {
        Cmd {
            name,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Appends `flag value`, the value being a path.
    pub fn path(mut self, flag: &str, path: &std::path::Path) -> Cmd {
        self.args.push(flag.to_owned());
        self.args
            .push(path.to_str().expect("UTF-8 path").to_owned());
        self
    }

    /// Sets an environment variable of the process.
    pub fn env(mut self, key: &str, value: &str) -> Cmd {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts the process in the background.
    pub fn spawn(self) -> Proc {
        let dir = tempfile::Builder::new()
            .prefix("tonic-etcd-example-")
            .tempdir()
            .expect("create a temp dir for the output");
        let stdout = dir.path().join("stdout");
        let stderr = dir.path().join("stderr");
        let mut command = Command::new(example_bin(self.name));
        for key in CLEARED_ENV {
            command.env_remove(key);
        }
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("create stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("create stderr file"));
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", self.name));
        Proc {
            name: self.name,
            args: self.args,
            child: Some(child),
            status: None,
            started: Instant::now(),
            stdout,
            stderr,
            _dir: dir,
        }
    }

    /// Runs the process to its end; panics (after killing it) if it takes
    /// longer than `within`.
    pub async fn run(self, within: Duration) -> Run {
        let mut proc = self.spawn();
        let status = proc.wait_exit(within).await;
        Run {
            status,
            elapsed: proc.started.elapsed(),
            stdout: proc.stdout(),
            stderr: proc.stderr(),
        }
    }
}

/// What a finished process did.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    /// From the start of the process to its exit (as seen by polling).
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The last line on stderr: the client's `summary: ok=<n> failed=<m>`.
    pub fn summary(&self) -> &str {
        self.stderr.lines().last().unwrap_or_default()
    }

    /// The lines on stdout: the client's replies.
    pub fn replies(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Panics with the output unless the client sent `n` requests, all
    /// answered, and exited 0.
    pub fn assert_all_ok(&self, n: usize) {
        let summary = format!("summary: ok={n} failed=0");
        assert!(
            self.status.success() && self.summary() == summary,
            "expected `{summary}` and exit 0, got {}\n{self}",
            self.status
        );
        assert_eq!(self.replies().len(), n, "one reply per request\n{self}");
    }

    /// Panics with the output unless every reply came from the server at
    /// `addr`.
    pub fn assert_all_from(&self, addr: &str) {
        let from = format!("Hello world from {addr}");
        assert!(
            self.replies().iter().all(|reply| *reply == from),
            "every reply from {addr}\n{self}"
        );
    }

    /// Panics with the output unless the client exited non-zero with all its
    /// `n` requests failed.
    pub fn assert_all_failed(&self, n: usize) {
        self.assert_failed();
        assert_eq!(
            self.summary(),
            format!("summary: ok=0 failed={n}"),
            "\n{self}"
        );
    }

    /// Panics with the output unless the process exited non-zero.
    pub fn assert_failed(&self) {
        assert!(
            !self.status.success(),
            "expected a non-zero exit, got {}\n{self}",
            self.status
        );
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- stdout ---\n{}--- stderr ---\n{}--- end ({:?}) ---",
            self.stdout, self.stderr, self.elapsed
        )
    }
}

/// A running (or exited) example. Killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Proc {
    name: &'static str,
    args: Vec<String>,
    child: Option<Child>,
    status: Option<ExitStatus>,
    started: Instant,
    stdout: PathBuf,
    stderr: PathBuf,
    // Declared last: removed after the process is gone.
    _dir: TempDir,
}

impl Proc {
    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends `signal` to the process (if it still runs).
    pub fn signal(&self, signal: Signal) {
        if let Some(child) = &self.child {
            let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));
            let _ = kill(pid, signal);
        }
    }

    /// Whether the process still runs.
    /// How long since it was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.exited().is_none()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(child) = &mut self.child {
                self.status = child.try_wait().expect("wait for the example");
            }
        }
        self.status
    }

    /// Waits for the process to exit; kills it and panics with its output if it
    /// is still running after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            if Instant::now() > deadline {
                self.kill_now();
                panic!(
                    "{} {:?} still running after {within:?}; killed it\n{}",
                    self.name,
                    self.args,
                    self.output()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Its command line and everything it printed, for panic messages.
    pub fn output(&self) -> String {
        format!(
            "{} {}\n--- stdout ---\n{}--- stderr ---\n{}--- end ---",
            self.name,
            self.args.join(" "),
            self.stdout(),
            self.stderr()
        )
    }

    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            if let Ok(status) = child.wait() {
                self.status.get_or_insert(status);
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// A `helloworld-server` listening on a free port of 127.0.0.1.
#[derive(Debug)]
pub struct Server {
    /// `127.0.0.1:PORT`, the listen and advertised address.
    pub addr: String,
    pub proc: Proc,
}

impl Server {
    /// Starts `helloworld-server --listen 127.0.0.1:PORT` on a free port,
    /// with the flags of `cmd` (made with [`Cmd::server`]) and `--ttl 5` and
    /// `--drain-ms 100` unless `cmd` gives its own.
    pub fn start(cmd: Cmd) -> Server {
        Server::start_on(free_port(), cmd)
    }

    /// Like [`start`](Server::start), on 127.0.0.1:`port`: a server started
    /// again where it was before.
    pub fn start_on(port: u16, cmd: Cmd) -> Server {
        assert_eq!(cmd.name, "helloworld-server");
        let addr = format!("127.0.0.1:{port}");
        let mut full = Cmd::server().args(["--listen", &addr]);
        for (flag, default) in [("--ttl", "5"), ("--drain-ms", "100")] {
            if !cmd.args.iter().any(|arg| arg == flag) {
                full = full.args([flag, default]);
            }
        }
        full.args.extend(cmd.args);
        full.env = cmd.env;
        Server {
            addr,
            proc: full.spawn(),
        }
    }

    /// Polls etcd until `key` exists and returns its value and lease; panics
    /// with the server's output if the server exits first or `within` passes.
    pub async fn wait_registered(
        &mut self,
        etcd: &Client,
        key: &str,
        within: Duration,
    ) -> (Vec<u8>, i64) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.proc.exited() {
                panic!(
                    "server exited ({status}) before {key} appeared\n{}",
                    self.proc.output()
                );
            }
            if let Some(found) = get(etcd, key).await {
                return found;
            }
            if Instant::now() > deadline {
                let under = keys(etcd, "").await;
                panic!(
                    "{key} not in etcd after {within:?}; keys: {under:?}\n{}",
                    self.proc.output()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends SIGTERM, waits until `key` is gone from etcd, then until the
    /// server exits 0.
    pub async fn stop_gracefully(&mut self, etcd: &Client, key: &str) {
        self.proc.signal(Signal::SIGTERM);
        let started = Instant::now();
        let within = Duration::from_secs(2);
        while get(etcd, key).await.is_some() {
            assert!(
                started.elapsed() < within,
                "{key} still in etcd {within:?} after SIGTERM\n{}",
                self.proc.output()
            );
            tokio::time::sleep(POLL).await;
        }
        let status = self.proc.wait_exit(Duration::from_secs(5)).await;
        assert!(
            status.success(),
            "a graceful stop exits 0, got {status}\n{}",
            self.proc.output()
        );
    }
}

/// Panics unless `lease` is a live etcd lease (non-zero, with time left).
pub async fn assert_live_lease(etcd: &Client, key: &str, lease: i64) {
    assert_ne!(lease, 0, "{key} carries no lease");
    let mut etcd = etcd.clone();
    let ttl = etcd
        .lease_time_to_live(lease, None)
        .await
        .expect("lease time-to-live")
        .ttl();
    assert!(
        ttl > 0,
        "the lease {lease:x} of {key} is not alive (ttl {ttl})"
    );
}
