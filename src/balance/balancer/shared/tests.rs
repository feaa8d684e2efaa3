use super::*;
use crate::endpoint::default_endpoint;

fn shared(policy: Policy) -> Arc<Shared> {
    Arc::new(Shared::new(
        "svc".into(),
        policy,
        Arc::new(default_endpoint),
        Duration::ZERO,
    ))
}

/// An instance at a port nothing listens on: the channels are lazy, so
/// nothing connects unless a probe does.
fn instance(port: u16, weight: u32) -> Instance {
    Instance::new("svc", format!("127.0.0.1:{port}"))
        .unwrap()
        .with_weight(weight)
}

fn insert(shared: &Arc<Shared>, key: &str, port: u16, weight: u32) {
    shared.apply(Change::Insert(key.into(), instance(port, weight)));
}

#[tokio::test(flavor = "current_thread")]
async fn the_template_runs_once_at_insertion_and_again_on_the_first_pick() {
    let runtime = tokio::runtime::Handle::current();
    // Refuses port 2; counts the endpoints built.
    let built = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let template: Template = {
        let built = built.clone();
        Arc::new(move |instance: &Instance| {
            built.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if instance.addr.ends_with(":2") {
                return Err(crate::Error::Endpoint {
                    addr: instance.addr.clone(),
                    source: "refused by the test".into(),
                });
            }
            default_endpoint(instance)
        })
    };
    let built = || built.load(std::sync::atomic::Ordering::Relaxed);
    let shared = Arc::new(Shared::new(
        "svc".into(),
        Policy::RoundRobin,
        template,
        Duration::ZERO,
    ));
    let tasks = runtime.metrics().num_alive_tasks();
    shared.apply_batch(
        [("a", 1), ("b", 2), ("c", 3)]
            .into_iter()
            .map(|(key, port)| Change::Insert(key.into(), instance(port, 1)))
            .collect(),
    );
    // The refused instance is left out; the others hold no endpoint.
    assert_eq!(shared.counts(), (2, 0));
    assert!(!shared.lock().entries.contains_key("b"));
    assert_eq!(built(), 3);
    assert!(shared
        .lock()
        .entries
        .values()
        .all(|e| !e.target.has_channel()));
    assert_eq!(runtime.metrics().num_alive_tasks(), tasks);
    let target = shared.pick(&[]).unwrap();
    let _channel = target.borrow_channel();
    assert_eq!(built(), 4);
    assert_eq!(runtime.metrics().num_alive_tasks(), tasks + 1);
}

fn picks(shared: &Shared, n: usize) -> String {
    (0..n)
        .map(|_| shared.pick(&[]).map_or("-".into(), |t| t.key.clone()))
        .collect()
}

fn ready(shared: &Shared) -> String {
    shared
        .statuses()
        .iter()
        .filter(|s| s.ready)
        .map(|s| s.key.clone())
        .collect()
}

#[tokio::test]
async fn round_robin_rotates_in_key_order_and_follows_changes() {
    let shared = shared(Policy::RoundRobin);
    assert_eq!(picks(&shared, 1), "-");
    insert(&shared, "c", 1, 1);
    insert(&shared, "a", 2, 1);
    insert(&shared, "b", 3, 1);
    assert_eq!(picks(&shared, 6), "abcabc");
    shared.apply(Change::Remove("b".into()));
    assert_eq!(picks(&shared, 4), "acac");
    assert_eq!(shared.counts(), (2, 0));
}

#[tokio::test]
async fn weighted_follows_weight_changes_on_the_same_connection() {
    let shared = shared(Policy::Weighted);
    insert(&shared, "a", 1, 5);
    insert(&shared, "b", 2, 1);
    insert(&shared, "c", 3, 1);
    assert_eq!(picks(&shared, 9), "abaaacaab");
    let before = shared.lock().entries["a"].target.clone();
    // Only the weight changes: same target, now in one ring with b and c.
    insert(&shared, "a", 1, 1);
    assert_eq!(picks(&shared, 3), "cab");
    assert!(Arc::ptr_eq(&shared.lock().entries["a"].target, &before));
    // A new address is a new endpoint.
    insert(&shared, "a", 9, 1);
    let after = shared.lock().entries["a"].target.clone();
    assert_ne!(after.epoch, before.epoch);
    assert_eq!(after.addr(), "127.0.0.1:9");
    assert_eq!(picks(&shared, 3), "cab");
}

