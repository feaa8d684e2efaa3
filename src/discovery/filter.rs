//! [`InstanceFilter`]: which discovered instances a discovery keeps.

use std::sync::Arc;

use crate::instance::Instance;

/// A predicate on discovered instances, as set by
/// [`Discovery::filter`](super::Discovery::filter): an instance for which it
/// returns false is left out (and removed, if it was in the set).
///
/// ```
/// use std::sync::Arc;
/// use tonic_etcd::{discovery::InstanceFilter, Instance};
///
/// let zone_a: InstanceFilter = Arc::new(|i: &Instance| {
///     i.metadata.get("zone").is_some_and(|z| z == "a")
/// });
/// let instance = Instance::new("helloworld", "10.0.0.7:50051")?.with_metadata("zone", "a");
/// assert!(zone_a(&instance));
/// # Ok::<(), tonic_etcd::Error>(())
/// ```
pub type InstanceFilter = Arc<dyn Fn(&Instance) -> bool + Send + Sync>;
