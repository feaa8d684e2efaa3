//! The background task of a discovery: paginated Get, then Watch, with retry,
//! resume and resync.
//!
//! ```text
//! changes(): Get (pages pinned at revision R) ──▶ Resync ──▶ spawn run()
//! run():     ┌──▶ [authenticate again] ─▶ [resync: Get + diff] ─▶ Watch from R+1 ─▶ events ──┐
//!            │        compacted / etcd behind us: resync, at once                         │
//!            └── error, cancel, end of stream: back off, resume R+1 ◀─────────────────────┘
//! ```
//!
//! - `fetch`: the paginated prefix Get, used at start and by a resync.
//! - `task`: the [`Watcher`] and its retry loop (`run`).
//! - `session`: one session, a step per concern (authenticate again, resync,
//!   create the watch, confirm it, pump its responses), and how it ended.
//! - `response`: one watch response turned into state machine events.

mod fetch;
mod response;
mod session;
mod task;

pub(crate) use fetch::fetch;
pub(crate) use task::Watcher;
