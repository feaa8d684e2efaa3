//! `ls` and `ls SERVICE` against what the registrations wrote; usage errors.

use std::time::Duration;

use tonic_etcd::{Instance, Registrar};

use super::run;
use crate::support::{free_port, unique, Etcd};

#[tokio::test]
async fn ls_matches_the_registrations() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = unique("cli-ls");
    let mut registrations = Vec::new();
    for (i, weight) in [1u32, 2, 3].into_iter().enumerate() {
        let instance = Instance::new(service.as_str(), format!("127.0.0.1:{}", free_port()))
            .unwrap()
            .with_id(format!("host-{i}"))
            .with_version(format!("1.{i}.0"))
            .with_weight(weight)
            .with_metadata("zone", if i == 0 { "a" } else { "b" });
        let registration = Registrar::new(client.clone())
            .ttl(Duration::from_secs(30))
            .register(instance)
            .await
            .unwrap();
        registrations.push(registration);
    }

    let services = run(&etcd.endpoint(), &["ls", "--json"]).await;
    services.assert_ok();
    let services = services.json();
    let row = services
        .as_array()
        .expect("an array")
        .iter()
        .find(|row| row["service"] == service.as_str())
        .unwrap_or_else(|| panic!("{service} not listed: {services}"));
    assert_eq!(row["instances"], 3, "{services}");

    let ran = run(&etcd.endpoint(), &["ls", &service, "--json"]).await;
    ran.assert_ok();
    let rows = ran.json();
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 3, "{rows:?}");
    for registration in &registrations {
        let instance = registration.instance();
        let row = rows
            .iter()
            .find(|row| row["id"] == instance.id.as_str())
            .unwrap_or_else(|| panic!("{} not listed: {rows:?}", instance.id));
        assert_eq!(row["service"], service.as_str());
        assert_eq!(row["addr"], instance.addr.as_str());
        assert_eq!(row["version"], instance.version.as_str());
        assert_eq!(row["weight"], instance.weight);
        assert_eq!(row["drained"], false);
        assert_eq!(row["metadata"]["zone"], instance.metadata["zone"].as_str());
        assert_eq!(row["lease"], registration.lease_id().expect("a lease"));
        let ttl = row["ttl_remaining_s"].as_i64().expect("a TTL");
        assert!((1..=30).contains(&ttl), "ttl {ttl}");
    }

    // The table shows the same instances.
    let table = run(&etcd.endpoint(), &["ls", &service]).await;
    table.assert_ok();
    for registration in &registrations {
        assert!(
            table.stdout.contains(&registration.instance().addr),
            "{table:?}"
        );
    }
}

#[tokio::test]
async fn usage_errors_exit_2_and_failures_1() {
    let etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    for args in [
        &["nosuch"][..],
        &["ls", "--format", "zookeeper"],
        &["weight", "svc", "id"],
        &["weight", "svc", "id", "0", "--force"],
        &["ls", "bad name"],
        &["drain", "svc", "id", "--format", "go-zero"],
        &["register", "svc", "no-port"],
    ] {
        let ran = run(&endpoint, args).await;
        assert_eq!(ran.code, Some(2), "{args:?}: {ran:?}");
        assert!(!ran.stderr.is_empty(), "{args:?}: an error on stderr");
    }
    // Draining an instance that is not registered fails (a typo would
    // otherwise do nothing), unless forced.
    let ran = run(&endpoint, &["drain", "svc", "ghost"]).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(ran.stderr.contains("ghost"), "{ran:?}");
    run(&endpoint, &["drain", "svc", "ghost", "--force"])
        .await
        .assert_ok();
    // etcd unreachable: a failure.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let ran = run(&dead, &["ls"]).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.stderr.starts_with("tonic-etcd: ") && ran.stderr.contains("connect"),
        "{ran:?}"
    );
}
