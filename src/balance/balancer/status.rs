//! [`EndpointStatus`]: one endpoint of a balancer, as an operator sees it.

use crate::instance::Instance;

/// One endpoint of a [`Balancer`](crate::Balancer), from
/// [`Balancer::endpoints`](crate::Balancer::endpoints).
///
/// ```no_run
/// # fn f(balancer: tonic_etcd::Balancer) {
/// for endpoint in balancer.endpoints() {
///     let state = if endpoint.ready { "ready" } else { "ejected" };
///     println!("{} at {}: {state}", endpoint.key, endpoint.instance.addr);
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStatus {
    /// The key of the instance in the change stream (for a discovery, the
    /// instance's identity).
    pub key: String,
    /// The instance as last inserted.
    pub instance: Instance,
    /// Whether requests may go to it: false while it is ejected because it
    /// could not be connected to.
    pub ready: bool,
}
