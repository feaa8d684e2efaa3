//! The set with locality-aware routing and slow start: the group chosen per
//! pick and the weights a ramp gives, through the set's own operations.

use super::*;
use crate::endpoint::default_endpoint;

fn instance(port: u16, weight: u32, zone: Option<&str>) -> Instance {
    let instance = Instance::new("svc", format!("127.0.0.1:{port}"))
        .unwrap()
        .with_weight(weight);
    match zone {
        Some(zone) => instance.with_metadata("zone", zone),
        None => instance,
    }
}

fn routed(policy: Policy, locality: Option<Locality>, slow: Option<SlowStart>) -> Set {
    let mut set = Set::new(policy, Handle::current());
    set.route(policy, locality, slow);
    set
}

/// Inserts `key`s as the balancer does (no ramp).
fn add(set: &mut Set, endpoints: &[(&str, u16, u32, Option<&str>)]) {
    let changes = endpoints
        .iter()
        .map(|&(key, port, weight, zone)| Change::Insert(key.into(), instance(port, weight, zone)))
        .collect();
    let plan = set.plan(changes);
    for (key, instance) in plan.fresh {
        set.insert(key, instance, Arc::new(default_endpoint), DEFAULT_RTT);
    }
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

fn share(counts: &BTreeMap<String, usize>, prefix: &str) -> usize {
    counts
        .iter()
        .filter(|(key, _)| key.starts_with(prefix))
        .map(|(_, n)| n)
        .sum()
}

fn two_zones(policy: Policy) -> Set {
    let mut set = routed(policy, Some(Locality::new("a")), None);
    add(
        &mut set,
        &[
            ("a1", 1, 1, Some("a")),
            ("a2", 2, 1, Some("a")),
            ("b1", 3, 1, Some("b")),
            ("b2", 4, 1, Some("b")),
            ("none", 5, 1, None),
        ],
    );
    set
}

#[tokio::test]
async fn the_local_zone_takes_every_pick_while_enough_is_ready() {
    for policy in Policy::ALL {
        let mut set = two_zones(policy);
        let counts = count(&mut set, 100);
        assert_eq!(share(&counts, "a"), 100, "{policy}: {counts:?}");
        if policy != Policy::P2c {
            assert_eq!((counts["a1"], counts["a2"]), (50, 50), "{policy}");
        }
    }
}

#[tokio::test]
async fn spill_over_follows_the_ready_count_and_the_zone_size() {
    let mut set = two_zones(Policy::RoundRobin);
    // One of two local endpoints unreachable: it still counts, so the share
    // is 1 / (0.7 × 2) = 5/7, and the rest spreads over b and no zone.
    set.exclude("a1", Exclusion::Unreachable);
    assert!((set.local_share() - 5.0 / 7.0).abs() < 1e-9);
    let counts = count(&mut set, 700);
    assert_eq!(counts["a2"], 500, "{counts:?}");
    assert!(counts["b1"].abs_diff(67) <= 1 && counts["none"].abs_diff(67) <= 1);
    // Both out: everything elsewhere.
    set.exclude("a2", Exclusion::Ejected);
    let counts = count(&mut set, 300);
    assert_eq!(share(&counts, "a"), 0, "{counts:?}");
    assert_eq!(
        (counts["b1"], counts["b2"], counts["none"]),
        (100, 100, 100)
    );
    // One back: the share rises again by a step, not to all at once.
    set.include("a2", Exclusion::Ejected);
    let counts = count(&mut set, 700);
    assert_eq!(counts["a2"], 500, "{counts:?}");
    // The unreachable one leaves the registry: one of one ready is enough.
    set.remove("a1");
    assert_eq!(set.local_share(), 1.0);
    assert_eq!(count(&mut set, 10)["a2"], 10);
    // Every local one gone: all elsewhere; a retry that has tried them all
    // gets nothing.
    set.remove("a2");
    let counts = count(&mut set, 30);
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), [10, 10, 10]);
}

#[tokio::test]
async fn a_group_whose_endpoints_were_all_tried_falls_back_to_the_other() {
    let mut set = two_zones(Policy::Weighted);
    let tried: Vec<u64> = ["a1", "a2"]
        .iter()
        .map(|key| set.entries[*key].target.epoch)
        .collect();
    for _ in 0..10 {
        let key = set.pick(&tried).unwrap().key.clone();
        assert!(!key.starts_with('a'), "{key}");
    }
    // With no other zone ready, a partly ready zone takes everything.
    let mut set = routed(Policy::RoundRobin, Some(Locality::new("a")), None);
    add(
        &mut set,
        &[
            ("a1", 1, 1, Some("a")),
            ("a2", 2, 1, Some("a")),
            ("a3", 3, 1, Some("a")),
        ],
    );
    set.exclude("a1", Exclusion::Unreachable);
    set.exclude("a2", Exclusion::Unreachable);
    assert_eq!(set.local_share(), 1.0);
    assert_eq!(count(&mut set, 5)["a3"], 5);
}

#[tokio::test]
async fn locality_composes_with_weights_within_the_zone() {
    let mut set = routed(Policy::Weighted, Some(Locality::new("a")), None);
    add(
        &mut set,
        &[
            ("a1", 1, 1, Some("a")),
            ("a2", 2, 3, Some("a")),
            ("b1", 3, 9, Some("b")),
        ],
    );
    let counts = count(&mut set, 400);
    assert_eq!((counts["a1"], counts["a2"]), (100, 300), "{counts:?}");
    assert!(!counts.contains_key("b1"));
}

