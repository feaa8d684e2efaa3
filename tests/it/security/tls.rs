//! Registration and discovery over TLS and mutual TLS to etcd; a wrong CA, a
//! missing or foreign client certificate, a wrong name or a plain-HTTP etcd
//! fail fast with a clear error; an unreachable etcd does not.

use std::time::{Duration, Instant};

use crate::support;
use crate::support::changes::wait_instances;
use crate::support::secure::chain;
use crate::support::secure::{ClientCerts, Pki, SecureEtcd};
use etcd_client::Client;
use tonic_etcd::{Discovery, EtcdConfig, Instance, Registrar};

/// Registers an instance through `config` and discovers it through a second
/// client made from the same config.
async fn register_and_discover(config: EtcdConfig) {
    let service = support::unique("tls");
    let client = config.connect().await.unwrap();
    let registration = Registrar::new(client)
        .ttl(Duration::from_secs(2))
        .register(Instance::new(&service, "127.0.0.1:50051").unwrap())
        .await
        .unwrap();

    let discovered = Discovery::new(config.connect().await.unwrap(), &service)
        .changes()
        .await
        .unwrap();
    let handle = discovered.view();
    assert_eq!(handle.snapshot().len(), 1);

    // A second instance arrives through the watch, over TLS too.
    let second = Registrar::new(config.connect().await.unwrap())
        .register(Instance::new(&service, "127.0.0.1:50052").unwrap())
        .await
        .unwrap();
    wait_instances(&handle, 2, Duration::from_secs(10)).await;

    second.deregister().await.unwrap();
    registration.deregister().await.unwrap();
    wait_instances(&handle, 0, Duration::from_secs(10)).await;
    drop(discovered);
}

#[tokio::test]
async fn register_and_discover_over_tls() {
    support::init_tracing();
    let etcd = SecureEtcd::start(ClientCerts::None).await;
    register_and_discover(etcd.config()).await;
}

#[tokio::test]
async fn register_and_discover_over_mutual_tls() {
    support::init_tracing();
    let etcd = SecureEtcd::start(ClientCerts::Required).await;
    register_and_discover(etcd.config()).await;
}

/// `config.connect()` fails with a TLS error within `limit`; its reason.
async fn refused(config: &EtcdConfig, limit: Duration) -> String {
    let started = Instant::now();
    let result = tokio::time::timeout(limit, config.connect())
        .await
        .expect("connect fails, not hangs");
    let error = result.err().expect("connect must fail");
    eprintln!("{}", chain(&error));
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
    match error {
        tonic_etcd::Error::Tls { reason, .. } => reason,
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

/// Without the check of `EtcdConfig::connect` (a client made from its
/// options), registration and discovery still fail within `limit`, not hang.
async fn requests_fail(config: &EtcdConfig, limit: Duration) -> [String; 2] {
    let options = config.options().unwrap();
    let client = Client::connect(config.endpoints(), Some(options))
        .await
        .expect("the client itself is lazy");
    let started = Instant::now();
    let registration = tokio::time::timeout(
        limit,
        Registrar::new(client.clone()).register(Instance::new("secure", "127.0.0.1:1").unwrap()),
    )
    .await
    .expect("registration fails, not hangs");
    let register_error = chain(&registration.expect_err("registration must fail"));
    let discovery = tokio::time::timeout(limit, Discovery::new(client, "secure").changes())
        .await
        .expect("discovery fails, not hangs");
    let discover_error = chain(&discovery.expect_err("discovery must fail"));
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
    [register_error, discover_error]
}

/// Twice the connect timeout: the check's handshake, plus slack.
const LIMIT: Duration = Duration::from_secs(4);

#[tokio::test]
async fn a_wrong_ca_fails_fast_with_a_clear_error() {
    support::init_tracing();
    let etcd = SecureEtcd::start(ClientCerts::None).await;
    let other = Pki::new();
    let config = EtcdConfig::new([etcd.endpoint()]).ca_file(&other.ca);
    let reason = refused(&config, LIMIT).await;
    assert!(
        reason.contains("not signed by the configured CA"),
        "{reason}"
    );
    for error in requests_fail(&config, LIMIT).await {
        assert!(error.contains("UnknownIssuer"), "{error}");
    }
}

#[tokio::test]
async fn a_missing_client_certificate_fails_fast_with_a_clear_error() {
    support::init_tracing();
    let etcd = SecureEtcd::start(ClientCerts::Required).await;
    let config = EtcdConfig::new([etcd.endpoint()]).ca_file(&etcd.pki().ca);
    let reason = refused(&config, LIMIT).await;
    assert!(reason.contains("requires a client certificate"), "{reason}");
    // Through the client the cause is lost ("connection closed"), but it
    // still fails at once.
    requests_fail(&config, LIMIT).await;
}

#[tokio::test]
async fn a_client_certificate_of_another_ca_is_refused() {
    support::init_tracing();
    let etcd = SecureEtcd::start(ClientCerts::Required).await;
    let other = Pki::new();
    let config = EtcdConfig::new([etcd.endpoint()])
        .ca_file(&etcd.pki().ca)
        .client_cert_files(&other.client.cert, &other.client.key);
    let reason = refused(&config, LIMIT).await;
    assert!(
        reason.contains("refused the client certificate"),
        "{reason}"
    );
    requests_fail(&config, LIMIT).await;
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    support::init_tracing();
    let etcd = SecureEtcd::start(ClientCerts::None).await;
    let config = etcd.config().tls_domain("etcd.example.org");
    let reason = refused(&config, LIMIT).await;
    assert!(
        reason.contains("not valid for \"etcd.example.org\""),
        "{reason}"
    );
    // The name the certificate carries works.
    let config = etcd.config().tls_domain("localhost");
    let mut client = config.connect().await.unwrap();
    client.put("tls-domain-probe", "ok", None).await.unwrap();
}

#[tokio::test]
async fn tls_to_a_plain_etcd_fails_without_hanging() {
    support::init_tracing();
    let etcd = support::Etcd::start().await;
    let pki = Pki::new();
    let address = etcd.endpoint().trim_start_matches("http://").to_owned();
    let config = EtcdConfig::new([address]).ca_file(&pki.ca);
    // etcd just closes the connection, which a proxy in front of a member
    // that is down does too: not a definite refusal, so connect stays lazy.
    tokio::time::timeout(LIMIT, config.connect())
        .await
        .expect("connect answers")
        .expect("connect is lazy");
    // etcd drops the TLS hello: a clean close ("tls handshake eof"), or a
    // reset when the hello was still unread in its socket; either way the
    // handshake fails at once.
    for error in requests_fail(&config, LIMIT).await {
        assert!(
            error.contains("tls handshake eof") || error.contains("Connection reset by peer"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_leaves_the_connection_lazy() {
    support::init_tracing();
    let pki = Pki::new();
    // Nothing listens there: etcd may simply not be up yet.
    let port = support::free_port();
    let config = EtcdConfig::new([format!("https://127.0.0.1:{port}")]).ca_file(&pki.ca);
    let started = Instant::now();
    config
        .connect()
        .await
        .expect("lazy: etcd may come up later");
    assert!(started.elapsed() < LIMIT, "took {:?}", started.elapsed());
}
