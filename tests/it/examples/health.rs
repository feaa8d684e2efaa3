//! `helloworld-server`'s health and fault contract: `grpc.health.v1` for ""
//! and `helloworld.Greeter`, `--error-rate`, `--delay-ms`, SIGUSR1 toggling
//! health (and the registration with it), NOT_SERVING first on SIGTERM.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;
use tonic_etcd::health::tonic_health;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::support;
use crate::support::balancer::hello::greeter_client::GreeterClient;
use crate::support::balancer::hello::HelloRequest;
use crate::support::examples::{Cmd, Server, REGISTER_WITHIN};
use crate::support::kv::{get, lease_of};
use crate::support::{wait_until, Etcd};

/// A server of a fresh service with `flags`, registered; its key.
async fn start(etcd: &Etcd, client: &etcd_client::Client, flags: &[&str]) -> (Server, String) {
    let service = support::unique("hsig");
    let mut server = Server::start(
        Cmd::server()
            .args(["--etcd", &etcd.endpoint(), "--service", &service])
            .args(flags),
    );
    let key = format!("/services/{service}/{}", server.addr);
    server.wait_registered(client, &key, REGISTER_WITHIN).await;
    (server, key)
}

async fn channel(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn say_hello(channel: &Channel) -> Result<String, tonic::Status> {
    let request = HelloRequest {
        name: "hsig".into(),
    };
    let reply = GreeterClient::new(channel.clone())
        .say_hello(request)
        .await?;
    Ok(reply.into_inner().message)
}

/// The current status of `service` by `Check`.
async fn check(channel: &Channel, service: &str) -> i32 {
    let request = HealthCheckRequest {
        service: service.into(),
    };
    let response = HealthClient::new(channel.clone())
        .check(request)
        .await
        .unwrap();
    response.into_inner().status
}

/// Waits until `server`'s stderr has `line` `count` times.
async fn wait_stderr(server: &Server, line: &str, count: usize) {
    let what = format!("{count} × {line:?} on stderr");
    wait_until(Duration::from_secs(5), &what, || {
        let seen = server.proc.stderr().lines().filter(|l| *l == line).count();
        async move { seen >= count }
    })
    .await;
}

/// Waits until `key` is present (or absent), 1 s at most after `since`.
async fn within_a_second(
    client: &etcd_client::Client,
    key: &str,
    present: bool,
    since: Instant,
    server: &Server,
) {
    while get(client, key).await.is_some() != present {
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "{key} {} 1 s after SIGUSR1\n{}",
            if present {
                "still absent"
            } else {
                "still present"
            },
            server.proc.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "{key} {} {:?} after SIGUSR1",
        if present { "back" } else { "gone" },
        since.elapsed()
    );
}

#[tokio::test]
async fn health_is_served_for_the_server_and_the_greeter() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let (server, _key) = start(&etcd, &client, &[]).await;
    let channel = channel(&server.addr).await;
    for service in ["", "helloworld.Greeter"] {
        assert_eq!(
            check(&channel, service).await,
            ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    say_hello(&channel)
        .await
        .expect("no failure injected by default");
}

#[tokio::test]
async fn error_rate_one_answers_every_call_unavailable() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let (server, _key) = start(&etcd, &client, &["--error-rate", "1.0"]).await;
    let channel = channel(&server.addr).await;
    for _ in 0..5 {
        let status = say_hello(&channel).await.expect_err("every call fails");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert_eq!(status.message(), "injected failure");
    }
    // Health is not affected: the server is up, its answers are bad.
    assert_eq!(check(&channel, "").await, ServingStatus::Serving as i32);
}

#[tokio::test]
async fn an_error_rate_out_of_range_is_refused_clearly() {
    for rate in ["1.5", "-0.1", "lots"] {
        let run = Cmd::server()
            .args(["--listen", "127.0.0.1:0", "--error-rate", rate])
            .run(Duration::from_secs(10))
            .await;
        assert!(!run.status.success(), "--error-rate {rate} accepted\n{run}");
        assert!(
            run.stderr.contains("--error-rate") && run.stderr.contains("expected 0.0 to 1.0"),
            "unclear error for --error-rate {rate}\n{run}"
        );
    }
}

#[tokio::test]
async fn delay_ms_delays_every_reply() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let (server, _key) = start(&etcd, &client, &["--delay-ms", "300"]).await;
    let channel = channel(&server.addr).await;
    for _ in 0..3 {
        let started = Instant::now();
        say_hello(&channel).await.unwrap();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "a reply took {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_toggles_health_and_the_registration_follows() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let (mut server, key) = start(&etcd, &client, &["--drain-ms", "200"]).await;
    let lease = lease_of(&client, &key).await.unwrap();
    let channel = channel(&server.addr).await;

    let signalled = Instant::now();
    server.proc.signal(Signal::SIGUSR1);
    wait_stderr(&server, "health: NOT_SERVING", 1).await;
    within_a_second(&client, &key, false, signalled, &server).await;
    for service in ["", "helloworld.Greeter"] {
        assert_eq!(
            check(&channel, service).await,
            ServingStatus::NotServing as i32,
            "{service:?}"
        );
    }

    let signalled = Instant::now();
    server.proc.signal(Signal::SIGUSR1);
    wait_stderr(&server, "health: SERVING", 1).await;
    within_a_second(&client, &key, true, signalled, &server).await;
    assert_eq!(
        lease_of(&client, &key).await,
        Some(lease),
        "back on the same lease"
    );
    assert_eq!(
        check(&channel, "helloworld.Greeter").await,
        ServingStatus::Serving as i32
    );

    // SIGTERM with a health watch open: NOT_SERVING reaches it, the key goes,
    // and the open stream does not keep the server from exiting.
    let mut statuses = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: "helloworld.Greeter".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        statuses.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );
    server.proc.signal(Signal::SIGTERM);
    let next = tokio::time::timeout(Duration::from_secs(5), statuses.message())
        .await
        .expect("a status after SIGTERM")
        .unwrap()
        .expect("the stream goes on until NOT_SERVING");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    wait_until(Duration::from_secs(2), "key gone after SIGTERM", || {
        let (client, key) = (client.clone(), key.clone());
        async move { get(&client, &key).await.is_none() }
    })
    .await;
    let status = server.proc.wait_exit(Duration::from_secs(5)).await;
    assert!(status.success(), "exit {status}\n{}", server.proc.output());
}
