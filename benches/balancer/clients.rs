//! The clients compared, and the runs that measure them: sequential calls and
//! calls with [`IN_FLIGHT`] in flight; plus the setup steps the rows share.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::Status;
use tonic_etcd::{Balancer, Instance, Registrar, Registration};

use crate::common::{median, quantile};
use crate::hello::greeter_client::GreeterClient;
use crate::hello::HelloRequest;
use crate::measure::{allocations, thread_cpu};
use crate::servers::Server;

/// Requests in flight in the concurrent runs.
pub(crate) const IN_FLIGHT: usize = 64;

/// A Greeter client over one of the compared services.
#[derive(Clone)]
pub(crate) enum Client {
    Channel(GreeterClient<Channel>),
    Balancer(GreeterClient<Balancer>),
}

impl Client {
    pub(crate) fn channel(channel: Channel) -> Client {
        Client::Channel(GreeterClient::new(channel))
    }

    pub(crate) fn balancer(balancer: Balancer) -> Client {
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
    pub(crate) async fn hello_within(&mut self, limit: Duration) -> Result<(), Status> {
        tokio::time::timeout(limit, self.hello())
            .await
            .map_err(|_| Status::deadline_exceeded("no answer"))?
    }
}

/// Throughput and latency of one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub(crate) per_second: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    /// CPU time of the client thread per call.
    pub(crate) cpu: Duration,
    /// Allocations on the client thread per call.
    pub(crate) allocs: f64,
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
    pub(crate) fn median(runs: &[Run]) -> Run {
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
pub(crate) async fn sequential(client: &Client, n: usize) -> Run {
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
pub(crate) enum Budget {
    Calls(usize),
    For(Duration),
}

/// Calls with [`IN_FLIGHT`] of them in flight at all times, each task sending
/// its next call as soon as its last one is answered.
pub(crate) async fn concurrent(client: &Client, budget: Budget) -> Run {
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

pub(crate) async fn register(client: &etcd_client::Client, instance: Instance) -> Registration {
    Registrar::new(client.clone())
        .ttl(Duration::from_secs(10))
        .register(instance)
        .await
        .unwrap()
}

pub(crate) async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Calls through `client` until `server` has answered one (at most `tries`).
pub(crate) async fn reach(client: &mut Client, server: &Server, tries: usize) {
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
