//! Bad input: the API refuses it with a typed error that names the culprit,
//! before anything reaches etcd; discovery skips whatever it finds under its
//! prefix that is not an instance (malformed or empty values, non-UTF-8 keys
//! and values, another service's entries) with a warning, and loses nothing
//! valid.

use std::time::Duration;

use crate::support;
use crate::support::changes::next;
use crate::support::{wait_for, wait_until, Etcd, Result};
use etcd_client::{Client, GetOptions};
use futures_util::Stream;
use tonic_etcd::codec::{Codec, Native};
use tonic_etcd::registration::MAX_ENTRY_BYTES;
use tonic_etcd::{Discovery, Error, Instance, InstanceChanges, Registrar};
use tower::discover::Change;

async fn count(client: &Client, prefix: &str) -> i64 {
    let mut client = client.clone();
    let options = GetOptions::new().with_prefix().with_count_only();
    client.get(prefix, Some(options)).await.unwrap().count()
}

#[tokio::test]
async fn the_api_refuses_bad_input_with_clear_typed_errors() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = support::unique("bad");
    let good = Instance::new(&service, "127.0.0.1:7200")?;
    let registrar = Registrar::new(client.clone());

    for name in ["", "a/b", "a b", "tab\there", "bell\u{7}"] {
        let error = Instance::new(name, "127.0.0.1:1").unwrap_err();
        assert!(
            matches!(&error, Error::InvalidServiceName { name: n, .. } if n == name),
            "{name:?}: {error}"
        );
        assert!(
            error.to_string().contains("invalid service name"),
            "{error}"
        );
        let error = Discovery::new(client.clone(), name)
            .changes()
            .await
            .unwrap_err();
        assert!(matches!(error, Error::InvalidServiceName { .. }), "{error}");
    }

    for addr in [
        "",
        "nope",
        "host:",
        ":80",
        "host:0",
        "host:65536",
        "host:http",
        "http://host:80",
        "::1:80",
        "[::1:80",
        "[zz]:80",
        "ho st:80",
        "host/x:80",
    ] {
        let error = Instance::new(&service, addr).unwrap_err();
        match &error {
            Error::InvalidAddress { addr: a, reason } => {
                assert_eq!(a, addr);
                assert!(!reason.is_empty());
                assert!(error.to_string().contains(&format!("{addr:?}")), "{error}");
            }
            other => panic!("{addr:?}: expected InvalidAddress, got {other}"),
        }
        // The same address set on the public field is caught by register.
        let mut instance = good.clone();
        instance.addr = addr.to_owned();
        let error = registrar.register(instance).await.unwrap_err();
        assert!(matches!(error, Error::InvalidAddress { .. }), "{error}");
    }
    for addr in ["127.0.0.1:1", "[::1]:50051", "my-host.example_1:443"] {
        Instance::new(&service, addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    }

    for id in ["", "a b", "nl\n"] {
        let error = registrar
            .register(good.clone().with_id(id))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::InvalidId { .. }), "{id:?}: {error}");
    }
    for weight in [0, Instance::MAX_WEIGHT + 1] {
        let error = registrar
            .register(good.clone().with_weight(weight))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::InvalidWeight { weight: w, .. } if w == weight));
    }
    let error = registrar
        .register(good.clone().with_version("1.0\u{0}"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::InvalidField {
                field: "version",
                ..
            }
        ),
        "{error}"
    );
    let error = registrar
        .register(good.clone().with_metadata("", "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::InvalidField {
                field: "metadata",
                ..
            }
        ),
        "{error}"
    );
    let error = registrar
        .clone()
        .ttl(Duration::ZERO)
        .register(good.clone())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidTtl { .. }), "{error}");

    for namespace in ["services", "services/", "/a//b", "/a b"] {
        let error = registrar
            .clone()
            .namespace(namespace)
            .register(good.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::InvalidNamespace { namespace: n, .. } if n == namespace),
            "{namespace:?}: {error}"
        );
        let error = Discovery::new(client.clone(), &service)
            .namespace(namespace)
            .changes()
            .await
            .unwrap_err();
        assert!(matches!(error, Error::InvalidNamespace { .. }), "{error}");
    }
    let error = registrar
        .clone()
        .namespace("services")
        .register(good.clone())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid namespace \"services\": must start with '/'"
    );

    // Nothing of the above reached etcd.
    assert_eq!(count(&client, "").await, 0, "etcd must be empty");
    Ok(())
}

