//! Where a request's key comes from: a `HashKey` extension set on the tonic
//! request, or the key header (`x-hash-key`, or the one the builder names);
//! the same key by either way reaches the same server; keyless requests take
//! the servers in turn.

use super::{hello_with, tally, Key};
use crate::support::balancer::{register, wait_endpoints, Greeter};
use crate::support::{self, Etcd};
use tonic_etcd::{Balancer, Discovery, Policy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_comes_from_the_extension_or_the_header() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("hashkeys");
    let greeters: Vec<Greeter> = (0..3).map(|_| Greeter::start()).collect();
    let mut registrations = Vec::new();
    for greeter in &greeters {
        registrations.push(register(&client, &service, greeter, 1).await);
    }
    let balancer = Balancer::builder(Policy::ConsistentHash)
        .hash_key_header(http::HeaderName::from_static("x-user-id"))
        .discover(Discovery::new(client.clone(), &service))
        .await
        .unwrap();
    wait_endpoints(&balancer, "3 ready", |e| {
        e.iter().filter(|status| status.ready).count() == 3
    })
    .await;

    let mut homes = Vec::new();
    for i in 0..30 {
        let key = format!("user-{i}");
        let home = hello_with(&balancer, Key::Extension(&key)).await;
        for _ in 0..4 {
            assert_eq!(hello_with(&balancer, Key::Extension(&key)).await, home);
        }
        // The same bytes in the configured header: the same server.
        assert_eq!(
            hello_with(&balancer, Key::Header("x-user-id", &key)).await,
            home
        );
        homes.push(home);
    }
    assert_eq!(tally(&homes).len(), 3, "30 keys reach all 3 servers");

    // Keyless requests take turns; so do those with only the default
    // header, which this balancer does not read.
    for key in [Key::None, Key::Header("x-hash-key", "user-1")] {
        let mut turns = Vec::new();
        for _ in 0..30 {
            turns.push(hello_with(&balancer, key).await);
        }
        let counts = tally(&turns);
        assert!(counts.values().all(|&n| n == 10), "{key:?}: {counts:?}");
    }
    drop(registrations);
}
