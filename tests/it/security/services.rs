//! TLS to the gRPC services: the `tls` endpoint template reaches servers whose
//! certificate names their IP address or, through the `tls-domain` metadata,
//! a DNS name; mutual TLS works; a client that does not trust the servers'
//! CA gets an error, not a hang. The CA is made at test time.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use crate::support;
use crate::support::balancer::{self, hello};
use crate::support::changes::put;
use crate::support::secure::{Leaf, Pki};
use crate::support::Etcd;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::Code;
use tonic_etcd::tls::{self, ClientTlsConfig, ServerTlsConfig};
use tonic_etcd::{Discovery, Instance};

/// A TLS greeter on 127.0.0.1:0 with the certificate `leaf`; with
/// `client_ca`, it requires client certificates signed by that CA.
async fn serve(leaf: &Leaf, client_ca: Option<&Pki>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config =
        ServerTlsConfig::new().identity(tls::read_identity(&leaf.cert, &leaf.key).unwrap());
    if let Some(pki) = client_ca {
        config = config.client_ca_root(tls::read_certificate(&pki.ca).unwrap());
    }
    let server = Server::builder()
        .tls_config(config)
        .unwrap()
        .add_service(balancer::service(addr))
        .serve_with_incoming(TcpIncoming::from(listener));
    tokio::spawn(server);
    addr
}

fn trusting(pki: &Pki) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(tls::read_certificate(&pki.ca).unwrap())
        .timeout(Duration::from_secs(1))
}

#[tokio::test]
async fn requests_reach_tls_servers_named_by_address_or_by_metadata() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("tls-greeter");
    let pki = Pki::new();
    // One certificate for the IP address, one for a DNS name only.
    let by_ip = serve(&pki.issue("by-ip", &["127.0.0.1"]), None).await;
    let by_name = serve(&pki.issue("by-name", &["greeter-b.test"]), None).await;
    put(
        &mut client,
        &Instance::new(&service, by_ip.to_string()).unwrap(),
    )
    .await;
    let named = Instance::new(&service, by_name.to_string())
        .unwrap()
        .with_metadata(tls::DOMAIN_KEY, "greeter-b.test");
    put(&mut client, &named).await;

    let channel = Discovery::new(client, &service)
        .tonic_channel_with(tls::template(trusting(&pki)))
        .await
        .unwrap();
    assert_eq!(
        balancer::answering(&channel, 2).await,
        HashSet::from([by_ip.to_string(), by_name.to_string()])
    );
}

#[tokio::test]
async fn the_config_domain_applies_when_the_metadata_names_none() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("tls-domain");
    let pki = Pki::new();
    let addr = serve(&pki.issue("fleet", &["greeters.test"]), None).await;
    put(
        &mut client,
        &Instance::new(&service, addr.to_string()).unwrap(),
    )
    .await;

    let channel = Discovery::new(client, &service)
        .tonic_channel_with(tls::template(trusting(&pki).domain_name("greeters.test")))
        .await
        .unwrap();
    assert_eq!(hello(&channel).await.unwrap(), addr.to_string());
}

#[tokio::test]
async fn mutual_tls_to_a_service() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("mtls-greeter");
    let pki = Pki::new();
    let addr = serve(&pki.issue("mtls", &["127.0.0.1"]), Some(&pki)).await;
    put(
        &mut client,
        &Instance::new(&service, addr.to_string()).unwrap(),
    )
    .await;

    let identity = tls::read_identity(&pki.client.cert, &pki.client.key).unwrap();
    let channel = Discovery::new(client.clone(), &service)
        .tonic_channel_with(tls::template(trusting(&pki).identity(identity)))
        .await
        .unwrap();
    assert_eq!(hello(&channel).await.unwrap(), addr.to_string());

    // Without a client certificate the server refuses: an error, not a hang.
    let anonymous = Discovery::new(client, &service)
        .tonic_channel_with(tls::template(trusting(&pki)))
        .await
        .unwrap();
    let status = hello(&anonymous).await.expect_err("no client certificate");
    assert_ne!(status.code(), Code::DeadlineExceeded, "a hang: {status:?}");
    eprintln!("without a client certificate: {status}");
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_gets_an_error_not_a_hang() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("tls-untrusted");
    let pki = Pki::new();
    let addr = serve(&pki.server, None).await;
    put(
        &mut client,
        &Instance::new(&service, addr.to_string()).unwrap(),
    )
    .await;

    let other = Pki::new();
    let channel = Discovery::new(client, &service)
        .tonic_channel_with(tls::template(trusting(&other)))
        .await
        .unwrap();
    let status = hello(&channel)
        .await
        .expect_err("the server is not trusted");
    let text = format!("{status:?}");
    assert!(text.contains("UnknownIssuer"), "{text}");
}
