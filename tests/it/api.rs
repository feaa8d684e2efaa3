//! The API paths of the crate: a balancer fed by any stream (a static list, with
//! and without an end), tonic's channel fed by one, the discovery view from
//! the balancer, and the startup deadline of a discovery against an etcd that
//! never answers (a frozen member, a silent listener) or refuses, and what
//! happens without one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tonic::transport::Channel;
use tonic::Code;
use tonic_etcd::{
    balance, endpoint::default_endpoint, Balancer, Change, Discovery, Error, Instance, Policy,
};

use crate::support::balancer::{hello, register, split, Greeter};
use crate::support::{self, wait_until, Etcd, Result};

/// How much later than its deadline a start may fail on this shared machine.
const SLACK: Duration = Duration::from_millis(1500);

/// The change that inserts `greeter` as an instance of `service`, keyed by
/// its address.
fn insert(greeter: &Greeter, service: &str) -> Change<String, Instance> {
    let instance = Instance::new(service, greeter.addr.to_string()).unwrap();
    Change::Insert(greeter.addr.to_string(), instance)
}

/// The keys of the balancer's endpoints, in order.
fn keys(balancer: &Balancer) -> Vec<String> {
    balancer.endpoints().into_iter().map(|e| e.key).collect()
}

#[tokio::test]
async fn a_balancer_fed_by_a_static_list_reaches_its_servers() -> Result {
    support::init_tracing();
    let greeters = [Greeter::start(), Greeter::start(), Greeter::start()];
    let list: Vec<_> = greeters.iter().map(|g| insert(g, "static")).collect();
    // A pending tail: the list is all there is, and the stream stays open.
    let changes = stream::iter(list).chain(stream::pending());
    let balancer = Balancer::builder(Policy::RoundRobin)
        .service("static")
        .build(changes);

    // The list was ready, so it is applied before `build` returns.
    assert_eq!(balancer.endpoints().len(), 3);
    assert!(balancer.endpoints().iter().all(|e| e.ready));
    assert_eq!(balancer.service(), "static");
    assert!(balancer.discovery().is_none(), "no discovery behind a list");

    let counts = split(&balancer, 30).await;
    let expected: BTreeMap<String, usize> =
        greeters.iter().map(|g| (g.addr.to_string(), 10)).collect();
    assert_eq!(counts, expected, "strict rotation over the three");
    assert!(greeters.iter().all(|g| g.served() == 10));
    Ok(())
}

#[tokio::test]
async fn a_fed_stream_that_ends_keeps_the_last_set() -> Result {
    support::init_tracing();
    let (a, b) = (Greeter::start(), Greeter::start());
    // Insert a, insert b, remove a, and the end of the stream.
    let changes = stream::iter([
        insert(&a, "ends"),
        insert(&b, "ends"),
        Change::Remove(a.addr.to_string()),
    ]);
    let balancer = Balancer::builder(Policy::RoundRobin).build(changes);
    assert_eq!(keys(&balancer), [b.addr.to_string()]);

    // Let the driver see the end, then use the balancer: b is still there.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let counts = split(&balancer, 6).await;
    assert_eq!(counts, BTreeMap::from([(b.addr.to_string(), 6)]));
    assert_eq!(keys(&balancer), [b.addr.to_string()]);
    assert_eq!(a.served(), 0);
    Ok(())
}

#[tokio::test]
async fn an_unnamed_balancer_with_nothing_fails_fast() -> Result {
    support::init_tracing();
    let balancer = Balancer::builder(Policy::RoundRobin).build(stream::pending());
    assert_eq!(balancer.service(), "");
    let started = Instant::now();
    let status = hello(&balancer).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        status.message(),
        "no ready endpoint (0 known, 0 ejected)",
        "{status:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    Ok(())
}

