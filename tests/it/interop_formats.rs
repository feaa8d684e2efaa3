//! The registry formats of other systems (INTEROP.md), through a real etcd:
//! registration writes each format byte for byte, discovery reads it back, and
//! discovery reads values written the way the Go systems write them.

use std::sync::Arc;
use std::time::Duration;

use crate::support;
use crate::support::changes::next;
use crate::support::kv::get;
use crate::support::{Etcd, Result};
use etcd_client::Client;
use tonic_etcd::codec::{self, Codec};
use tonic_etcd::{Discovery, Instance, InstanceChanges, Registrar};
use tower::discover::Change;

const TTL: Duration = Duration::from_secs(5);

async fn expect_insert(discovered: &mut InstanceChanges) -> (String, Instance) {
    match next(discovered).await {
        Change::Insert(identity, instance) => (identity, instance),
        Change::Remove(identity) => panic!("expected an insert, got the remove of {identity}"),
    }
}

async fn expect_remove(discovered: &mut InstanceChanges) -> String {
    match next(discovered).await {
        Change::Insert(identity, instance) => {
            panic!("expected a remove, got the insert of {identity}: {instance:?}")
        }
        Change::Remove(identity) => identity,
    }
}

fn codec(name: &str) -> Arc<dyn Codec> {
    codec::by_name(name).unwrap_or_else(|| panic!("unknown format {name}"))
}

fn discovery(client: &Client, format: &str, service: &str, namespace: Option<&str>) -> Discovery {
    let discovery = Discovery::new(client.clone(), service).codec_arc(codec(format));
    match namespace {
        Some(namespace) => discovery.namespace(namespace),
        None => discovery,
    }
}

/// One format's round trip: what is registered, and what must be seen.
struct Case {
    format: &'static str,
    namespace: Option<&'static str>,
    /// Registered.
    instance: Instance,
    /// The exact etcd key.
    key: String,
    /// The exact etcd value.
    value: String,
    /// What discovery reports, as far as the format carries it.
    discovered: Instance,
}

/// Registers `case.instance` while one discovery watches, checks the raw key and
/// value, starts a second discovery that reads it with its initial Get, then
/// deregisters: both see the removal.
async fn round_trip(etcd: &Etcd, case: Case) -> Result {
    let client = etcd.client().await;
    let service = case.instance.service.clone();
    let codec = codec(case.format);
    let identity = codec.identity(&case.key, &case.discovered);

    let mut watching = discovery(&client, case.format, &service, case.namespace)
        .changes()
        .await?;
    assert!(watching.snapshot().is_empty());

    let mut registrar = Registrar::new(client.clone())
        .codec_arc(codec.clone())
        .ttl(TTL);
    if let Some(namespace) = case.namespace {
        registrar = registrar.namespace(namespace);
    }
    let registration = registrar.register(case.instance.clone()).await?;
    assert_eq!(registration.key(), case.key, "{}: key", case.format);
    let (value, lease) = get(&client, &case.key)
        .await
        .unwrap_or_else(|| panic!("{}: nothing at {}", case.format, case.key));
    assert_eq!(
        String::from_utf8_lossy(&value),
        case.value,
        "{}: value",
        case.format
    );
    assert_eq!(value, case.value.as_bytes(), "{}: value bytes", case.format);
    assert_ne!(lease, 0, "{}: the key carries a lease", case.format);

    // Seen through the watch...
    let (seen, instance) = expect_insert(&mut watching).await;
    assert_eq!(seen, identity, "{}: identity", case.format);
    assert_eq!(instance, case.discovered, "{}: instance", case.format);
    assert_eq!(watching.snapshot(), vec![case.discovered.clone()]);

    // ...and through the initial Get.
    let mut fresh = discovery(&client, case.format, &service, case.namespace)
        .changes()
        .await?;
    assert_eq!(
        expect_insert(&mut fresh).await,
        (identity.clone(), case.discovered.clone())
    );

    registration.deregister().await?;
    assert!(
        get(&client, &case.key).await.is_none(),
        "{}: key deleted",
        case.format
    );
    assert_eq!(expect_remove(&mut watching).await, identity);
    assert_eq!(expect_remove(&mut fresh).await, identity);
    assert!(watching.snapshot().is_empty());
    Ok(())
}

