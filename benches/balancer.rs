//! The balancer benchmarks of `make bench`: how fast an idle client drops a
//! deregistered server, what balancing costs per request, and the tail under
//! one slow server, each next to a baseline measured in the same run: a plain
//! tonic `Channel` and tonic's `balance_channel`, fed by the same discovery.
//!
//! Run with `cargo bench --bench balancer` (or `make bench`). Without `--bench`
//! (as under `cargo test --all-targets`) it exits at once: benchmarks never run
//! in CI. Output: a markdown section on stdout; `--out FILE` also writes it
//! there. `--quick` runs smaller sizes (for trying the harness out).
//!
//! The client runs on a single-threaded runtime on the main thread; the
//! Greeter servers run on another thread with their own runtime, so that on a
//! small machine the client's cost is not hidden behind the servers'.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{median, median_ci, ms, quantile, rate, section, us, us1, Args, Met, Row};
use etcd_client::{EventType, WatchOptions};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Server as TonicServer};
use tonic::{Request, Response, Status};
use tonic_etcd::codec::{Codec, Native};
use tonic_etcd::endpoint::default_endpoint;
use tonic_etcd::{Balancer, Discovery, Instance, Policy, Registrar, Registration};

pub mod hello {
    tonic::include_proto!("helloworld");
}

use hello::greeter_client::GreeterClient;
use hello::greeter_server::{Greeter, GreeterServer};
use hello::{HelloReply, HelloRequest};

/// Requests in flight in the concurrent runs.
const IN_FLIGHT: usize = 64;
/// The extra delay of the slow server of row 5.
const SLOW: Duration = Duration::from_millis(20);

/// The system allocator, counting the allocations of each thread (without
/// atomics, so that the client and server threads do not contend): what a
/// call allocates on the client thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to `System` unchanged; only a thread-local
// counter (const-initialised, no destructor) is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made so far by the calling thread.
fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// ---------------------------------------------------------------------------
// Servers

struct Hello {
    addr: SocketAddr,
    delay: Duration,
    served: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl Greeter for Hello {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.served.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(HelloReply {
            message: format!("Hello {} from {}", request.into_inner().name, self.addr),
        }))
    }
}

