//! Shared watches without a hub (issue 16, item 5): discoveries made with
//! `Discovery::new` from clients of one `tonic_etcd::connect` share one etcd
//! watch per prefix, format, version and filter, process-wide; two connects
//! never share; a client made by etcd-client itself shares only within the
//! clones of one `Discovery`. Watches are counted by etcd itself, with its
//! `etcd_debugging_mvcc_watcher_total` gauge (each test has its own etcd, so
//! the count is ours alone).

use std::sync::Arc;
use std::time::Duration;

use tonic_etcd::discovery::InstanceFilter;
use tonic_etcd::{Change, Discovery, Instance, InstanceChanges, Policy};

use crate::support::balancer::{self as greeters, Greeter};
use crate::support::changes::{self, etcd_state, next, wait_instances};
use crate::support::scrape::{scrape, Samples};
use crate::support::{self, Etcd};

/// The number of watchers etcd holds now.
async fn watchers(etcd: &Etcd) -> u64 {
    let text = scrape(etcd.addr()).await.expect("etcd's metrics");
    Samples::parse(&text)
        .value("etcd_debugging_mvcc_watcher_total", &[])
        .expect("etcd reports its watchers") as u64
}

/// Waits until etcd holds `n` watchers, then checks that it stays there for
/// a while (a second watch being set up would show by then).
async fn assert_watchers(etcd: &Etcd, n: u64) {
    support::wait_until(
        Duration::from_secs(10),
        &format!("{n} etcd watchers"),
        || async move { watchers(etcd).await == n },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(watchers(etcd).await, n, "etcd's watchers, settled");
}

/// The changes already queued in `stream`, without waiting.
fn queued(stream: &mut InstanceChanges) -> Vec<Change<String, Instance>> {
    let mut out = Vec::new();
    while let Some(Some(change)) =
        futures_util::FutureExt::now_or_never(futures_util::StreamExt::next(stream))
    {
        out.push(change);
    }
    out
}

/// The instance of `service` that `greeter` serves.
fn served_by(service: &str, greeter: &Greeter) -> Instance {
    Instance::new(service, greeter.addr.to_string()).unwrap()
}

fn key_of(change: &Change<String, Instance>) -> &str {
    match change {
        Change::Insert(key, _) | Change::Remove(key) => key,
    }
}

#[tokio::test]
async fn several_clients_of_one_service_share_one_watch() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("several");
    let greeter = Greeter::start();
    // Written without a lease: a registration would watch its key, and
    // that watch would count too.
    changes::put(&mut client, &served_by(&service, &greeter)).await;
    let baseline = watchers(&etcd).await;

    // Three clients of one service, as three parts of an application would
    // write them: each from a clone of the one etcd client.
    let first = Discovery::new(client.clone(), &service)
        .balancer(Policy::RoundRobin)
        .await
        .unwrap();
    let second = Discovery::new(client.clone(), &service)
        .balancer(Policy::Weighted)
        .await
        .unwrap();
    let mut third = Discovery::new(client.clone(), &service)
        .changes()
        .await
        .unwrap();
    assert_watchers(&etcd, baseline + 1).await;

    for balancer in [&first, &second] {
        assert_eq!(
            greeters::hello(balancer).await.unwrap(),
            greeter.addr.to_string()
        );
    }
    assert!(matches!(next(&mut third).await, Change::Insert(..)));

    // A change reaches every one of them through the one watch.
    let added = changes::put(&mut client, &changes::instance(&service, "b", 22_101)).await;
    assert_eq!(key_of(&next(&mut third).await), added);
    for balancer in [&first, &second] {
        greeters::wait_endpoints(balancer, "two endpoints", |e| e.len() == 2).await;
    }
    assert_eq!(watchers(&etcd).await, baseline + 1);
}

#[tokio::test]
async fn a_balancer_and_a_tonic_channel_side_by_side_share_one_watch() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("sidebyside");
    let greeter = Greeter::start();
    // Written without a lease: a registration would watch its key, and
    // that watch would count too.
    changes::put(&mut client, &served_by(&service, &greeter)).await;
    let baseline = watchers(&etcd).await;

    // One Discovery, its clones feeding both kinds of client.
    let discovery = Discovery::new(client.clone(), &service);
    let balancer = discovery
        .clone()
        .balancer(Policy::RoundRobin)
        .await
        .unwrap();
    let channel = discovery.tonic_channel().await.unwrap();
    // And another Discovery of the same service, from another clone.
    let other = Discovery::new(client, &service)
        .tonic_channel()
        .await
        .unwrap();
    assert_watchers(&etcd, baseline + 1).await;

    let addr = greeter.addr.to_string();
    assert_eq!(greeters::hello(&balancer).await.unwrap(), addr);
    assert_eq!(greeters::hello(&channel).await.unwrap(), addr);
    assert_eq!(greeters::hello(&other).await.unwrap(), addr);
    drop((balancer, channel, other));
    assert_watchers(&etcd, baseline).await;
}

