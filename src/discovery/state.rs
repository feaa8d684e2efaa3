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
//!
//! Overrides (native layout only, see [`codec`](crate::codec#overrides)) are
//! a third map, `overrides: instance key -> Override`, fed by the override
//! keys under the same prefix. An identity's emitted instance is its
//! representative with the override of the representative's key applied: a
//! drained one is not emitted (a `Remove`), a weight override changes the
//! weight (an `Insert`). Overrides are kept apart from the keys, so that an
//! instance that re-registers (delete, put) finds its override again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use tower::discover::Change;
use tracing::{debug, warn};

use super::filter::InstanceFilter;
use super::view::DiscoveredInstance;
use crate::codec::{instance_key_of_override, supports_overrides, Codec, Override};
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
    /// Whether the codec takes overrides (the native layout).
    overridable: bool,
    /// Instance key -> its override, for override keys that decoded.
    overrides: HashMap<String, Override>,
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
            .field("overrides", &self.overrides.len())
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
            overridable: supports_overrides(codec.as_ref()),
            codec,
            version,
            filter,
            keys: HashMap::new(),
            identities: HashMap::new(),
            emitted: BTreeMap::new(),
            overrides: HashMap::new(),
        }
    }

    /// Applies one event and returns what the consumer must be told, in order.
    pub(crate) fn apply(&mut self, event: Event) -> Vec<Change<String, Instance>> {
        let mut touched = BTreeSet::new();
        match event {
            Event::Put { key, value, .. } => match self.override_target(&key) {
                Some(target) => self.put_override(&key, target, &value, &mut touched),
                // An identical value decodes to the instance already emitted:
                // reconciling reports nothing.
                None => self.put(key, value, &mut touched),
            },
            Event::Delete { key } => match self.override_target(&key) {
                Some(target) => self.forget_override(&target, &mut touched),
                None => self.forget(&key, &mut touched),
            },
            Event::Resync { kvs } if self.keys.is_empty() && self.overrides.is_empty() => {
                // The start: nothing to diff against.
                for (key, value) in kvs {
                    match self.override_target(&key) {
                        Some(target) => self.put_override(&key, target, &value, &mut touched),
                        None => self.put(key, value, &mut touched),
                    }
                }
                touched.extend(self.emitted.keys().cloned());
            }
            Event::Resync { kvs } => {
                let mut fresh: HashMap<String, Vec<u8>> = HashMap::with_capacity(kvs.len());
                let mut fresh_overrides: HashMap<String, (String, Vec<u8>)> = HashMap::new();
                for (key, value) in kvs {
                    match self.override_target(&key) {
                        Some(target) => {
                            fresh_overrides.insert(target, (key, value));
                        }
                        None => {
                            fresh.insert(key, value);
                        }
                    }
                }
                let gone: Vec<String> = self
                    .keys
                    .keys()
                    .filter(|k| !fresh.contains_key(*k))
                    .cloned()
                    .collect();
                for key in gone {
                    self.forget(&key, &mut touched);
                }
                let gone: Vec<String> = self
                    .overrides
                    .keys()
                    .filter(|k| !fresh_overrides.contains_key(*k))
                    .cloned()
                    .collect();
                for target in gone {
                    self.forget_override(&target, &mut touched);
                }
                for (target, (key, value)) in fresh_overrides {
                    self.put_override(&key, target, &value, &mut touched);
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

    /// Every identity that is registered and passes the filters, drained ones
    /// included, sorted by identity: its instance with the override applied.
    pub(crate) fn registered(&self) -> Vec<DiscoveredInstance> {
        let mut identities: Vec<(&String, &Vec<String>)> = self.identities.iter().collect();
        identities.sort_unstable_by(|a, b| a.0.cmp(b.0));
        identities
            .into_iter()
            .filter_map(|(_, keys)| {
                let key = keys.first()?;
                let instance = &self.keys[key].instance;
                let o = self.overrides.get(key).copied().unwrap_or_default();
                let mut effective = (**instance).clone();
                if let Some(weight) = o.weight {
                    effective.weight = weight;
                }
                Some(DiscoveredInstance {
                    instance: effective,
                    registered_weight: instance.weight,
                    drained: o.drained,
                    weight_overridden: o.weight.is_some(),
                })
            })
            .collect()
    }

    /// The identities the consumer currently knows and their instances,
    /// sorted by identity (what a late subscriber of a shared watch starts from).
    pub(crate) fn emitted(&self) -> impl Iterator<Item = (&str, &Instance)> {
        self.emitted
            .iter()
            .map(|(identity, instance)| (identity.as_str(), &**instance))
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

    /// The instance key that `key` overrides, if `key` is an override key and
    /// the codec takes overrides.
    fn override_target(&self, key: &str) -> Option<String> {
        if !self.overridable {
            return None;
        }
        instance_key_of_override(key)
    }

    /// Records the override at `key` for the instance at `target`; a value
    /// that does not decode is no override.
    fn put_override(
        &mut self,
        key: &str,
        target: String,
        value: &[u8],
        touched: &mut BTreeSet<String>,
    ) {
        match Override::decode(key, value) {
            Ok(o) if !o.is_empty() => {
                if self.overrides.get(&target) == Some(&o) {
                    return;
                }
                debug!(%key, ?o, "override");
                self.touch_key(&target, touched);
                self.overrides.insert(target, o);
            }
            Ok(_) => self.forget_override(&target, touched),
            Err(error) => {
                warn!(%key, %error, "skipping override that does not decode");
                self.forget_override(&target, touched);
            }
        }
    }

    /// Forgets the override of the instance at `target`, if any.
    fn forget_override(&mut self, target: &str, touched: &mut BTreeSet<String>) {
        if self.overrides.remove(target).is_some() {
            self.touch_key(target, touched);
        }
    }

    /// Marks the identity of the instance at `key`, if known, for reconciling.
    fn touch_key(&self, key: &str, touched: &mut BTreeSet<String>) {
        if let Some(entry) = self.keys.get(key) {
            touched.insert(entry.identity.clone());
        }
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
        let representative = self
            .identities
            .get(&identity)
            .and_then(|keys| keys.first())
            .map(|key| (&self.keys[key].instance, self.overrides.get(key)));
        // The override of the representative's key, applied.
        let desired = match representative {
            None => None,
            Some((_, Some(o))) if o.drained => None,
            Some((
                instance,
                Some(Override {
                    weight: Some(weight),
                    ..
                }),
            )) if *weight != instance.weight => Some(Arc::new(Instance {
                weight: *weight,
                ..(**instance).clone()
            })),
            Some((instance, _)) => Some(instance.clone()),
        };
        let current = desired.as_ref();
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
mod tests;