#[test]
fn every_format_has_a_name() {
    assert_eq!(
        codec::FORMATS,
        [
            "native",
            "etcd-naming",
            "kratos",
            "go-zero",
            "plain",
            "versioned-json"
        ]
    );
    for name in codec::FORMATS {
        assert_eq!(codec(name).name(), *name);
    }
    assert!(codec::by_name("").is_none());
    assert!(codec::by_name("Native").is_none());
}

#[tokio::test]
async fn native_round_trip() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let service = support::unique("native");
    let instance = Instance::new(&service, "10.0.0.7:50051")?
        .with_version("1.2.0")
        .with_metadata("zone", "a");
    round_trip(
        &etcd,
        Case {
            format: "native",
            namespace: None,
            key: format!("/services/{service}/10.0.0.7:50051"),
            value: format!(
                r#"{{"name":"{service}","id":"10.0.0.7:50051","addr":"10.0.0.7:50051","version":"1.2.0","weight":1,"metadata":{{"zone":"a"}}}}"#
            ),
            discovered: instance.clone(),
            instance,
        },
    )
    .await
}

#[tokio::test]
async fn etcd_naming_round_trip() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    // The key a Go client dialing etcd:///helloworld reads.
    let plain = Instance::new("helloworld", "127.0.0.1:50051")?;
    round_trip(
        &etcd,
        Case {
            format: "etcd-naming",
            namespace: None,
            key: "helloworld/127.0.0.1:50051".to_owned(),
            value: r#"{"Op":0,"Addr":"127.0.0.1:50051","Metadata":null}"#.to_owned(),
            discovered: plain.clone(),
            instance: plain,
        },
    )
    .await?;
    // Weight, version and metadata travel in Metadata.
    let rich = Instance::new("helloworld", "10.0.0.7:50051")?
        .with_version("1.2.0")
        .with_weight(3)
        .with_metadata("zone", "a");
    round_trip(
        &etcd,
        Case {
            format: "etcd-naming",
            namespace: None,
            key: "helloworld/10.0.0.7:50051".to_owned(),
            value: r#"{"Op":0,"Addr":"10.0.0.7:50051","Metadata":{"version":"1.2.0","weight":3,"zone":"a"}}"#
                .to_owned(),
            discovered: rich.clone(),
            instance: rich,
        },
    )
    .await
}

#[tokio::test]
async fn kratos_round_trip() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let instance = Instance::new("helloworld", "10.0.0.7:9000")?
        .with_id("host-1")
        .with_version("v1.0.0")
        .with_weight(10);
    round_trip(
        &etcd,
        Case {
            format: "kratos",
            namespace: None,
            key: "/microservices/helloworld/host-1".to_owned(),
            value: r#"{"id":"host-1","name":"helloworld","version":"v1.0.0","metadata":{"weight":"10"},"endpoints":["grpc://10.0.0.7:9000?isSecure=false"]}"#
                .to_owned(),
            discovered: instance.clone(),
            instance,
        },
    )
    .await
}

#[tokio::test]
async fn go_zero_round_trip() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let instance = Instance::new("greet.rpc", "10.0.0.7:8080")?;
    round_trip(
        &etcd,
        Case {
            format: "go-zero",
            namespace: None,
            key: "greet.rpc/10.0.0.7:8080".to_owned(),
            value: "10.0.0.7:8080".to_owned(),
            discovered: instance.clone(),
            instance,
        },
    )
    .await?;
    // Not carried: version, weight, metadata.
    let rich = Instance::new("greet.rpc", "10.0.0.7:8081")?
        .with_id("1234")
        .with_version("1.0.0")
        .with_weight(4);
    round_trip(
        &etcd,
        Case {
            format: "go-zero",
            namespace: None,
            key: "greet.rpc/1234".to_owned(),
            value: "10.0.0.7:8081".to_owned(),
            // The id of a go-zero instance is its address.
            discovered: Instance::new("greet.rpc", "10.0.0.7:8081")?,
            instance: rich,
        },
    )
    .await
}

