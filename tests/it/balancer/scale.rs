//! The crate's balancer over a few thousand instances in real etcd: the
//! whole set is there as soon as the balancer is, follows a large batch of
//! changes, and spreads requests over its endpoints. Correctness only; the
//! timings are benchmark rows (benches/balancer, rows 9 to 11).

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Client, PutOptions, Txn, TxnOp};
use tonic_etcd::codec::{Codec, Native};
use tonic_etcd::{Balancer, Discovery, Instance, Policy};

use crate::support;
use crate::support::balancer::{split, Greeter};
use crate::support::Etcd;

/// How many instances the tests write.
const N: usize = 3_000;

/// Instance `i` of `service`: its own id, at the address of one of
/// `greeters` (in turn), so that thousands of endpoints need few servers.
fn instance(service: &str, greeters: &[Greeter], i: usize) -> Instance {
    Instance::new(service, greeters[i % greeters.len()].addr.to_string())
        .unwrap()
        .with_id(format!("i-{i:05}"))
}

/// Puts instances `range` of `service`, 128 per transaction.
async fn put_many(
    client: &Client,
    service: &str,
    greeters: &[Greeter],
    range: std::ops::Range<usize>,
) {
    let mut kv = client.clone();
    let ops: Vec<TxnOp> = range
        .map(|i| {
            let instance = instance(service, greeters, i);
            TxnOp::put(
                format!("/services/{service}/{}", instance.id),
                Native.encode(&instance).unwrap(),
                None::<PutOptions>,
            )
        })
        .collect();
    for chunk in ops.chunks(128) {
        kv.txn(Txn::new().and_then(chunk.to_vec())).await.unwrap();
    }
}

/// Deletes instances `range` of `service`, 128 per transaction.
async fn delete_many(client: &Client, service: &str, range: std::ops::Range<usize>) {
    let mut kv = client.clone();
    let ops: Vec<TxnOp> = range
        .map(|i| TxnOp::delete(format!("/services/{service}/i-{i:05}"), None))
        .collect();
    for chunk in ops.chunks(128) {
        kv.txn(Txn::new().and_then(chunk.to_vec())).await.unwrap();
    }
}

fn ids(endpoints: &[tonic_etcd::balance::EndpointStatus]) -> Vec<String> {
    endpoints.iter().map(|e| e.instance.id.clone()).collect()
}

fn wanted_ids(range: impl Iterator<Item = usize>) -> Vec<String> {
    range.map(|i| format!("i-{i:05}")).collect()
}

/// Waits (30 s at most) until the balancer lists exactly `wanted`, all
/// ready; on a timeout, says how far it got (not the whole list).
async fn wait_for_ids(balancer: &Balancer, wanted: &[String]) {
    support::wait_until(Duration::from_secs(30), "the balancer's set", || async {
        let endpoints = balancer.endpoints();
        ids(&endpoints) == wanted && endpoints.iter().all(|e| e.ready)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_instances_are_all_listed_and_follow_batches_of_changes() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("scale");
    let greeters = [Greeter::start()];
    put_many(&client, &service, &greeters, 0..N).await;

    let balancer = Discovery::new(client.clone(), &service)
        .balancer(Policy::Weighted)
        .await
        .unwrap();
    // The discovery hands over its initial Get in chunks, which the driver
    // applies as they come.
    wait_for_ids(&balancer, &wanted_ids(0..N)).await;
    assert!(balancer.endpoints().iter().all(|e| e.instance.weight == 1));

    // A third leaves and a few hundred join, in bursts the driver batches.
    delete_many(&client, &service, 0..N / 3).await;
    put_many(&client, &service, &greeters, N..N + 500).await;
    wait_for_ids(&balancer, &wanted_ids(N / 3..N + 500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_over_thousands_of_endpoints_spreads_requests_exactly() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("scale-rr");
    let greeters = [Greeter::start(), Greeter::start(), Greeter::start()];
    put_many(&client, &service, &greeters, 0..N).await;

    let balancer = Discovery::new(client, &service)
        .balancer(Policy::RoundRobin)
        .await
        .unwrap();
    wait_for_ids(&balancer, &wanted_ids(0..N)).await;
    // 300 requests go to the first 300 endpoints in key order, one each:
    // instance i is at server i % 3, so each server answers 100. The 2,700
    // endpoints never picked make no connection (their channels are lazy);
    // the 300 picked each make one.
    let counts = split(&balancer, 300).await;
    let wanted: BTreeMap<String, usize> = greeters
        .iter()
        .map(|greeter| (greeter.addr.to_string(), 100))
        .collect();
    assert_eq!(counts, wanted);
    let served: Vec<usize> = greeters.iter().map(Greeter::served).collect();
    assert_eq!(served, [100, 100, 100]);
}
