//! The examples' `--format` flag, driven through the binaries against a real
//! etcd: in every registry format the server writes the exact key the other
//! system expects, on a lease, and the client with the same format finds it
//! and is served; SIGTERM removes the key. `--namespace` moves an etcd-naming
//! key; an unknown format is refused by both binaries; a hand-written
//! registration of Go's etcd endpoints manager is found by the client.

use std::time::Duration;

use crate::support;
use crate::support::examples::{assert_live_lease, Cmd, Server, CLIENT_WITHIN, REGISTER_WITHIN};
use crate::support::kv::get;
use crate::support::Etcd;
use etcd_client::{Client, PutOptions};
use futures_util::future::join_all;
use serde_json::{json, Value};
use tonic_etcd::codec::FORMATS;

/// The key a server of `service` at `addr` registers in `format` with the
/// default namespace (see src/codec/*.rs and INTEROP.md).
fn expected_key(format: &str, service: &str, version: Option<&str>, addr: &str) -> String {
    match (format, version) {
        ("native" | "plain", _) => format!("/services/{service}/{addr}"),
        ("etcd-naming" | "go-zero", _) => format!("{service}/{addr}"),
        ("kratos", _) => format!("/microservices/{service}/{addr}"),
        ("versioned-json", None) => format!("/{service}/{addr}"),
        ("versioned-json", Some(version)) => format!("/{service}/{version}/{addr}"),
        (other, _) => panic!("no expected layout for the format {other}: add it to this test"),
    }
}

