//! Client side: find the live instances of a service. This is the registry
//! layer: it reads etcd and knows nothing of any transport (no tonic type
//! appears here; tower's [`Change`](tower::discover::Change) is the only
//! outside type of its API).
//!
//! - [`Discovery`] is the builder: the etcd client, the service and the
//!   options. [`Discovery::changes`] starts it here; the
//!   [`balance`](crate::balance) layer above adds
//!   [`Discovery::balancer`] and [`Discovery::tonic_channel`].
//! - [`InstanceChanges`] is the running discovery as a
//!   [`Stream`](futures_core::Stream) of `Change<String, Instance>`s, kept up
//!   to date by a background task; dropping it stops the task.
//! - [`DiscoveryView`] is a cloneable view of it: snapshot, [`Health`],
//!   service, prefix.
//! - [`subset`]: subsetting ([`Discovery::subset`] with a [`Subset`]), each
//!   client taking K of the N instances, the clients spread evenly.
//! - Shared watches: discoveries of one connection share one etcd watch and
//!   one decoded set per prefix, format, version and filter, process-wide
//!   (see [Shared watches](Discovery#shared-watches)); a [`DiscoveryHub`] is
//!   a scope of your own, for a client the crate did not make.
//!
//! Inside: `start` (the initial Get and the watcher of one prefix), `fanout`
//! (its subscribers), `hub`, `subset`, and the rest named above.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::StreamExt;
//! use tonic_etcd::{Change, Discovery};
//!
//! let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
//! let mut changes = Discovery::new(etcd, "helloworld").changes().await?;
//! println!("now: {:?}", changes.snapshot());
//! while let Some(change) = changes.next().await {
//!     match change {
//!         Change::Insert(key, instance) => println!("+ {key} at {}", instance.addr),
//!         Change::Remove(key) => println!("- {key}"),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Semantics
//!
//! ```text
//! prefix:  {namespace}/{service}/       e.g. /services/helloworld/
//! ```
//!
//! - **Start**: a prefix Get, in pages of 1000 keys all pinned at the revision
//!   of the first page, gives one `Insert` per instance. If it fails, or
//!   takes longer than the [startup timeout](Discovery::startup_timeout) (3 s
//!   by default), [`changes`](Discovery::changes) fails: the caller decides
//!   whether to retry.
//! - **Watch** from that revision + 1, with `prev_kv`, so nothing between the
//!   Get and the Watch is missed. A PUT with a new value is an `Insert` (a
//!   changed value replaces the instance); an identical value is ignored. A
//!   DELETE is a `Remove`. A value that does not decode is logged (`warn!`)
//!   and skipped, and removes the instance if the key was known. An instance
//!   that stops passing the [version](Discovery::version) or
//!   [filter](Discovery::filter) is removed.
//! - **Errors** never reach the stream and never shrink the set. When the
//!   watch fails, is cancelled, ends, or etcd cannot be reached, the current
//!   set is kept, [`Health`] becomes `Reconnecting`, and the watch resumes from
//!   the last revision seen + 1, after a jittered exponential backoff (50 ms
//!   doubling to 2 s, ±50 %). etcd-client does not do this for you.
//! - **Resync**: if the revision to resume from has been compacted, or etcd
//!   reports a revision lower than one already seen (its data was wiped or
//!   restored from a backup), the task reads the prefix again and emits only
//!   the difference: `Remove` for keys gone, `Insert` for new or changed ones,
//!   nothing for the rest. Inserts come first, so that an instance that moved
//!   never leaves the set emptier than before and after.
//! - **Overrides** (native layout): an operator's override key under the same
//!   prefix, `{prefix}.overrides/{id}`, read by the same Get and watch, drains
//!   the instance `{prefix}{id}` (a `Remove`; un-draining is an `Insert`) or
//!   replaces its weight (an `Insert`). See [`codec`](crate::codec#overrides).
//! - **Identity**: the key of each change is [`Codec::identity`] (the etcd key
//!   for the native format). Where several etcd keys map to one identity (formats
//!   that identify instances by address), the identity is inserted with its
//!   first key and removed with its last.
//!
//! A discovery learns of a dead etcd connection through the connection's
//! HTTP/2 keepalive: use [`connect`](crate::connect), which also sets
//! `require_leader` so that a member cut off from its cluster refuses the watch
//! instead of serving a stale one. A new watch must be confirmed by etcd within
//! 5 s, and a resync Get answer within 10 s, or the attempt counts as failed.
//!
//! Known limit: if etcd loses its data *and* is written to past the revision
//! this discovery had seen before it reconnects, the loss cannot be told from
//! the revision alone; the watch resumes without a resync.
//!
//! [`Codec::identity`]: crate::Codec::identity

mod builder;
mod changes;
mod fanout;
mod filter;
mod health;
mod hub;
mod shared;
mod start;
mod state;
pub mod subset;
mod view;
mod watcher;

pub use builder::Discovery;
pub use changes::InstanceChanges;
pub use filter::InstanceFilter;
pub use health::Health;
pub use hub::DiscoveryHub;
pub use subset::Subset;
pub use view::{DiscoveredInstance, DiscoveryView};
