//! What the guard asks of its task ([`Command`]), and where the task sends
//! the answer to a deregistration ([`Reply`]).

use tokio::sync::oneshot;

use crate::error::Result;
use crate::instance::Instance;

/// What the guard asks of its task.
#[derive(Debug)]
pub(in crate::registration) enum Command {
    /// Write a new value on the current lease.
    Update {
        instance: Instance,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Stop, delete the key if ours, revoke the lease.
    Deregister { reply: Reply },
    /// Put the key back (`true`) or take it out of discovery (`false`),
    /// keeping the lease (`withdraw.rs`).
    Serving {
        serving: bool,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// Where the task sends the result of a deregistration.
#[derive(Debug)]
pub(in crate::registration) enum Reply {
    /// To an async caller: `deregister`, `deregister_on`.
    Async(oneshot::Sender<Result<()>>),
    /// To a thread blocked in the guard's `Drop`, which waits with a deadline
    /// that does not depend on the runtime's timers.
    Blocking(std::sync::mpsc::SyncSender<Result<()>>),
}

impl Reply {
    /// Sends `result`; a caller that stopped waiting does not mind.
    pub(super) fn send(self, result: Result<()>) {
        match self {
            Self::Async(reply) => drop(reply.send(result)),
            Self::Blocking(reply) => drop(reply.try_send(result)),
        }
    }
}
