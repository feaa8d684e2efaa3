//! Greeter servers for the balancer tests (`support::balancer`).
//!
//! Each [`Greeter`] runs on its own thread with its own tokio runtime, so that
//! [`Greeter::kill`] can drop everything at once, listener and open
//! connections alike, as a SIGKILL would; [`Greeter::restart`] serves again
//! on the same port. [`service`] is the greeter alone, for a test that runs
//! its own server (with TLS, say); [`hello`] sends one request through tonic's
//! balanced channel or the crate's balancer.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tonic::client::GrpcService;
use tonic::codegen::{Body, Bytes, StdError};
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use tonic_etcd::{Balancer, Instance, Registrar, Registration};

pub mod hello {
    tonic::include_proto!("helloworld");
}

use hello::greeter_client::GreeterClient;
use hello::greeter_server::GreeterServer;
use hello::{HelloReply, HelloRequest};

struct Hello {
    addr: SocketAddr,
    served: Arc<AtomicUsize>,
    delay: Duration,
}

#[tonic::async_trait]
impl hello::greeter_server::Greeter for Hello {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.served.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(HelloReply {
            message: format!("Hello {} from {}", request.into_inner().name, self.addr),
        }))
    }
}

/// The greeter service: `Hello {name} from {addr}` at once.
pub fn service(addr: SocketAddr) -> GreeterServer<impl hello::greeter_server::Greeter> {
    counting_service(addr, Duration::ZERO, Arc::default())
}

/// The greeter service answering after `delay`, counting its answers in
/// `served` (the benches' servers use it too).
pub fn counting_service(
    addr: SocketAddr,
    delay: Duration,
    served: Arc<AtomicUsize>,
) -> GreeterServer<impl hello::greeter_server::Greeter> {
    GreeterServer::new(Hello {
        addr,
        served,
        delay,
    })
}

/// A greeter server on 127.0.0.1, answering `Hello {name} from {addr}` after
/// an optional delay. Killed on drop.
pub struct Greeter {
    pub addr: SocketAddr,
    served: Arc<AtomicUsize>,
    delay: Duration,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Greeter {
    /// A server on a free port.
    pub fn start() -> Greeter {
        Greeter::with_delay(Duration::ZERO)
    }

    /// A server on a free port that waits `delay` before each answer.
    pub fn with_delay(delay: Duration) -> Greeter {
        let mut greeter = Greeter {
            addr: "127.0.0.1:0".parse().unwrap(),
            served: Arc::new(AtomicUsize::new(0)),
            delay,
            running: None,
        };
        greeter.spawn();
        greeter
    }

    /// How many requests it has answered.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Stops at once: the listener and every connection are closed, as when
    /// the process is killed.
    pub fn kill(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            let _ = stop.send(());
            thread.join().expect("server thread");
        }
    }

    /// Serves again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let (wanted, served, delay) = (self.addr, self.served.clone(), self.delay);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                // The port of a killed server may take a moment to be free.
                let deadline = Instant::now() + Duration::from_secs(5);
                let listener = loop {
                    match tokio::net::TcpListener::bind(wanted).await {
                        Ok(listener) => break listener,
                        Err(error) if Instant::now() < deadline => {
                            eprintln!("bind {wanted}: {error}; retrying");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(error) => panic!("bind {wanted}: {error}"),
                    }
                };
                let addr = listener.local_addr().unwrap();
                bound_tx.send(addr).unwrap();
                let greeter = Hello {
                    addr,
                    served,
                    delay,
                };
                let serve = Server::builder()
                    .add_service(GreeterServer::new(greeter))
                    .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)));
                tokio::select! {
                    _ = stop_rx => {}
                    result = serve => result.unwrap(),
                }
            });
            // Dropping the runtime drops every connection task with its socket.
            drop(runtime);
        });
        self.addr = bound_rx.recv().expect("server bound");
        self.running = Some((stop_tx, thread));
    }
}

impl Drop for Greeter {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Registers `greeter` as an instance of `service` with `weight`.
pub async fn register(
    etcd: &etcd_client::Client,
    service: &str,
    greeter: &Greeter,
    weight: u32,
) -> Registration {
    let instance = Instance::new(service, greeter.addr.to_string())
        .unwrap()
        .with_weight(weight);
    Registrar::new(etcd.clone())
        .ttl(Duration::from_secs(10))
        .register(instance)
        .await
        .unwrap()
}

/// One SayHello through `service` (tonic's balanced `Channel` or the crate's
/// [`Balancer`]): the address that answered, or the status; no answer within
/// 5 s is `DeadlineExceeded`. (A balanced channel with no ready endpoint waits
/// forever: hence the bound.)
pub async fn hello<S>(service: &S) -> Result<String, Status>
where
    S: GrpcService<tonic::body::Body> + Clone,
    S::Error: Into<StdError>,
    S::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <S::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    let mut client = GreeterClient::new(service.clone());
    let request = HelloRequest {
        name: "test".into(),
    };
    let reply = tokio::time::timeout(Duration::from_secs(5), client.say_hello(request))
        .await
        .map_err(|_| Status::deadline_exceeded("no answer within 5 s"))??;
    let message = reply.into_inner().message;
    Ok(message
        .rsplit(' ')
        .next()
        .expect("reply ends with the address")
        .to_owned())
}

