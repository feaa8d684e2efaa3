//! A crashed server (its task and runtime gone, nothing cleaned up) disappears
//! when its lease expires.

use std::time::{Duration, Instant};

use crate::support;
use crate::support::{wait_until, Etcd};
use tonic_etcd::{Instance, Registrar};

#[tokio::test]
async fn crashed_registration_disappears_after_its_ttl() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let endpoint = etcd.endpoint();
    let service = support::unique("svc");

    // The "server" lives in its own runtime; shutting that runtime down drops
    // every task without running any clean-up, as a crash would.
    let key = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let key = runtime.block_on(async {
            let client = tonic_etcd::connect([endpoint]).await.unwrap();
            let registration = Registrar::new(client)
                .ttl(Duration::from_secs(2))
                .register(Instance::new(service, "127.0.0.1:9100").unwrap())
                .await
                .unwrap();
            let key = registration.key().to_owned();
            std::mem::forget(registration);
            key
        });
        runtime.shutdown_background();
        key
    })
    .join()
    .unwrap();
    let crashed_at = Instant::now();

    let mut check = client.clone();
    let resp = check.get(key.as_str(), None).await.unwrap();
    assert_eq!(resp.kvs().len(), 1, "key is there right after the crash");

    wait_until(Duration::from_secs(5), "key expired with the lease", || {
        let (mut client, key) = (client.clone(), key.clone());
        async move { client.get(key, None).await.unwrap().kvs().is_empty() }
    })
    .await;
    let gone_after = crashed_at.elapsed();
    // Not removed early (a clean-up would be): the lease had to expire.
    assert!(
        gone_after >= Duration::from_millis(1000),
        "gone after {gone_after:?}"
    );
    assert!(
        gone_after <= Duration::from_millis(3500),
        "gone after {gone_after:?}"
    );
}
