//! Following the server's health: [`Registration::set_serving`] takes the
//! instance out of discovery while the server is not serving, and brings it
//! back on the same lease; [`ServingSwitch`] does the same from another task
//! without keeping the registration alive (the tie to `tonic-health` in
//! `crate::health` uses it).
//!
//! Not serving **deletes** the key (the lease stays alive) rather than
//! marking the value: every registry format understands an absent key,
//! while go-zero, kratos and etcd-naming clients would keep using a marked
//! one. See `task/withdraw.rs` for what the task does meanwhile.

use tokio::sync::{mpsc, oneshot};

use super::guard::Registration;
use super::state::RegistrationState;
use super::task::Command;
use crate::error::{Error, Result};

impl Registration {
    /// Takes the instance out of discovery (`false`) or brings it back
    /// (`true`), keeping the lease: while not serving the key is deleted and
    /// the state is [`RegistrationState::Withdrawn`]; serving again puts it
    /// back on the same lease. Nothing happens if it is so already.
    ///
    /// While withdrawn, the registration keeps its lease alive and does not
    /// put the key back: not when it is deleted, not after a lease loss (the
    /// new lease is kept for later), not on [`update`](Registration::update)
    /// (the value is written when serving again).
    /// [`deregister`](Registration::deregister) works as usual.
    ///
    /// Fails with [`Error::UpdatePending`] if the change could not be written
    /// now (reconnecting, or the write failed): it is kept and applied when
    /// the registration recovers. Fails with [`Error::Displaced`] or
    /// [`Error::Deregistered`] when the task has stopped.
    ///
    /// ```no_run
    /// # async fn f(registration: tonic_etcd::Registration) -> tonic_etcd::Result<()> {
    /// registration.set_serving(false).await?; // out of discovery
    /// // ... maintenance ...
    /// registration.set_serving(true).await?; // back, on the same lease
    /// # Ok(()) }
    /// ```
    pub async fn set_serving(&self, serving: bool) -> Result<()> {
        set_serving(&self.commands, serving, &self.key, &self.state).await
    }

    /// Whether the instance was taken out of discovery by
    /// [`set_serving(false)`](Registration::set_serving) and not brought back,
    /// as the state says ([`RegistrationState::Withdrawn`]); `false` while
    /// reconnecting, whatever the next session will apply.
    ///
    /// ```no_run
    /// # fn f(registration: &tonic_etcd::Registration) {
    /// if registration.is_withdrawn() {
    ///     println!("not in discovery: the server is not serving");
    /// }
    /// # }
    /// ```
    pub fn is_withdrawn(&self) -> bool {
        matches!(*self.state.borrow(), RegistrationState::Withdrawn { .. })
    }

    /// A handle that sets serving from another task, and does not keep the
    /// registration alive.
    pub(crate) fn serving_switch(&self) -> ServingSwitch {
        ServingSwitch {
            commands: self.commands.downgrade(),
            key: self.key.clone(),
            state: self.state.clone(),
        }
    }
}

/// [`Registration::set_serving`] from another task; holds no strong
/// reference, so dropping the guard still ends the registration.
#[derive(Clone)]
pub(crate) struct ServingSwitch {
    commands: mpsc::WeakSender<Command>,
    key: String,
    state: tokio::sync::watch::Receiver<RegistrationState>,
}

impl ServingSwitch {
    /// As [`Registration::set_serving`]; `Deregistered` once the guard is gone.
    pub(crate) async fn set(&self, serving: bool) -> Result<()> {
        let Some(commands) = self.commands.upgrade() else {
            return Err(Error::Deregistered {
                key: self.key.clone(),
            });
        };
        set_serving(&commands, serving, &self.key, &self.state).await
    }

    /// Resolves when the registration has ended.
    pub(crate) async fn closed(&self) {
        let mut state = self.state.clone();
        let _ = state
            .wait_for(|state| {
                matches!(
                    state,
                    RegistrationState::Deregistered | RegistrationState::Displaced { .. }
                )
            })
            .await;
    }
}

async fn set_serving(
    commands: &mpsc::Sender<Command>,
    serving: bool,
    key: &str,
    state: &tokio::sync::watch::Receiver<RegistrationState>,
) -> Result<()> {
    let gone = || match *state.borrow() {
        RegistrationState::Displaced { by_lease } => Error::Displaced {
            key: key.to_owned(),
            by_lease,
        },
        _ => Error::Deregistered {
            key: key.to_owned(),
        },
    };
    let (reply, answer) = oneshot::channel();
    commands
        .send(Command::Serving { serving, reply })
        .await
        .map_err(|_| gone())?;
    answer.await.map_err(|_| gone())?
}
