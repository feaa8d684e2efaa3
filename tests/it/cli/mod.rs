//! The `tonic-etcd` operator CLI, run as a binary against real etcd, its
//! `--json` output parsed (feature `cli`: `cargo test --features cli` builds
//! the binary, which cargo hands to the tests as `CARGO_BIN_EXE_tonic-etcd`).
//!
//! - `ls`: `ls` and `ls SERVICE` match the registrations; usage errors exit 2.
//! - `watch`: a server's SIGTERM shows as `removed`.
//! - `overrides`: drain / undrain in a running client of each policy and of
//!   tonic's channel, within 1 s, the key remaining; a weight override changes
//!   the weighted split.
//! - `register`: makes a plain server reachable, removes it on SIGTERM.
//! - `doctor`: finds each kind of problem, exits 0 on a clean registry.
//! - `secure`: the TLS and user flags; `doctor` names a prefix the user
//!   cannot read.

mod doctor;
mod ls;
mod overrides;
mod register;
mod secure;
mod watch;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a one-shot command may take.
const RUN_WITHIN: Duration = Duration::from_secs(20);

/// The CLI binary built by cargo for this test run.
fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tonic-etcd")
}

/// A finished command: its exit code, stdout and stderr.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// stdout parsed as one JSON document.
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self:?}"))
    }

    fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "expected exit 0\n{self:?}");
        self
    }
}

/// A command line against etcd at `endpoint`; the environment is cleared of
/// the CLI's variables so that the test's flags are all it reads.
fn command(endpoint: &str, args: &[&str]) -> Command {
    let mut command = Command::new(bin());
    command
        .env_remove("ETCD_ENDPOINTS")
        .env_remove("ETCD_PASSWORD")
        .arg("--etcd")
        .arg(endpoint)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs `tonic-etcd --etcd ENDPOINT ARGS...` to its end.
async fn run(endpoint: &str, args: &[&str]) -> Ran {
    run_with(endpoint, args, &[]).await
}

/// Like [`run`], with environment variables.
async fn run_with(endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut command = command(endpoint, args);
    command.envs(env.iter().copied());
    let output = tokio::time::timeout(RUN_WITHIN, command.output())
        .await
        .unwrap_or_else(|_| panic!("tonic-etcd {args:?} did not finish within {RUN_WITHIN:?}"))
        .expect("run tonic-etcd");
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A long-running command (`watch`, `register`) whose output lines are
/// collected as they come.
struct Running {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn spawn(endpoint: &str, args: &[&str]) -> Running {
        let mut child = command(endpoint, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tonic-etcd");
        let stdout = collect(child.stdout.take().expect("piped stdout"));
        let stderr = collect(child.stderr.take().expect("piped stderr"));
        Running {
            child,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout().join("\n"),
            self.stderr.lock().unwrap().join("\n")
        )
    }

    /// Waits until a stdout line satisfies `check`; returns it.
    async fn wait_line(
        &self,
        within: Duration,
        what: &str,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.stdout().into_iter().find(|l| check(l)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no line {what} within {within:?}\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until stderr has a line containing `text`.
    async fn wait_stderr(&self, within: Duration, text: &str) {
        let deadline = Instant::now() + within;
        while !self.stderr.lock().unwrap().iter().any(|l| l.contains(text)) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} on stderr within {within:?}\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("still running");
        kill(Pid::from_raw(pid as i32), signal).expect("send signal");
    }

    async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait").code(),
            Err(_) => panic!(
                "tonic-etcd still running after {within:?}\n{}",
                self.output()
            ),
        }
    }
}

fn collect(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}