/// Checks the value a server of `service` at `addr` wrote in `format`.
fn check_value(format: &str, service: &str, version: Option<&str>, addr: &str, value: &[u8]) {
    let text = String::from_utf8_lossy(value);
    let json = || -> Value {
        serde_json::from_slice(value)
            .unwrap_or_else(|error| panic!("{format} value {text:?} is not JSON: {error}"))
    };
    match format {
        "etcd-naming" => assert_eq!(
            text,
            format!(r#"{{"Op":0,"Addr":"{addr}","Metadata":null}}"#),
            "etcd-naming value, byte for byte"
        ),
        "go-zero" | "plain" => assert_eq!(text, addr, "{format} value"),
        "native" => {
            let v = json();
            assert_eq!(v["name"], json!(service), "native value {text}");
            assert_eq!(v["addr"], json!(addr), "native value {text}");
            assert_eq!(v["id"], json!(addr), "native value {text}");
        }
        "kratos" => {
            let v = json();
            assert_eq!(v["name"], json!(service), "kratos value {text}");
            assert_eq!(
                v["endpoints"],
                json!([format!("grpc://{addr}?isSecure=false")]),
                "kratos value {text}"
            );
        }
        "versioned-json" => {
            let v = json();
            assert_eq!(v["name"], json!(service), "versioned-json value {text}");
            assert_eq!(v["addr"], json!(addr), "versioned-json value {text}");
            assert_eq!(
                v["version"],
                json!(version.unwrap_or_default()),
                "versioned-json value {text}"
            );
        }
        other => panic!("no expected value for the format {other}: add it to this test"),
    }
}

/// One server in `format`: the exact key on a live lease, the expected value,
/// 5 requests served to a client of the same format, the key gone on SIGTERM.
async fn check_format(etcd: &Client, endpoint: &str, format: &str, version: Option<&str>) {
    let service = support::unique(&format!("fmt-{format}"));
    let mut cmd = Cmd::server().args([
        "--etcd",
        endpoint,
        "--format",
        format,
        "--service",
        &service,
    ]);
    if let Some(version) = version {
        cmd = cmd.args(["--version", version]);
    }
    let mut server = Server::start(cmd);
    let key = expected_key(format, &service, version, &server.addr);
    let (value, lease) = server.wait_registered(etcd, &key, REGISTER_WITHIN).await;
    assert_live_lease(etcd, &key, lease).await;
    check_value(format, &service, version, &server.addr, &value);

    let run = Cmd::client()
        .args([
            "--etcd",
            endpoint,
            "--format",
            format,
            "--service",
            &service,
        ])
        .args(["--requests", "5"])
        .run(CLIENT_WITHIN)
        .await;
    run.assert_all_ok(5);
    run.assert_all_from(&server.addr);

    server.stop_gracefully(etcd, &key).await;
    eprintln!("{format} (version {version:?}): {key} ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_registers_the_expected_key_and_serves() {
    let etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let client = etcd.client().await;
    let mut cases: Vec<(&str, Option<&str>)> = FORMATS.iter().map(|f| (*f, None)).collect();
    cases.push(("versioned-json", Some("1.0.0")));
    join_all(
        cases
            .iter()
            .map(|(format, version)| check_format(&client, &endpoint, format, *version)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_naming_namespace_prefixes_the_target() {
    let etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let client = etcd.client().await;
    let service = support::unique("ns");
    let flags = ["--etcd", &endpoint, "--format", "etcd-naming"];
    let mut server = Server::start(Cmd::server().args(flags).args([
        "--namespace",
        "foo",
        "--service",
        &service,
    ]));
    let key = format!("foo/{service}/{}", server.addr);
    let (value, lease) = server.wait_registered(&client, &key, REGISTER_WITHIN).await;
    assert_live_lease(&client, &key, lease).await;
    check_value("etcd-naming", &service, None, &server.addr, &value);
    assert!(
        get(&client, &format!("{service}/{}", server.addr))
            .await
            .is_none(),
        "nothing under the default (empty) namespace"
    );

    // A client in the same namespace is served; one without it finds nobody.
    let run = Cmd::client()
        .args(flags)
        .args([
            "--namespace",
            "foo",
            "--service",
            &service,
            "--requests",
            "5",
        ])
        .run(CLIENT_WITHIN)
        .await;
    run.assert_all_ok(5);
    let run = Cmd::client()
        .args(flags)
        .args(["--service", &service, "--requests", "2"])
        .run(CLIENT_WITHIN)
        .await;
    run.assert_all_failed(2);

    server.stop_gracefully(&client, &key).await;
}

#[tokio::test]
async fn an_unknown_format_is_refused_by_both_binaries() {
    let listen = format!("127.0.0.1:{}", support::free_port());
    for cmd in [
        Cmd::server().args(["--listen", &listen, "--format", "nope"]),
        Cmd::client().args(["--format", "nope", "--requests", "1"]),
    ] {
        let run = cmd.run(Duration::from_secs(10)).await;
        run.assert_failed();
        assert!(
            run.stderr.contains("nope"),
            "the error names the bad value\n{run}"
        );
        for name in FORMATS {
            assert!(
                run.stderr.contains(name),
                "the error lists the format {name}\n{run}"
            );
        }
        assert!(
            !run.stderr.contains("summary:"),
            "refused before sending anything\n{run}"
        );
    }
}

/// What a Go server registered through etcd's `naming/endpoints` manager
/// (`AddEndpoint(ctx, "S/addr", Endpoint{Addr: addr}, WithLease(id))`) leaves
/// in etcd is found by the client with `--format etcd-naming`; deleting it
/// removes the instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_style_etcd_naming_registration_is_reachable() {
    let etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let client = etcd.client().await;
    let service = support::unique("go");
    // The greeter itself registers natively; the etcd-naming key is written by hand.
    let mut server = Server::start(Cmd::server().args([
        "--etcd",
        &endpoint,
        "--format",
        "native",
        "--service",
        &service,
    ]));
    let native_key = format!("/services/{service}/{}", server.addr);
    server
        .wait_registered(&client, &native_key, REGISTER_WITHIN)
        .await;

    let go_key = format!("{service}/{}", server.addr);
    let go_value = format!(r#"{{"Op":0,"Addr":"{}","Metadata":null}}"#, server.addr);
    let mut writer = client.clone();
    let lease = writer.lease_grant(30, None).await.unwrap().id();
    writer
        .put(
            go_key.as_str(),
            go_value.as_str(),
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();

    let client_flags = ["--etcd", &endpoint, "--format", "etcd-naming"];
    let run = Cmd::client()
        .args(client_flags)
        .args(["--service", &service, "--requests", "5"])
        .run(CLIENT_WITHIN)
        .await;
    run.assert_all_ok(5);
    run.assert_all_from(&server.addr);

    // Go's DeleteEndpoint: the key is gone, the etcd-naming client finds nobody
    // (although the native registration is still there).
    writer.delete(go_key.as_str(), None).await.unwrap();
    let run = Cmd::client()
        .args(client_flags)
        .args(["--service", &service, "--requests", "2"])
        .run(CLIENT_WITHIN)
        .await;
    run.assert_all_failed(2);

    server.stop_gracefully(&client, &native_key).await;
}