/// A server's connection, counted among its server's open connections until
/// the server drops it (when the client closes it).
struct Counted {
    stream: TcpStream,
    open: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Connected for Counted {
    type ConnectInfo = ();

    fn connect_info(&self) {}
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// One Greeter server, as the benchmarks see it.
#[derive(Clone)]
struct Server {
    addr: SocketAddr,
    served: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
}

impl Server {
    fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }

    fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    fn instance(&self, service: &str) -> Instance {
        Instance::new(service, self.addr.to_string()).unwrap()
    }
}

/// Greeter servers on 127.0.0.1, one per delay, all served by one thread with
/// its own single-threaded runtime. Stopped on drop.
struct Servers {
    list: Vec<Server>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Servers {
    fn start(delays: &[Duration]) -> Servers {
        let mut list = Vec::new();
        let mut serving = Vec::new();
        for &delay in delays {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let server = Server {
                addr: listener.local_addr().unwrap(),
                served: Arc::new(AtomicUsize::new(0)),
                open: Arc::new(AtomicUsize::new(0)),
            };
            serving.push((listener, delay, server.clone()));
            list.push(server);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            pin_to_cpu(1);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                for (listener, delay, server) in serving {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let open = server.open.clone();
                    let incoming = futures_util::stream::unfold(listener, move |listener| {
                        let open = open.clone();
                        async move {
                            let next = listener.accept().await.map(|(stream, _)| {
                                let _ = stream.set_nodelay(true);
                                open.fetch_add(1, Ordering::SeqCst);
                                Counted { stream, open }
                            });
                            Some((next, listener))
                        }
                    });
                    let hello = Hello {
                        addr: server.addr,
                        delay,
                        served: server.served,
                    };
                    tokio::spawn(
                        TonicServer::builder()
                            .add_service(GreeterServer::new(hello))
                            .serve_with_incoming(incoming),
                    );
                }
                let _ = stopped.await;
            });
            // Dropping the runtime closes the listeners and every connection.
            drop(runtime);
        });
        Servers {
            list,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Clients

/// A Greeter client over one of the compared services.
#[derive(Clone)]
enum Client {
    Channel(GreeterClient<Channel>),
    Balancer(GreeterClient<Balancer>),
}

impl Client {
    fn channel(channel: Channel) -> Client {
        Client::Channel(GreeterClient::new(channel))
    }

    fn balancer(balancer: Balancer) -> Client {
        Client::Balancer(GreeterClient::new(balancer))
    }

    async fn hello(&mut self) -> Result<(), Status> {
        let request = HelloRequest {
            name: "bench".into(),
        };
        match self {
            Client::Channel(client) => client.say_hello(request).await?,
            Client::Balancer(client) => client.say_hello(request).await?,
        };
        Ok(())
    }

    /// One call, bounded: for the setup steps, where a balanced channel
    /// without endpoints would wait forever.
    async fn hello_within(&mut self, limit: Duration) -> Result<(), Status> {
        tokio::time::timeout(limit, self.hello())
            .await
            .map_err(|_| Status::deadline_exceeded("no answer"))?
    }
}

/// Throughput and latency of one run.
#[derive(Debug, Clone, Copy)]
struct Run {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    /// CPU time of the client thread per call.
    cpu: Duration,
    /// Allocations on the client thread per call.
    allocs: f64,
}

/// CPU time of the calling thread so far (the client runtime runs every
/// client task, tonic's and hyper's included, on the main thread).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

impl Run {
    fn of(mut latencies: Vec<Duration>, elapsed: Duration, cpu: Duration, allocs: u64) -> Run {
        let calls = latencies.len().max(1);
        Run {
            allocs: allocs as f64 / calls as f64,
            per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: quantile(&mut latencies, 0.5),
            p99: quantile(&mut latencies, 0.99),
            cpu: cpu / calls as u32,
        }
    }

    /// The median of each figure over repeated runs.
    fn median(runs: &[Run]) -> Run {
        let pick = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
        Run {
            per_second: pick(|r| r.per_second),
            p50: Duration::from_secs_f64(pick(|r| r.p50.as_secs_f64())),
            p99: Duration::from_secs_f64(pick(|r| r.p99.as_secs_f64())),
            cpu: Duration::from_secs_f64(pick(|r| r.cpu.as_secs_f64())),
            allocs: pick(|r| r.allocs),
        }
    }
}

/// `n` calls one after the other.
async fn sequential(client: &Client, n: usize) -> Run {
    let mut client = client.clone();
    let mut latencies = Vec::with_capacity(n);
    let (cpu, allocs) = (thread_cpu(), allocations());
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        client.hello().await.expect("call failed");
        latencies.push(t.elapsed());
    }
    Run::of(
        latencies,
        start.elapsed(),
        thread_cpu() - cpu,
        allocations() - allocs,
    )
}

/// How long a concurrent run lasts.
#[derive(Clone, Copy)]
enum Budget {
    Calls(usize),
    For(Duration),
}

/// Calls with [`IN_FLIGHT`] of them in flight at all times, each task sending
/// its next call as soon as its last one is answered.
async fn concurrent(client: &Client, budget: Budget) -> Run {
    let remaining = Arc::new(AtomicUsize::new(match budget {
        Budget::Calls(n) => n,
        Budget::For(_) => usize::MAX,
    }));
    let (cpu, allocs) = (thread_cpu(), allocations());
    let start = Instant::now();
    let deadline = match budget {
        Budget::Calls(_) => None,
        Budget::For(d) => Some(start + d),
    };
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let mut client = client.clone();
            let remaining = remaining.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let t = Instant::now();
                    if deadline.is_some_and(|d| t >= d)
                        || remaining
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                                n.checked_sub(1)
                            })
                            .is_err()
                    {
                        break;
                    }
                    client.hello().await.expect("call failed");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    Run::of(
        latencies,
        start.elapsed(),
        thread_cpu() - cpu,
        allocations() - allocs,
    )
}

