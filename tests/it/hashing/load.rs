//! Bounded loads under a hot key: concurrent slow requests of one key spill
//! from its server to the next ones on the ring, none holding more than
//! ⌈c × in flight / n⌉; with the bound off they all pile on one server; and
//! once the load is gone the key is home again.

use std::time::Duration;

use futures_util::future::join_all;

use super::{hello_with, tally, Key};
use crate::support::balancer::{register, wait_endpoints, Greeter};
use crate::support::{self, Etcd};
use tonic_etcd::{Balancer, Discovery, Policy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_spills_over_within_the_load_bound() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("hotkey");
    let greeters: Vec<Greeter> = (0..3)
        .map(|_| Greeter::with_delay(Duration::from_millis(400)))
        .collect();
    let mut registrations = Vec::new();
    for greeter in &greeters {
        registrations.push(register(&client, &service, greeter, 1).await);
    }

    for (factor, spills) in [(1.25, true), (f64::INFINITY, false)] {
        let balancer = Balancer::builder(Policy::ConsistentHash)
            .hash_load_factor(factor)
            .discover(Discovery::new(client.clone(), &service))
            .await
            .unwrap();
        wait_endpoints(&balancer, "3 ready", |e| {
            e.iter().filter(|status| status.ready).count() == 3
        })
        .await;
        // One at a time: the key's own server.
        let home = hello_with(&balancer, Key::Extension("hot")).await;
        // Twelve at once, each held 400 ms by its server.
        let replies = join_all((0..12).map(|_| hello_with(&balancer, Key::Extension("hot")))).await;
        let counts = tally(&replies);
        eprintln!("factor {factor}: home {home}, {counts:?}");
        if spills {
            // ⌈1.25 × 12 / 3⌉ = 5: the home server and the next one on the
            // ring fill up to 5, the third takes the rest.
            let mut sizes: Vec<usize> = counts.values().copied().collect();
            sizes.sort_unstable();
            assert_eq!(sizes, [2, 5, 5], "{counts:?}");
            assert_eq!(counts[&home], 5, "{counts:?}");
        } else {
            assert_eq!(counts.len(), 1, "no bound: all on one server {counts:?}");
            assert_eq!(counts[&home], 12);
        }
        assert_eq!(hello_with(&balancer, Key::Extension("hot")).await, home);
    }
    drop(registrations);
}
