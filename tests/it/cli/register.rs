//! `register SERVICE ADDR` makes a plain server reachable under SERVICE, and
//! removes it on SIGTERM.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tonic_etcd::{Discovery, Policy};

use super::Running;
use crate::support::balancer::{hello, Greeter};
use crate::support::kv::get;
use crate::support::{unique, wait_until, Etcd};

#[tokio::test]
async fn register_makes_a_plain_server_reachable_and_sigterm_removes_it() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = unique("cli-register");
    let greeter = Greeter::start();
    let addr = greeter.addr.to_string();
    let mut register = Running::spawn(
        &etcd.endpoint(),
        &[
            "register",
            &service,
            &addr,
            "--id",
            "plain-1",
            "--ttl",
            "5",
            "--weight",
            "3",
            "--version",
            "2.0",
            "--metadata",
            "zone=a",
            "--metadata",
            "team=x",
            "--json",
        ],
    );
    register
        .wait_line(Duration::from_secs(10), "registered", |l| {
            l.contains("registered")
        })
        .await;
    let key = format!("/services/{service}/plain-1");
    let (value, lease) = get(&client, &key).await.expect("the key is written");
    assert_ne!(lease, 0, "leased");
    let value: serde_json::Value = serde_json::from_slice(&value).unwrap();
    assert_eq!(value["addr"], addr.as_str());
    assert_eq!(value["weight"], 3);
    assert_eq!(value["version"], "2.0");
    assert_eq!(value["metadata"]["team"], "x");

    let balancer = Discovery::new(client.clone(), service.as_str())
        .balancer(Policy::RoundRobin)
        .await
        .unwrap();
    assert_eq!(hello(&balancer).await.expect("reachable"), addr);

    register.signal(Signal::SIGTERM);
    let started = Instant::now();
    wait_until(Duration::from_secs(3), "the key removed", || {
        let client = client.clone();
        let key = key.clone();
        async move { get(&client, &key).await.is_none() }
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        register.wait_exit(Duration::from_secs(5)).await,
        Some(0),
        "{}",
        register.output()
    );
    let view = balancer.discovery().unwrap();
    wait_until(
        Duration::from_secs(3),
        "the instance gone from discovery",
        || {
            let empty = view.snapshot().is_empty();
            async move { empty }
        },
    )
    .await;
}