async fn register(client: &etcd_client::Client, instance: Instance) -> Registration {
    Registrar::new(client.clone())
        .ttl(Duration::from_secs(10))
        .register(instance)
        .await
        .unwrap()
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Calls through `client` until `server` has answered one (at most `tries`).
async fn reach(client: &mut Client, server: &Server, tries: usize) {
    let before = server.served();
    for _ in 0..tries {
        client
            .hello_within(Duration::from_secs(5))
            .await
            .expect("call failed");
        if server.served() > before {
            return;
        }
    }
    panic!("{} not reached in {tries} calls", server.addr);
}

// ---------------------------------------------------------------------------
// Row 2: remove latency

/// What the observer thread saw after a deregistration, measured from its
/// start.
#[derive(Default)]
struct Seen {
    gone: Option<Duration>,
    closed: Option<Duration>,
}

/// Polls, every ~100 µs from a thread of its own (so that the client runtime
/// is left idle), until `key` has left the balancer's endpoints (if a balancer
/// is given) and the server's connections are closed, or `limit` passes.
fn observe(
    start: Instant,
    balancer: Option<Balancer>,
    key: String,
    server: Server,
    limit: Duration,
) -> oneshot::Receiver<Seen> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let mut seen = Seen::default();
        loop {
            let now = start.elapsed();
            if seen.gone.is_none() {
                match &balancer {
                    Some(b) if b.endpoints().iter().any(|e| e.key == key) => {}
                    _ => seen.gone = Some(now),
                }
            }
            if seen.closed.is_none() && server.open_connections() == 0 {
                seen.closed = Some(now);
            }
            if (seen.gone.is_some() && seen.closed.is_some()) || now > limit {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        let _ = tx.send(seen);
    });
    rx
}

/// Waits for an event of type `kind` on a raw etcd watch.
async fn next_event(stream: &mut etcd_client::WatchStream, kind: EventType) {
    loop {
        let response = stream.message().await.unwrap().expect("watch ended");
        if response.events().iter().any(|e| e.event_type() == kind) {
            return;
        }
    }
}

