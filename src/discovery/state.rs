//! The discovery state machine: etcd events in, [`Change`]s out.
//!
//! Pure and synchronous, so that every rule of "Discovery semantics" is tested
//! on synthetic input without etcd.
//!
//! Two levels are tracked:
//!
//! ```text
//! keys:       etcd key  -> (identity, instance)
//! identities: identity  -> its etcd keys, sorted
//! emitted:    identity  -> the instance the consumer was last told about
//! ```
//!
//! A discovery may hold 100k instances, so the state is kept small: the
//! instance of a key is shared (`Arc`) with what was emitted for it, an
//! identity's keys are a vector (one key, the usual case, is one small
//! allocation), and raw values are not kept: a value written again decodes to
//! the same instance, which [`State::reconcile`] does not report.
//!
//! An identity is inserted when its first key appears, re-inserted when its
//! representative (the instance of its smallest key) changes, and removed when
//! its last key goes. With the default [`Codec::identity`] every key is its own
//! identity and this reduces to "one Change per key".

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use tower::discover::Change;
use tracing::{debug, warn};

use super::InstanceFilter;
use crate::codec::Codec;
use crate::instance::Instance;

/// One input of the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A key was written.
    Put {
        key: String,
        value: Vec<u8>,
        mod_revision: i64,
    },
    /// A key was deleted.
    Delete { key: String },
    /// The complete content of the prefix at one revision, replacing all that is
    /// known (after compaction, data loss, or at start).
    Resync { kvs: Vec<(String, Vec<u8>)> },
}

/// What the state machine remembers about one etcd key that decoded and passed
/// the filters.
#[derive(Debug, Clone)]
struct Entry {
    identity: String,
    instance: Arc<Instance>,
}

/// The state of one discovery: which keys are known, which identities were
/// reported to the consumer.
pub(crate) struct State {
    service: String,
    codec: Arc<dyn Codec>,
    version: Option<String>,
    filter: Option<InstanceFilter>,
    keys: HashMap<String, Entry>,
    identities: HashMap<String, Vec<String>>,
    emitted: BTreeMap<String, Arc<Instance>>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("service", &self.service)
            .field("codec", &self.codec.name())
            .field("version", &self.version)
            .field("filter", &self.filter.is_some())
            .field("keys", &self.keys.len())
            .field("identities", &self.emitted.len())
            .finish()
    }
}

impl State {
    pub(crate) fn new(
        service: String,
        codec: Arc<dyn Codec>,
        version: Option<String>,
        filter: Option<InstanceFilter>,
    ) -> Self {
        Self {
            service,
            codec,
            version,
            filter,
            keys: HashMap::new(),
            identities: HashMap::new(),
            emitted: BTreeMap::new(),
        }
    }

    /// Applies one event and returns what the consumer must be told, in order.
    pub(crate) fn apply(&mut self, event: Event) -> Vec<Change<String, Instance>> {
        let mut touched = BTreeSet::new();
        match event {
            // An identical value decodes to the instance already emitted:
            // reconciling reports nothing.
            Event::Put { key, value, .. } => self.put(key, value, &mut touched),
            Event::Delete { key } => self.forget(&key, &mut touched),
            Event::Resync { kvs } if self.keys.is_empty() => {
                // The start: nothing to diff against.
                for (key, value) in kvs {
                    self.put(key, value, &mut touched);
                }
                touched.extend(self.emitted.keys().cloned());
            }
            Event::Resync { kvs } => {
                let fresh: HashMap<String, Vec<u8>> = kvs.into_iter().collect();
                let gone: Vec<String> = self
                    .keys
                    .keys()
                    .filter(|k| !fresh.contains_key(*k))
                    .cloned()
                    .collect();
                for key in gone {
                    self.forget(&key, &mut touched);
                }
                // Unchanged values decode to unchanged instances, which
                // reconciling does not report.
                for (key, value) in fresh {
                    self.put(key, value, &mut touched);
                }
                // Identities reported earlier whose keys never decoded in this
                // run cannot exist; reconciling every emitted identity makes the
                // resync a full diff regardless of history.
                touched.extend(self.emitted.keys().cloned());
            }
        }
        // Inserts before removes: when an instance moves to another key or
        // identity, the consumer never sees a set emptier than both ends.
        let (mut changes, removes): (Vec<_>, Vec<_>) = touched
            .into_iter()
            .filter_map(|identity| self.reconcile(identity))
            .partition(|change| matches!(change, Change::Insert(..)));
        changes.extend(removes);
        changes
    }

    /// The instances the consumer currently knows, sorted by identity.
    pub(crate) fn snapshot(&self) -> Vec<Instance> {
        self.emitted
            .values()
            .map(|instance| (**instance).clone())
            .collect()
    }

    /// Number of identities currently reported.
    pub(crate) fn len(&self) -> usize {
        self.emitted.len()
    }

    /// Records a new value of `key`; an undecodable or filtered value forgets it.
    fn put(&mut self, key: String, value: Vec<u8>, touched: &mut BTreeSet<String>) {
        self.forget(&key, touched);
        let instance = match self.codec.decode(&self.service, &key, &value) {
            Ok(instance) => instance,
            Err(error) => {
                warn!(%key, %error, "skipping registry value that does not decode");
                return;
            }
        };
        if let Some(version) = &self.version {
            if &instance.version != version {
                debug!(%key, version = %instance.version, wanted = %version, "filtered out by version");
                return;
            }
        }
        if let Some(filter) = &self.filter {
            if !filter(&instance) {
                debug!(%key, "filtered out by the instance filter");
                return;
            }
        }
        let identity = self.codec.identity(&key, &instance);
        let keys = self
            .identities
            .entry(identity.clone())
            .or_insert_with(|| Vec::with_capacity(1));
        if let Err(at) = keys.binary_search(&key) {
            keys.insert(at, key.clone());
        }
        touched.insert(identity.clone());
        self.keys.insert(
            key,
            Entry {
                identity,
                instance: Arc::new(instance),
            },
        );
    }

    /// Forgets `key` if it is known.
    fn forget(&mut self, key: &str, touched: &mut BTreeSet<String>) {
        let Some(entry) = self.keys.remove(key) else {
            return;
        };
        if let Some(keys) = self.identities.get_mut(&entry.identity) {
            if let Ok(at) = keys.binary_search_by(|k| k.as_str().cmp(key)) {
                keys.remove(at);
            }
            if keys.is_empty() {
                self.identities.remove(&entry.identity);
            }
        }
        touched.insert(entry.identity);
    }

    /// Brings what was emitted for `identity` in line with its keys.
    fn reconcile(&mut self, identity: String) -> Option<Change<String, Instance>> {
        let current = self
            .identities
            .get(&identity)
            .and_then(|keys| keys.first())
            .map(|key| &self.keys[key].instance);
        match (self.emitted.get(&identity), current) {
            (None, None) => None,
            (Some(old), Some(new)) if Arc::ptr_eq(old, new) => None,
            (Some(old), Some(new)) if old == new => {
                // The same instance decoded again: keep one copy.
                let new = new.clone();
                self.emitted.insert(identity, new);
                None
            }
            (_, Some(new)) => {
                let new = new.clone();
                let change = Change::Insert(identity.clone(), (*new).clone());
                self.emitted.insert(identity, new);
                Some(change)
            }
            (Some(_), None) => {
                self.emitted.remove(&identity);
                Some(Change::Remove(identity))
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
}
