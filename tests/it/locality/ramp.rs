//! Slow start, measured as the share of requests per second that a server
//! joining two others gets: well below its fair third in the first second,
//! rising over the window, and the fair third after it, for round robin,
//! weighted and p2c.
//!
//! The servers answer after 10 ms and six callers send at once, so that p2c
//! compares requests in flight, as under real load, rather than the noise
//! of sub-millisecond response times.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support;
use crate::support::balancer::{hello, register, wait_endpoints, Greeter};
use crate::support::Etcd;
use tonic_etcd::{Balancer, Discovery, Policy, SlowStart};

/// The slow start window of these tests.
const WINDOW: Duration = Duration::from_secs(4);
/// Each server's service time.
const SERVICE_TIME: Duration = Duration::from_millis(10);
/// Requests sent at once.
const CALLERS: usize = 6;

/// The newcomer's share of the requests sent in each second from its
/// arrival, over `WINDOW` + 2 s.
async fn shares_per_second(policy: Policy, slow_start: SlowStart) -> Vec<f64> {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("slow");
    let greeters = [(); 3].map(|_| Greeter::with_delay(SERVICE_TIME));
    let _old = [
        register(&client, &service, &greeters[0], 1).await,
        register(&client, &service, &greeters[1], 1).await,
    ];
    let balancer = Balancer::builder(policy)
        .slow_start(slow_start)
        .discover(Discovery::new(client.clone(), &service))
        .await
        .unwrap();
    for _ in 0..10 {
        hello(&balancer).await.unwrap();
    }
    let _new = register(&client, &service, &greeters[2], 1).await;
    wait_endpoints(&balancer, "the newcomer", |e| e.len() == 3).await;
    let joined = Instant::now();
    let seconds = WINDOW.as_secs() as usize + 2;
    let newcomer = greeters[2].addr.to_string();
    let counts = Arc::new(Mutex::new(vec![(0usize, 0usize); seconds]));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (balancer, counts, newcomer) = (balancer.clone(), counts.clone(), newcomer.clone());
            tokio::spawn(async move {
                loop {
                    let second = joined.elapsed().as_secs() as usize;
                    if second >= seconds {
                        return;
                    }
                    let addr = hello(&balancer).await.expect("no request fails");
                    let mut counts = counts.lock().unwrap();
                    counts[second].0 += usize::from(addr == newcomer);
                    counts[second].1 += 1;
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    let counts = counts.lock().unwrap().clone();
    let shares: Vec<f64> = counts
        .iter()
        .map(|&(new, all)| new as f64 / all.max(1) as f64)
        .collect();
    eprintln!("{policy}: the newcomer's share per second {shares:.3?} of {counts:?}");
    shares
}

/// The ramp's shape: the first second well below the fair third (the
/// weight is 10 % of the full one, 25 % at the end of that second), the
/// last second of the window at least twice the first, and the fair third
/// in the seconds after it (within `slack`).
fn assert_ramp(policy: Policy, shares: &[f64], slack: f64) {
    let fair = 1.0 / 3.0;
    let window = WINDOW.as_secs() as usize;
    assert!(shares[0] < 0.5 * fair, "{policy}: first second {shares:?}");
    assert!(
        shares[window - 1] > 2.0 * shares[0] && shares[window - 1] > shares[0] + 0.05,
        "{policy}: no ramp {shares:?}"
    );
    let after = shares[window..].iter().sum::<f64>() / (shares.len() - window) as f64;
    assert!(
        (after - fair).abs() < slack,
        "{policy}: after the window {shares:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_ramps_a_new_server_up_over_the_window() {
    let shares = shares_per_second(Policy::Weighted, SlowStart::new(WINDOW)).await;
    assert_ramp(Policy::Weighted, &shares, 0.03);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_ramps_a_new_server_up_over_the_window() {
    let shares = shares_per_second(Policy::RoundRobin, SlowStart::new(WINDOW)).await;
    assert_ramp(Policy::RoundRobin, &shares, 0.03);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_ramps_a_new_server_up_over_the_window() {
    let shares = shares_per_second(Policy::P2c, SlowStart::new(WINDOW)).await;
    // p2c's own split wanders with the requests in flight.
    assert_ramp(Policy::P2c, &shares, 0.08);
}
