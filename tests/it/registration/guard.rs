//! What ending a registration's guard does against a real etcd: dropped on a
//! multi-thread runtime, held until a `#[tokio::main]` returns, and
//! `deregister_on` as a server's shutdown future.

use std::time::{Duration, Instant};

use etcd_client::Client;
use tokio::sync::oneshot;
use tonic_etcd::{Instance, Registrar, Registration, RegistrationState};

use crate::support;
use crate::support::kv::get;
use crate::support::{wait_until, Etcd};

/// Long enough that only a deregistration, not the lease, removes a key
/// within a test.
const TTL: Duration = Duration::from_secs(30);

/// A registration of a fresh service on 127.0.0.1:`port`.
async fn register(client: &Client, port: u16) -> Registration {
    let instance = Instance::new(support::unique("svc"), format!("127.0.0.1:{port}")).unwrap();
    let registrar = Registrar::new(client.clone()).ttl(TTL);
    registrar.register(instance).await.unwrap()
}

async fn exists(client: &Client, key: &str) -> bool {
    get(client, key).await.is_some()
}

#[test]
fn a_guard_held_until_a_tokio_main_returns_leaves_no_key() {
    support::init_tracing();
    let fixture = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let etcd = fixture.block_on(Etcd::start());
    let endpoint = etcd.endpoint();
    let service = support::unique("svc");

    // What `#[tokio::main]` expands to: a multi-thread runtime, the body in
    // `block_on`, the runtime dropped once the body returns.
    let main = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = main.block_on(async {
        let client = tonic_etcd::connect([endpoint]).await.unwrap();
        let registration = Registrar::new(client.clone())
            .ttl(TTL)
            .register(Instance::new(service, "127.0.0.1:9300").unwrap())
            .await
            .unwrap();
        let key = registration.key().to_owned();
        assert!(exists(&client, &key).await, "registered");
        // Returns with the guard still held, as a `main` that serves and ends.
        key
    });
    drop(main);

    let client = fixture.block_on(etcd.client());
    assert!(
        !fixture.block_on(exists(&client, &key)),
        "the key must go with the process, not {TTL:?} later"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_dropped_on_a_multi_thread_runtime_is_gone_when_drop_returns() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let registrar = Registrar::new(client.clone()).ttl(TTL);
    let instance = Instance::new(support::unique("svc"), "127.0.0.1:9301").unwrap();
    let key = registrar.key_of(&instance).unwrap();

    // The classic slip: `let _ =` drops the guard at once.
    let started = Instant::now();
    let _ = registrar.register(instance.clone()).await.unwrap();
    assert!(!exists(&client, &key).await, "deregistered by the drop");
    assert!(started.elapsed() < Duration::from_secs(3));

    // A named guard, dropped later: the same, without waiting.
    let registration = registrar.register(instance).await.unwrap();
    let lease = registration.lease_id().unwrap();
    assert!(exists(&client, &key).await);
    drop(registration);
    assert!(!exists(&client, &key).await, "deregistered by the drop");
    let ttl = client
        .clone()
        .lease_time_to_live(lease, None)
        .await
        .unwrap();
    assert!(ttl.ttl() <= 0, "lease revoked, ttl {}", ttl.ttl());
}

#[tokio::test]
async fn deregister_on_keeps_the_guard_usable_until_the_signal_then_drains() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let registration = register(&client, 9302).await;
    let key = registration.key().to_owned();
    let lease = registration.lease_id().unwrap();
    let drain = Duration::from_millis(700);
    let (fire, signal) = oneshot::channel::<()>();
    let shutdown = tokio::spawn(registration.deregister_on(
        async {
            signal.await.ok();
        },
        drain,
    ));

    // Serving: the guard still updates and reports.
    registration.update(|i| i.weight = 4).await.unwrap();
    assert_eq!(registration.instance().weight, 4);
    assert_eq!(
        *registration.state().borrow(),
        RegistrationState::Registered { lease_id: lease }
    );
    assert!(exists(&client, &key).await);

    let fired = Instant::now();
    fire.send(()).unwrap();
    // The key goes at once, and the future resolves only after the drain.
    wait_until(Duration::from_millis(500), "key removed on signal", || {
        let (client, key) = (client.clone(), key.clone());
        async move { !exists(&client, &key).await }
    })
    .await;
    assert!(!shutdown.is_finished(), "still draining");
    shutdown.await.unwrap();
    assert!(
        fired.elapsed() >= drain,
        "resolved after {:?}",
        fired.elapsed()
    );
    assert_eq!(
        *registration.state().borrow(),
        RegistrationState::Deregistered
    );

    // Nothing left to do, and not an error.
    registration.deregister().await.unwrap();
    assert!(!exists(&client, &key).await);
}

#[tokio::test]
async fn deregister_on_after_the_guard_was_dropped_only_drains() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let registration = register(&client, 9303).await;
    let key = registration.key().to_owned();
    let (fire, signal) = oneshot::channel::<()>();
    let shutdown = registration.deregister_on(
        async {
            signal.await.ok();
        },
        Duration::from_millis(100),
    );
    // The pending future does not keep the registration alive.
    drop(registration);
    wait_until(Duration::from_secs(3), "key removed after drop", || {
        let (client, key) = (client.clone(), key.clone());
        async move { !exists(&client, &key).await }
    })
    .await;
    fire.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(3), shutdown)
        .await
        .expect("resolves after the drain");
}