#[tokio::test]
async fn oversize_entries_are_refused_before_etcd() -> Result {
    support::init_tracing();
    let mut etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("big");
    let prefix = format!("/services/{service}/");
    let good = Instance::new(&service, "127.0.0.1:7300")?;

    // An entry just under the limit registers, and discovery reads it.
    let key_len = Native.key("/services", &good).len();
    let base = Native
        .encode(&good.clone().with_metadata("blob", ""))?
        .len();
    let fits = MAX_ENTRY_BYTES - key_len - base;
    let big = good.clone().with_metadata("blob", "x".repeat(fits));
    let registration = Registrar::new(client.clone()).register(big.clone()).await?;
    let discovered = Discovery::new(client.clone(), &service).changes().await?;
    assert_eq!(discovered.snapshot(), vec![big]);

    // One byte more is refused, whatever etcd's state: with etcd down, the
    // error is still TooLarge, so etcd was never asked.
    let over = good.clone().with_metadata("blob", "x".repeat(fits + 1));
    let error = Registrar::new(client.clone())
        .register(over.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::TooLarge { size, limit } if size == MAX_ENTRY_BYTES + 1 && limit == MAX_ENTRY_BYTES),
        "{error}"
    );
    assert!(error.to_string().contains("too large"), "{error}");
    let error = registration
        .update(|i| {
            i.metadata.insert("blob".into(), "x".repeat(fits + 1));
        })
        .await
        .unwrap_err();
    assert!(matches!(error, Error::TooLarge { .. }), "{error}");

    // etcd itself refuses a value over its request limit (1.5 MiB by default):
    // the registry is unchanged, and the discovery does not notice.
    let refused = client
        .put(format!("{prefix}huge"), vec![b'x'; 2 << 20], None)
        .await;
    assert!(refused.is_err(), "etcd must refuse a 2 MiB value");
    assert_eq!(count(&client, &prefix).await, 1);

    etcd.kill().await;
    let error = Registrar::new(client.clone())
        .register(over)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::TooLarge { .. }), "{error}");
    Ok(())
}

/// Every kind of garbage, written under `prefix` with the raw etcd client.
async fn put_garbage(client: &mut Client, prefix: &str, tag: &str) {
    let mut non_utf8_key = format!("{prefix}{tag}-key-").into_bytes();
    non_utf8_key.extend([0xff, 0xfe, 0x80]);
    let valid_elsewhere = br#"{"addr":"127.0.0.1:9"}"#.to_vec();
    let entries: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (format!("{prefix}{tag}-json").into(), b"{\"addr\":".to_vec()),
        (format!("{prefix}{tag}-empty").into(), Vec::new()),
        (format!("{prefix}{tag}-null").into(), b"null".to_vec()),
        (format!("{prefix}{tag}-array").into(), b"[1,2]".to_vec()),
        (
            format!("{prefix}{tag}-types").into(),
            br#"{"addr":5}"#.to_vec(),
        ),
        (
            format!("{prefix}{tag}-addr").into(),
            br#"{"addr":"no port"}"#.to_vec(),
        ),
        (
            format!("{prefix}{tag}-bytes").into(),
            vec![0xff, 0x00, 0xfe],
        ),
        (
            format!("{prefix}{tag}-other").into(),
            br#"{"name":"someone-else","addr":"127.0.0.1:1"}"#.to_vec(),
        ),
        // A key that is not UTF-8, even with a value that would decode.
        (non_utf8_key, valid_elsewhere),
    ];
    for (key, value) in entries {
        client.put(key, value, None).await.unwrap();
    }
}

