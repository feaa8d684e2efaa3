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

use super::filter::InstanceFilter;
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
mod tests;