#[tokio::test]
async fn without_a_locality_zones_do_not_matter() {
    let mut set = routed(Policy::RoundRobin, None, None);
    add(
        &mut set,
        &[
            ("a1", 1, 1, Some("a")),
            ("b1", 2, 1, Some("b")),
            ("none", 3, 1, None),
        ],
    );
    let counts = count(&mut set, 30);
    assert!(counts.values().all(|&n| n == 10), "{counts:?}");
    assert_eq!(set.local_share(), 1.0);
}

fn ramped(policy: Policy) -> (Set, Instant) {
    let slow = SlowStart::new(Duration::from_secs(10));
    let mut set = routed(policy, None, Some(slow));
    add(&mut set, &[("a", 1, 1, None), ("b", 2, 1, None)]);
    add(&mut set, &[("c", 3, 1, None)]);
    let t0 = Instant::now();
    set.ramp_up("c", t0);
    (set, t0)
}

#[tokio::test]
async fn a_ramping_endpoint_gets_its_weight_over_the_window_weighted_and_round_robin() {
    for policy in [Policy::Weighted, Policy::RoundRobin] {
        let (mut set, t0) = ramped(policy);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(set.entries["c"].weight(), 10, "{policy}");
        assert_eq!(set.ramping(), Some(Duration::from_millis(250)));
        // Weights 100, 100, 10: 10 of every 210.
        let counts = count(&mut set, 210 * 4);
        assert_eq!(counts["c"], 40, "{policy}: {counts:?}");
        // Half-way: 50.
        assert!(set.ramp_step(at(5)));
        assert_eq!(set.entries["c"].weight(), 50);
        let counts = count(&mut set, 250 * 4);
        assert_eq!(counts["c"], 200, "{policy}: {counts:?}");
        // Over: full weight, the ramp forgotten, exact rotation again.
        assert!(!set.ramp_step(at(10)));
        assert_eq!(set.ramping(), None);
        assert_eq!(set.entries["c"].weight(), 100);
        let counts = count(&mut set, 300);
        assert!(counts.values().all(|&n| n == 100), "{policy}: {counts:?}");
    }
}

#[tokio::test]
async fn registry_weights_scale_and_a_weight_change_keeps_the_ramp() {
    let slow = SlowStart::new(Duration::from_secs(10));
    let mut set = routed(Policy::Weighted, None, Some(slow));
    add(&mut set, &[("a", 1, 2, None)]);
    assert_eq!(set.entries["a"].weight(), 200);
    add(&mut set, &[("b", 2, 1, None)]);
    set.ramp_up("b", Instant::now());
    assert_eq!(set.entries["b"].weight(), 10);
    // The registry doubles b's weight mid-ramp: still 10 % of it.
    add(&mut set, &[("b", 2, 2, None)]);
    assert_eq!(set.entries["b"].weight(), 20);
}

#[tokio::test]
async fn an_endpoint_readmitted_after_an_ejection_ramps_up_again() {
    let (mut set, t0) = ramped(Policy::Weighted);
    assert!(!set.ramp_step(t0 + Duration::from_secs(10)));
    assert_eq!(set.entries["c"].weight(), 100);
    set.exclude("c", Exclusion::Ejected);
    assert!(set.include("c", Exclusion::Ejected));
    assert_eq!(set.entries["c"].weight(), 10);
    assert!(set.ramping().is_some());
    // Alone in the set, an endpoint coming back has no one to take
    // traffic from: it does not ramp.
    let slow = SlowStart::new(Duration::from_secs(10));
    let mut alone = routed(Policy::Weighted, None, Some(slow));
    add(&mut alone, &[("a", 1, 1, None)]);
    alone.exclude("a", Exclusion::Unhealthy);
    alone.include("a", Exclusion::Unhealthy);
    assert_eq!(alone.ramping(), None);
    // Removed mid-ramp: forgotten.
    set.remove("c");
    assert_eq!(set.ramping(), None);
}

#[tokio::test]
async fn p2c_gives_a_ramping_endpoint_its_factor_of_its_fair_share() {
    let (mut set, t0) = ramped(Policy::P2c);
    // a and b have a request in flight each, c none: p2c would send c every
    // comparison it is in, 2/3 of the picks. Ramping, it gets its factor of
    // a third: it wins a comparison with probability factor / 2.
    let _busy = ["a", "b"].map(|key| set.entries[key].target.load.start());
    let picks = |set: &mut Set| count(set, 6000).get("c").copied().unwrap_or(0);
    let c = picks(&mut set);
    assert!(
        (120..=300).contains(&c),
        "factor 0.1: {c} of 6000 (200 expected)"
    );
    assert!(set.ramp_step(t0 + Duration::from_secs(5)));
    let c = picks(&mut set);
    assert!(
        (850..=1_150).contains(&c),
        "factor 0.5: {c} (1000 expected)"
    );
    assert!(!set.ramp_step(t0 + Duration::from_secs(10)));
    let c = picks(&mut set);
    assert!(
        (3_700..=4_300).contains(&c),
        "after the window, p2c's own: {c} (4000 expected)"
    );
}
