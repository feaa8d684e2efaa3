//! Row 5: the tail under one slow server.

use std::time::Duration;

use tonic_etcd::Discovery;

use crate::clients::{concurrent, register, Budget, Client, IN_FLIGHT};
use crate::common::{ms, rate, Met, Row};
use crate::servers::{Server, Servers};
use crate::support;

/// The extra delay of the slow server of row 5.
const SLOW: Duration = Duration::from_millis(20);

/// Row 5: three servers, one of them 20 ms slower; the p99 of p2c, round
/// robin and tonic's balance_channel under concurrent load.
pub(crate) async fn slow_instance(etcd: &support::Etcd, warm: Duration, measure: Duration) -> Row {
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
            "balance_channel" => Client::channel(discovery.tonic_channel().await.unwrap()),
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
