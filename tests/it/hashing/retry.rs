//! A key whose server cannot be reached: its request is retried on the next
//! endpoint on the ring (none fails), which is where the key goes on a ring
//! without that server; the other keys stay where they are.

use futures_util::stream::{self, StreamExt};
use tonic_etcd::{Balancer, Change, Instance, Policy};

use super::{hello_with, Key};
use crate::support;
use crate::support::balancer::Greeter;

/// A consistent-hash balancer over a fixed list of `(key, addr)`.
fn balancer(endpoints: &[(String, String)]) -> Balancer {
    let changes: Vec<Change<String, Instance>> = endpoints
        .iter()
        .map(|(key, addr)| Change::Insert(key.clone(), Instance::new("retry", addr).unwrap()))
        .collect();
    Balancer::builder(Policy::ConsistentHash)
        .service("retry")
        .build(stream::iter(changes).chain(stream::pending()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_whose_server_is_unreachable_goes_to_the_next_on_the_ring() {
    support::init_tracing();
    let greeters: Vec<Greeter> = (0..3).map(|_| Greeter::start()).collect();
    let dead = format!("127.0.0.1:{}", support::free_port());
    let live: Vec<(String, String)> = greeters
        .iter()
        .map(|g| (format!("/services/retry/{}", g.addr), g.addr.to_string()))
        .collect();
    let mut all = live.clone();
    all.push((format!("/services/retry/{dead}"), dead.clone()));
    let (with_dead, without) = (balancer(&all), balancer(&live));

    // Each request succeeds, and goes where the ring without the dead server
    // sends it: the first key homed on the dead one fails to connect there
    // and is retried on the next endpoint on the ring (which ejects the dead
    // one: later keys homed there go to the next one directly).
    for i in 0..40 {
        let key = format!("user-{i}");
        let expected = hello_with(&without, Key::Extension(&key)).await;
        assert_eq!(
            hello_with(&with_dead, Key::Extension(&key)).await,
            expected,
            "{key}"
        );
    }
    let dead_endpoint = with_dead
        .endpoints()
        .into_iter()
        .find(|status| status.instance.addr == dead)
        .unwrap();
    assert!(
        !dead_endpoint.ready,
        "the unreachable endpoint was tried and ejected: {dead_endpoint:?}"
    );
}