#[tokio::test]
async fn a_late_subscriber_gets_the_full_set_then_every_change() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("late");
    for i in 0..20 {
        changes::put(
            &mut client,
            &changes::instance(&service, &format!("a{i}"), 22_200 + i),
        )
        .await;
    }
    let baseline = watchers(&etcd).await;
    let mut early = Discovery::new(client.clone(), &service)
        .changes()
        .await
        .unwrap();
    assert_watchers(&etcd, baseline + 1).await;

    // The set changes while the first one runs: 10 more, 5 gone, 3 changed.
    for i in 0..10 {
        changes::put(
            &mut client,
            &changes::instance(&service, &format!("b{i}"), 22_300 + i),
        )
        .await;
    }
    for i in 0..5 {
        client
            .delete(format!("/services/{service}/a{i}"), None)
            .await
            .unwrap();
    }
    for i in 5..8 {
        let moved = changes::instance(&service, &format!("a{i}"), 22_400 + i);
        changes::put(&mut client, &moved).await;
    }
    let wanted = etcd_state(&client, &service).await;
    assert_eq!(wanted.len(), 25);
    wait_instances(&early.view(), 25, Duration::from_secs(10)).await;
    support::wait_until(Duration::from_secs(10), "the watch up to date", || {
        let snapshot = early.snapshot();
        let wanted = wanted.clone();
        async move { snapshot == wanted.into_values().collect::<Vec<_>>() }
    })
    .await;

    let mut late = Discovery::new(client.clone(), &service)
        .changes()
        .await
        .unwrap();
    // No new watch: the late one joined.
    assert_watchers(&etcd, baseline + 1).await;

    // Its stream starts with exactly the current set: one Insert per
    // instance, no Remove, nothing twice.
    let initial = queued(&mut late);
    assert_eq!(initial.len(), 25, "{initial:?}");
    let mut got = std::collections::BTreeMap::new();
    for change in initial {
        match change {
            Change::Insert(key, instance) => {
                assert!(got.insert(key, instance).is_none(), "inserted twice");
            }
            Change::Remove(key) => panic!("a late subscriber got Remove({key})"),
        }
    }
    assert_eq!(got, wanted);
    assert_eq!(late.snapshot(), early.snapshot());

    // Then the changes after it, as the early one sees them.
    queued(&mut early);
    let added = changes::put(&mut client, &changes::instance(&service, "c", 22_500)).await;
    assert_eq!(key_of(&next(&mut late).await), added);
    assert_eq!(key_of(&next(&mut early).await), added);
    client.delete(added.clone(), None).await.unwrap();
    assert!(matches!(next(&mut late).await, Change::Remove(k) if k == added));
    assert!(matches!(next(&mut early).await, Change::Remove(k) if k == added));
}

#[tokio::test]
async fn different_filters_versions_namespaces_and_formats_do_not_share() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("apart");
    let v1 = changes::instance(&service, "one", 22_601).with_version("1");
    let v2 = changes::instance(&service, "two", 22_602)
        .with_version("2")
        .with_metadata("zone", "a");
    changes::put(&mut client, &v1).await;
    changes::put(&mut client, &v2).await;
    let baseline = watchers(&etcd).await;
    let discovery = || Discovery::new(client.clone(), &service);
    let zone: InstanceFilter = Arc::new(|i| i.metadata.contains_key("zone"));

    let all = discovery().changes().await.unwrap();
    let version_1 = discovery().version("1").changes().await.unwrap();
    let version_2 = discovery().version("2").changes().await.unwrap();
    let closure = discovery()
        .filter(|i| i.metadata.contains_key("zone"))
        .changes()
        .await
        .unwrap();
    let closure_again = discovery()
        .filter(|i| i.metadata.contains_key("zone"))
        .changes()
        .await
        .unwrap();
    let arc = discovery()
        .filter_arc(zone.clone())
        .changes()
        .await
        .unwrap();
    let arc_again = discovery().filter_arc(zone).changes().await.unwrap();
    let elsewhere = discovery().namespace("/other").changes().await.unwrap();
    // The same prefix in another format: go-kit's bare addresses.
    let plain = discovery()
        .codec(tonic_etcd::codec::Plain)
        .changes()
        .await
        .unwrap();
    // all, v1, v2, two closures, one Arc, /other, the plain format.
    assert_watchers(&etcd, baseline + 8).await;

    let ids = |stream: &InstanceChanges| -> Vec<String> {
        stream.snapshot().into_iter().map(|i| i.id).collect()
    };
    assert_eq!(ids(&all), ["one", "two"]);
    assert_eq!(ids(&version_1), ["one"]);
    assert_eq!(ids(&version_2), ["two"]);
    for filtered in [&closure, &closure_again, &arc, &arc_again] {
        assert_eq!(ids(filtered), ["two"]);
    }
    assert!(ids(&elsewhere).is_empty());
    // Native JSON values are no bare addresses: the plain set is its own.
    assert!(ids(&plain).is_empty());
}

