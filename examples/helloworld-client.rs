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
//!
//! `--balancer` picks how requests are spread: `round-robin` (the default),
//! `weighted` (by the servers' `--weight`) and `p2c` use the crate's
//! [`Balancer`](tonic_etcd::Balancer); `tonic` uses tonic's own balanced channel.
//!
//! ```text
//! cargo run --example helloworld-server -- --listen 127.0.0.1:50053 --weight 3
//! cargo run --example helloworld-client -- --requests 40 --balancer weighted
//! ```
//!
//! `--balancer consistent-hash` sends requests with the same key to the same
//! server (consistent hashing with bounded loads); `--hash-key KEY` sends
//! every request with that key, in the request header `x-hash-key` (the
//! balancer's default), or in the header named by `--hash-key-header NAME`
//! (the balancer then reads that one). Without `--hash-key`, requests take
//! the servers in turn.
//!
//! ```text
//! cargo run --example helloworld-client -- --balancer consistent-hash --hash-key user-42
//! ```
//!
//! `--outlier-detection on|off` (default `on`) turns the balancer's passive
//! outlier detection on or off; `--health-check` adds active health checks
//! (`grpc.health.v1`, service `helloworld.Greeter`).
//!
//! `--subset K` connects to only K of the servers, chosen by deterministic
//! subsetting among the clients that subset ([`tonic_etcd::discovery::subset`]):
//! ten clients with `--subset 3` over ten servers reach 3 servers each, every
//! server 3 clients. The client's rank comes from `--client-id` (default: the
//! host name and the pid); with `--subset` the start waits until the set of
//! clients has been quiet for `--subset-settle-ms` (2000 by default).
//!
//! ```text
//! cargo run --example helloworld-client -- --requests 30 --subset 3
//! ```
//!
//! `--metrics-listen ADDR` serves the crate's metrics in the Prometheus text
//! format at `http://ADDR/metrics` while the client runs, and `--linger-ms N`
//! more after its last request:
//!
//! ```text
//! cargo run --example helloworld-client -- --requests 30 --metrics-listen 127.0.0.1:9101 --linger-ms 5000 &
//! curl -s http://127.0.0.1:9101/metrics | grep tonic_etcd_client_requests_total
//! ```
//!
//! `--zone Z` prefers the servers registered with `--zone Z`: they take every
//! request while at least 70 % of them are ready, and a share that shrinks
//! smoothly below that, the rest going to the other zones (and to servers
//! without a zone). `--slow-start-ms N` ramps a server that joins (or comes
//! back) from 10 % of its share to all of it over N ms. Both need one of the
//! crate's balancers.
//!
//! ```text
//! cargo run --example helloworld-client -- --zone a --requests 10
//! cargo run --example helloworld-client -- --balancer weighted --slow-start-ms 30000 --requests 1000 --interval-ms 50
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tonic::transport::Channel;
use tonic_etcd::discovery::Subset;
use tonic_etcd::{Balancer, Discovery, DiscoveryView, Policy};

use hello::greeter_client::GreeterClient;
use hello::HelloRequest;

#[path = "common/cli.rs"]
mod cli;
#[path = "common/etcd.rs"]
mod etcd_args;
#[path = "common/metrics.rs"]
mod metrics_args;
#[path = "common/tls.rs"]
mod tls_args;

pub mod hello {
    tonic::include_proto!("helloworld");
}

