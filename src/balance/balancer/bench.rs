//! [`PickBench`]: a hook for the crate's benchmarks, not part of its API: a
//! balancer's endpoint set and pickers, fed directly, with no etcd and no
//! connection, so that `benches/balancer` can time a pick alone.

use std::sync::Arc;
use std::time::Duration;

use tower::discover::Change;

use super::hash_key::hash;
use super::locality::Locality;
use super::pick::Pick;
use super::policy::Policy;
use super::shared::{Options, Shared};
use super::slow_start::SlowStart;
use crate::endpoint::default_endpoint;
use crate::instance::Instance;

/// The endpoint set and pickers of a balancer without its driver, for the
/// benchmarks (hidden: no stability promised).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tonic_etcd::balance::PickBench;
/// use tonic_etcd::{Change, Instance, Policy};
///
/// let bench = PickBench::new(Policy::Weighted);
/// let instance = Instance::new("svc", "127.0.0.1:1").unwrap();
/// bench.apply(vec![Change::Insert("a".into(), instance)]);
/// assert_eq!(bench.pick().as_deref(), Some("a"));
/// # }
/// ```
#[doc(hidden)]
#[derive(Debug)]
pub struct PickBench {
    shared: Arc<Shared>,
}

impl PickBench {
    /// An empty set with `policy` and the default endpoint template. Must be
    /// called inside a tokio runtime.
    pub fn new(policy: Policy) -> Self {
        let shared = Shared::new(
            String::new(),
            policy,
            Arc::new(default_endpoint),
            Duration::ZERO,
        );
        Self {
            shared: Arc::new(shared),
        }
    }

    /// As [`new`](Self::new), with locality-aware routing and slow start
    /// (endpoints of a later batch ramp; nothing steps their ramps).
    pub fn routed(
        policy: Policy,
        locality: Option<Locality>,
        slow_start: Option<SlowStart>,
    ) -> Self {
        let options = Options {
            locality,
            slow_start,
            ..Options::default()
        };
        let shared = Shared::with_options(
            String::new(),
            policy,
            Arc::new(default_endpoint),
            Duration::ZERO,
            options,
        );
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Applies `changes` as the driver applies one batch.
    pub fn apply(&self, changes: Vec<Change<String, Instance>>) {
        self.shared.apply_batch(changes);
    }

    /// One pick by the policy: the key picked.
    pub fn pick(&self) -> Option<String> {
        self.shared.pick(&[]).map(|target| target.key.clone())
    }

    /// One pick by the policy, returning only whether there was one (no key
    /// copied).
    pub fn pick_any(&self) -> bool {
        self.shared.pick(&[]).is_some()
    }

    /// One pick for a request whose key is `key` (hashed first, as the key
    /// header's value is; consistent hashing reads it, the other policies
    /// ignore it): the key of the endpoint picked.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tonic_etcd::balance::PickBench;
    /// use tonic_etcd::{Change, Instance, Policy};
    ///
    /// let bench = PickBench::new(Policy::ConsistentHash);
    /// for i in 1..=3 {
    ///     let instance = Instance::new("svc", format!("127.0.0.1:{i}")).unwrap();
    ///     bench.apply(vec![Change::Insert(format!("k{i}"), instance)]);
    /// }
    /// let home = bench.pick_hashed(b"user-42");
    /// assert!(home.is_some());
    /// assert_eq!(bench.pick_hashed(b"user-42"), home);
    /// # }
    /// ```
    pub fn pick_hashed(&self, key: &[u8]) -> Option<String> {
        self.shared
            .pick_with(Pick::keyed(Some(hash(key))), &[])
            .map(|target| target.key.clone())
    }

    /// [`pick_hashed`](Self::pick_hashed), returning only whether there was
    /// one (no key copied).
    pub fn pick_hashed_any(&self, key: &[u8]) -> bool {
        self.shared
            .pick_with(Pick::keyed(Some(hash(key))), &[])
            .is_some()
    }

    /// How many endpoints are known.
    pub fn len(&self) -> usize {
        self.shared.counts().0
    }

    /// Whether none is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
