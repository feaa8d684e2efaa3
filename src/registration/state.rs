//! [`RegistrationState`]: where a registration stands, as its task reports it.

/// Where a [`Registration`](super::Registration) stands, as seen through
/// [`Registration::state`](super::Registration::state).
///
/// ```no_run
/// # async fn f(registration: &tonic_etcd::Registration) {
/// use tonic_etcd::RegistrationState;
///
/// match &*registration.state().borrow() {
///     RegistrationState::Registered { lease_id } => println!("held by lease {lease_id:x}"),
///     RegistrationState::Reconnecting { error, attempt } => {
///         println!("reconnecting (attempt {attempt}): {error}")
///     }
///     RegistrationState::Displaced { by_lease } => println!("taken over by {by_lease:x}"),
///     RegistrationState::Deregistered => println!("gone"),
///     _ => {}
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistrationState {
    /// The key is in etcd, bound to this lease, and the lease is kept alive.
    Registered {
        /// The lease that holds the key.
        lease_id: i64,
    },
    /// The lease was lost or etcd cannot be reached; retrying with backoff.
    Reconnecting {
        /// What went wrong last, with its causes: `error: cause: root cause`.
        error: String,
        /// How many attempts failed in a row.
        attempt: u32,
    },
    /// Taken out of discovery on purpose (the server is not serving, see
    /// [`Registration::set_serving`](super::Registration::set_serving)): the
    /// key is deleted, the lease is kept alive to put it back.
    Withdrawn {
        /// The lease kept for the key.
        lease_id: i64,
    },
    /// Another registration of the same key took it over; this one stopped.
    Displaced {
        /// The lease that now holds the key.
        by_lease: i64,
    },
    /// Deregistered, or the guard was dropped.
    Deregistered,
}
