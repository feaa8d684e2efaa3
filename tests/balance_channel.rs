//! tonic's balanced channel fed by discovery: requests reach every discovered
//! server, stop reaching a removed one, and the driver stops with the channel.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::Client;
use support::{wait_for, wait_until, Etcd};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};
use tonic_etcd::codec::{Codec, Native};
use tonic_etcd::{balance, Discovery, Instance};

pub mod hello {
    tonic::include_proto!("helloworld");
}

use hello::greeter_client::GreeterClient;
use hello::greeter_server::{Greeter, GreeterServer};
use hello::{HelloReply, HelloRequest};

struct Hello {
    addr: SocketAddr,
    served: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl Greeter for Hello {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        self.served.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(HelloReply {
            message: format!("Hello {} from {}", request.into_inner().name, self.addr),
        }))
    }
}

/// A greeter on 127.0.0.1:0; returns its address and its request counter.
async fn serve() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let greeter = Hello {
        addr,
        served: served.clone(),
    };
    tokio::spawn(
        Server::builder()
            .add_service(GreeterServer::new(greeter))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    (addr, served)
}

async fn register(client: &mut Client, service: &str, addr: SocketAddr) -> String {
    let instance = Instance::new(service, addr.to_string()).unwrap();
    let key = Native.key("/services", &instance);
    client
        .put(key.clone(), Native.encode(&instance).unwrap(), None)
        .await
        .unwrap();
    key
}

/// One SayHello; the address of the server that answered.
async fn hello(channel: &Channel) -> String {
    let mut client = GreeterClient::new(channel.clone());
    let request = HelloRequest {
        name: "test".into(),
    };
    // A balanced channel with no ready endpoint waits forever: bound it.
    let reply = tokio::time::timeout(Duration::from_secs(5), client.say_hello(request))
        .await
        .expect("an answer within 5 s")
        .expect("SayHello succeeds");
    let message = reply.into_inner().message;
    message
        .rsplit(' ')
        .next()
        .expect("reply ends with the address")
        .to_owned()
}

#[tokio::test]
async fn requests_follow_discovery() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("greeter");
    let (addr_a, served_a) = serve().await;
    let (addr_b, served_b) = serve().await;
    let key_a = register(&mut client, &service, addr_a).await;
    register(&mut client, &service, addr_b).await;

    let channel = Discovery::new(client.clone(), &service)
        .balance_channel()
        .await
        .unwrap();

    // Both servers answer (tonic picks at random; poll until both are seen).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = HashSet::new();
    while seen.len() < 2 {
        assert!(Instant::now() < deadline, "only {seen:?} answered");
        seen.insert(hello(&channel).await);
    }
    assert_eq!(
        seen,
        HashSet::from([addr_a.to_string(), addr_b.to_string()])
    );
    assert!(served_a.load(Ordering::SeqCst) > 0 && served_b.load(Ordering::SeqCst) > 0);

    // Remove a: once tonic has applied the change, a gets nothing more.
    client.delete(key_a, None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut streak = 0;
    while streak < 20 {
        assert!(
            Instant::now() < deadline,
            "a still answers after its removal"
        );
        if hello(&channel).await == addr_b.to_string() {
            streak += 1;
        } else {
            streak = 0;
        }
    }
    let a_before = served_a.load(Ordering::SeqCst);
    for _ in 0..30 {
        assert_eq!(hello(&channel).await, addr_b.to_string());
    }
    assert_eq!(
        served_a.load(Ordering::SeqCst),
        a_before,
        "a still got requests"
    );

    // A new instance is picked up as requests flow.
    let (addr_c, served_c) = serve().await;
    register(&mut client, &service, addr_c).await;
    wait_for(Duration::from_secs(10), "c to answer", || {
        let channel = channel.clone();
        let c = addr_c.to_string();
        async move { (hello(&channel).await == c).then_some(()) }
    })
    .await;
    assert!(served_c.load(Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn driver_and_discovery_stop_when_the_channel_is_dropped() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("dropped");
    let (addr, _) = serve().await;
    register(&mut client, &service, addr).await;

    let discovered = Discovery::new(client.clone(), &service)
        .start()
        .await
        .unwrap();
    let handle = discovered.handle();
    let templated = Arc::new(AtomicUsize::new(0));
    let counter = templated.clone();
    let channel = balance::channel(discovered, move |instance| {
        counter.fetch_add(1, Ordering::SeqCst);
        balance::default_endpoint(instance)
    });
    assert_eq!(hello(&channel).await, addr.to_string());
    assert_eq!(templated.load(Ordering::SeqCst), 1);

    let clone = channel.clone();
    drop(channel);
    // One clone left: the driver keeps going.
    let (addr2, _) = serve().await;
    register(&mut client, &service, addr2).await;
    wait_until(
        Duration::from_secs(10),
        "the driver to see a second instance",
        || {
            let n = templated.load(Ordering::SeqCst);
            async move { n == 2 }
        },
    )
    .await;
    assert!(
        handle.health().has_changed().is_ok(),
        "discovery still runs"
    );

    // The last clone goes: the driver ends and drops the discovery, whose task
    // ends too (its health sender is dropped).
    drop(clone);
    let health = handle.health();
    wait_until(Duration::from_secs(10), "the discovery task to end", || {
        let ended = health.has_changed().is_err();
        async move { ended }
    })
    .await;
    // The health sender goes only after the driver dropped the stream, so
    // nothing can call the template any more; the snapshot stays as it was.
    assert_eq!(templated.load(Ordering::SeqCst), 2);
    assert_eq!(
        handle.snapshot().len(),
        2,
        "the snapshot is frozen, not cleared"
    );
}