#[tokio::test]
async fn plain_round_trip() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let instance = Instance::new("helloworld", "10.0.0.7:50051")?;
    round_trip(
        &etcd,
        Case {
            format: "plain",
            namespace: None,
            key: "/services/helloworld/10.0.0.7:50051".to_owned(),
            value: "10.0.0.7:50051".to_owned(),
            discovered: instance.clone(),
            instance,
        },
    )
    .await
}

#[tokio::test]
async fn versioned_json_round_trip() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let versioned = Instance::new("helloworld", "10.0.0.7:50051")?
        .with_version("1.0.0")
        .with_weight(2);
    round_trip(
        &etcd,
        Case {
            format: "versioned-json",
            namespace: None,
            key: "/helloworld/1.0.0/10.0.0.7:50051".to_owned(),
            value: r#"{"name":"helloworld","addr":"10.0.0.7:50051","version":"1.0.0","weight":2}"#
                .to_owned(),
            discovered: versioned.clone(),
            instance: versioned,
        },
    )
    .await?;
    let unversioned = Instance::new("helloworld", "10.0.0.7:50052")?;
    round_trip(
        &etcd,
        Case {
            format: "versioned-json",
            namespace: None,
            key: "/helloworld/10.0.0.7:50052".to_owned(),
            value: r#"{"name":"helloworld","addr":"10.0.0.7:50052","version":"","weight":1}"#
                .to_owned(),
            discovered: unversioned.clone(),
            instance: unversioned,
        },
    )
    .await
}

#[tokio::test]
async fn every_format_takes_a_namespace() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let cases: [(&str, &str, &str); 6] = [
        ("native", "/prod", "/prod/helloworld/10.0.0.7:1"),
        ("etcd-naming", "prod", "prod/helloworld/10.0.0.7:1"),
        ("kratos", "/prod", "/prod/helloworld/10.0.0.7:1"),
        ("go-zero", "prod", "prod/helloworld/10.0.0.7:1"),
        ("plain", "/prod/kit", "/prod/kit/helloworld/10.0.0.7:1"),
        ("versioned-json", "/prod", "/prod/helloworld/10.0.0.7:1"),
    ];
    for (format, namespace, key) in cases {
        let instance = Instance::new("helloworld", "10.0.0.7:1")?;
        let registration = Registrar::new(client.clone())
            .codec_arc(codec(format))
            .namespace(namespace)
            .ttl(TTL)
            .register(instance.clone())
            .await?;
        assert_eq!(registration.key(), key, "{format}");

        let mut discovered = discovery(&client, format, "helloworld", Some(namespace))
            .changes()
            .await?;
        let (_, seen) = expect_insert(&mut discovered).await;
        assert_eq!(seen.addr, "10.0.0.7:1", "{format}");
        // The format's default namespace does not hold it.
        let elsewhere = discovery(&client, format, "helloworld", None)
            .changes()
            .await?;
        assert!(
            elsewhere.snapshot().is_empty(),
            "{format}: seen outside {namespace}"
        );

        registration.deregister().await?;
        expect_remove(&mut discovered).await;
    }
    Ok(())
}