/// Sends requests through `service` until `n` different servers have
/// answered, 10 s at most (tonic's channel picks at random); the addresses that
/// answered. Panics on a failed request.
pub async fn answering<S>(service: &S, n: usize) -> HashSet<String>
where
    S: GrpcService<tonic::body::Body> + Clone,
    S::Error: Into<StdError>,
    S::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <S::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = HashSet::new();
    while seen.len() < n {
        assert!(Instant::now() < deadline, "only {seen:?} answered");
        seen.insert(hello(service).await.expect("SayHello succeeds"));
    }
    seen
}

/// Sends `n` requests one after the other; how many each address answered.
/// Panics on a failed request.
pub async fn split(balancer: &Balancer, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let addr = hello(balancer)
            .await
            .unwrap_or_else(|status| panic!("request {i} failed: {status:?}"));
        *counts.entry(addr).or_default() += 1;
    }
    counts
}

/// Waits (10 s at most) until `check` holds for the balancer's endpoints.
pub async fn wait_endpoints(
    balancer: &Balancer,
    what: &str,
    check: impl Fn(&[tonic_etcd::balance::EndpointStatus]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let endpoints = balancer.endpoints();
        if check(&endpoints) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; endpoints: {endpoints:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How a [`Faulty`] greeter answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `Hello … from {addr}`, as [`Greeter`].
    None,
    /// `UNAVAILABLE` "injected failure" to every request.
    Fail,
    /// Accepts the connection and the request, and never answers.
    Silent,
}

/// A greeter on 127.0.0.1 whose behaviour can change at any time
/// ([`Faulty::set`]), serving on the test's runtime; stopped on drop.
pub struct Faulty {
    pub addr: SocketAddr,
    state: Arc<FaultState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct FaultState {
    fault: std::sync::Mutex<Option<Fault>>,
    /// Requests received, whatever the answer.
    received: AtomicUsize,
}

pub struct FaultyHello {
    addr: SocketAddr,
    state: Arc<FaultState>,
}

#[tonic::async_trait]
impl hello::greeter_server::Greeter for FaultyHello {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        self.state.received.fetch_add(1, Ordering::SeqCst);
        let fault = self.state.fault.lock().unwrap().unwrap_or(Fault::None);
        match fault {
            Fault::None => Ok(Response::new(HelloReply {
                message: format!("Hello {} from {}", request.into_inner().name, self.addr),
            })),
            Fault::Fail => Err(Status::unavailable("injected failure")),
            Fault::Silent => std::future::pending().await,
        }
    }
}

impl Faulty {
    /// A server on a free port, answering as `fault` says.
    pub async fn start(fault: Fault) -> Faulty {
        Faulty::serve(fault, None).await
    }

    /// As [`start`](Faulty::start), also serving `grpc.health.v1` with the
    /// reporter returned (`helloworld.Greeter` set `SERVING`).
    pub async fn with_health(fault: Fault) -> (Faulty, tonic_health::server::HealthReporter) {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_serving::<GreeterServer<FaultyHello>>().await;
        let routes = tonic::service::Routes::new(health);
        (Faulty::serve(fault, Some(routes)).await, reporter)
    }

    async fn serve(fault: Fault, routes: Option<tonic::service::Routes>) -> Faulty {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(FaultState::default());
        *state.fault.lock().unwrap() = Some(fault);
        let greeter = FaultyHello {
            addr,
            state: state.clone(),
        };
        let task = tokio::spawn(async move {
            let routes = routes
                .unwrap_or_default()
                .add_service(GreeterServer::new(greeter));
            Server::builder()
                .add_routes(routes)
                .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
                .await
                .unwrap();
        });
        Faulty { addr, state, task }
    }

    /// Answers as `fault` says from now on.
    pub fn set(&self, fault: Fault) {
        *self.state.fault.lock().unwrap() = Some(fault);
    }

    /// How many requests it has received.
    pub fn received(&self) -> usize {
        self.state.received.load(Ordering::SeqCst)
    }

    /// Its instance of `service`, keyed by its address.
    pub fn change(&self, service: &str) -> tonic_etcd::Change<String, Instance> {
        let instance = Instance::new(service, self.addr.to_string()).unwrap();
        tonic_etcd::Change::Insert(self.addr.to_string(), instance)
    }
}

impl Drop for Faulty {
    fn drop(&mut self) {
        self.task.abort();
    }
}