#[tokio::test]
async fn an_ejected_endpoint_is_skipped_until_removed_or_replaced() {
    let shared = shared(Policy::RoundRobin);
    insert(&shared, "a", 1, 1);
    insert(&shared, "b", 2, 1);
    let a = shared.lock().entries["a"].target.clone();
    let changes = shared.changes();
    shared.eject(&a, &std::io::Error::other("refused"));
    assert!(changes.has_changed().unwrap(), "waiting requests are told");
    assert_eq!(ready(&shared), "b");
    assert_eq!(shared.counts(), (2, 1));
    assert_eq!(picks(&shared, 3), "bbb");
    // A second failure of the same connection changes nothing.
    shared.eject(&a, &std::io::Error::other("refused"));
    assert_eq!(shared.counts(), (2, 1));
    // A weight change keeps it ejected; a new address makes it ready.
    insert(&shared, "a", 1, 3);
    assert_eq!(ready(&shared), "b");
    insert(&shared, "a", 7, 3);
    assert_eq!(ready(&shared), "ab");
    // A failure of the old connection does not eject the new one.
    shared.eject(&a, &std::io::Error::other("late"));
    assert_eq!(ready(&shared), "ab");
    // Tried targets are skipped.
    let b = shared.lock().entries["b"].target.clone();
    assert_eq!(shared.pick(&[b.epoch]).unwrap().key, "a");
}

#[tokio::test]
async fn removing_an_ejected_endpoint_stops_its_probe() {
    let shared = shared(Policy::RoundRobin);
    insert(&shared, "a", 1, 1);
    let a = shared.lock().entries["a"].target.clone();
    shared.eject(&a, &std::io::Error::other("refused"));
    let probe = shared.lock().entries["a"].probe.clone().unwrap();
    assert!(!probe.is_finished());
    shared.apply(Change::Remove("a".into()));
    tokio::time::timeout(Duration::from_secs(5), async {
        while !probe.is_finished() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the probe was aborted");
    assert_eq!(shared.counts(), (0, 0));
}

#[tokio::test]
async fn a_restored_endpoint_is_ready_with_a_new_connection() {
    let shared = shared(Policy::RoundRobin);
    insert(&shared, "a", 1, 1);
    let a = shared.lock().entries["a"].target.clone();
    shared.eject(&a, &std::io::Error::other("refused"));
    let channel = default_endpoint(&instance(1, 1)).unwrap().connect_lazy();
    // A stale probe (old epoch) cannot restore.
    shared.restore("a", a.epoch + 100, channel.clone());
    assert_eq!(ready(&shared), "");
    shared.restore("a", a.epoch, channel);
    assert_eq!(ready(&shared), "a");
    assert_ne!(shared.pick(&[]).unwrap().epoch, a.epoch);
}

#[tokio::test]
async fn a_batch_that_removes_every_ready_endpoint_keeps_the_last_for_the_grace() {
    let shared = shared(Policy::RoundRobin);
    shared.apply_batch(vec![
        Change::Insert("a".into(), instance(1, 1)),
        Change::Insert("b".into(), instance(2, 1)),
        Change::Insert("c".into(), instance(3, 1)),
    ]);
    shared.apply_batch(vec![
        Change::Remove("a".into()),
        Change::Remove("b".into()),
        Change::Remove("c".into()),
    ]);
    assert_eq!(ready(&shared), "c", "the last ready one waits");
    // Another instance comes: the wait ends with it.
    shared.apply_batch(vec![Change::Insert("d".into(), instance(4, 1))]);
    assert_eq!(ready(&shared), "d");
    // A batch that leaves one ready removes at once.
    shared.apply_batch(vec![Change::Insert("e".into(), instance(5, 1))]);
    shared.apply_batch(vec![Change::Remove("d".into())]);
    assert_eq!(ready(&shared), "e");
}

#[tokio::test]
async fn a_deferred_removal_takes_effect_after_the_grace_unless_the_key_comes_back() {
    let options = Options {
        removal_grace: Duration::from_millis(50),
        ..Options::default()
    };
    let shared = Arc::new(Shared::with_options(
        "svc".into(),
        Policy::RoundRobin,
        Arc::new(default_endpoint),
        Duration::ZERO,
        options,
    ));
    insert(&shared, "a", 1, 1);
    shared.apply(Change::Remove("a".into()));
    assert_eq!(ready(&shared), "a");
    // The key itself comes back: it stays, and no timer removes it.
    insert(&shared, "a", 1, 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(ready(&shared), "a");
    shared.apply(Change::Remove("a".into()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while shared.counts().0 != 0 {
        assert!(tokio::time::Instant::now() < deadline, "never removed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
