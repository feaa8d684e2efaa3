//! [`Registration`]: the guard a server holds while it is registered.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::registrar::encode_checked;
use super::state::RegistrationState;
use super::task::{Command, Task};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::instance::Instance;

/// A live registration: while this guard lives, the instance stays in etcd.
///
/// Made by [`Registrar::register`](super::Registrar::register). End it with
/// [`deregister`](Registration::deregister), which removes the key before it
/// returns. Dropping the guard only signals its task, which then removes the key
/// and revokes the lease on a best-effort basis (if it cannot, the key expires
/// with the lease).
#[must_use = "dropping a Registration deregisters the instance"]
pub struct Registration {
    key: String,
    instance: Mutex<Instance>,
    state: watch::Receiver<RegistrationState>,
    commands: mpsc::Sender<Command>,
    codec: Arc<dyn Codec>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("key", &self.key)
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl Registration {
    pub(super) async fn start(mut task: Task, patience: Duration) -> Result<Self> {
        let first = task.first_session(patience).await?;
        let (commands, receiver) = mpsc::channel(8);
        let registration = Self {
            key: task.key().to_owned(),
            instance: Mutex::new(task.instance().clone()),
            state: task.subscribe(),
            commands,
            codec: task.codec(),
        };
        tokio::spawn(task.run(first, receiver));
        Ok(registration)
    }

    /// The etcd key of this registration.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The instance as last set by [`register`](super::Registrar::register) or
    /// [`update`](Registration::update).
    pub fn instance(&self) -> Instance {
        self.instance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The lease that holds the key now, if registered.
    pub fn lease_id(&self) -> Option<i64> {
        match *self.state.borrow() {
            RegistrationState::Registered { lease_id } => Some(lease_id),
            _ => None,
        }
    }

    /// A receiver of the registration's state: registered (with the lease id),
    /// reconnecting (with the last error), displaced, or deregistered.
    pub fn state(&self) -> watch::Receiver<RegistrationState> {
        self.state.clone()
    }

    /// Changes the instance in place, on the same lease and key: weight, version,
    /// address or metadata. The service and the id make the key and cannot change.
    ///
    /// ```no_run
    /// # async fn f(registration: tonic_etcd::Registration) -> tonic_etcd::Result<()> {
    /// registration.update(|instance| instance.weight = 5).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Fails with a validation error, leaving everything as it was; or with
    /// [`Error::UpdatePending`] if the value could not be written now (the
    /// registration is reconnecting, or the write failed; the source says why),
    /// in which case the new value is kept and written when the registration
    /// recovers; or with [`Error::Displaced`] / [`Error::Deregistered`] when
    /// the task has stopped.
    pub async fn update(&self, change: impl FnOnce(&mut Instance)) -> Result<()> {
        let mut instance = self.instance();
        let (service, id) = (instance.service.clone(), instance.id.clone());
        change(&mut instance);
        for (field, from, to) in [
            ("service", service, &instance.service),
            ("id", id, &instance.id),
        ] {
            if from != *to {
                let to = to.clone();
                return Err(Error::Immutable { field, from, to });
            }
        }
        instance.validate()?;
        let value = self.encode(&instance)?;
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Update {
                instance: instance.clone(),
                value,
                reply,
            })
            .await
            .map_err(|_| self.gone())?;
        *self.instance.lock().unwrap_or_else(|e| e.into_inner()) = instance;
        answer.await.map_err(|_| self.gone())?
    }

    fn encode(&self, instance: &Instance) -> Result<Vec<u8>> {
        encode_checked(&*self.codec, &self.key, instance)
    }

    /// Stops the keepalive task, then deletes the key (only if it still carries
    /// our lease) and revokes the lease. When it returns `Ok`, the key is gone.
    ///
    /// Calling it on a registration that was displaced or whose task has already
    /// ended is not an error.
    pub async fn deregister(self) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        if self
            .commands
            .send(Command::Deregister { reply })
            .await
            .is_err()
        {
            return Ok(());
        }
        answer.await.unwrap_or(Ok(()))
    }

    fn gone(&self) -> Error {
        match *self.state.borrow() {
            RegistrationState::Displaced { by_lease } => Error::Displaced {
                key: self.key.clone(),
                by_lease,
            },
            _ => Error::Deregistered {
                key: self.key.clone(),
            },
        }
    }
}
