//! The state machine on synthetic input, one test per rule (about 500 lines:
//! the overrides rules added a third).

use super::*;
use crate::codec::Native;
use crate::error::Result;

const PREFIX: &str = "/services/svc/";

fn key(id: &str) -> String {
    format!("{PREFIX}{id}")
}

fn value(addr: &str) -> Vec<u8> {
    format!(r#"{{"name":"svc","addr":"{addr}"}}"#).into_bytes()
}

fn put(id: &str, addr: &str) -> Event {
    Event::Put {
        key: key(id),
        value: value(addr),
        mod_revision: 1,
    }
}

fn put_raw(id: &str, raw: &str) -> Event {
    Event::Put {
        key: key(id),
        value: raw.as_bytes().to_vec(),
        mod_revision: 1,
    }
}

fn delete(id: &str) -> Event {
    Event::Delete { key: key(id) }
}

fn resync(entries: &[(&str, &str)]) -> Event {
    Event::Resync {
        kvs: entries
            .iter()
            .map(|(id, addr)| (key(id), value(addr)))
            .collect(),
    }
}

fn state() -> State {
    State::new("svc".into(), Arc::new(Native), None, None)
}

/// A compact rendering of changes: `+id@addr` and `-id`.
fn show(changes: &[Change<String, Instance>]) -> Vec<String> {
    changes
        .iter()
        .map(|c| match c {
            Change::Insert(k, i) => format!("+{}@{}", k.trim_start_matches(PREFIX), i.addr),
            Change::Remove(k) => format!("-{}", k.trim_start_matches(PREFIX)),
        })
        .collect()
}

fn addrs(state: &State) -> Vec<String> {
    state.snapshot().into_iter().map(|i| i.addr).collect()
}

#[test]
fn put_inserts() {
    let mut s = state();
    assert_eq!(show(&s.apply(put("a", "h:1"))), ["+a@h:1"]);
    assert_eq!(addrs(&s), ["h:1"]);
    assert_eq!(s.snapshot()[0].id, "a");
}

#[test]
fn identical_put_is_ignored() {
    let mut s = state();
    s.apply(put("a", "h:1"));
    assert!(s.apply(put("a", "h:1")).is_empty());
}

#[test]
fn changed_put_replaces() {
    let mut s = state();
    s.apply(put("a", "h:1"));
    assert_eq!(show(&s.apply(put("a", "h:2"))), ["+a@h:2"]);
    assert_eq!(addrs(&s), ["h:2"]);
}

#[test]
fn changed_bytes_same_instance_is_nothing() {
    let mut s = state();
    s.apply(put_raw("a", r#"{"addr":"h:1"}"#));
    // Different JSON, same decoded instance: the consumer has nothing to learn.
    assert!(s
        .apply(put_raw("a", r#"{ "addr": "h:1", "extra": 1 }"#))
        .is_empty());
}

#[test]
fn delete_removes() {
    let mut s = state();
    s.apply(put("a", "h:1"));
    assert_eq!(show(&s.apply(delete("a"))), ["-a"]);
    assert!(s.snapshot().is_empty());
}

#[test]
fn delete_of_unknown_key_is_nothing() {
    let mut s = state();
    assert!(s.apply(delete("nope")).is_empty());
    s.apply(put("a", "h:1"));
    s.apply(delete("a"));
    assert!(s.apply(delete("a")).is_empty());
}

#[test]
fn undecodable_value_is_skipped() {
    let mut s = state();
    assert!(s.apply(put_raw("bad", "garbage")).is_empty());
    assert!(s.apply(put_raw("bad", r#"{"addr":"no-port"}"#)).is_empty());
    assert!(s.snapshot().is_empty());
    assert!(s.apply(delete("bad")).is_empty());
}

#[test]
fn undecodable_value_removes_known_key_and_valid_value_returns() {
    let mut s = state();
    s.apply(put("a", "h:1"));
    assert_eq!(show(&s.apply(put_raw("a", "garbage"))), ["-a"]);
    assert!(s.apply(put_raw("a", "more garbage")).is_empty());
    assert_eq!(show(&s.apply(put("a", "h:1"))), ["+a@h:1"]);
}

#[test]
fn value_of_another_service_is_skipped() {
    let mut s = state();
    assert!(s
        .apply(put_raw("a", r#"{"name":"other","addr":"h:1"}"#))
        .is_empty());
}

#[test]
fn resync_emits_only_the_difference() {
    let mut s = state();
    s.apply(put("same", "h:1"));
    s.apply(put("changed", "h:2"));
    s.apply(put("gone", "h:3"));
    let changes = s.apply(resync(&[
        ("same", "h:1"),
        ("changed", "h:22"),
        ("new", "h:4"),
    ]));
    assert_eq!(show(&changes), ["+changed@h:22", "+new@h:4", "-gone"]);
    assert_eq!(addrs(&s), ["h:22", "h:4", "h:1"]);
    // A second identical resync changes nothing.
    assert!(s
        .apply(resync(&[
            ("same", "h:1"),
            ("changed", "h:22"),
            ("new", "h:4"),
        ]))
        .is_empty());
}

#[test]
fn resync_to_empty_removes_all() {
    let mut s = state();
    s.apply(put("a", "h:1"));
    s.apply(put("b", "h:2"));
    assert_eq!(show(&s.apply(resync(&[]))), ["-a", "-b"]);
    assert_eq!(s.len(), 0);
}

#[test]
fn resync_skips_garbage_and_removes_known_garbage() {
    let mut s = state();
    s.apply(put("a", "h:1"));
    let changes = s.apply(Event::Resync {
        kvs: vec![(key("a"), b"garbage".to_vec()), (key("b"), value("h:2"))],
    });
    assert_eq!(show(&changes), ["+b@h:2", "-a"]);
}

#[test]
fn start_is_a_resync_from_nothing() {
    let mut s = state();
    let changes = s.apply(resync(&[("b", "h:2"), ("a", "h:1")]));
    // Sorted by identity, so that the initial inserts come in key order.
    assert_eq!(show(&changes), ["+a@h:1", "+b@h:2"]);
}

#[test]
fn version_filter() {
    let mut s = State::new("svc".into(), Arc::new(Native), Some("2".into()), None);
    assert!(s
        .apply(put_raw("a", r#"{"addr":"h:1","version":"1"}"#))
        .is_empty());
    assert_eq!(
        show(&s.apply(put_raw("a", r#"{"addr":"h:1","version":"2"}"#))),
        ["+a@h:1"]
    );
    // No longer passing the filter is a removal.
    assert_eq!(
        show(&s.apply(put_raw("a", r#"{"addr":"h:1","version":"3"}"#))),
        ["-a"]
    );
}

#[test]
fn custom_filter() {
    let filter: InstanceFilter =
        Arc::new(|i: &Instance| i.metadata.get("zone").map(String::as_str) == Some("a"));
    let mut s = State::new("svc".into(), Arc::new(Native), None, Some(filter));
    assert!(s.apply(put("nozone", "h:1")).is_empty());
    assert_eq!(
        show(&s.apply(put_raw("z", r#"{"addr":"h:2","metadata":{"zone":"a"}}"#))),
        ["+z@h:2"]
    );
    assert_eq!(
        show(&s.apply(put_raw("z", r#"{"addr":"h:2","metadata":{"zone":"b"}}"#))),
        ["-z"]
    );
}

/// Native layout, but instances are identified by address, like formats that
/// re-register under a new key.
#[derive(Debug)]
struct ByAddr;

impl Codec for ByAddr {
    fn name(&self) -> &'static str {
        "by-addr"
    }
    fn default_namespace(&self) -> &'static str {
        "/services"
    }
    fn key(&self, namespace: &str, instance: &Instance) -> String {
        Native.key(namespace, instance)
    }
    fn encode(&self, instance: &Instance) -> Result<Vec<u8>> {
        Native.encode(instance)
    }
    fn decode(&self, service: &str, key: &str, value: &[u8]) -> Result<Instance> {
        let mut instance = Native.decode(service, key, value)?;
        // Same address, same instance, whatever the key.
        instance.id = instance.addr.clone();
        Ok(instance)
    }
    fn identity(&self, _key: &str, instance: &Instance) -> String {
        instance.addr.clone()
    }
}

fn by_addr() -> State {
    State::new("svc".into(), Arc::new(ByAddr), None, None)
}

fn show_ids(changes: &[Change<String, Instance>]) -> Vec<String> {
    changes
        .iter()
        .map(|c| match c {
            Change::Insert(k, _) => format!("+{k}"),
            Change::Remove(k) => format!("-{k}"),
        })
        .collect()
}

#[test]
fn identity_dedupe() {
    let mut s = by_addr();
    assert_eq!(show_ids(&s.apply(put("k1", "h:1"))), ["+h:1"]);
    assert!(
        s.apply(put("k2", "h:1")).is_empty(),
        "second key, same addr"
    );
    assert_eq!(s.len(), 1);
    assert!(s.apply(delete("k1")).is_empty(), "one key remains");
    assert_eq!(s.len(), 1);
    assert_eq!(show_ids(&s.apply(delete("k2"))), ["-h:1"]);
    assert_eq!(s.len(), 0);
}

#[test]
fn identity_moves_when_a_key_changes_address() {
    let mut s = by_addr();
    s.apply(put("k1", "h:1"));
    assert_eq!(show_ids(&s.apply(put("k1", "h:2"))), ["+h:2", "-h:1"]);
    assert_eq!(addrs(&s), ["h:2"]);
}

#[test]
fn identity_representative_change_is_an_insert() {
    let mut s = by_addr();
    s.apply(put_raw("k1", r#"{"addr":"h:1","weight":1}"#));
    s.apply(put_raw("k2", r#"{"addr":"h:1","weight":1}"#));
    // k1 is the representative (smallest key): changing it is visible.
    let changes = s.apply(put_raw("k1", r#"{"addr":"h:1","weight":5}"#));
    assert_eq!(show_ids(&changes), ["+h:1"]);
    assert_eq!(s.snapshot()[0].weight, 5);
    // k2 is not the representative: changing it is not.
    assert!(s
        .apply(put_raw("k2", r#"{"addr":"h:1","weight":7}"#))
        .is_empty());
    // Once k1 goes, k2 represents the identity.
    assert_eq!(show_ids(&s.apply(delete("k1"))), ["+h:1"]);
    assert_eq!(s.snapshot()[0].weight, 7);
}

#[test]
fn identity_resync_diff() {
    let mut s = by_addr();
    s.apply(put("k1", "h:1"));
    s.apply(put("k2", "h:2"));
    // The registration of h:1 moved to a new key; h:2 is gone.
    let changes = s.apply(resync(&[("k3", "h:1")]));
    assert_eq!(show_ids(&changes), ["-h:2"]);
    assert_eq!(addrs(&s), ["h:1"]);
}

// Overrides (native layout): `{prefix}.overrides/{id}` drains or re-weights
// the instance at `{prefix}{id}`.

fn put_override(id: &str, raw: &str) -> Event {
    Event::Put {
        key: format!("{PREFIX}.overrides/{id}"),
        value: raw.as_bytes().to_vec(),
        mod_revision: 1,
    }
}

fn delete_override(id: &str) -> Event {
    Event::Delete {
        key: format!("{PREFIX}.overrides/{id}"),
    }
}

fn weights(state: &State) -> Vec<(String, u32)> {
    state
        .snapshot()
        .into_iter()
        .map(|i| (i.id, i.weight))
        .collect()
}

#[test]
fn drain_removes_and_undrain_inserts() {
    let mut s = state();
    s.apply(put("a", "h:1"));
    s.apply(put("b", "h:2"));
    assert_eq!(
        show(&s.apply(put_override("a", r#"{"drained":true}"#))),
        ["-a"]
    );
    assert_eq!(addrs(&s), ["h:2"]);
    // Still registered, flagged.
    let registered = s.registered();
    assert_eq!(registered.len(), 2);
    assert!(registered[0].drained && registered[0].instance.id == "a");
    assert!(!registered[1].drained);
    // Draining again, or the instance writing its value again, is nothing.
    assert!(s.apply(put_override("a", r#"{"drained":true}"#)).is_empty());
    assert!(s.apply(put("a", "h:1")).is_empty());
    assert_eq!(show(&s.apply(delete_override("a"))), ["+a@h:1"]);
    assert_eq!(addrs(&s), ["h:1", "h:2"]);
}

#[test]
fn undrain_by_writing_an_empty_override() {
    let mut s = state();
    s.apply(put("a", "h:1"));
    s.apply(put_override("a", r#"{"drained":true}"#));
    assert_eq!(show(&s.apply(put_override("a", "{}"))), ["+a@h:1"]);
}

#[test]
fn weight_override_replaces_the_registered_weight() {
    let mut s = state();
    s.apply(put_raw("a", r#"{"addr":"h:1","weight":2}"#));
    assert_eq!(
        show(&s.apply(put_override("a", r#"{"weight":4}"#))),
        ["+a@h:1"]
    );
    assert_eq!(weights(&s), [("a".into(), 4)]);
    let listed = &s.registered()[0];
    assert_eq!(
        (listed.registered_weight, listed.weight_overridden),
        (2, true)
    );
    // The instance changes its own weight: the override still wins, and the
    // consumer has nothing to learn.
    assert!(s
        .apply(put_raw("a", r#"{"addr":"h:1","weight":3}"#))
        .is_empty());
    assert_eq!(weights(&s), [("a".into(), 4)]);
    // Cleared: back to the registered weight.
    assert_eq!(show(&s.apply(delete_override("a"))), ["+a@h:1"]);
    assert_eq!(weights(&s), [("a".into(), 3)]);
}

#[test]
fn weight_override_equal_to_the_registered_weight_is_nothing() {
    let mut s = state();
    s.apply(put_raw("a", r#"{"addr":"h:1","weight":4}"#));
    assert!(s.apply(put_override("a", r#"{"weight":4}"#)).is_empty());
}

#[test]
fn override_survives_reregistration() {
    let mut s = state();
    s.apply(put("a", "h:1"));
    s.apply(put_override("a", r#"{"drained":true,"weight":5}"#));
    // The instance restarts: its key goes and comes back under a new lease.
    assert!(s.apply(delete("a")).is_empty(), "already removed: drained");
    assert!(s.apply(put("a", "h:1")).is_empty(), "still drained");
    assert!(s.registered()[0].drained);
    assert_eq!(
        show(&s.apply(put_override("a", r#"{"weight":5}"#))),
        ["+a@h:1"]
    );
    assert_eq!(weights(&s), [("a".into(), 5)]);
}

#[test]
fn override_before_its_instance() {
    let mut s = state();
    assert!(s.apply(put_override("a", r#"{"drained":true}"#)).is_empty());
    assert!(s.apply(put("a", "h:1")).is_empty());
    assert!(s.snapshot().is_empty());
    assert_eq!(s.registered().len(), 1);
}

#[test]
fn start_reads_instances_and_overrides_together() {
    let mut s = state();
    let changes = s.apply(Event::Resync {
        kvs: vec![
            (
                format!("{PREFIX}.overrides/a"),
                br#"{"drained":true}"#.to_vec(),
            ),
            (format!("{PREFIX}.overrides/b"), br#"{"weight":4}"#.to_vec()),
            (key("a"), value("h:1")),
            (key("b"), value("h:2")),
        ],
    });
    assert_eq!(show(&changes), ["+b@h:2"]);
    assert_eq!(weights(&s), [("b".into(), 4)]);
}

#[test]
fn resync_applies_override_differences() {
    let mut s = state();
    s.apply(put("a", "h:1"));
    s.apply(put("b", "h:2"));
    s.apply(put_override("a", r#"{"drained":true}"#));
    // While the watch was lost: a was undrained, b drained.
    let changes = s.apply(Event::Resync {
        kvs: vec![
            (
                format!("{PREFIX}.overrides/b"),
                br#"{"drained":true}"#.to_vec(),
            ),
            (key("a"), value("h:1")),
            (key("b"), value("h:2")),
        ],
    });
    assert_eq!(show(&changes), ["+a@h:1", "-b"]);
}

#[test]
fn bad_override_is_no_override() {
    let mut s = state();
    s.apply(put("a", "h:1"));
    s.apply(put_override("a", r#"{"drained":true}"#));
    assert_eq!(show(&s.apply(put_override("a", "garbage"))), ["+a@h:1"]);
    assert!(s.apply(put_override("a", r#"{"weight":0}"#)).is_empty());
    assert!(s
        .apply(put_override("a", r#"{"drained":"yes"}"#))
        .is_empty());
}

#[test]
fn override_keys_are_never_instances() {
    let mut s = state();
    // Even a value that would decode as an instance.
    assert!(s
        .apply(put_override("a", &String::from_utf8(value("h:1")).unwrap()))
        .is_empty());
    assert!(s.snapshot().is_empty() && s.registered().is_empty());
    // An override of a key that is not registered stays unused.
    assert!(s.apply(delete_override("a")).is_empty());
}

#[test]
fn other_layouts_ignore_override_keys() {
    // go-zero reads every value as an address: the crate writes no override
    // there, and a key named like one is an instance like any other.
    let mut s = State::new("svc".into(), Arc::new(crate::codec::GoZero), None, None);
    let changes = s.apply(Event::Put {
        key: "svc/.overrides/a".into(),
        value: b"127.0.0.1:1".to_vec(),
        mod_revision: 1,
    });
    assert_eq!(changes.len(), 1);
    assert!(matches!(&changes[0], Change::Insert(_, i) if i.addr == "127.0.0.1:1"));
}
