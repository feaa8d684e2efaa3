//! Rows 12 and 13: one bad instance of three, under about 100 requests a
//! second for each policy of the crate's balancer (outlier detection on, its
//! defaults) and for tonic's balance_channel: (12) it answers every request
//! `UNAVAILABLE`; (13) it accepts requests and never answers (frozen), each
//! request given up after 500 ms. Measured: the requests that failed, those
//! that failed after the ejection, and the share sent to the bad instance.
//!
//! The servers are the tests' `Faulty` greeters, served on the client's
//! runtime: these rows count failures, not latencies. A static list feeds
//! every client, so no etcd is involved.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use tonic_etcd::{Balancer, EndpointState, Policy};

use crate::common::{Met, Row};
use crate::hello::greeter_client::GreeterClient;
use crate::hello::HelloRequest;
use crate::support::balancer::{Fault, Faulty};

/// The pause between two requests: about 100 a second.
const EVERY: Duration = Duration::from_millis(10);
/// The deadline of each request.
const DEADLINE: Duration = Duration::from_millis(500);

/// What one client did.
struct Tally {
    sent: usize,
    failed: usize,
    /// Failed among those sent after the bad instance was ejected (`None`:
    /// never ejected).
    failed_after: Option<(usize, usize)>,
    /// The share of the requests received by the servers that the bad one got.
    bad_share: f64,
}

/// Runs `for_how_long` of requests, one every 10 ms, each on its own task.
async fn load<S>(
    service: S,
    balancer: Option<&Balancer>,
    servers: &[Faulty; 3],
    for_how_long: Duration,
) -> Tally
where
    S: tonic::client::GrpcService<tonic::body::Body> + Clone + 'static,
    S::Error: Into<tonic::codegen::StdError>,
    S::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <S::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let bad = &servers[1];
    let received = |s: &[Faulty; 3]| s.iter().map(Faulty::received).collect::<Vec<_>>();
    let before = received(servers);
    let outcomes: Rc<RefCell<Vec<(usize, bool)>>> = Rc::default();
    let local = tokio::task::LocalSet::new();
    let mut ejected_at: Option<usize> = None;
    let started = Instant::now();
    let mut ticks = tokio::time::interval(EVERY);
    let mut sent = 0;
    local
        .run_until(async {
            while started.elapsed() < for_how_long {
                ticks.tick().await;
                if ejected_at.is_none() {
                    if let Some(balancer) = balancer {
                        let addr = bad.addr.to_string();
                        if balancer
                            .endpoints()
                            .iter()
                            .any(|e| e.instance.addr == addr && e.state == EndpointState::Ejected)
                        {
                            ejected_at = Some(sent);
                        }
                    }
                }
                let mut client = GreeterClient::new(service.clone());
                let outcomes = outcomes.clone();
                let i = sent;
                tokio::task::spawn_local(async move {
                    let request = HelloRequest { name: "b".into() };
                    let ok = matches!(
                        tokio::time::timeout(DEADLINE, client.say_hello(request)).await,
                        Ok(Ok(_))
                    );
                    outcomes.borrow_mut().push((i, ok));
                });
                sent += 1;
            }
            // Let the last requests end (answered or given up).
            tokio::time::sleep(DEADLINE + Duration::from_millis(100)).await;
        })
        .await;
    let after = received(servers);
    let got: Vec<usize> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let outcomes = outcomes.borrow();
    let failed = outcomes.iter().filter(|(_, ok)| !ok).count() + (sent - outcomes.len());
    let failed_after = ejected_at.map(|at| {
        let later: Vec<_> = outcomes.iter().filter(|(i, _)| *i >= at).collect();
        (later.iter().filter(|(_, ok)| !ok).count(), later.len())
    });
    Tally {
        sent,
        failed,
        failed_after,
        bad_share: got[1] as f64 / got.iter().sum::<usize>().max(1) as f64,
    }
}

fn text(name: &str, tally: &Tally) -> String {
    let after = match tally.failed_after {
        Some((failed, of)) => format!(
            "{failed} of {of} after the ejection ({:.2} %)",
            failed as f64 * 100.0 / of.max(1) as f64
        ),
        None => "never ejected".into(),
    };
    format!(
        "{name}: {} of {} failed, {after}, {:.1} % to the bad instance",
        tally.failed,
        tally.sent,
        tally.bad_share * 100.0
    )
}

/// One row: `fault` on the second of three servers.
pub(crate) async fn bad_instance(fault: Fault, for_how_long: Duration) -> Row {
    let mut results = Vec::new();
    for name in ["round-robin", "weighted", "p2c", "balance_channel"] {
        let servers = [
            Faulty::start(Fault::None).await,
            Faulty::start(fault).await,
            Faulty::start(Fault::None).await,
        ];
        let changes: Vec<_> = servers.iter().map(|s| s.change("bench")).collect();
        let changes = stream::iter(changes).chain(stream::pending());
        let tally = if name == "balance_channel" {
            let channel =
                tonic_etcd::balance::tonic_channel(changes, tonic_etcd::endpoint::default_endpoint);
            // Let it see its endpoints before the clock starts.
            let mut client = GreeterClient::new(channel.clone());
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline
                && servers.iter().filter(|s| s.received() > 0).count() < 2
            {
                let _ = tokio::time::timeout(
                    DEADLINE,
                    client.say_hello(HelloRequest { name: "w".into() }),
                )
                .await;
            }
            load(channel, None, &servers, for_how_long).await
        } else {
            let policy: Policy = name.parse().unwrap();
            let balancer = Balancer::builder(policy).service("bench").build(changes);
            load(balancer.clone(), Some(&balancer), &servers, for_how_long).await
        };
        eprintln!("  {}", text(name, &tally));
        results.push((name, tally));
    }
    let ours = results[..3]
        .iter()
        .map(|(name, tally)| text(name, tally))
        .collect::<Vec<_>>()
        .join("; ");
    let baseline = text(results[3].0, &results[3].1);
    let under_1_percent = results[..3].iter().all(|(_, t)| match t.failed_after {
        Some((failed, of)) => (failed as f64) < of as f64 * 0.01,
        // p2c may avoid the bad instance without ever ejecting it.
        None => (t.failed as f64) < t.sent as f64 * 0.01,
    });
    let (what, goal, met, reading) = match fault {
        Fault::Fail => (
            "answers every request UNAVAILABLE",
            "after the ejection, under 1 % of requests fail",
            Met::from(under_1_percent),
            "the crate's balancers eject it after 5 consecutive failures and send it \
             nothing more for the 30 s ejection; tonic's channel keeps a third of the \
             requests on it",
        ),
        _ => {
            let share = |name: &str| {
                results
                    .iter()
                    .find(|(n, _)| *n == name)
                    .unwrap()
                    .1
                    .bad_share
            };
            (
                "frozen: accepts requests, never answers; 500 ms deadlines",
                "after the ejection under 1 % fail; p2c sends it no more than round robin",
                Met::from(under_1_percent && share("p2c") <= share("round-robin")),
                "until the first deadline expires (500 ms), every policy sends it its share; \
                 p2c then sees its latency and stops, round robin and weighted eject it at \
                 the 5th expired deadline; tonic's channel keeps sending it a third",
            )
        }
    };
    Row {
        name: format!(
            "{}. one of 3 instances {what}, ~100 req/s, {:.0} s",
            if fault == Fault::Fail { 12 } else { 13 },
            for_how_long.as_secs_f64()
        ),
        ours,
        baseline,
        goal: goal.into(),
        met,
        reading: reading.into(),
    }
}
