//! The background task of a [`Registration`](super::Registration): what the
//! guard asks of it ([`Command`]), its state ([`Task`]) and its top loop
//! ([`Task::run`]): hold a session until it ends, then register again, stop,
//! or give way.
//!
//! - `command`: what the guard asks ([`Command`]) and where answers go;
//! - `run`: the task's state ([`Task`]) and its top loop;
//! - `lease`: granting a lease and putting the key (first and later
//!   sessions), and the stale leases that may still hold the key;
//! - `hold`: one session's loop: keepalives on a timer grid, the watch of the
//!   own key, commands;
//! - `outcome`: how a session ends, and why a lease was lost;
//! - `update`: writing a changed instance, now or on recovery;
//! - `displaced`: giving way to a newer registration of the same key;
//! - `deregister`: the two ways to delete the key and revoke the leases;
//! - `withdraw`: taking the key out of discovery and back, on the same lease.

mod command;
mod deregister;
mod displaced;
mod hold;
mod lease;
mod outcome;
mod run;
mod update;
mod withdraw;

pub(super) use command::{Command, Reply};
pub(super) use lease::SessionHandle;
use outcome::Outcome;
use run::Session;
pub(super) use run::Task;
