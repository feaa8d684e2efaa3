//! [`Overrides`]: read and write an operator's drain and weight overrides in
//! etcd, the library side of `tonic-etcd drain` / `weight`.
//!
//! The key layout and what every discovery does with an override are in
//! [`codec`](crate::codec#overrides). This module only writes override keys,
//! never an instance's own key.

use std::fmt;

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};

use crate::codec::{
    check_weight, override_key, overrides_prefix, resolve_namespace, Native, Override,
};
use crate::error::{Error, Result};
use crate::instance::{validate_id, validate_service_name};

/// How often a read-modify-write is tried again when another writer got
/// there first.
const ATTEMPTS: usize = 16;

/// Reads and writes the overrides of the native layout
/// (`{namespace}/{service}/.overrides/{id}`, no lease).
///
/// ```no_run
/// # async fn run() -> tonic_etcd::Result<()> {
/// use tonic_etcd::overrides::Overrides;
///
/// let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
/// let overrides = Overrides::new(etcd);
/// // Take one instance out of rotation; it stays registered.
/// overrides.drain("helloworld", "127.0.0.1:50051").await?;
/// // Give another four times its share.
/// overrides.set_weight("helloworld", "127.0.0.1:50052", 4).await?;
/// for (id, o) in overrides.list("helloworld").await? {
///     println!("{id}: drained={} weight={:?}", o.drained, o.weight);
/// }
/// overrides.undrain("helloworld", "127.0.0.1:50051").await?;
/// overrides.clear_weight("helloworld", "127.0.0.1:50052").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Overrides {
    client: Client,
    namespace: Option<String>,
}

