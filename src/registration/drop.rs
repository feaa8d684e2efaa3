//! What dropping a [`Registration`] does: on a multi-thread runtime,
//! deregister on the spot within `DROP_DEADLINE`; elsewhere, signal the
//! task and warn that the key may outlive the process until its lease expires.

use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};
use tracing::warn;

use super::guard::Registration;
use super::state::RegistrationState;
use super::task::{Command, Reply};

/// How long a dropped guard may block its thread to deregister.
const DROP_DEADLINE: Duration = Duration::from_secs(1);

impl Registration {
    /// Signals the task by dropping the guard's sender, and says what that
    /// means for the key.
    fn only_signal(&self, why: &str) {
        warn!(
            key = %self.key,
            ttl = ?self.ttl,
            "Registration dropped {why}: the key is removed only if the runtime \
             keeps running, else it stays until its lease expires; \
             use deregister().await or deregister_on(..)"
        );
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let ended = matches!(
            *self.state.borrow(),
            RegistrationState::Deregistered | RegistrationState::Displaced { .. }
        );
        if ended {
            return;
        }
        if self.commands.is_closed() {
            // Its runtime shut down, or it panicked: nothing removed the key.
            warn!(
                key = %self.key,
                ttl = ?self.ttl,
                "Registration dropped after its task ended without deregistering: \
                 the key stays until its lease expires"
            );
            return;
        }
        let flavor = Handle::try_current().map(|runtime| runtime.runtime_flavor());
        if flavor.ok() != Some(RuntimeFlavor::MultiThread) {
            return self.only_signal("outside a multi-thread tokio runtime");
        }
        // A std channel and its deadline: the wait must not depend on the
        // runtime's timers, which stop when it shuts down.
        let (reply, answer) = std_mpsc::sync_channel(1);
        let command = Command::Deregister {
            reply: Reply::Blocking(reply),
        };
        if self.commands.try_send(command).is_err() {
            return self.only_signal("while its task was busy");
        }
        let waited = tokio::task::block_in_place(|| answer.recv_timeout(DROP_DEADLINE));
        match waited {
            // The task logged how it went.
            Ok(_) => {}
            Err(std_mpsc::RecvTimeoutError::Timeout) => warn!(
                key = %self.key,
                ttl = ?self.ttl,
                "Registration dropped: deregistration not done within {DROP_DEADLINE:?}; it goes \
                 on while the runtime runs, else the key stays until its lease expires"
            ),
            Err(std_mpsc::RecvTimeoutError::Disconnected) => warn!(
                key = %self.key,
                ttl = ?self.ttl,
                "Registration dropped: its task ended without answering (is the runtime \
                 shutting down?); a key it did not remove stays until its lease expires"
            ),
        }
    }
}
