//! The quick starts as a newcomer meets them: README.md shows
//! `examples/quickstart-*.rs` verbatim, and those programs do against a real
//! etcd what the README says. Also the bound on `helloworld-client`'s run time
//! when etcd accepts connections but never answers.
//!
//! A README block is tied to its file by an HTML comment on the line before
//! the block's opening fence:
//!
//! ```text
//! <!-- verbatim: examples/quickstart-server.rs -->
//! ```rust
//! ...the whole file...
//! ```
//! ```
//!
//! The example binaries must be built first: `cargo build --examples`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support;
use crate::support::examples::Cmd;
use crate::support::kv::get;
use crate::support::Etcd;

/// The files the README must show verbatim, each after its marker.
const VERBATIM: [&str; 2] = [
    "examples/quickstart-server.rs",
    "examples/quickstart-client.rs",
];

/// How often the polls below look again.
const POLL: Duration = Duration::from_millis(20);

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The marker that ties the next fenced block of the README to `path`.
fn marker(path: &str) -> String {
    format!("<!-- verbatim: {path} -->")
}

/// The content of every fenced block that follows a verbatim marker, with
/// the path that the marker names.
fn verbatim_blocks(readme: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(path) = line
            .trim()
            .strip_prefix("<!-- verbatim: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```") && fence.len() > 3,
            "README.md: {} must be followed by an opening fence with a language, got {fence:?}",
            marker(path)
        );
        let mut content = String::new();
        let mut closed = false;
        for line in lines.by_ref() {
            if line == "```" {
                closed = true;
                break;
            }
            content.push_str(line);
            content.push('\n');
        }
        assert!(
            closed,
            "README.md: the block after {} is never closed",
            marker(path)
        );
        blocks.push((path.to_owned(), content));
    }
    blocks
}

/// Where `shown` first differs from `file`, for the failure message.
fn first_difference(shown: &str, file: &str) -> String {
    let (mut shown_lines, mut file_lines) = (shown.lines(), file.lines());
    for number in 1.. {
        match (shown_lines.next(), file_lines.next()) {
            (Some(a), Some(b)) if a == b => continue,
            (None, None) => return "only in line endings or trailing newline".to_owned(),
            (a, b) => return format!("line {number}: README {a:?}, file {b:?}"),
        }
    }
    unreachable!()
}

#[test]
fn readme_shows_the_quick_starts_verbatim() -> Result {
    let readme = std::fs::read_to_string(repo_file("README.md"))?;
    let blocks = verbatim_blocks(&readme);
    for path in VERBATIM {
        assert!(
            blocks.iter().any(|(shown, _)| shown == path),
            "README.md has no `{}` before a block showing {path}",
            marker(path)
        );
    }
    for (path, shown) in &blocks {
        let file = std::fs::read_to_string(repo_file(path))
            .map_err(|error| format!("README.md shows {path}, which cannot be read: {error}"))?;
        assert!(
            *shown == file,
            "README.md's block after {} differs from {path}: {}; copy the file into the block",
            marker(path),
            first_difference(shown, &file)
        );
    }
    Ok(())
}

#[test]
fn verbatim_blocks_are_found_and_compared_exactly() {
    let readme = "intro\n\n<!-- verbatim: a.rs -->\n```rust\nfn main() {}\n\n// end\n```\n\
                  text\n<!-- verbatim: b.toml -->\n```toml\n[x]\n```\n";
    assert_eq!(
        verbatim_blocks(readme),
        [
            ("a.rs".to_owned(), "fn main() {}\n\n// end\n".to_owned()),
            ("b.toml".to_owned(), "[x]\n".to_owned()),
        ]
    );
    assert_eq!(
        first_difference("a\nb\n", "a\nc\n"),
        r#"line 2: README Some("b"), file Some("c")"#
    );
    assert_eq!(
        first_difference("a\n", "a\nb\n"),
        r#"line 2: README None, file Some("b")"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_server_and_client_work_against_etcd() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let client = etcd.client().await;
    let addr = format!("127.0.0.1:{}", support::free_port());
    let key = format!("/services/helloworld/{addr}");

    let mut server = Cmd::new("quickstart-server")
        .env("ETCD_ENDPOINTS", &endpoint)
        .env("LISTEN_ADDR", &addr)
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&client, &key).await.is_none() {
        if let Some(status) = server.exited() {
            panic!(
                "the server exited ({status}) before registering\n{}",
                server.output()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{key} not in etcd after 20 s\n{}",
            server.output()
        );
        tokio::time::sleep(POLL).await;
    }
    eprintln!("registered {:?} after start", server.elapsed());

    let mut greeter = Cmd::new("quickstart-client")
        .env("ETCD_ENDPOINTS", &endpoint)
        .spawn();
    let status = greeter.wait_exit(Duration::from_secs(20)).await;
    assert!(
        status.success(),
        "the client failed ({status})\n{}",
        greeter.output()
    );
    let replies = greeter.stdout();
    let expected = format!("Hello world from {addr}");
    assert!(
        replies.lines().count() == 3 && replies.lines().all(|line| line == expected),
        "three replies `{expected}` expected\n{}",
        greeter.output()
    );

    // SIGTERM: the key goes at once (the TTL is 10 s), the server drains for
    // 1 s and exits 0.
    server.signal(Signal::SIGTERM);
    let signalled = Instant::now();
    while get(&client, &key).await.is_some() {
        assert!(
            signalled.elapsed() < Duration::from_secs(1),
            "{key} still in etcd 1 s after SIGTERM\n{}",
            server.output()
        );
        tokio::time::sleep(POLL).await;
    }
    let removed = signalled.elapsed();
    let status = server.wait_exit(Duration::from_secs(5)).await;
    assert!(
        status.success(),
        "a graceful stop exits 0, got {status}\n{}",
        server.output()
    );
    eprintln!(
        "SIGTERM: key removed after {removed:?}, exit 0 after {:?}",
        signalled.elapsed()
    );
    Ok(())
}

/// `helloworld-client` never runs longer than its flags allow, even when
/// etcd accepts its connections and never answers: the discovery's startup
/// deadline ends the wait. (The example needs the `tls` feature.)
#[cfg(feature = "tls")]
#[tokio::test]
async fn helloworld_client_gives_up_on_an_etcd_that_never_answers() -> Result {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    // An "etcd" that accepts connections and never says a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let done = Arc::new(AtomicBool::new(false));
    let silent = std::thread::spawn({
        let done = Arc::clone(&done);
        move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                held.extend(stream.ok());
            }
        }
    });

    let run = Cmd::client()
        .args(["--etcd", &format!("http://{addr}")])
        .args(["--requests", "1", "--timeout-ms", "1000"])
        .run(Duration::from_secs(5))
        .await;
    done.store(true, Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(addr); // wakes the accept loop
    let _ = silent.join();

    run.assert_failed();
    assert_eq!(run.summary(), "summary: ok=0 failed=1", "{run}");
    eprintln!(
        "silent etcd: the client exited {} after {:?}",
        run.status, run.elapsed
    );
    Ok(())
}
