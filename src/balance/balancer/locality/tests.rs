use super::*;

fn locals(split: &mut Split, share: f64, picks: usize) -> usize {
    (0..picks)
        .filter(|_| split.choose(share) == Group::Local)
        .count()
}

#[test]
fn the_share_grows_with_the_ready_count_up_to_the_threshold() {
    let locality = Locality::new("a");
    // 10 endpoints, 0.7 of them needed: 7.
    let shares: Vec<f64> = (0..=10).map(|r| local_share(&locality, r, 10)).collect();
    for (ready, share) in shares.iter().enumerate() {
        let wanted = (ready as f64 / 7.0).min(1.0);
        assert!((share - wanted).abs() < 1e-9, "{ready}: {share}");
    }
    // Monotonic, and every step below the threshold is 1/7: no jump.
    for pair in shares.windows(2) {
        assert!(pair[1] >= pair[0]);
        assert!(pair[1] - pair[0] <= 1.0 / 7.0 + 1e-9, "{shares:?}");
    }
    assert_eq!(local_share(&locality, 0, 0), 0.0);
    // Two of two ready, then one left after the other deregistered.
    assert_eq!(local_share(&locality, 2, 2), 1.0);
    assert_eq!(local_share(&locality, 1, 1), 1.0);
    // One of two ready (the other unreachable): 1 / 1.4.
    assert!((local_share(&locality, 1, 2) - 1.0 / 1.4).abs() < 1e-9);
}

#[test]
fn the_minimum_count_holds_on_top_of_the_fraction() {
    let locality = Locality::new("a").min_ready(3);
    assert_eq!(local_share(&locality, 3, 3), 1.0);
    assert!((local_share(&locality, 2, 2) - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(local_share(&locality, 7, 10), 1.0);
    let none = Locality::new("a").min_ready_fraction(0.0).min_ready(0);
    assert_eq!(local_share(&none, 1, 100), 1.0);
    assert_eq!(local_share(&none, 0, 100), 0.0);
    let clamped = Locality::new("a").min_ready_fraction(7.0);
    assert!((local_share(&clamped, 9, 10) - 0.9).abs() < 1e-9);
}

#[test]
fn the_split_gives_the_share_within_one_pick_over_any_run() {
    for share in [0.0, 0.1, 1.0 / 3.0, 0.5, 5.0 / 7.0, 0.99, 1.0] {
        let mut split = Split::default();
        let mut local = 0;
        for n in 1..=1000 {
            local += locals(&mut split, share, 1);
            let wanted = share * n as f64;
            assert!(
                (local as f64 - wanted).abs() <= 1.0,
                "share {share}: {local} local of {n}"
            );
        }
    }
    let mut split = Split::default();
    let sequence: String = (0..6)
        .map(|_| match split.choose(0.5) {
            Group::Local => 'L',
            Group::Other => 'O',
        })
        .collect();
    assert_eq!(sequence, "OLOLOL");
}

#[test]
fn no_flapping_at_the_threshold() {
    // One endpoint of ten going in and out at the threshold (7 ↔ 6
    // ready) moves the share by 1/7 each time, never to 0 or back, and
    // the local picks follow within a pick of the share.
    let locality = Locality::new("a");
    let mut split = Split::default();
    let mut local = 0;
    let mut wanted = 0.0;
    for round in 0..100 {
        let ready = if round % 2 == 0 { 7 } else { 6 };
        let share = local_share(&locality, ready, 10);
        assert!(share >= 6.0 / 7.0 - 1e-9, "{share}");
        local += locals(&mut split, share, 10);
        wanted += share * 10.0;
    }
    assert!((local as f64 - wanted).abs() <= 1.0, "{local} vs {wanted}");
    // A share that changes keeps no debt from before: after a long run
    // at 0, a share of 1 is all local at once.
    let mut split = Split::default();
    assert_eq!(locals(&mut split, 0.0, 100), 0);
    assert_eq!(locals(&mut split, 1.0, 10), 10);
    assert_eq!(locals(&mut split, 0.0, 10), 0);
}

#[test]
fn zones_follow_the_metadata() {
    let locality = Locality::new("a");
    let a = Instance::new("svc", "127.0.0.1:1")
        .unwrap()
        .with_metadata("zone", "a");
    let b = Instance::new("svc", "127.0.0.1:2")
        .unwrap()
        .with_metadata("zone", "b");
    let none = Instance::new("svc", "127.0.0.1:3").unwrap();
    assert!(locality.is_local(&a));
    assert!(!locality.is_local(&b) && !locality.is_local(&none));

    let mut zones = Zones::new(Policy::RoundRobin, Some(locality));
    zones.join(0, &a);
    zones.join(1, &b);
    zones.join(2, &none);
    assert_eq!(zones.known_local, 1);
    assert_eq!(zones.local_share(), 1.0, "no other zone is ready either");
    // Each group numbers its own endpoints densely, and reuses numbers.
    let slots: Vec<(bool, u32)> = zones
        .places
        .iter()
        .flatten()
        .map(|p| (p.local, p.slot))
        .collect();
    assert_eq!(slots, [(true, 0), (false, 0), (false, 1)]);
    zones.leave(1);
    zones.join(3, &b);
    assert_eq!(zones.places[3].unwrap().slot, 0);
    zones.leave(0);
    zones.leave(0);
    assert_eq!(zones.known_local, 0);
}
