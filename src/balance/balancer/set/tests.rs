use super::*;
use crate::endpoint::default_endpoint;

fn instance(port: u16, weight: u32) -> Instance {
    Instance::new("svc", format!("127.0.0.1:{port}"))
        .unwrap()
        .with_weight(weight)
}

fn set(policy: Policy) -> Set {
    Set::new(policy, Handle::current())
}

/// Plans `changes` and inserts what they ask for, as the balancer does.
fn apply(set: &mut Set, changes: Vec<Change<String, Instance>>) -> bool {
    let plan = set.plan(changes);
    let changed = plan.changed || !plan.fresh.is_empty();
    for (key, instance) in plan.fresh {
        set.insert(key, instance, Arc::new(default_endpoint), DEFAULT_RTT);
    }
    changed
}

fn insert(key: &str, port: u16, weight: u32) -> Change<String, Instance> {
    Change::Insert(key.into(), instance(port, weight))
}

fn picks(set: &mut Set, n: usize) -> String {
    (0..n)
        .map(|_| set.pick(&[]).map_or("-".into(), |t| t.key.clone()))
        .collect()
}

fn count(set: &mut Set, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        *counts
            .entry(set.pick(&[]).unwrap().key.clone())
            .or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn a_batch_keeps_the_last_change_of_each_key() {
    let mut set = set(Policy::RoundRobin);
    let plan = set.plan(vec![
        insert("a", 1, 1),
        insert("b", 2, 1),
        Change::Remove("a".into()),
        insert("c", 3, 1),
        insert("b", 4, 2),
    ]);
    assert!(!plan.changed, "nothing was there to remove");
    let fresh: Vec<(&str, &str)> = plan
        .fresh
        .iter()
        .map(|(key, instance)| (key.as_str(), instance.addr.as_str()))
        .collect();
    assert_eq!(fresh, [("b", "127.0.0.1:4"), ("c", "127.0.0.1:3")]);
}

#[tokio::test]
async fn a_batch_applies_removals_weights_and_inserts_at_once() {
    let mut set = set(Policy::Weighted);
    assert!(apply(&mut set, vec![insert("a", 1, 1), insert("b", 2, 1)]));
    let a = set.entries["a"].target.clone();
    // The same value again changes nothing.
    assert!(!apply(&mut set, vec![insert("a", 1, 1)]));
    // A weight change keeps the target; a removal and an insert in the same
    // batch.
    assert!(apply(
        &mut set,
        vec![
            insert("a", 1, 3),
            Change::Remove("b".into()),
            insert("c", 3, 1)
        ]
    ));
    assert!(Arc::ptr_eq(&set.entries["a"].target, &a));
    assert_eq!(set.entries["a"].weight(), 3);
    assert_eq!((set.len(), set.ready_len()), (2, 2));
    let counts = count(&mut set, 4 * 25);
    assert_eq!(counts["a"], 75);
    assert_eq!(counts["c"], 25);
}

#[tokio::test]
async fn a_large_batch_is_all_there_and_round_robin_is_exact() {
    let mut set = set(Policy::RoundRobin);
    let changes = (0..5_000u16)
        .map(|i| insert(&format!("k{i:05}"), 10_000 + i, 1))
        .collect();
    assert!(apply(&mut set, changes));
    assert_eq!((set.len(), set.ready_len()), (5_000, 5_000));
    let counts = count(&mut set, 10_000);
    assert!(counts.values().all(|&n| n == 2), "{:?}", counts.len());
    // Slots are reused after removals.
    let removals = (0..2_500u16)
        .map(|i| Change::Remove(format!("k{i:05}")))
        .collect();
    assert!(apply(&mut set, removals));
    let back = (0..2_500u16)
        .map(|i| insert(&format!("k{i:05}"), 20_000 + i, 1))
        .collect();
    assert!(apply(&mut set, back));
    assert_eq!(set.slots, 5_000);
    assert!(count(&mut set, 5_000).values().all(|&n| n == 1));
}

#[tokio::test]
async fn exclusions_stack_and_lift_one_by_one() {
    let mut set = set(Policy::RoundRobin);
    apply(
        &mut set,
        vec![insert("a", 1, 1), insert("b", 2, 1), insert("c", 3, 1)],
    );
    assert!(set.exclude("b", Exclusion::Unreachable));
    assert!(!set.exclude("b", Exclusion::Drained), "already out");
    assert!(!set.exclude("x", Exclusion::Drained), "unknown key");
    let b = &set.entries["b"];
    assert!(!b.ready());
    assert_eq!(
        b.exclusions().collect::<Vec<_>>(),
        [Exclusion::Unreachable, Exclusion::Drained]
    );
    assert_eq!(picks(&mut set, 4), "acac");
    assert!(!set.include("b", Exclusion::Unreachable), "still drained");
    assert!(!set.include("b", Exclusion::Ejected), "never ejected");
    assert_eq!(set.ready_len(), 2);
    assert!(set.include("b", Exclusion::Drained));
    assert_eq!(picks(&mut set, 3), "abc");
    // Everything out: nothing to pick; one back.
    for key in ["a", "b", "c"] {
        set.exclude(key, Exclusion::Unhealthy);
    }
    assert_eq!(picks(&mut set, 1), "-");
    set.include("c", Exclusion::Unhealthy);
    assert_eq!(picks(&mut set, 2), "cc");
}

#[tokio::test]
async fn weighted_stays_exact_through_exclusions_and_weight_overrides() {
    let mut set = set(Policy::Weighted);
    apply(
        &mut set,
        vec![insert("a", 1, 1), insert("b", 2, 2), insert("c", 3, 3)],
    );
    let counts = count(&mut set, 600);
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        [100, 200, 300]
    );
    // c out for a while, then back; a ramped to 4 (a slow start's override).
    set.exclude("c", Exclusion::Ejected);
    let counts = count(&mut set, 300);
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), [100, 200]);
    set.include("c", Exclusion::Ejected);
    assert!(set.set_weight("a", 4));
    assert!(!set.set_weight("x", 4));
    let counts = count(&mut set, 900);
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        [400, 200, 300]
    );
}