/// A greeter client that discovers its servers in etcd.
#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    etcd: etcd_args::EtcdArgs,
    #[command(flatten)]
    tls: tls_args::ClientTlsArgs,
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
    /// How requests are spread over the instances.
    #[arg(long, value_name = "NAME", value_enum, default_value_t = BalancerKind::RoundRobin)]
    balancer: BalancerKind,
    /// Registry format: native, etcd-naming, kratos, go-zero, plain or
    /// versioned-json.
    #[arg(long, value_name = "NAME", default_value = "native", value_parser = format_parser())]
    format: String,
    #[command(flatten)]
    metrics: metrics_args::MetricsArgs,
    /// With --metrics-listen: how long to keep serving the metrics after the
    /// last request, in milliseconds, so that a scraper reads the final values.
    #[arg(long, value_name = "N", default_value_t = 0)]
    linger_ms: u64,
    /// Connect to only K of the instances (deterministic subsetting). Off by default.
    #[arg(long, value_name = "K")]
    subset: Option<usize>,
    /// Client id that ranks this client among the subsetting clients.
    /// Defaults to the host name and the pid.
    #[arg(long, value_name = "ID", requires = "subset")]
    client_id: Option<String>,
    /// With --subset: how long the set of clients must stay unchanged before
    /// the subset is chosen, in milliseconds.
    #[arg(long, value_name = "M", default_value_t = 2000)]
    subset_settle_ms: u64,
    /// Active health checks: one grpc.health.v1 Watch per server, for
    /// `helloworld.Greeter`; a server not SERVING leaves rotation (the crate's
    /// balancers only).
    #[arg(long)]
    health_check: bool,
    /// Passive outlier detection of the crate's balancers: a server whose
    /// requests fail (5 in a row, or half of 20 within 10 s) leaves rotation
    /// for 30 s and more.
    #[arg(long, value_name = "on|off", value_enum, default_value_t = Switch::On)]
    outlier_detection: Switch,
    /// With --balancer consistent-hash: the key of every request, sent in the
    /// key header; requests with one key go to one server.
    #[arg(long, value_name = "KEY")]
    hash_key: Option<String>,
    /// The request header that carries the key.
    #[arg(long, value_name = "NAME", default_value = tonic_etcd::balance::DEFAULT_HASH_KEY_HEADER)]
    hash_key_header: tonic::metadata::AsciiMetadataKey,
    /// Zone of this client: the servers registered with the same `--zone`
    /// take the requests while enough of them are ready (the crate's
    /// balancers only).
    #[arg(long, value_name = "Z")]
    zone: Option<String>,
    /// Slow start window, in milliseconds: a server that joins ramps from 10 %
    /// of its share to all of it over N ms (the crate's balancers only).
    #[arg(long, value_name = "N")]
    slow_start_ms: Option<u64>,
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Switch {
    On,
    Off,
}

/// Accepts the names of `tonic_etcd::codec::FORMATS`.
fn format_parser() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(tonic_etcd::codec::FORMATS)
}

/// The balancers the client can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BalancerKind {
    /// The crate's balancer, strict rotation.
    RoundRobin,
    /// The crate's balancer, smooth weighted round robin over the registered weights.
    Weighted,
    /// The crate's balancer, power of two choices over peak-EWMA load.
    P2c,
    /// The crate's balancer, consistent hashing with bounded loads over --hash-key.
    ConsistentHash,
    /// tonic's balanced channel (random pick; waits while there is no instance).
    Tonic,
}

/// A greeter client over one of the balancers.
enum Greeter {
    Balancer(GreeterClient<Balancer>),
    /// tonic's channel waits for an instance: the view tells when there is none.
    Tonic(GreeterClient<Channel>, DiscoveryView),
}