/// Row 2: deregister → the endpoint gone from an idle client's balancer, next
/// to etcd's own delete → watch event and to tonic's balance_channel.
async fn remove_latency(etcd: &support::Etcd, rounds: usize, tonic_rounds: usize) -> Row {
    let client = etcd.client().await;
    let servers = Servers::start(&[Duration::ZERO, Duration::ZERO]);
    let (stays, leaves) = (&servers.list[0], &servers.list[1]);
    let service = support::unique("remove");
    let _stays = register(&client, stays.instance(&service)).await;
    let leaving = leaves.instance(&service);
    let key = Native.key("/services", &leaving);

    // Raw: delete → watch event with etcd-client alone.
    let mut raw = Vec::with_capacity(rounds);
    {
        let raw_key = format!("/services/{service}-raw/x");
        let mut watcher = client.clone();
        let mut stream = watcher
            .watch(raw_key.clone(), Some(WatchOptions::new()))
            .await
            .unwrap();
        let mut kv = client.clone();
        for _ in 0..rounds {
            kv.put(raw_key.clone(), Native.encode(&leaving).unwrap(), None)
                .await
                .unwrap();
            next_event(&mut stream, EventType::Put).await;
            let t = Instant::now();
            kv.delete(raw_key.clone(), None).await.unwrap();
            next_event(&mut stream, EventType::Delete).await;
            raw.push(t.elapsed());
        }
    }

    // Ours: an idle round-robin balancer over both servers; the leaving one
    // is registered, reached, left idle, then deregistered.
    let balancer = Discovery::new(client.clone(), service.as_str())
        .balancer(Policy::RoundRobin)
        .await
        .unwrap();
    let mut ours = Client::balancer(balancer.clone());
    let mut gone = Vec::with_capacity(rounds);
    let mut closed = Vec::with_capacity(rounds);
    let mut misrouted = 0;
    let mut checked = 0;
    for _ in 0..rounds {
        let registration = register(&client, leaving.clone()).await;
        wait_until("the insert", || {
            balancer.endpoints().iter().any(|e| e.key == key)
        })
        .await;
        reach(&mut ours, leaves, 4).await;
        wait_until("a connection", || leaves.open_connections() > 0).await;
        // Idle: no request in flight from here on.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let start = Instant::now();
        let seen = observe(
            start,
            Some(balancer.clone()),
            key.clone(),
            leaves.clone(),
            Duration::from_secs(5),
        );
        registration.deregister().await.unwrap();
        let seen = seen.await.unwrap();
        gone.push(seen.gone.expect("the endpoint was not removed within 5 s"));
        closed.push(seen.closed.expect("the connection stayed open for 5 s"));
        // Nothing goes to the removed server any more.
        let before = leaves.served();
        for _ in 0..4 {
            ours.hello_within(Duration::from_secs(5))
                .await
                .expect("call failed");
            checked += 1;
        }
        misrouted += leaves.served() - before;
    }
    drop(ours);
    drop(balancer);
    wait_until("the balancer's connections to close", || {
        leaves.open_connections() == 0 && stays.open_connections() == 0
    })
    .await;

    // tonic's balance_channel, idle the same way: does it let go of the
    // removed server without traffic, and does the next request go there?
    let window = Duration::from_millis(100);
    let channel = Discovery::new(client.clone(), service.as_str())
        .balance_channel()
        .await
        .unwrap();
    let mut theirs = Client::channel(channel);
    let mut idle_closed = 0;
    let mut after_request = Vec::new();
    let mut tonic_misrouted = 0;
    for _ in 0..tonic_rounds {
        let registration = register(&client, leaving.clone()).await;
        // Random picks: keep calling until the new server answers one.
        reach(&mut theirs, leaves, 1000).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
        let start = Instant::now();
        let seen = observe(start, None, key.clone(), leaves.clone(), window);
        registration.deregister().await.unwrap();
        let seen = seen.await.unwrap();
        if seen.closed.is_some() {
            idle_closed += 1;
            continue;
        }
        let before = leaves.served();
        let start = Instant::now();
        let seen = observe(
            start,
            None,
            key.clone(),
            leaves.clone(),
            Duration::from_secs(5),
        );
        theirs
            .hello_within(Duration::from_secs(5))
            .await
            .expect("call failed");
        tonic_misrouted += leaves.served() - before;
        if let Some(closed) = seen.await.unwrap().closed {
            after_request.push(closed);
        }
    }
    drop(theirs);

    let (rp50, rp99) = (quantile(&mut raw, 0.5), quantile(&mut raw, 0.99));
    let (gp50, gp99) = (quantile(&mut gone, 0.5), quantile(&mut gone, 0.99));
    let (cp50, cp99) = (quantile(&mut closed, 0.5), quantile(&mut closed, 0.99));
    let ap50 = quantile(&mut after_request, 0.5);
    Row {
        name: format!("2. remove latency, idle client, {rounds} deregistrations"),
        ours: format!(
            "gone from `endpoints()` p50 {} / p99 {}; connection closed p50 {} / p99 {}; \
             {misrouted} of {checked} later requests reached the removed server",
            ms(gp50),
            ms(gp99),
            ms(cp50),
            ms(cp99)
        ),
        baseline: format!(
            "raw delete → watch event p50 {} / p99 {}; balance_channel: connection closed \
             while idle in {idle_closed} of {tonic_rounds} ({} window), closed {} after the \
             next request, {tonic_misrouted} requests reached the removed server",
            ms(rp50),
            ms(rp99),
            ms(window),
            ms(ap50),
        ),
        goal: "p99 ≤ 5 ms, no request routed there afterwards".into(),
        met: Met::from(gp99 <= Duration::from_millis(5) && misrouted == 0),
        reading: format!(
            "the clock starts when `deregister()` is called (it stops the keepalive task, \
             then revokes the lease, which deletes the key with it in one request); the \
             endpoint leaves the balancer {} (p50) later than etcd's own delete → watch \
             delivery, with no request in flight, and its connection closes with it. tonic's \
             balanced channel applies changes only inside `poll_ready`: while idle it keeps \
             the removed server's connection open; the next request applies the queued \
             removal before it is routed, so it is not misrouted either",
            ms(gp50.saturating_sub(rp50))
        ),
    }
}

// ---------------------------------------------------------------------------
// Row 4: balancer overhead

/// One compared service.
struct Config {
    name: String,
    servers: usize,
    client: Client,
}

/// The two services of row 4, registered once: one with the first server,
/// one with all three.
async fn services(
    etcd: &etcd_client::Client,
    servers: &Servers,
) -> ([String; 2], Vec<Registration>) {
    let one = support::unique("overhead-1");
    let three = support::unique("overhead-3");
    let mut registrations = vec![register(etcd, servers.list[0].instance(&one)).await];
    for server in &servers.list {
        registrations.push(register(etcd, server.instance(&three)).await);
    }
    ([one, three], registrations)
}

