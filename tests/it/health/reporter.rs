//! `health::follow` and `health::shutdown_on`: a registration tied to
//! `tonic-health`'s reporter, and the shutdown order (NOT_SERVING, then the
//! key, then the drain), seen by a health client over the network.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::EventType;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_etcd::health::{self, tonic_health};
use tonic_etcd::{Instance, Registrar, Registration, RegistrationState};
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::ServingStatus;

use crate::support;
use crate::support::kv::{get, lease_of};
use crate::support::{wait_until, Etcd};

async fn register(client: &etcd_client::Client, addr: &str) -> Registration {
    let service = support::unique("hsig");
    Registrar::new(client.clone())
        .ttl(Duration::from_secs(10))
        .register(Instance::new(service, addr).unwrap())
        .await
        .unwrap()
}

async fn wait_key(client: &etcd_client::Client, key: &str, present: bool, within: Duration) {
    let what = format!("key {key} {}", if present { "present" } else { "gone" });
    wait_until(within, &what, || {
        let (client, key) = (client.clone(), key.to_owned());
        async move { get(&client, &key).await.is_some() == present }
    })
    .await;
}

#[tokio::test]
async fn the_registration_follows_the_reporter_within_a_second() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let registration = register(&client, "127.0.0.1:7000").await;
    let key = registration.key().to_owned();
    let lease = registration.lease_id().unwrap();
    let (reporter, _service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("helloworld.Greeter", ServingStatus::Serving)
        .await;
    let following = health::follow(&registration, &reporter, "helloworld.Greeter");

    reporter
        .set_service_status("helloworld.Greeter", ServingStatus::NotServing)
        .await;
    wait_key(&client, &key, false, Duration::from_secs(1)).await;
    assert!(registration.is_withdrawn());

    reporter
        .set_service_status("helloworld.Greeter", ServingStatus::Serving)
        .await;
    wait_key(&client, &key, true, Duration::from_secs(1)).await;
    assert_eq!(
        lease_of(&client, &key).await,
        Some(lease),
        "back on the same lease"
    );

    // A service the reporter does not know counts as not serving.
    let mut reporter = reporter;
    reporter.clear_service_status("helloworld.Greeter").await;
    wait_key(&client, &key, false, Duration::from_secs(1)).await;
    reporter
        .set_service_status("helloworld.Greeter", ServingStatus::Serving)
        .await;
    wait_key(&client, &key, true, Duration::from_secs(2)).await;

    // The task ends with the registration.
    registration.deregister().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), following)
        .await
        .expect("follow ends with the registration")
        .unwrap();
}

#[tokio::test]
async fn graceful_shutdown_says_not_serving_before_the_key_is_gone() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let registration = register(&client, &addr.to_string()).await;
    let key = registration.key().to_owned();
    let lease = registration.lease_id().unwrap();
    let (reporter, health_service) = tonic_health::server::health_reporter();
    health::follow(&registration, &reporter, "");
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = health::shutdown_on(
        &registration,
        &reporter,
        ["", "helloworld.Greeter"],
        async move {
            let _ = stopped.await;
        },
        Duration::from_millis(300),
    );
    let server = tokio::spawn(
        Server::builder()
            .add_service(health_service)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown,
            ),
    );

    // When a health client sees NOT_SERVING, and when etcd deletes the key.
    let seen: Arc<Mutex<(Option<Instant>, Option<Instant>)>> = Arc::default();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health_client = HealthClient::new(channel);
    let mut statuses = health_client
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = statuses.message().await.unwrap().unwrap();
    assert_eq!(first.status, WireStatus::Serving as i32);
    let health_seen = seen.clone();
    tokio::spawn(async move {
        while let Ok(Some(message)) = statuses.message().await {
            if message.status == WireStatus::NotServing as i32 {
                health_seen.lock().unwrap().0.get_or_insert(Instant::now());
            }
        }
    });
    let mut events = client.clone().watch(key.as_str(), None).await.unwrap();
    let etcd_seen = seen.clone();
    tokio::spawn(async move {
        while let Ok(Some(response)) = events.message().await {
            if response
                .events()
                .iter()
                .any(|e| e.event_type() == EventType::Delete)
            {
                etcd_seen.lock().unwrap().1.get_or_insert(Instant::now());
            }
        }
    });

    stop.send(()).unwrap();
    wait_until(
        Duration::from_secs(5),
        "NOT_SERVING and the delete seen",
        || {
            let both = matches!(*seen.lock().unwrap(), (Some(_), Some(_)));
            async move { both }
        },
    )
    .await;
    let (not_serving, deleted) = *seen.lock().unwrap();
    assert!(
        not_serving.unwrap() <= deleted.unwrap(),
        "NOT_SERVING came {:?} after the delete",
        not_serving.unwrap() - deleted.unwrap()
    );
    // Then the deregistration, the drain, and the server's end.
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops after the drain")
        .unwrap()
        .unwrap();
    assert_eq!(
        *registration.state().borrow(),
        RegistrationState::Deregistered
    );
    let ttl = client
        .clone()
        .lease_time_to_live(lease, None)
        .await
        .unwrap()
        .ttl();
    assert!(ttl <= 0, "lease revoked, TTL {ttl}");
}