fn main() -> ExitCode {
    cli::init_tracing();
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
            eprintln!("helloworld-client: error: {}", cli::chain(&*error));
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
    args.metrics.install()?;
    let etcd = args.etcd.connect().await?;
    let codec = tonic_etcd::codec::by_name(&args.format).expect("clap checked the format");
    let template = args.tls.endpoint_template()?;
    let mut discovery = Discovery::new(etcd, args.service.as_str()).codec_arc(codec);
    if let Some(namespace) = &args.namespace {
        discovery = discovery.namespace(namespace.as_str());
    }
    if let Some(size) = args.subset {
        let mut subset = Subset::new(size).settle(Duration::from_millis(args.subset_settle_ms));
        if let Some(id) = &args.client_id {
            subset = subset.client_id(id.as_str());
        }
        discovery = discovery.subset(subset);
    }
    // No wait of our own: an etcd that does not answer fails the discovery
    // after its startup timeout (3 s).
    let policy = match args.balancer {
        BalancerKind::RoundRobin => Some(Policy::RoundRobin),
        BalancerKind::Weighted => Some(Policy::Weighted),
        BalancerKind::P2c => Some(Policy::P2c),
        BalancerKind::ConsistentHash => Some(Policy::ConsistentHash),
        BalancerKind::Tonic => None,
    };
    let mut greeter = match policy {
        Some(policy) => {
            let mut builder = Balancer::builder(policy).endpoint(template);
            if args.outlier_detection == Switch::Off {
                builder = builder.outlier_detection(tonic_etcd::OutlierDetection::disabled());
            }
            if args.health_check {
                builder = builder.health_check("helloworld.Greeter");
            }
            let header = http::HeaderName::from_bytes(args.hash_key_header.as_str().as_bytes())?;
            builder = builder.hash_key_header(header);
            if let Some(zone) = &args.zone {
                builder = builder.locality(tonic_etcd::Locality::new(zone.as_str()));
            }
            if let Some(ms) = args.slow_start_ms {
                builder = builder.slow_start(tonic_etcd::SlowStart::new(Duration::from_millis(ms)));
            }
            Greeter::Balancer(GreeterClient::new(builder.discover(discovery).await?))
        }
        None => {
            if args.zone.is_some() || args.slow_start_ms.is_some() {
                eprintln!(
                    "helloworld-client: warning: --zone and --slow-start-ms need one of the \
                     crate's balancers; tonic's channel ignores them"
                );
            }
            let changes = discovery.changes().await?;
            let view = changes.view();
            let channel = tonic_etcd::balance::tonic_channel(changes, template);
            Greeter::Tonic(GreeterClient::new(channel), view)
        }
    };

    // Checked once: a key that is not a valid header value fails the run.
    let hash_key = match &args.hash_key {
        Some(key) => Some(tonic::metadata::AsciiMetadataValue::try_from(key.as_str())?),
        None => None,
    };
    let timeout = Duration::from_millis(args.timeout_ms);
    let (mut ok, mut failed) = (0, 0);
    for i in 0..args.requests {
        if i > 0 && args.interval_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
        }
        match say_hello(&mut greeter, &args, hash_key.as_ref(), timeout).await {
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
    if args.metrics.metrics_listen.is_some() && args.linger_ms > 0 {
        tokio::time::sleep(Duration::from_millis(args.linger_ms)).await;
    }
    Ok((ok, failed))
}

/// One request, failing at once when there is no instance: the crate's
/// balancer does so itself; tonic's balanced channel would wait for one until
/// the deadline, so the discovery is asked first.
async fn say_hello(
    greeter: &mut Greeter,
    args: &Args,
    hash_key: Option<&tonic::metadata::AsciiMetadataValue>,
    timeout: Duration,
) -> Result<String, String> {
    let mut request = tonic::Request::new(HelloRequest {
        name: args.name.clone(),
    });
    if let Some(key) = hash_key {
        request
            .metadata_mut()
            .insert(args.hash_key_header.clone(), key.clone());
    }
    let reply = match greeter {
        Greeter::Balancer(client) => tokio::time::timeout(timeout, client.say_hello(request)).await,
        Greeter::Tonic(client, view) => {
            if view.snapshot().is_empty() {
                return Err(format!("no instance of service {}", args.service));
            }
            tokio::time::timeout(timeout, client.say_hello(request)).await
        }
    };
    match reply {
        Ok(Ok(reply)) => Ok(reply.into_inner().message),
        Ok(Err(status)) => {
            let mut text = format!("failed: {:?}: {}", status.code(), status.message());
            if status.message().contains("h2 protocol error") && args.tls.tls_ca.is_none() {
                // A TLS server answering plaintext HTTP/2 looks like this.
                text.push_str(" (is the server serving TLS? pass --tls-ca)");
            }
            Err(text)
        }
        Err(_) => Err(format!("timed out after {}ms", timeout.as_millis())),
    }
}