#[tokio::test]
async fn discovery_skips_garbage_and_keeps_every_valid_instance() -> Result {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("garbage");
    let prefix = format!("/services/{service}/");

    // Two registered instances, a neighbouring service whose name extends ours,
    // garbage: all before the discovery starts.
    let a = Registrar::new(client.clone())
        .register(Instance::new(&service, "127.0.0.1:7401")?)
        .await?;
    let b = Registrar::new(client.clone())
        .register(Instance::new(&service, "127.0.0.1:7402")?)
        .await?;
    let neighbour = Registrar::new(client.clone())
        .register(Instance::new(format!("{service}x"), "127.0.0.1:7403")?)
        .await?;
    put_garbage(&mut client, &prefix, "before").await;

    let mut discovered = Discovery::new(client.clone(), &service).changes().await?;
    let addrs =
        |d: &InstanceChanges| -> Vec<String> { d.snapshot().into_iter().map(|i| i.addr).collect() };
    assert_eq!(addrs(&discovered), ["127.0.0.1:7401", "127.0.0.1:7402"]);
    assert_eq!(discovered.size_hint().0, 2, "one insert per valid instance");
    next(&mut discovered).await;
    next(&mut discovered).await;

    // The same garbage while watching, then a valid instance: the next change
    // is that instance, so the garbage produced nothing.
    put_garbage(&mut client, &prefix, "during").await;
    let c = Registrar::new(client.clone())
        .register(Instance::new(&service, "127.0.0.1:7404")?)
        .await?;
    match next(&mut discovered).await {
        Change::Insert(key, instance) => {
            assert_eq!(key, c.key());
            assert_eq!(instance.addr, "127.0.0.1:7404");
        }
        other => panic!("expected c's insert, got {other:?}"),
    }
    assert!(discovered.health().borrow().is_connected());

    // An operator overwrites a live registration with garbage, or empties it:
    // discovery removes the instance at once, and the registration, which
    // watches its own key, puts its value back.
    for garbage in [&b"not json"[..], b""] {
        client.put(a.key(), garbage, None).await?;
        match next(&mut discovered).await {
            Change::Remove(key) => assert_eq!(key, a.key()),
            other => panic!("expected a's removal, got {other:?}"),
        }
        match next(&mut discovered).await {
            Change::Insert(key, _) => assert_eq!(key, a.key()),
            other => panic!("expected a back, got {other:?}"),
        }
        let lease = wait_for(Duration::from_secs(1), "a's value back", || {
            let mut client = client.clone();
            let key = a.key().to_owned();
            let service = service.clone();
            async move {
                let resp = client.get(key, None).await.ok()?;
                let kv = resp.kvs().first()?;
                Native
                    .decode(&service, kv.key_str().ok()?, kv.value())
                    .ok()?;
                Some(kv.lease())
            }
        })
        .await;
        assert_eq!(Some(lease), a.lease_id(), "back on its own lease");
    }

    // Deleting garbage is nothing; all valid instances are there.
    client.delete(format!("{prefix}before-json"), None).await?;
    let mut non_utf8_key = format!("{prefix}during-key-").into_bytes();
    non_utf8_key.extend([0xff, 0xfe, 0x80]);
    client.delete(non_utf8_key, None).await?;
    wait_until(Duration::from_secs(2), "all three instances", || {
        let now = addrs(&discovered);
        async move { now == ["127.0.0.1:7401", "127.0.0.1:7402", "127.0.0.1:7404"] }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(discovered.size_hint().0, 0, "no change for garbage");
    assert!(discovered.health().borrow().is_connected());

    // A discovery started now, on the same mess, agrees.
    let fresh = Discovery::new(client.clone(), &service).changes().await?;
    assert_eq!(fresh.snapshot(), discovered.snapshot());

    for registration in [a, b, c, neighbour] {
        registration.deregister().await?;
    }
    Ok(())
}