#[tokio::test]
async fn go_zero_dedupes_keys_by_address() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    // As go-zero's publisher writes them: one key per lease, the lease id in
    // decimal. A restarted server briefly owns two keys.
    client.put("greet.rpc/111", "127.0.0.1:8080", None).await?;
    client.put("greet.rpc/222", "127.0.0.1:8080", None).await?;

    let mut discovered = discovery(&client, "go-zero", "greet.rpc", None)
        .changes()
        .await?;
    let (identity, instance) = expect_insert(&mut discovered).await;
    assert_eq!(identity, "127.0.0.1:8080");
    assert_eq!(instance.addr, "127.0.0.1:8080");
    assert_eq!(discovered.snapshot().len(), 1, "one instance for two keys");

    // One key goes: still there. The marker proves that no remove came first.
    client.delete("greet.rpc/111", None).await?;
    client.put("greet.rpc/333", "127.0.0.1:9090", None).await?;
    let (marker, _) = expect_insert(&mut discovered).await;
    assert_eq!(marker, "127.0.0.1:9090");
    assert_eq!(discovered.snapshot().len(), 2);

    // The other key goes: removed.
    client.delete("greet.rpc/222", None).await?;
    assert_eq!(expect_remove(&mut discovered).await, "127.0.0.1:8080");
    let left: Vec<String> = discovered.snapshot().into_iter().map(|i| i.addr).collect();
    assert_eq!(left, ["127.0.0.1:9090"]);

    // What zrpc writes is not JSON; junk is skipped.
    client.put("greet.rpc/444", "not an address", None).await?;
    client.delete("greet.rpc/333", None).await?;
    assert_eq!(expect_remove(&mut discovered).await, "127.0.0.1:9090");
    Ok(())
}

#[tokio::test]
async fn plain_reads_schemes_and_dedupes_by_address() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    client
        .put("/services/helloworld/a", "http://10.0.0.7:50051", None)
        .await?;
    client
        .put("/services/helloworld/b", "10.0.0.7:50051\n", None)
        .await?;
    client
        .put("/services/helloworld/c", "grpc://10.0.0.8:50051/", None)
        .await?;

    let mut discovered = discovery(&client, "plain", "helloworld", None)
        .changes()
        .await?;
    let mut seen = [
        expect_insert(&mut discovered).await.0,
        expect_insert(&mut discovered).await.0,
    ];
    seen.sort();
    assert_eq!(seen, ["10.0.0.7:50051", "10.0.0.8:50051"]);

    client.delete("/services/helloworld/a", None).await?;
    client.delete("/services/helloworld/c", None).await?;
    assert_eq!(expect_remove(&mut discovered).await, "10.0.0.8:50051");
    client.delete("/services/helloworld/b", None).await?;
    assert_eq!(expect_remove(&mut discovered).await, "10.0.0.7:50051");
    Ok(())
}

#[tokio::test]
async fn kratos_picks_the_grpc_endpoint() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let mut discovered = discovery(&client, "kratos", "helloworld", None)
        .changes()
        .await?;

    // As kratos writes an instance serving HTTP and gRPC.
    let key = "/microservices/helloworld/host-1";
    client
        .put(
            key,
            r#"{"id":"host-1","name":"helloworld","version":"v1.0.0","metadata":{"weight":"10"},"endpoints":["http://10.0.0.7:8000?isSecure=false","grpc://10.0.0.7:9000?isSecure=false"]}"#,
            None,
        )
        .await?;
    let (identity, instance) = expect_insert(&mut discovered).await;
    assert_eq!(identity, key);
    assert_eq!(instance.addr, "10.0.0.7:9000");
    assert_eq!(instance.id, "host-1");
    assert_eq!(instance.version, "v1.0.0");
    assert_eq!(instance.weight, 10);

    // An HTTP-only instance of the same name is not a gRPC server.
    client
        .put(
            "/microservices/helloworld/http-only",
            r#"{"id":"http-only","name":"helloworld","version":"","metadata":null,"endpoints":["http://10.0.0.9:8000"]}"#,
            None,
        )
        .await?;
    client.delete(key, None).await?;
    assert_eq!(expect_remove(&mut discovered).await, key);
    assert!(discovered.snapshot().is_empty());
    Ok(())
}