#[tokio::test]
async fn p2c_picks_every_ready_endpoint_and_skips_tried_ones() {
    let mut set = set(Policy::P2c);
    apply(
        &mut set,
        (0..10u16)
            .map(|i| insert(&format!("k{i}"), 100 + i, 1))
            .collect(),
    );
    // Every endpoint but the costliest (the newest: its estimate has decayed
    // least) wins some pairs.
    assert!(count(&mut set, 2_000).len() >= 9);
    let tried: Vec<u64> = set
        .entries
        .values()
        .filter(|entry| entry.target.key != "k7")
        .map(|entry| entry.target.epoch)
        .collect();
    for _ in 0..20 {
        assert_eq!(set.pick(&tried).unwrap().key, "k7");
    }
    set.exclude("k7", Exclusion::Unhealthy);
    assert!(set.pick(&tried).is_none());
}

#[tokio::test]
async fn a_reconnected_endpoint_has_a_new_target_with_its_channel() {
    let mut set = set(Policy::RoundRobin);
    apply(&mut set, vec![insert("a", 1, 1)]);
    let old = set.entries["a"].target.clone();
    set.exclude("a", Exclusion::Unreachable);
    let channel = default_endpoint(&instance(1, 1)).unwrap().connect_lazy();
    assert!(set.reconnect("a", channel).is_some());
    assert!(set.include("a", Exclusion::Unreachable));
    let new = set.pick(&[]).unwrap();
    assert_ne!(new.epoch, old.epoch);
    assert!(new.has_channel());
    assert!(set
        .reconnect(
            "x",
            default_endpoint(&instance(1, 1)).unwrap().connect_lazy()
        )
        .is_none());
}

