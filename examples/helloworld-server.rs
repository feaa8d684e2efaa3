//! A greeter server that registers itself in etcd while it serves.
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
//! Each server replies `Hello {name} from {advertised address}`. On SIGTERM or
//! SIGINT (Ctrl-C) it deregisters at once, waits `--drain-ms` so that clients see
//! the removal, finishes the requests in flight and exits 0. If it crashes
//! instead, its key disappears when the lease runs out, after `--ttl` seconds.
//!
//! `--metrics-listen ADDR` serves the crate's metrics (among them
//! `tonic_etcd_registration_up`) in the Prometheus text format at
//! `http://ADDR/metrics`.
//!
//! If etcd cannot be reached at startup, it exits at once with an error, or,
//! with `--etcd-wait-ms N`, keeps trying for up to N ms and starts once etcd
//! answers.
//!
//! It serves gRPC health (`grpc.health.v1`) for `""` and `helloworld.Greeter`,
//! and its registration follows it: SIGUSR1 toggles both between SERVING and
//! NOT_SERVING (printing `health: NOT_SERVING` or `health: SERVING` on stderr),
//! and NOT_SERVING takes the key out of etcd until SERVING puts it back, on
//! the same lease. On SIGTERM it says NOT_SERVING first, then deregisters.
//! For fault drills, `--error-rate F` answers that fraction of calls
//! `UNAVAILABLE` ("injected failure") and `--delay-ms N` delays every reply.
//!
//! `--zone Z` registers the metadata `zone=Z`, which clients with `--zone`
//! use to prefer the servers of their own zone:
//!
//! ```text
//! cargo run --example helloworld-server -- --listen 127.0.0.1:50061 --zone a
//! cargo run --example helloworld-server -- --listen 127.0.0.1:50062 --zone b
//! cargo run --example helloworld-client -- --zone a --requests 10
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use tonic_etcd::health::{self, tonic_health};
use tonic_etcd::{Error, Instance, Registrar};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use hello::greeter_server::{Greeter, GreeterServer};
use hello::{HelloReply, HelloRequest};

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

/// A greeter server registered in etcd.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:50051 (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Address that clients connect to, registered in etcd. Defaults to the
    /// listen address.
    #[arg(long, value_name = "ADDR")]
    advertise: Option<String>,
    #[command(flatten)]
    etcd: etcd_args::EtcdArgs,
    #[command(flatten)]
    tls: tls_args::ServerTlsArgs,
    /// Service name to register under.
    #[arg(long, value_name = "NAME", default_value = "helloworld")]
    service: String,
    /// Lease TTL in seconds: how long the key outlives a crashed server.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    ttl: u64,
    /// How long to keep serving after deregistering, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    drain_ms: u64,
    /// Weight for weighted balancing.
    #[arg(long, value_name = "N", default_value_t = Instance::DEFAULT_WEIGHT)]
    weight: u32,
    /// Version of this server, free text.
    #[arg(long, value_name = "V")]
    version: Option<String>,
    /// Key prefix in etcd. Defaults to the format's own (`/services`).
    #[arg(long, value_name = "PREFIX")]
    namespace: Option<String>,
    /// How long to wait for etcd at startup, in milliseconds, retrying the
    /// registration meanwhile. 0 fails at once when etcd cannot be reached.
    #[arg(long, value_name = "N", default_value_t = 0)]
    etcd_wait_ms: u64,
    /// Registry format: native, etcd-naming, kratos, go-zero, plain or
    /// versioned-json.
    #[arg(long, value_name = "NAME", default_value = "native", value_parser = format_parser())]
    format: String,
    /// Fraction of SayHello calls answered UNAVAILABLE ("injected failure"),
    /// from 0.0 to 1.0.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_error_rate,
          allow_negative_numbers = true)]
    error_rate: f64,
    /// Milliseconds added to every reply.
    #[arg(long, value_name = "N", default_value_t = 0)]
    delay_ms: u64,
    /// Zone of this server, registered as the metadata `zone=Z` (clients
    /// with `--zone` prefer their own zone's servers).
    #[arg(long, value_name = "Z")]
    zone: Option<String>,
    #[command(flatten)]
    metrics: metrics_args::MetricsArgs,
}

/// `--error-rate`: a number within 0.0..=1.0.
fn parse_error_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number; expected 0.0 to 1.0"))?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!("{rate} is out of range; expected 0.0 to 1.0"));
    }
    Ok(rate)
}

/// The health service names served: the whole server, and the greeter.
const HEALTH_SERVICES: [&str; 2] = ["", <GreeterServer<Greeting> as NamedService>::NAME];

/// Accepts the names of `tonic_etcd::codec::FORMATS`.
fn format_parser() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(tonic_etcd::codec::FORMATS)
}

/// Greets with the advertised address, so that clients see who answered;
/// fails `error_rate` of the calls and delays each reply by `delay`.
#[derive(Debug)]
struct Greeting {
    advertised: String,
    error_rate: f64,
    delay: Duration,
}

#[tonic::async_trait]
impl Greeter for Greeting {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let name = request.into_inner().name;
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if self.error_rate > 0.0 && rand::random::<f64>() < self.error_rate {
            return Err(Status::unavailable("injected failure"));
        }
        Ok(Response::new(HelloReply {
            message: format!("Hello {name} from {}", self.advertised),
        }))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    cli::init_tracing();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("helloworld-server: error: {}", cli::chain(&*error));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // One stop signal for the whole run: it cuts the startup short below, and
    // later starts the graceful shutdown.
    let mut stop = Box::pin(tonic_etcd::shutdown_signal());
    // Health, served from the start; SIGUSR1 (whose default action would
    // end the process) is handled from here on.
    let (reporter, health_service) = tonic_health::server::health_reporter();
    for service in HEALTH_SERVICES {
        reporter
            .set_service_status(service, ServingStatus::Serving)
            .await;
    }
    let stopping = Arc::new(AtomicBool::new(false));
    toggle_health_on_sigusr1(reporter.clone(), stopping.clone())?;
    args.metrics.install()?;