#[tokio::test]
async fn tonic_channel_fed_by_a_static_list_reaches_its_servers() -> Result {
    support::init_tracing();
    let (a, b) = (Greeter::start(), Greeter::start());
    let changes = stream::iter([insert(&a, "tonic"), insert(&b, "tonic")]).chain(stream::pending());
    let channel: Channel = balance::tonic_channel(changes, default_endpoint);
    let mut answered = Vec::new();
    for _ in 0..20 {
        answered.push(hello(&channel).await?);
    }
    let addrs = [a.addr.to_string(), b.addr.to_string()];
    assert!(
        answered.iter().all(|addr| addrs.contains(addr)),
        "{answered:?}"
    );
    assert_eq!(a.served() + b.served(), 20);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balancer_from_a_discovery_keeps_its_view() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("view");
    let (a, b, c) = (Greeter::start(), Greeter::start(), Greeter::start());
    let _ra = register(&client, &service, &a, 1).await;
    let _rb = register(&client, &service, &b, 1).await;

    // The headline constructor.
    let balancer = Discovery::new(client.clone(), &service)
        .balancer(Policy::RoundRobin)
        .await?;
    assert_eq!(balancer.service(), service);
    let view = balancer.discovery().expect("fed by a discovery").clone();
    assert_eq!(view.service(), service);
    assert_eq!(view.prefix(), format!("/services/{service}/"));
    assert_eq!(view.snapshot().len(), 2);
    assert!(view.health().borrow().is_connected());
    assert_eq!(balancer.endpoints().len(), 2, "the initial Get, at once");
    let counts = split(&balancer, 10).await;
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), [5, 5]);

    // The builder, with a name of its own: the view is the discovery's.
    let named = Balancer::builder(Policy::P2c)
        .service("greeter")
        .discover(Discovery::new(client.clone(), &service))
        .await?;
    assert_eq!(named.service(), "greeter");
    assert_eq!(
        named.discovery().map(|v| v.service()),
        Some(service.as_str())
    );

    // A third server: the balancers and the view follow.
    let _rc = register(&client, &service, &c, 1).await;
    wait_until(Duration::from_secs(5), "three endpoints", || {
        let seen = balancer.endpoints().len() == 3 && named.endpoints().len() == 3;
        async move { seen }
    })
    .await;
    assert_eq!(view.snapshot().len(), 3);
    let counts = split(&balancer, 9).await;
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), [3, 3, 3]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_channel_from_a_discovery_reaches_its_servers() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("tonic-discovery");
    let greeter = Greeter::start();
    let _registration = register(&client, &service, &greeter, 1).await;

    let channel = Discovery::new(client, &service).tonic_channel().await?;
    for _ in 0..5 {
        assert_eq!(hello(&channel).await?, greeter.addr.to_string());
    }
    assert_eq!(greeter.served(), 5);
    Ok(())
}

/// Sends SIGCONT on drop, so that a frozen member does not outlive a failed
/// assertion stopped (the fixture kills it anyway).
struct Frozen(Pid);

impl Frozen {
    /// Stops `etcd` with SIGSTOP and waits until every thread of it has
    /// stopped: the signal is only queued when `kill` returns, and a thread
    /// running on another CPU could still answer a request.
    async fn freeze(etcd: &Etcd) -> Frozen {
        let pid = etcd.pid().expect("etcd runs");
        let frozen = Frozen(Pid::from_raw(pid as i32));
        kill(frozen.0, Signal::SIGSTOP).expect("SIGSTOP etcd");
        wait_until(Duration::from_secs(5), "etcd to stop", || {
            let stopped = all_threads_stopped(pid);
            async move { stopped }
        })
        .await;
        frozen
    }
}

/// Whether every thread of `pid` is stopped (state `T` in its `stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // `pid (comm) state ...`: the state follows the last `)`.
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
        })
    })
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

