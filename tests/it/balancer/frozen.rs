//! A frozen server (SIGSTOP, then SIGCONT) among three example servers, with
//! every policy of the crate's balancer and with tonic's balanced channel:
//! requests given up after 500 ms count as failures, and outlier detection
//! takes the frozen server out after five of them.

use std::time::Duration;

use nix::sys::signal::Signal;
use tonic_etcd::{Discovery, EndpointState, Policy};

use super::outliers::run;
use crate::support;
use crate::support::examples::{Cmd, Server, REGISTER_WITHIN};
use crate::support::Etcd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_costs_at_most_five_requests() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let client = etcd.client().await;
    let service = support::unique("frozen");
    let mut servers: Vec<Server> = (0..3)
        // A lease that outlives the freeze: the frozen server cannot renew it.
        .map(|_| {
            Server::start(Cmd::server().args([
                "--etcd",
                &endpoint,
                "--service",
                &service,
                "--ttl",
                "60",
            ]))
        })
        .collect();
    for server in &mut servers {
        let key = format!("/services/{service}/{}", server.addr);
        server.wait_registered(&client, &key, REGISTER_WITHIN).await;
    }
    let victim = &servers[1];
    let timeout = Duration::from_millis(500);
    let mut failures = Vec::new();
    for policy in Policy::ALL {
        let balancer = Discovery::new(client.clone(), &service)
            .balancer(policy)
            .await
            .unwrap();
        let (failed, errors) = run(&balancer, 30, timeout).await;
        assert_eq!(failed, 0, "{policy} before the freeze: {errors:?}");
        victim.proc.signal(Signal::SIGSTOP);
        let (failed, errors) = run(&balancer, 150, timeout).await;
        victim.proc.signal(Signal::SIGCONT);
        eprintln!("{policy}: {failed} of 150 failed with one server frozen");
        assert!(failed <= 5, "{policy}: {errors:#?}");
        let state = balancer
            .endpoints()
            .into_iter()
            .find(|e| e.instance.addr == victim.addr)
            .unwrap()
            .state;
        assert!(
            failed < 5 || state == EndpointState::Ejected,
            "{policy}: five timeouts eject: {state}"
        );
        failures.push((policy, failed));
    }
    // p2c sends the frozen server no more than round robin (every request
    // it got timed out).
    assert!(failures[2].1 <= failures[0].1, "{failures:?}");

    let discovered = Discovery::new(client.clone(), &service)
        .changes()
        .await
        .unwrap();
    let channel =
        tonic_etcd::balance::tonic_channel(discovered, tonic_etcd::endpoint::default_endpoint);
    run(&channel, 30, Duration::from_secs(5)).await;
    victim.proc.signal(Signal::SIGSTOP);
    let (failed, _) = run(&channel, 150, timeout).await;
    victim.proc.signal(Signal::SIGCONT);
    eprintln!("tonic's channel: {failed} of 150 failed with one server frozen");
}
