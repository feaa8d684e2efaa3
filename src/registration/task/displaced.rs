//! Giving way: another lease holds our key, so a newer registration of the
//! same instance took over. Report it, let go of our leases, and answer the
//! guard until it deregisters or drops.

use tokio::sync::mpsc;
use tracing::warn;

use super::{Command, Task};
use crate::error::Error;
use crate::registration::state::RegistrationState;

impl Task {
    /// Another lease holds our key: report, let go of ours, wait for the end.
    pub(super) async fn displaced(
        &mut self,
        by_lease: i64,
        own_lease: Option<i64>,
        commands: &mut mpsc::Receiver<Command>,
    ) {
        warn!(key = %self.key, by_lease, "displaced by a newer registration of the same key; stopping");
        self.state
            .send_replace(RegistrationState::Displaced { by_lease });
        for lease in own_lease
            .into_iter()
            .chain(std::mem::take(&mut self.stale_leases))
        {
            self.revoke_in_background(lease);
        }
        while let Some(command) = commands.recv().await {
            match command {
                Command::Update { reply, .. } | Command::Serving { reply, .. } => {
                    let _ = reply.send(Err(Error::Displaced {
                        key: self.key.clone(),
                        by_lease,
                    }));
                }
                Command::Deregister { reply } => {
                    reply.send(Ok(()));
                    break;
                }
            }
        }
        self.state.send_replace(RegistrationState::Deregistered);
    }
}