/// Fresh clients of every compared service, connected and warmed up: each
/// round makes its own, with new connections, so that where their buffers
/// happen to lie in memory (which moves throughput by several per cent on
/// this kind of machine, the same way for a whole process) varies from round
/// to round instead of favouring one service for the whole run.
async fn configs(
    etcd: &etcd_client::Client,
    servers: &Servers,
    [one, three]: &[String; 2],
    warm_calls: usize,
) -> Vec<Config> {
    let plain = default_endpoint(&servers.list[0].instance(one))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut configs = vec![Config {
        name: "plain Channel".into(),
        servers: 1,
        client: Client::channel(plain),
    }];
    for (service, n) in [(one, 1), (three, 3)] {
        let channel = Discovery::new(etcd.clone(), service.as_str())
            .balance_channel()
            .await
            .unwrap();
        configs.push(Config {
            name: "balance_channel".into(),
            servers: n,
            client: Client::channel(channel),
        });
    }
    for policy in Policy::ALL {
        for (service, n) in [(one, 1), (three, 3)] {
            let balancer = Discovery::new(etcd.clone(), service.as_str())
                .balancer(policy)
                .await
                .unwrap();
            configs.push(Config {
                name: policy.to_string(),
                servers: n,
                client: Client::balancer(balancer),
            });
        }
    }
    for config in &mut configs {
        // Connect, and let tonic's channel take in its endpoints.
        for server in &servers.list[..config.servers] {
            reach(&mut config.client, server, 1000).await;
        }
        sequential(&config.client, warm_calls).await;
    }
    configs
}