#[tokio::test]
async fn etcd_naming_reads_what_go_writes() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let mut discovered = discovery(&client, "etcd-naming", "helloworld", None)
        .changes()
        .await?;

    // endpoints.Manager.AddEndpoint(ctx, "helloworld/127.0.0.1:50051",
    //     endpoints.Endpoint{Addr: "127.0.0.1:50051"})
    let key = "helloworld/127.0.0.1:50051";
    client
        .put(
            key,
            r#"{"Op":0,"Addr":"127.0.0.1:50051","Metadata":null}"#,
            None,
        )
        .await?;
    let (identity, instance) = expect_insert(&mut discovered).await;
    assert_eq!(identity, key);
    assert_eq!(instance, Instance::new("helloworld", "127.0.0.1:50051")?);

    // Go's target prefix has no slash; ours does: helloworldx is another target.
    client
        .put(
            "helloworldx/127.0.0.1:1",
            r#"{"Op":0,"Addr":"127.0.0.1:1","Metadata":null}"#,
            None,
        )
        .await?;
    // A PUT is an add whatever Op says, and Metadata passes through.
    let other = "helloworld/node-2";
    client
        .put(
            other,
            r#"{"Op":1,"Addr":"127.0.0.1:50052","Metadata":{"weight":4,"zone":"b"}}"#,
            None,
        )
        .await?;
    let (identity, instance) = expect_insert(&mut discovered).await;
    assert_eq!(identity, other);
    assert_eq!(instance.addr, "127.0.0.1:50052");
    assert_eq!(instance.id, "node-2");
    assert_eq!(instance.weight, 4);
    assert_eq!(instance.metadata.get("zone").map(String::as_str), Some("b"));

    // A DELETE removes, whatever the value said.
    client.delete(key, None).await?;
    assert_eq!(expect_remove(&mut discovered).await, key);
    client.delete(other, None).await?;
    assert_eq!(expect_remove(&mut discovered).await, other);
    assert!(discovered.snapshot().is_empty());
    Ok(())
}

#[tokio::test]
async fn versioned_json_reads_both_key_shapes_and_weight_updates() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    client
        .put(
            "/helloworld/1.0.0/10.0.0.7:50051",
            r#"{"name":"helloworld","addr":"10.0.0.7:50051","version":"1.0.0","weight":2}"#,
            None,
        )
        .await?;
    client
        .put(
            "/helloworld/10.0.0.8:50051",
            r#"{"name":"helloworld","addr":"10.0.0.8:50051","version":"","weight":1}"#,
            None,
        )
        .await?;
    let mut discovered = discovery(&client, "versioned-json", "helloworld", None)
        .changes()
        .await?;
    let mut seen = [
        expect_insert(&mut discovered).await.1,
        expect_insert(&mut discovered).await.1,
    ];
    seen.sort_by(|a, b| a.addr.cmp(&b.addr));
    let found: Vec<(&str, &str, u32)> = seen
        .iter()
        .map(|i| (i.addr.as_str(), i.version.as_str(), i.weight))
        .collect();
    assert_eq!(
        found,
        [("10.0.0.7:50051", "1.0.0", 2), ("10.0.0.8:50051", "", 1)]
    );

    // The tutorial's balancer weight changes at run time, on the same key.
    let registration = Registrar::new(client.clone())
        .codec_arc(codec("versioned-json"))
        .ttl(TTL)
        .register(Instance::new("helloworld", "10.0.0.9:50051")?.with_version("2.0.0"))
        .await?;
    let key = "/helloworld/2.0.0/10.0.0.9:50051";
    assert_eq!(expect_insert(&mut discovered).await.1.weight, 1);
    registration.update(|instance| instance.weight = 7).await?;
    let (identity, instance) = expect_insert(&mut discovered).await;
    assert_eq!((identity.as_str(), instance.weight), (key, 7));
    let (value, _) = get(&client, key).await.expect("still registered");
    assert_eq!(
        String::from_utf8(value)?,
        r#"{"name":"helloworld","addr":"10.0.0.9:50051","version":"2.0.0","weight":7}"#
    );
    registration.deregister().await?;
    assert_eq!(expect_remove(&mut discovered).await, key);
    Ok(())
}