    // Bind before registering: a client that discovers us can connect at once.
    let incoming = TcpIncoming::bind(args.listen)
        .map_err(|error| format!("cannot listen on {}: {error}", args.listen))?
        .with_nodelay(Some(true));
    let listening = incoming.local_addr()?;
    let advertised = args.advertise.unwrap_or_else(|| {
        if listening.ip().is_unspecified() {
            eprintln!(
                "helloworld-server: warning: advertising {listening}, which remote \
                 clients cannot reach; pass --advertise HOST:PORT"
            );
        }
        listening.to_string()
    });

    let mut instance = Instance::new(args.service, advertised.as_str())?.with_weight(args.weight);
    if let Some(version) = args.version {
        instance = instance.with_version(version);
    }
    if let Some(zone) = &args.zone {
        instance = instance.with_metadata(tonic_etcd::Locality::METADATA_KEY, zone.as_str());
    }
    let instance = args.tls.annotate(instance);
    instance.validate()?;

    let wait = Duration::from_millis(args.etcd_wait_ms);
    let registering = async {
        let etcd = args.etcd.connect().await?;
        let codec = tonic_etcd::codec::by_name(&args.format).expect("clap checked the format");
        let mut registrar = Registrar::new(etcd)
            .codec_arc(codec)
            .ttl(Duration::from_secs(args.ttl))
            .startup_timeout(wait);
        if let Some(namespace) = args.namespace {
            registrar = registrar.namespace(namespace);
        }
        let registration = registrar
            .register(instance)
            .await
            .map_err(|error| registration_failed(error, &args.etcd.endpoints(), wait))?;
        Ok::<_, Box<dyn std::error::Error>>(registration)
    };
    let registration = tokio::select! {
        result = registering => result?,
        () = &mut stop => {
            // Still waiting for etcd (--etcd-wait-ms). At worst, an attempt cut
            // short leaves a key that expires with its lease.
            eprintln!("helloworld-server: SIGINT or SIGTERM before registering; stopped");
            return Ok(());
        }
    };
    let key = registration.key().to_owned();
    // The registration follows the greeter's health (SIGUSR1 sets both).
    health::follow(&registration, &reporter, HEALTH_SERVICES[1]);
    eprintln!(
        "helloworld-server: listening on {listening}, registered {key} (ttl {}s)",
        args.ttl
    );

    // On the signal: NOT_SERVING, then deregister at once, keep serving for
    // the drain so that clients see the removal, then let tonic finish the
    // requests in flight.
    let drain = Duration::from_millis(args.drain_ms);
    let signal = {
        let key = key.clone();
        async move {
            stop.await;
            stopping.store(true, Ordering::SeqCst);
            eprintln!(
                "helloworld-server: SIGINT or SIGTERM: NOT_SERVING, deregistering {key}, draining {}ms",
                drain.as_millis()
            );
        }
    };
    let shutdown = health::shutdown_on(&registration, &reporter, HEALTH_SERVICES, signal, drain);
    let greeting = Greeting {
        advertised,
        error_rate: args.error_rate,
        delay: Duration::from_millis(args.delay_ms),
    };
    args.tls
        .server(Server::builder())?
        .add_service(health_service)
        .add_service(GreeterServer::new(greeting))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;

    // Already done on the signal, unless etcd failed then: one more try, and
    // the error if that fails too (the key then expires with its lease).
    if let Err(error) = registration.deregister().await {
        eprintln!(
            "helloworld-server: warning: {key} not deregistered: {}; it expires with its lease",
            cli::chain(&error)
        );
    }
    eprintln!("helloworld-server: stopped");
    Ok(())
}

/// SIGUSR1 toggles every service of [`HEALTH_SERVICES`] between SERVING and
/// NOT_SERVING, saying so on stderr; ignored once stopping.
fn toggle_health_on_sigusr1(
    reporter: HealthReporter,
    stopping: Arc<AtomicBool>,
) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigusr1 = signal(SignalKind::user_defined1())?;
    tokio::spawn(async move {
        let mut serving = true;
        while sigusr1.recv().await.is_some() {
            if stopping.load(Ordering::SeqCst) {
                continue;
            }
            serving = !serving;
            let (status, name) = if serving {
                (ServingStatus::Serving, "SERVING")
            } else {
                (ServingStatus::NotServing, "NOT_SERVING")
            };
            for service in HEALTH_SERVICES {
                reporter.set_service_status(service, status).await;
            }
            eprintln!("health: {name}");
        }
    });
    Ok(())
}

/// The registration error, with a hint when etcd could not be reached.
fn registration_failed(error: Error, endpoints: &str, wait: Duration) -> String {
    if let Some(remedy) = etcd_args::remedy(&error) {
        return remedy;
    }
    match error {
        Error::Etcd(_) | Error::Timeout(_) if wait.is_zero() => format!(
            "cannot register with etcd at {endpoints}: {}; \
             is etcd running? (--etcd-wait-ms N waits for it)",
            cli::chain(&error)
        ),
        Error::Etcd(_) | Error::Timeout(_) => format!(
            "cannot register with etcd at {endpoints} within {}ms: {}",
            wait.as_millis(),
            cli::chain(&error)
        ),
        error => cli::chain(&error),
    }
}