/// Row 4: sequential and concurrent calls through each service, in rounds
/// that alternate between them; the median of each figure over the rounds.
async fn overhead(
    etcd: &support::Etcd,
    rounds: usize,
    seq_calls: usize,
    conc_calls: usize,
) -> (Vec<Row>, String) {
    let client = etcd.client().await;
    let servers = Servers::start(&[Duration::ZERO; 3]);
    let (services, registrations) = services(&client, &servers).await;
    let mut names: Vec<(String, usize)> = Vec::new();
    let mut seq: Vec<Vec<Run>> = Vec::new();
    let mut conc: Vec<Vec<Run>> = Vec::new();
    for round in 0..rounds {
        eprintln!("  overhead round {}/{rounds}…", round + 1);
        let configs = configs(&client, &servers, &services, seq_calls / 4).await;
        if names.is_empty() {
            names = configs
                .iter()
                .map(|c| (c.name.clone(), c.servers))
                .collect();
            seq = vec![Vec::new(); configs.len()];
            conc = vec![Vec::new(); configs.len()];
        }
        // Each round starts with another service, so that none is always
        // measured first or last.
        for k in 0..configs.len() {
            let i = (k + round * 3) % configs.len();
            seq[i].push(sequential(&configs[i].client, seq_calls).await);
            conc[i].push(concurrent(&configs[i].client, Budget::Calls(conc_calls)).await);
        }
    }
    let configs = names;
    for r in registrations {
        r.deregister().await.unwrap();
    }

    let medians =
        |rounds: &[Vec<Run>]| -> Vec<Run> { rounds.iter().map(|r| Run::median(r)).collect() };
    let (seq_median, conc_median) = (medians(&seq), medians(&conc));
    let mut details = String::new();
    let _ = writeln!(
        details,
        "Row 4 in detail (medians of {rounds} rounds; per service and round, {seq_calls} \
         sequential calls, then {conc_calls} calls with {IN_FLIGHT} in flight; client CPU is \
         the client thread's CPU time per call, tonic's and hyper's tasks included, and \
         allocations/call what that thread allocates per call):\n"
    );
    let _ = writeln!(
        details,
        "| service | servers | sequential req/s | p50 | p99 | client CPU/call | allocations/call | \
         {IN_FLIGHT} in flight req/s | p50 | p99 | client CPU/call | allocations/call |"
    );
    let _ = writeln!(details, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, (name, servers)) in configs.iter().enumerate() {
        let (a, b) = (&seq_median[i], &conc_median[i]);
        let _ = writeln!(
            details,
            "| {name} | {servers} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {:.1} |",
            rate(a.per_second),
            us(a.p50),
            us(a.p99),
            us1(a.cpu),
            a.allocs,
            rate(b.per_second),
            us(b.p50),
            us(b.p99),
            us1(b.cpu),
            b.allocs,
        );
    }

    let find = |name: &str, n: usize| {
        configs
            .iter()
            .position(|(c, servers)| c == name && *servers == n)
            .unwrap()
    };
    let plain = find("plain Channel", 1);
    let mut rows = Vec::new();
    for (mode, rounds, runs) in [
        ("sequential", &seq, &seq_median),
        ("64 in flight", &conc, &conc_median),
    ] {
        // The median of the per-round ratios: the runs of one round are
        // a fraction of a second apart, so background noise mostly cancels
        // out. With its distribution-free 95 % confidence interval.
        let ratio = |a: usize, b: usize| {
            median_ci(
                rounds[a]
                    .iter()
                    .zip(&rounds[b])
                    .map(|(x, y)| x.per_second / y.per_second)
                    .collect(),
            )
        };
        for n in [1, 3] {
            let tonic = find("balance_channel", n);
            let ours: Vec<(Policy, usize)> = Policy::ALL
                .into_iter()
                .map(|p| (p, find(p.name(), n)))
                .collect();
            let to_plain: Vec<f64> = ours.iter().map(|&(_, i)| ratio(i, plain).1).collect();
            let to_tonic_ci: Vec<(f64, f64, f64)> =
                ours.iter().map(|&(_, i)| ratio(i, tonic)).collect();
            let to_tonic: Vec<f64> = to_tonic_ci.iter().map(|ci| ci.1).collect();
            let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
            // "Ahead" counts only where the whole confidence interval is:
            // a median above 1.00 inside an interval that holds 1.00 is a tie.
            let ahead = to_tonic_ci.iter().filter(|ci| ci.0 > 1.0).count();
            let behind = to_tonic_ci.iter().filter(|ci| ci.2 < 1.0).count();
            let met = if n == 1 && min(&to_plain) < 0.95 || behind > 0 {
                Met::No
            } else if ahead == ours.len() {
                Met::Yes
            } else {
                Met::Tie
            };
            let ours_text = ours
                .iter()
                .enumerate()
                .map(|(k, &(p, i))| {
                    let (low, mid, high) = to_tonic_ci[k];
                    format!(
                        "{p} {}, {} CPU/call ({:.2}× plain, {mid:.2}× balance_channel, \
                         95 % CI {low:.2}–{high:.2})",
                        rate(runs[i].per_second),
                        us1(runs[i].cpu),
                        to_plain[k],
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let baseline = format!(
                "balance_channel {}, {} CPU/call; plain Channel (1 server) {}, {} CPU/call",
                rate(runs[tonic].per_second),
                us1(runs[tonic].cpu),
                rate(runs[plain].per_second),
                us1(runs[plain].cpu),
            );
            let goal = if n == 1 {
                "≥ 0.95× plain Channel, ahead of balance_channel"
            } else {
                "ahead of balance_channel"
            };
            let cpu_ours: Vec<f64> = ours
                .iter()
                .map(|&(_, i)| runs[i].cpu.as_secs_f64() * 1e6)
                .collect();
            let cpu_mean = cpu_ours.iter().sum::<f64>() / cpu_ours.len() as f64;
            rows.push(Row {
                name: format!(
                    "4. balancer overhead, {n} server{}, {mode}",
                    if n == 1 { "" } else { "s" }
                ),
                ours: ours_text,
                baseline,
                goal: goal.into(),
                met,
                reading: format!(
                    "our policies run at {:.2}–{:.2}× balance_channel's throughput and \
                     {:.2}–{:.2}× the plain Channel's (medians of per-round ratios); \
                     measurably ahead of balance_channel (95 % CI above 1.00) with {ahead} \
                     of {} policies, measurably behind with {behind}; the client spends \
                     {:+.1} µs of CPU per call against balance_channel and {:+.1} µs against \
                     the plain Channel",
                    min(&to_tonic),
                    to_tonic.iter().copied().fold(0.0, f64::max),
                    min(&to_plain),
                    to_plain.iter().copied().fold(0.0, f64::max),
                    ours.len(),
                    cpu_mean - runs[tonic].cpu.as_secs_f64() * 1e6,
                    cpu_mean - runs[plain].cpu.as_secs_f64() * 1e6,
                ),
            });
        }
    }
    (rows, details)
}

// ---------------------------------------------------------------------------
// Row 5: tail under a slow instance

/// Row 5: three servers, one of them 20 ms slower; the p99 of p2c, round
/// robin and tonic's balance_channel under concurrent load.
async fn slow_instance(etcd: &support::Etcd, warm: Duration, measure: Duration) -> Row {
    let client = etcd.client().await;
    let servers = Servers::start(&[Duration::ZERO, Duration::ZERO, SLOW]);
    let slow = &servers.list[2];
    let service = support::unique("tail");
    let mut registrations = Vec::new();
    for server in &servers.list {
        registrations.push(register(&client, server.instance(&service)).await);
    }
    let mut results = Vec::new();
    for name in ["p2c", "round-robin", "balance_channel"] {
        let discovery = Discovery::new(client.clone(), service.as_str());
        let mut client = match name {
            "balance_channel" => Client::channel(discovery.balance_channel().await.unwrap()),
            policy => Client::balancer(discovery.balancer(policy.parse().unwrap()).await.unwrap()),
        };
        // Not every server need be reached: p2c may rightly avoid the slow one.
        client
            .hello_within(Duration::from_secs(5))
            .await
            .expect("call failed");
        concurrent(&client, Budget::For(warm)).await;
        let before = (
            slow.served(),
            servers.list.iter().map(Server::served).sum::<usize>(),
        );
        let run = concurrent(&client, Budget::For(measure)).await;
        let after = (
            slow.served(),
            servers.list.iter().map(Server::served).sum::<usize>(),
        );
        let share = (after.0 - before.0) as f64 / (after.1 - before.1).max(1) as f64;
        results.push((name, run, share));
    }
    for r in registrations {
        r.deregister().await.unwrap();
    }
    let text = |name: &str| {
        let (_, run, share) = results.iter().find(|(n, ..)| *n == name).unwrap();
        format!(
            "{name} p99 {} (p50 {}, {}, {:.1} % to the slow server)",
            ms(run.p99),
            ms(run.p50),
            rate(run.per_second),
            share * 100.0
        )
    };
    let p99 = |name: &str| results.iter().find(|(n, ..)| *n == name).unwrap().1.p99;
    Row {
        name: format!(
            "5. tail under a slow instance (1 of 3 servers +20 ms), {IN_FLIGHT} in flight, {:.0} s",
            measure.as_secs_f64()
        ),
        ours: format!("{}; {}", text("p2c"), text("round-robin")),
        baseline: text("balance_channel"),
        goal: "none set; p2c's p99 below balance_channel's".into(),
        met: Met::from(p99("p2c") < p99("balance_channel")),
        reading: "round robin and tonic's random pick send about a third of the requests to \
                  the slow server, so their p99 is its 20 ms; p2c compares peak-EWMA response \
                  time × requests in flight and sends it only what the fast servers' queues \
                  make worth it"
            .into(),
    }
}

/// Keeps the calling thread on one CPU (if the machine has it): the client
/// and the servers each get their own, so that the scheduler moving them
/// around adds no noise to the comparisons.
fn pin_to_cpu(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        // Not fatal: a machine with one CPU, or a restricted cgroup.
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

fn main() {
    let Some(args) = Args::parse() else {
        return;
    };
    pin_to_cpu(0);
    let quick = args.quick;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let text = runtime.block_on(async {
        let etcd = support::Etcd::start().await;
        let mut rows = Vec::new();
        let mut details = String::new();
        if args.runs(2) {
            eprintln!("remove latency…");
            rows.push(
                remove_latency(
                    &etcd,
                    if quick { 50 } else { 300 },
                    if quick { 10 } else { 50 },
                )
                .await,
            );
        }
        if args.runs(4) {
            eprintln!("balancer overhead…");
            let (overhead_rows, overhead_details) = if quick {
                overhead(&etcd, 4, 100, 1_000).await
            } else {
                overhead(&etcd, 100, 300, 3_000).await
            };
            rows.extend(overhead_rows);
            details = overhead_details;
        }
        if args.runs(5) {
            eprintln!("tail under a slow instance…");
            rows.push(
                slow_instance(
                    &etcd,
                    Duration::from_secs(1),
                    Duration::from_secs(if quick { 2 } else { 5 }),
                )
                .await,
            );
        }
        section(
            "Balancing",
            "The client runs on a single-threaded tokio runtime; the Greeter servers \
             (tonic, 127.0.0.1, `tcp_nodelay`) on another thread with their own \
             single-threaded runtime. Every client uses the endpoint settings of \
             `default_endpoint` (the plain Channel too) and is fed by a `Discovery` of \
             the same local etcd.",
            &rows,
            &details,
        )
    });
    args.finish(&text);
}