/// Asserts that `result` is `Error::Timeout(limit)`, reached within
/// `limit` + [`SLACK`] of `started`.
fn assert_timed_out<T: std::fmt::Debug>(
    what: &str,
    result: tonic_etcd::Result<T>,
    limit: Duration,
    started: Instant,
) {
    let took = started.elapsed();
    eprintln!("{what}: failed after {took:?} (deadline {limit:?})");
    match result {
        Err(Error::Timeout(deadline)) => assert_eq!(deadline, limit, "{what}"),
        other => panic!("{what}: expected Error::Timeout({limit:?}), got {other:?}"),
    }
    // tokio's timers never fire early; allow a millisecond of rounding.
    assert!(
        took + Duration::from_millis(1) >= limit,
        "{what}: failed before its deadline, after {took:?}"
    );
    assert!(
        took < limit + SLACK,
        "{what}: took {took:?}, deadline {limit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_etcd_fails_the_start_at_the_default_deadline() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    // A connection that was working when etcd froze.
    client.get("probe", None).await?;
    let _frozen = Frozen::freeze(&etcd).await;

    let started = Instant::now();
    let result = Discovery::new(client, support::unique("frozen"))
        .changes()
        .await;
    assert_timed_out(
        "changes()",
        result,
        Discovery::DEFAULT_STARTUP_TIMEOUT,
        started,
    );
    assert_eq!(Discovery::DEFAULT_STARTUP_TIMEOUT, Duration::from_secs(3));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_etcd_fails_every_start_at_a_custom_deadline() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    client.get("probe", None).await?;
    let _frozen = Frozen::freeze(&etcd).await;
    let limit = Duration::from_millis(700);
    let discovery = Discovery::new(client, support::unique("frozen")).startup_timeout(limit);

    let started = Instant::now();
    let result = discovery.clone().changes().await;
    assert_timed_out("changes()", result, limit, started);

    let started = Instant::now();
    let result = discovery.clone().balancer(Policy::RoundRobin).await;
    assert_timed_out("balancer()", result, limit, started);

    let started = Instant::now();
    let result = discovery.clone().tonic_channel().await;
    assert_timed_out("tonic_channel()", result, limit, started);

    let started = Instant::now();
    let result = Balancer::builder(Policy::P2c).discover(discovery).await;
    assert_timed_out("BalancerBuilder::discover()", result, limit, started);
    Ok(())
}

/// A client of a listener that accepts connections and holds them, silent,
/// like a black-holed etcd.
async fn silent_etcd() -> Result<etcd_client::Client> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    Ok(tonic_etcd::connect([endpoint]).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_never_answers_fails_the_start_at_the_deadline() -> Result {
    support::init_tracing();
    let client = silent_etcd().await?;

    let started = Instant::now();
    let result = Discovery::new(client, "silent").changes().await;
    assert_timed_out(
        "changes()",
        result,
        Discovery::DEFAULT_STARTUP_TIMEOUT,
        started,
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_deadline_a_silent_etcd_holds_the_start() -> Result {
    support::init_tracing();
    let client = silent_etcd().await?;
    // What the deadline is for: with none (Duration::MAX, which must not
    // overflow), the start is still waiting long after any default would
    // have fired.
    let start = Discovery::new(client, "silent")
        .startup_timeout(Duration::MAX)
        .changes();
    let waited = tokio::time::timeout(Duration::from_secs(5), start).await;
    assert!(waited.is_err(), "still waiting after 5 s: {waited:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_that_refuses_fails_the_start_before_the_deadline() -> Result {
    support::init_tracing();
    let mut etcd = Etcd::start().await;
    let client = etcd.client().await;
    etcd.kill().await;

    let started = Instant::now();
    let result = Discovery::new(client, support::unique("refused"))
        .changes()
        .await;
    let took = started.elapsed();
    eprintln!("refused: failed after {took:?}");
    match result {
        Err(Error::Etcd(_)) => {}
        other => panic!("expected Error::Etcd, got {other:?}"),
    }
    assert!(
        took < Discovery::DEFAULT_STARTUP_TIMEOUT,
        "a refusal is an answer: took {took:?}"
    );
    Ok(())
}