impl fmt::Debug for Overrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Overrides")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Overrides {
    /// Overrides under the native layout's default namespace, `/services`.
    ///
    /// ```no_run
    /// # async fn run(etcd: etcd_client::Client) {
    /// let overrides = tonic_etcd::overrides::Overrides::new(etcd);
    /// # }
    /// ```
    pub fn new(client: Client) -> Self {
        Self {
            client,
            namespace: None,
        }
    }

    /// The namespace of the registrations (as given to
    /// [`Registrar::namespace`](crate::Registrar::namespace)).
    ///
    /// ```no_run
    /// # async fn run(etcd: etcd_client::Client) {
    /// let overrides = tonic_etcd::overrides::Overrides::new(etcd).namespace("/prod");
    /// # }
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    fn resolved_namespace(&self) -> Result<&str> {
        resolve_namespace(&Native, self.namespace.as_deref())
    }

    /// The key of the override of instance `id` of `service`, after checking
    /// both.
    ///
    /// ```no_run
    /// # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
    /// let overrides = tonic_etcd::overrides::Overrides::new(etcd);
    /// assert_eq!(overrides.key("helloworld", "a")?, "/services/helloworld/.overrides/a");
    /// # Ok(()) }
    /// ```
    pub fn key(&self, service: &str, id: &str) -> Result<String> {
        validate_service_name(service)?;
        validate_id(id)?;
        Ok(override_key(self.resolved_namespace()?, service, id))
    }

    /// The override of instance `id` (the default, overriding nothing, when
    /// there is none).
    ///
    /// ```no_run
    /// # async fn run(overrides: tonic_etcd::overrides::Overrides) -> tonic_etcd::Result<()> {
    /// if overrides.get("helloworld", "a").await?.drained {
    ///     println!("a is drained");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, service: &str, id: &str) -> Result<Override> {
        let key = self.key(service, id)?;
        Ok(self.read(&key).await?.0)
    }

    /// Every override of `service`, by instance id, sorted; values that do
    /// not decode are left out (`tonic-etcd doctor` reports them).
    ///
    /// ```no_run
    /// # async fn run(overrides: tonic_etcd::overrides::Overrides) -> tonic_etcd::Result<()> {
    /// let drained = overrides.list("helloworld").await?.into_iter().filter(|(_, o)| o.drained).count();
    /// # Ok(()) }
    /// ```
    pub async fn list(&self, service: &str) -> Result<Vec<(String, Override)>> {
        validate_service_name(service)?;
        let prefix = overrides_prefix(self.resolved_namespace()?, service);
        let mut kv = self.client.kv_client();
        let response = kv
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        let mut found = Vec::new();
        for kv in response.kvs() {
            let Ok(key) = kv.key_str() else { continue };
            let id = &key[prefix.len()..];
            if id.is_empty() || id.contains('/') {
                continue;
            }
            if let Ok(o) = Override::decode(key, kv.value()) {
                found.push((id.to_owned(), o));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// Drains instance `id`: it stays registered, and every discovery stops
    /// giving it new requests.
    ///
    /// ```no_run
    /// # async fn run(overrides: tonic_etcd::overrides::Overrides) -> tonic_etcd::Result<()> {
    /// overrides.drain("helloworld", "127.0.0.1:50051").await?;
    /// # Ok(()) }
    /// ```
    pub async fn drain(&self, service: &str, id: &str) -> Result<Override> {
        self.update(service, id, |o| o.drained = true).await
    }

    /// Undoes [`drain`](Self::drain) (a weight override stays).
    ///
    /// ```no_run
    /// # async fn run(overrides: tonic_etcd::overrides::Overrides) -> tonic_etcd::Result<()> {
    /// overrides.undrain("helloworld", "127.0.0.1:50051").await?;
    /// # Ok(()) }
    /// ```
    pub async fn undrain(&self, service: &str, id: &str) -> Result<Override> {
        self.update(service, id, |o| o.drained = false).await
    }

    /// Replaces the registered weight of instance `id` with `weight`
    /// (within [`Instance::MIN_WEIGHT`](crate::Instance::MIN_WEIGHT)..=[`Instance::MAX_WEIGHT`](crate::Instance::MAX_WEIGHT),
    /// else [`Error::InvalidWeight`]).
    ///
    /// ```no_run
    /// # async fn run(overrides: tonic_etcd::overrides::Overrides) -> tonic_etcd::Result<()> {
    /// overrides.set_weight("helloworld", "127.0.0.1:50051", 4).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_weight(&self, service: &str, id: &str, weight: u32) -> Result<Override> {
        check_weight(weight)?;
        self.update(service, id, |o| o.weight = Some(weight)).await
    }

    /// Back to the registered weight of instance `id`.
    ///
    /// ```no_run
    /// # async fn run(overrides: tonic_etcd::overrides::Overrides) -> tonic_etcd::Result<()> {
    /// overrides.clear_weight("helloworld", "127.0.0.1:50051").await?;
    /// # Ok(()) }
    /// ```
    pub async fn clear_weight(&self, service: &str, id: &str) -> Result<Override> {
        self.update(service, id, |o| o.weight = None).await
    }

    /// Changes the override of instance `id` with `change`, atomically (a
    /// compare-and-swap on the key's revision, tried again if another writer
    /// got there first); an override left empty deletes the key. Returns the
    /// override written.
    ///
    /// ```no_run
    /// # async fn run(overrides: tonic_etcd::overrides::Overrides) -> tonic_etcd::Result<()> {
    /// let written = overrides
    ///     .update("helloworld", "a", |o| { o.drained = true; o.weight = Some(2); })
    ///     .await?;
    /// assert!(written.drained);
    /// # Ok(()) }
    /// ```
    pub async fn update(
        &self,
        service: &str,
        id: &str,
        mut change: impl FnMut(&mut Override),
    ) -> Result<Override> {
        let key = self.key(service, id)?;
        let mut kv = self.client.kv_client();
        for _ in 0..ATTEMPTS {
            let (current, revision) = self.read(&key).await?;
            let mut next = current;
            change(&mut next);
            if let Some(weight) = next.weight {
                check_weight(weight)?;
            }
            let unchanged = match revision {
                Some(rev) => Compare::mod_revision(key.as_str(), CompareOp::Equal, rev),
                None => Compare::version(key.as_str(), CompareOp::Equal, 0),
            };
            let write = if next.is_empty() {
                TxnOp::delete(key.as_str(), None)
            } else {
                TxnOp::put(key.as_str(), next.encode(), None)
            };
            let txn = Txn::new().when([unchanged]).and_then([write]);
            if kv.txn(txn).await?.succeeded() {
                return Ok(next);
            }
        }
        Err(Error::Config {
            reason: format!("{key} kept changing under {ATTEMPTS} attempts to update it"),
        })
    }

    /// The override at `key` (a value that does not decode counts as none, so
    /// that writing one repairs it) and its mod revision, if the key exists.
    async fn read(&self, key: &str) -> Result<(Override, Option<i64>)> {
        let mut kv = self.client.kv_client();
        let response = kv.get(key, None).await?;
        Ok(match response.kvs().first() {
            Some(found) => (
                Override::decode(key, found.value()).unwrap_or_default(),
                Some(found.mod_revision()),
            ),
            None => (Override::default(), None),
        })
    }
}
