//! A single-member etcd SIGSTOPped for twice the TTL, then thawed: the
//! servers' keys come back (re-registered where the lease expired), and the
//! discovery ends with every instance.

use std::time::{Duration, Instant};

use crate::support;
use crate::support::changes::etcd_state;
use crate::support::{wait_until, Etcd, Result};
use tonic_etcd::{Discovery, Instance, Registrar};

const TTL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_single_etcd_gets_every_key_back_once_thawed() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("stopped");
    let mut registrations = Vec::new();
    for id in ["a", "b", "c"] {
        let instance = Instance::new(&service, "127.0.0.1:9400")?.with_id(id);
        let r = Registrar::new(client.clone())
            .ttl(TTL)
            .register(instance)
            .await?;
        registrations.push(r);
    }
    let discovery = Discovery::new(client.clone(), &service).changes().await?;
    let view = discovery.view();
    let _log = support::changes::record(discovery, format!("/services/{service}/"));

    let frozen = etcd.freeze();
    tokio::time::sleep(TTL * 2).await;
    frozen.thaw();
    let thawed = Instant::now();
    wait_until(Duration::from_secs(15), "every key back in etcd", || {
        let client = client.clone();
        let service = service.clone();
        async move { etcd_state(&client, &service).await.len() == 3 }
    })
    .await;
    let keys_back = thawed.elapsed();
    wait_until(
        Duration::from_secs(10),
        "every registration registered",
        || {
            let all = registrations.iter().all(|r| r.lease_id().is_some());
            async move { all }
        },
    )
    .await;
    wait_until(
        Duration::from_secs(10),
        "the discovery sees all three",
        || {
            let n = view.snapshot().len();
            async move { n == 3 }
        },
    )
    .await;
    eprintln!(
        "etcd SIGSTOPped for {:?}: every key back {keys_back:?} after SIGCONT, \
         discovery complete {:?} after",
        TTL * 2,
        thawed.elapsed()
    );
    for r in registrations {
        r.deregister().await?;
    }
    Ok(())
}