#[tokio::test(flavor = "current_thread")]
async fn an_endpoint_never_picked_has_no_endpoint_no_channel_and_no_task() {
    let runtime = Handle::current();
    let tasks = runtime.metrics().num_alive_tasks();
    // Counts the endpoints built: none until a pick needs a channel.
    let built = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let template: Template = {
        let built = built.clone();
        Arc::new(move |instance: &Instance| {
            built.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            default_endpoint(instance)
        })
    };
    let built = || built.load(std::sync::atomic::Ordering::Relaxed);
    let mut set = set(Policy::RoundRobin);
    let plan = set.plan(
        (0..1_000u16)
            .map(|i| insert(&format!("k{i:04}"), 1_000 + i, 1))
            .collect(),
    );
    for (key, instance) in plan.fresh {
        set.insert(key, instance, template.clone(), DEFAULT_RTT);
    }
    assert_eq!(set.len(), 1_000);
    assert_eq!(built(), 0);
    assert_eq!(runtime.metrics().num_alive_tasks(), tasks);
    assert!(set.entries.values().all(|e| !e.target.has_channel()));
    assert!(set
        .entries
        .values()
        .all(|e| !e.target.health.is_allocated()));
    // The first pick builds one endpoint and makes its channel, whose buffer
    // task is the only new one.
    let first = set.pick(&[]).unwrap();
    let _channel = first.borrow_channel();
    assert!(first.has_channel());
    assert_eq!(built(), 1);
    assert_eq!(runtime.metrics().num_alive_tasks(), tasks + 1);
    let with_channel = set
        .entries
        .values()
        .filter(|e| e.target.has_channel())
        .count();
    assert_eq!(with_channel, 1);
    // Later requests reuse it.
    let _again = first.borrow_channel();
    assert_eq!(built(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_template_that_refuses_on_the_first_pick_makes_an_unreachable_channel() {
    use tower::ServiceExt;

    // A template that is not a pure function of the instance: it accepted
    // the instance at insertion (the balancer's check), refuses it now.
    let template: Template = Arc::new(|instance: &Instance| {
        Err(crate::Error::Endpoint {
            addr: instance.addr.clone(),
            source: "refused by the test".into(),
        })
    });
    let mut set = set(Policy::RoundRobin);
    let plan = set.plan(vec![insert("a", 1, 1)]);
    for (key, instance) in plan.fresh {
        set.insert(key, instance, template.clone(), DEFAULT_RTT);
    }
    let target = set.pick(&[]).unwrap();
    assert!(target.endpoint().is_err());
    // Its requests fail to connect, as an unreachable endpoint's do (the
    // balancer ejects it and its probe asks the template again).
    let request = http::Request::builder()
        .uri("http://127.0.0.1:1/helloworld.Greeter/SayHello")
        .body(tonic::body::Body::empty())
        .unwrap();
    let error = tokio::time::timeout(
        Duration::from_secs(5),
        target.borrow_channel().oneshot(request),
    )
    .await
    .expect("fails at once")
    .expect_err("nothing listens on port 0");
    assert_eq!(
        super::super::failure::Failure::of(&error),
        super::super::failure::Failure::Unreachable
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_set_counts_its_ejected_entries() {
    let mut set = set(Policy::RoundRobin);
    apply(
        &mut set,
        vec![insert("a", 1, 1), insert("b", 2, 1), insert("c", 3, 1)],
    );
    assert!(set.exclude("a", Exclusion::Ejected));
    assert!(!set.exclude("a", Exclusion::Ejected), "once only");
    set.exclude("b", Exclusion::Unhealthy);
    set.exclude("b", Exclusion::Ejected);
    assert_eq!(set.ejected_len(), 2);
    assert!(!set.include("b", Exclusion::Ejected), "still unhealthy");
    assert_eq!(set.ejected_len(), 1);
    assert!(!set.include("b", Exclusion::Ejected), "not ejected now");
    assert_eq!(set.ejected_len(), 1);
    apply(&mut set, vec![Change::Remove("a".into())]);
    assert_eq!(set.ejected_len(), 0);
    set.exclude("c", Exclusion::Ejected);
    let channel = default_endpoint(&instance(3, 1)).unwrap().connect_lazy();
    set.exclude("c", Exclusion::Unreachable);
    set.reconnect("c", channel);
    assert_eq!(set.ejected_len(), 0, "a new connection starts afresh");
    assert!(set.include("c", Exclusion::Unreachable));
}

#[tokio::test(flavor = "current_thread")]
async fn panic_mode_picks_only_what_its_answers_took_out() {
    let mut set = set(Policy::RoundRobin);
    apply(
        &mut set,
        vec![
            insert("a", 1, 1),
            insert("b", 2, 1),
            insert("c", 3, 1),
            insert("d", 4, 1),
        ],
    );
    set.exclude("a", Exclusion::Ejected);
    set.exclude("b", Exclusion::Unhealthy);
    set.exclude("c", Exclusion::Unreachable);
    assert_eq!(
        set.pick_panic(&[]).map(|t| t.key.clone()),
        None,
        "d is ready"
    );
    set.exclude("d", Exclusion::Drained);
    assert_eq!(picks(&mut set, 3), "---");
    assert!(set.pick_panic(&[]).is_none(), "panic mode is off");
    set.panic_mode = true;
    assert!(set.panicking());
    let keys: String = (0..5)
        .map(|_| set.pick_panic(&[]).unwrap().key.clone())
        .collect();
    assert_eq!(keys, "ababa", "neither unreachable nor drained");
    let a = set.entries["a"].target.epoch;
    let b = set.entries["b"].target.epoch;
    assert_eq!(set.pick_panic(&[a]).unwrap().key, "b");
    assert!(set.pick_panic(&[a, b]).is_none());
    set.exclude("b", Exclusion::Unreachable);
    assert_eq!(set.pick_panic(&[]).unwrap().key, "a");
    set.include("d", Exclusion::Drained);
    assert!(!set.panicking());
    assert!(set.pick_panic(&[]).is_none(), "d is ready again");
}

#[tokio::test(flavor = "current_thread")]
async fn an_endpoint_back_from_unhealthy_starts_as_an_average_peer() {
    let mut set = set(Policy::P2c);
    apply(&mut set, vec![insert("a", 1, 1), insert("b", 2, 1)]);
    set.exclude("a", Exclusion::Unhealthy);
    let slow = set.entries["a"].target.load.clone();
    slow.restart(Duration::from_secs(5));
    assert!(set.include("a", Exclusion::Unhealthy));
    let rtt = set.entries["a"].target.load.rtt();
    assert!(rtt <= DEFAULT_RTT, "{rtt:?}: b's estimate, not its old one");
}
