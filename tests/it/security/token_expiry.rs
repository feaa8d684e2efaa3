//! Auth tokens that expire (etcd's `--auth-token-ttl`) break neither the
//! registration keepalive nor the discovery watch, and when either has to
//! reconnect after its token expired, the client authenticates again and
//! carries on.

use std::time::{Duration, Instant};

use crate::support;
use crate::support::changes::wait_instances;
use crate::support::proxy::Proxy;
use crate::support::secure::{ClientCerts, SecureEtcd, Users};
use crate::support::wait_until;
use tonic_etcd::{Discovery, EtcdConfig, Instance, Registrar};

/// Seconds an unused simple token lives.
const TOKEN_TTL: &str = "2";

async fn setup() -> (SecureEtcd, Users, String) {
    support::init_tracing();
    let etcd = SecureEtcd::start_with(ClientCerts::None, &["--auth-token-ttl", TOKEN_TTL]).await;
    let service = support::unique("expiry");
    let users = etcd.enable_auth(&format!("/services/{service}/")).await;
    (etcd, users, service)
}

fn limited(etcd: &SecureEtcd, users: &Users) -> EtcdConfig {
    etcd.config().user(&users.limited, &users.limited_password)
}

fn root(etcd: &SecureEtcd, users: &Users) -> EtcdConfig {
    etcd.config().user("root", &users.root_password)
}

#[tokio::test]
async fn an_expired_token_breaks_neither_keepalive_nor_watch() {
    let (etcd, users, service) = setup().await;
    let registration = Registrar::new(limited(&etcd, &users).connect().await.unwrap())
        .ttl(Duration::from_secs(2))
        .register(Instance::new(&service, "127.0.0.1:50051").unwrap())
        .await
        .unwrap();
    let lease = registration.lease_id().expect("registered");
    // Its own client: after `start`, only the watch stream uses its token.
    let discovery_client = limited(&etcd, &users).connect().await.unwrap();
    let discovered = Discovery::new(discovery_client.clone(), &service)
        .changes()
        .await
        .unwrap();
    let handle = discovered.view();
    let health = handle.health();

    // Over two token lifetimes with nothing but the keepalive and watch streams:
    // the same lease all along, the watch never lost.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert_eq!(
            registration.lease_id(),
            Some(lease),
            "registration: {:?}",
            *registration.state().borrow()
        );
        assert!(
            health.borrow().is_connected(),
            "discovery: {:?}",
            *health.borrow()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The watch still delivers.
    let other = Registrar::new(root(&etcd, &users).connect().await.unwrap())
        .register(Instance::new(&service, "127.0.0.1:50052").unwrap())
        .await
        .unwrap();
    wait_instances(&handle, 2, Duration::from_secs(5)).await;

    // Unary calls with the expired token: refreshed and retried.
    registration.update(|i| i.weight = 7).await.unwrap();
    let again = Discovery::new(discovery_client, &service)
        .changes()
        .await
        .unwrap();
    assert_eq!(again.view().snapshot().len(), 2);
    assert_eq!(registration.lease_id(), Some(lease));

    registration.deregister().await.unwrap();
    other.deregister().await.unwrap();
    wait_instances(&handle, 0, Duration::from_secs(5)).await;
}

/// Lets the token of a client that made no request for a while expire:
/// more than the TTL, and etcd's expiry sweep.
async fn let_tokens_expire() {
    tokio::time::sleep(Duration::from_millis(3500)).await;
}

#[tokio::test]
async fn an_expired_token_is_renewed_when_the_registration_reconnects() {
    let (etcd, users, service) = setup().await;
    let proxy = Proxy::start(etcd.addr()).await;
    let through_proxy = EtcdConfig::new([format!("https://{}", proxy.addr())])
        .ca_file(&etcd.pki().ca)
        .user(&users.limited, &users.limited_password);
    let registration = Registrar::new(through_proxy.connect().await.unwrap())
        .ttl(Duration::from_secs(2))
        .register(Instance::new(&service, "127.0.0.1:50051").unwrap())
        .await
        .unwrap();
    let lease = registration.lease_id().expect("registered");

    let_tokens_expire().await;
    // The keepalive and watch streams break; the task registers again with
    // requests that carry the expired token.
    proxy.cut();
    wait_until(Duration::from_secs(10), "registered on a new lease", || {
        let now = registration.lease_id();
        async move { now.is_some_and(|l| l != lease) }
    })
    .await;
    let mut check = root(&etcd, &users).connect().await.unwrap();
    let key = format!("/services/{service}/127.0.0.1:50051");
    assert_eq!(check.get(key.as_str(), None).await.unwrap().kvs().len(), 1);
    registration.deregister().await.unwrap();
    assert!(check
        .get(key.as_str(), None)
        .await
        .unwrap()
        .kvs()
        .is_empty());
}

// etcd refuses an expired token in the watch response (canceled, reason
// "etcdserver: invalid auth token"), where etcd-client's automatic refresh
// does not look: discovery must call `Client::refresh_token` itself.
#[tokio::test]
async fn an_expired_token_is_renewed_when_the_watch_reconnects() {
    let (etcd, users, service) = setup().await;
    let proxy = Proxy::start(etcd.addr()).await;
    let through_proxy = EtcdConfig::new([format!("https://{}", proxy.addr())])
        .ca_file(&etcd.pki().ca)
        .user(&users.limited, &users.limited_password);
    let discovered = Discovery::new(through_proxy.connect().await.unwrap(), &service)
        .changes()
        .await
        .unwrap();
    let handle = discovered.view();

    let_tokens_expire().await;
    // The watch breaks; discovery opens a new one with the expired token.
    proxy.cut();
    let health = handle.health();
    wait_until(Duration::from_secs(5), "discovery to notice", || {
        let lost = !health.borrow().is_connected();
        async move { lost }
    })
    .await;
    let registration = Registrar::new(root(&etcd, &users).connect().await.unwrap())
        .register(Instance::new(&service, "127.0.0.1:50051").unwrap())
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(10),
        "discovery to reconnect and see the new instance",
        || {
            let seen = handle.snapshot().len() == 1 && health.borrow().is_connected();
            async move { seen }
        },
    )
    .await;
    registration.deregister().await.unwrap();
}
