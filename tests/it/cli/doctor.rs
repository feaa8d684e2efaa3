//! `doctor` finds each kind of problem, naming the key, and exits 0 on a
//! clean registry.

use std::time::Duration;

use tonic_etcd::etcd_client::PutOptions;
use tonic_etcd::{Instance, Registrar};

use super::run;
use crate::support::balancer::{register, Greeter};
use crate::support::{free_port, unique, Etcd};

#[tokio::test]
async fn doctor_finds_each_kind_of_problem_and_passes_a_clean_registry() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let endpoint = etcd.endpoint();
    let service = unique("cli-doctor");
    let greeter = Greeter::start();
    let _live = register(&client, &service, &greeter, 1).await;

    let clean = run(&endpoint, &["doctor", &service, "--json"]).await;
    clean.assert_ok();
    let report = clean.json();
    assert_eq!(report["problems"].as_array().unwrap().len(), 0, "{report}");
    let members = report["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{report}");
    assert_eq!(members[0]["healthy"], true);
    assert_eq!(members[0]["leader"], true);
    assert!(
        members[0]["version"].as_str().unwrap().starts_with("3."),
        "{report}"
    );
    // The whole namespace is clean too, and the text form says so.
    let text = run(&endpoint, &["doctor"]).await;
    text.assert_ok();
    assert!(text.stdout.contains("leader"), "{text:?}");

    let prefix = format!("/services/{service}");
    let malformed = format!("{prefix}/malformed");
    client
        .put(malformed.as_str(), "not json", None)
        .await
        .unwrap();
    // A valid value without a lease (at the live address: only that problem).
    let unleased = format!("{prefix}/unleased");
    let value = format!(r#"{{"name":"{service}","addr":"{}"}}"#, greeter.addr);
    client.put(unleased.as_str(), value, None).await.unwrap();
    // A dead address, registered properly.
    let dead_addr = format!("127.0.0.1:{}", free_port());
    let dead = Registrar::new(client.clone())
        .ttl(Duration::from_secs(30))
        .register(Instance::new(service.as_str(), dead_addr.as_str()).unwrap())
        .await
        .unwrap();
    let dead_key = dead.key().to_owned();
    // An override naming no instance.
    let orphan = format!("{prefix}/.overrides/ghost");
    client
        .put(orphan.as_str(), r#"{"drained":true}"#, None::<PutOptions>)
        .await
        .unwrap();

    let sick = run(&endpoint, &["doctor", &service, "--json"]).await;
    assert_eq!(sick.code, Some(1), "{sick:?}");
    let report = sick.json();
    let problems = report["problems"].as_array().unwrap();
    let has = |key: &str, kind: &str| {
        problems
            .iter()
            .any(|p| p["key"] == key && p["kind"] == kind)
    };
    let live_key = format!("{prefix}/{}", greeter.addr);
    for (key, kind) in [
        (malformed.as_str(), "undecodable"),
        (unleased.as_str(), "no-lease"),
        (unleased.as_str(), "duplicate-addr"),
        (live_key.as_str(), "duplicate-addr"),
        (dead_key.as_str(), "unreachable"),
        (orphan.as_str(), "orphan-override"),
    ] {
        assert!(has(key, kind), "{kind} of {key} not reported: {report}");
    }
    assert_eq!(problems.len(), 6, "{report}");
    // The text form: one line per problem, naming the key.
    let text = run(&endpoint, &["doctor", &service]).await;
    assert_eq!(text.code, Some(1));
    let lines: Vec<&str> = text
        .stdout
        .lines()
        .filter(|l| l.starts_with("problem: "))
        .collect();
    assert_eq!(lines.len(), 6, "{text:?}");
    assert!(lines.iter().any(|l| l.contains(&malformed)), "{text:?}");

    // Gone again: clean.
    for key in [&malformed, &unleased, &orphan] {
        client.delete(key.as_str(), None).await.unwrap();
    }
    dead.deregister().await.unwrap();
    run(&endpoint, &["doctor", &service]).await.assert_ok();
}

#[tokio::test]
async fn doctor_fails_when_etcd_is_unreachable() {
    // Connecting fails: a failure (exit 1) on stderr.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let ran = run(&dead, &["doctor"]).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(!ran.stderr.is_empty());
}
