//! A greeter client that finds its servers through etcd and balances over them.
//!
//! Start etcd (`etcd` with no flags listens on `http://127.0.0.1:2379`), then one
//! or more servers, then the client:
//!
//! ```text
//! cargo run --example helloworld-server -- --listen 127.0.0.1:50051
//! cargo run --example helloworld-server -- --listen 127.0.0.1:50052
//! cargo run --example helloworld-client -- --requests 10
//! ```
//!
//! Each reply is printed on stdout, one line each (`Hello world from
//! 127.0.0.1:50051`); errors go to stderr, and the last line on stderr is
//! `summary: ok=<n> failed=<m>`. The exit status is 0 only if no request failed.
//! With no instance registered, every request fails at once instead of waiting.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tonic_etcd::{Discovery, DiscoveryHandle};

use hello::greeter_client::GreeterClient;
use hello::HelloRequest;

pub mod hello {
    tonic::include_proto!("helloworld");
}

/// A greeter client that discovers its servers in etcd.
#[derive(Debug, Parser)]
struct Args {
    /// etcd endpoints, comma-separated.
    #[arg(
        long,
        value_name = "URLS",
        env = "ETCD_ENDPOINTS",
        default_value = "http://127.0.0.1:2379",
        value_delimiter = ','
    )]
    etcd: Vec<String>,
    /// Service name to discover.
    #[arg(long, value_name = "NAME", default_value = "helloworld")]
    service: String,
    /// Number of requests to send.
    #[arg(long, value_name = "N", default_value_t = 10)]
    requests: u64,
    /// Pause between two requests, in milliseconds.
    #[arg(long, value_name = "M", default_value_t = 0)]
    interval_ms: u64,
    /// Deadline of each request, in milliseconds.
    #[arg(long, value_name = "T", default_value_t = 2000)]
    timeout_ms: u64,
    /// Name to greet.
    #[arg(long, value_name = "NAME", default_value = "world")]
    name: String,
    /// Key prefix in etcd. Defaults to the format's own (`/services`).
    #[arg(long, value_name = "PREFIX")]
    namespace: Option<String>,
}

fn main() -> ExitCode {
    init_tracing();
    let args = Args::parse();
    let requests = args.requests;
    let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
    let result = runtime.block_on(run(args));
    // Stop the background tasks first, so that the summary is the last line.
    runtime.shutdown_timeout(Duration::from_millis(200));
    let (ok, failed) = match result {
        Ok(counts) => counts,
        Err(error) => {
            // Without discovery no request can be sent: all of them fail.
            eprintln!("helloworld-client: error: {}", chain(&*error));
            (0, requests)
        }
    };
    eprintln!("summary: ok={ok} failed={failed}");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Sends the requests; returns how many succeeded and how many failed.
async fn run(args: Args) -> Result<(u64, u64), Box<dyn std::error::Error>> {
    let etcd = tonic_etcd::connect(&args.etcd).await?;
    let mut discovery = Discovery::new(etcd, args.service.as_str());
    if let Some(namespace) = &args.namespace {
        discovery = discovery.namespace(namespace.as_str());
    }
    let discovered = discovery.start().await?;
    let handle = discovered.handle();
    let channel = tonic_etcd::balance::channel(discovered, tonic_etcd::balance::default_endpoint);
    let mut greeter = GreeterClient::new(channel);

    let timeout = Duration::from_millis(args.timeout_ms);
    let (mut ok, mut failed) = (0, 0);
    for i in 0..args.requests {
        if i > 0 && args.interval_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
        }
        match say_hello(&mut greeter, &handle, &args, timeout).await {
            Ok(message) => {
                println!("{message}");
                ok += 1;
            }
            Err(error) => {
                eprintln!("request {}: {error}", i + 1);
                failed += 1;
            }
        }
    }
    Ok((ok, failed))
}

/// One request, failing at once when discovery knows no instance: tonic's
/// balanced channel would otherwise wait for one until the deadline.
async fn say_hello(
    greeter: &mut GreeterClient<tonic::transport::Channel>,
    handle: &DiscoveryHandle,
    args: &Args,
    timeout: Duration,
) -> Result<String, String> {
    if handle.snapshot().is_empty() {
        return Err(format!("no instance of service {}", args.service));
    }
    let request = HelloRequest {
        name: args.name.clone(),
    };
    match tokio::time::timeout(timeout, greeter.say_hello(request)).await {
        Ok(Ok(reply)) => Ok(reply.into_inner().message),
        Ok(Err(status)) => Err(format!("failed: {:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("timed out after {}ms", timeout.as_millis())),
    }
}

/// Logs of the library on stderr, `warn` and above unless `RUST_LOG` says more.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// An error and its sources, `outer: inner: root`.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        // Some errors repeat their source in their own message.
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}
