//! [`Health`]: how a running discovery stands with etcd.

/// Health of a discovery, from [`DiscoveryView::health`](super::DiscoveryView::health).
///
/// Whatever the health, the last known set of instances is kept.
///
/// ```no_run
/// # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
/// use tonic_etcd::{Discovery, Health};
///
/// let changes = Discovery::new(etcd, "helloworld").changes().await?;
/// let mut health = changes.health();
/// while health.changed().await.is_ok() {
///     match &*health.borrow() {
///         Health::Connected => println!("watching"),
///         Health::Reconnecting { error } => println!("lost etcd ({error}); keeping the set"),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// The last etcd request succeeded: the watch is established (or, right
    /// after start, being established) and the set is up to date.
    Connected,
    /// Lost etcd; keeping the last known set and retrying with backoff.
    Reconnecting {
        /// The last error, for display.
        error: String,
    },
}

impl Health {
    /// Whether this is [`Health::Connected`].
    ///
    /// ```
    /// use tonic_etcd::Health;
    ///
    /// assert!(Health::Connected.is_connected());
    /// assert!(!Health::Reconnecting { error: "refused".into() }.is_connected());
    /// ```
    pub fn is_connected(&self) -> bool {
        matches!(self, Self::Connected)
    }
}