#[tokio::test]
async fn the_watch_stops_with_its_last_stream_and_a_new_start_reads_again() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let service = support::unique("last");
    changes::put(&mut client, &changes::instance(&service, "a", 22_701)).await;
    let baseline = watchers(&etcd).await;

    let one = Discovery::new(client.clone(), &service)
        .changes()
        .await
        .unwrap();
    let balancer = Discovery::new(client.clone(), &service)
        .balancer(Policy::RoundRobin)
        .await
        .unwrap();
    assert_watchers(&etcd, baseline + 1).await;

    drop(one);
    assert_watchers(&etcd, baseline + 1).await;
    let view = balancer.discovery().expect("fed by a discovery").clone();
    drop(balancer);
    assert_watchers(&etcd, baseline).await;
    changes::wait_ended(&view).await;

    // A change while no one watches; the next start reads it with a new Get.
    changes::put(&mut client, &changes::instance(&service, "b", 22_702)).await;
    assert_eq!(view.snapshot().len(), 1, "a stopped watch's set stays");
    let again = Discovery::new(client.clone(), &service)
        .changes()
        .await
        .unwrap();
    assert_eq!(again.snapshot().len(), 2);
    assert_watchers(&etcd, baseline + 1).await;
}

#[tokio::test]
async fn two_connects_never_share_and_etcd_clients_own_share_per_discovery() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let service = support::unique("connects");
    let baseline = watchers(&etcd).await;

    // Two connects, same endpoint and credentials: two watches.
    let a = etcd.client().await;
    let b = etcd.client().await;
    let _a = Discovery::new(a.clone(), &service).changes().await.unwrap();
    let _a_again = Discovery::new(a, &service).changes().await.unwrap();
    let _b = Discovery::new(b, &service).changes().await.unwrap();
    assert_watchers(&etcd, baseline + 2).await;

    // A client made by etcd-client itself cannot be recognised: the clones of
    // one Discovery share, other Discoveries do not.
    let foreign =
        etcd_client::Client::connect([etcd.endpoint()], Some(tonic_etcd::connect_options()))
            .await
            .unwrap();
    let discovery = Discovery::new(foreign.clone(), &service);
    let _c = discovery.clone().changes().await.unwrap();
    let _c_balancer = discovery.balancer(Policy::RoundRobin).await.unwrap();
    assert_watchers(&etcd, baseline + 3).await;
    let _d = Discovery::new(foreign, &service).changes().await.unwrap();
    assert_watchers(&etcd, baseline + 4).await;
}

#[tokio::test]
async fn two_credentials_never_share_a_watch() {
    use crate::support::secure::{chain, ClientCerts, SecureEtcd};

    support::init_tracing();
    let etcd = SecureEtcd::start(ClientCerts::None).await;
    let mine = support::unique("mine");
    let theirs = support::unique("theirs");
    let users = etcd.enable_auth(&format!("/services/{mine}/")).await;
    let mut root = etcd.client(Some(&users.root_password)).await;
    changes::put(&mut root, &changes::instance(&theirs, "a", 22_801)).await;
    changes::put(&mut root, &changes::instance(&mine, "b", 22_802)).await;

    // Root watches a service the limited user may not read.
    let rooted = Discovery::new(root.clone(), &theirs)
        .changes()
        .await
        .unwrap();
    assert_eq!(rooted.snapshot().len(), 1);

    // Same process, same endpoint, same service and options: the limited
    // user's discovery does not join root's watch; etcd refuses it.
    let limited = etcd
        .config()
        .user(&users.limited, &users.limited_password)
        .connect()
        .await
        .unwrap();
    let error = Discovery::new(limited.clone(), &theirs)
        .changes()
        .await
        .expect_err("the limited user may not read root's service");
    assert!(
        chain(&error).contains("permission denied"),
        "{}",
        chain(&error)
    );

    // Where both may read, each reads with its own rights, on its own watch:
    // the limited user's discovery works, and goes on working without root's.
    let by_root = Discovery::new(root, &mine).changes().await.unwrap();
    let mut by_limited = Discovery::new(limited.clone(), &mine)
        .changes()
        .await
        .unwrap();
    drop(by_root);
    assert!(matches!(next(&mut by_limited).await, Change::Insert(..)));
    let mut limited_writer = limited;
    let added = changes::put(&mut limited_writer, &changes::instance(&mine, "c", 22_803)).await;
    assert_eq!(key_of(&next(&mut by_limited).await), added);
}
