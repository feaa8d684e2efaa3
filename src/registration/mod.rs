//! Server side: keep an instance registered for as long as the server runs.
//!
//! A [`Registrar`] holds the etcd client and the options; its
//! [`register`](Registrar::register) grants a lease, writes the instance's key with
//! it and returns a [`Registration`] guard whose background task:
//!
//! - keeps the lease alive every TTL/3;
//! - on lease loss (a keepalive answered with TTL 0, a keepalive or watch stream
//!   that fails or closes, no answer for a whole TTL) grants a **fresh** lease and
//!   puts the same key again, retrying with jittered exponential backoff for as
//!   long as the guard lives, so etcd restarts, leader changes and even an etcd that
//!   lost its data are survived. The lost lease keeps holding the key until the
//!   fresh one does (then it is revoked), so discovery sees nothing;
//! - sends each etcd request that fails on its way (a member of the cluster down
//!   or electing a leader) again, up to 4 times within 300 ms, as etcd-client
//!   keeps routing some requests to a dead member;
//! - watches its own key: a key deleted or overwritten without a lease behind its
//!   back (`etcdctl del`, `etcdctl put`) is put back at once, and a key now
//!   carrying another lease means a newer registration of the same key took
//!   over: this one reports [`RegistrationState::Displaced`] and stops re-putting.
//!
//! [`Registration::deregister`] stops that task first, then deletes the key (only
//! if it is still ours) and revokes the lease. For a graceful stop of a tonic
//! server, [`Registration::deregister_on`] does the same when a signal such as
//! [`shutdown_signal`] fires, then waits a drain period, as a shutdown future for
//! `serve_with_shutdown`. Keep the guard while serving: see [`Registration`] for
//! what dropping it does (on a multi-thread runtime it deregisters on the spot;
//! elsewhere the key may outlive the process by a TTL); a crashed process leaves
//! its key to expire with the lease.
//!
//! Files: `registrar.rs` (the builder), `limits.rs` (entry size and TTL, checked
//! before anything is written), `guard.rs` (the guard), `drop.rs` (what dropping
//! it does), `shutdown.rs`, `state.rs`, and `task/`, the background task split
//! by concern.

mod drop;
mod guard;
mod limits;
mod registrar;
mod serving;
mod shutdown;
mod state;
mod task;

pub use guard::Registration;
pub use limits::MAX_ENTRY_BYTES;
pub use registrar::Registrar;
pub(crate) use serving::ServingSwitch;
pub use shutdown::shutdown_signal;
pub use state::RegistrationState;
