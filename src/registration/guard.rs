//! [`Registration`]: the guard a server holds while it is registered, and its
//! methods (what dropping it does is in `drop.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::limits::encode_checked;
use super::state::RegistrationState;
use super::task::{Command, Reply, Task};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::instance::Instance;

/// A live registration: while this guard lives, the instance stays in etcd.
/// **Keep it for as long as the server serves.**
///
/// - `let _ = registrar.register(..).await?;` drops the guard at once, so the
///   instance is deregistered right after it was registered (`#[must_use]`
///   does not warn about `let _ =`). Bind it: `let registration = ...`.
/// - Dropping it on a multi-thread tokio runtime (`#[tokio::main]`'s) removes
///   the key on the spot: the dropping thread blocks (in
///   [`block_in_place`](tokio::task::block_in_place)) for at most about 1 s
///   while the task deregisters; what takes longer goes on in the background,
///   else the key expires with its lease.
/// - Dropping it anywhere else (a current-thread runtime such as
///   `#[tokio::test]`'s, or no runtime) only signals the task, which removes
///   the key if the runtime keeps running. If the runtime ends first, the key
///   stays in etcd until its lease expires, a whole TTL; a warning says so.
/// - Returning from `main` with the guard still held drops it as above: under
///   `#[tokio::main]` the key is removed before the runtime shuts down.
/// - A crash (or [`std::mem::forget`]) leaves the key until its lease expires.
///
/// End it at a known point with [`deregister`](Registration::deregister), or,
/// for a tonic server, with [`deregister_on`](Registration::deregister_on) as
/// its shutdown future: on SIGTERM or SIGINT it deregisters, lets clients see
/// the removal for `drain`, then lets tonic finish the requests in flight,
/// while the guard stays usable for [`update`](Registration::update) and
/// [`state`](Registration::state) until then:
///
/// ```no_run
/// # async fn run(etcd: tonic_etcd::etcd_client::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tonic_etcd::{shutdown_signal, Instance, Registrar};
///
/// let registration = Registrar::new(etcd)
///     .register(Instance::new("helloworld", "10.0.0.7:50051")?)
///     .await?;
/// let shutdown = registration.deregister_on(shutdown_signal(), Duration::from_secs(1));
/// registration.update(|instance| instance.weight = 2).await?; // still usable
/// // tonic::transport::Server::builder()
/// //     .add_service(GreeterServer::new(MyGreeter))
/// //     .serve_with_shutdown("0.0.0.0:50051".parse()?, shutdown)
/// //     .await?;
/// # shutdown.await;
/// registration.deregister().await?; // Ok: `shutdown` did it already
/// # Ok(()) }
/// ```
#[must_use = "dropping a Registration deregisters the instance"]
pub struct Registration {
    pub(super) key: String,
    pub(super) ttl: Duration,
    instance: Mutex<Instance>,
    pub(super) state: watch::Receiver<RegistrationState>,
    pub(super) commands: mpsc::Sender<Command>,
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
            ttl: task.ttl(),
            instance: Mutex::new(task.instance().clone()),
            state: task.subscribe(),
            commands,
            codec: task.codec(),
        };
        crate::observe::follow_registration(task.instance(), task.subscribe());
        tokio::spawn(task.run(first, receiver));
        Ok(registration)
    }

    /// The etcd key of this registration.
    ///
    /// ```no_run
    /// # fn f(registration: &tonic_etcd::Registration) {
    /// println!("registered as {}", registration.key());
    /// # }
    /// ```
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The instance as last set by [`register`](super::Registrar::register) or
    /// [`update`](Registration::update).
    ///
    /// ```no_run
    /// # fn f(registration: &tonic_etcd::Registration) {
    /// let weight = registration.instance().weight;
    /// # }
    /// ```
    pub fn instance(&self) -> Instance {
        self.instance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The lease that holds the key now, if registered.
    ///
    /// ```no_run
    /// # fn f(registration: &tonic_etcd::Registration) {
    /// if let Some(lease) = registration.lease_id() {
    ///     println!("held by lease {lease:x}");
    /// }
    /// # }
    /// ```
    pub fn lease_id(&self) -> Option<i64> {
        match *self.state.borrow() {
            RegistrationState::Registered { lease_id } => Some(lease_id),
            _ => None,
        }
    }

    /// A receiver of the registration's state: registered (with the lease id),
    /// reconnecting (with the last error), displaced, or deregistered.
    ///
    /// ```no_run
    /// # async fn f(registration: &tonic_etcd::Registration) {
    /// use tonic_etcd::RegistrationState;
    ///
    /// let mut state = registration.state();
    /// while state.changed().await.is_ok() {
    ///     if let RegistrationState::Reconnecting { error, .. } = &*state.borrow() {
    ///         eprintln!("registration reconnecting: {error}");
    ///     }
    /// }
    /// # }
    /// ```
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
        let value = encode_checked(&*self.codec, &self.key, &instance)?;
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

    /// Stops the keepalive task, then deletes the key (only if it still carries
    /// our lease) and revokes the lease. When it returns `Ok`, the key is gone.
    ///
    /// Calling it on a registration that was displaced or whose task has already
    /// ended (after [`deregister_on`](Registration::deregister_on) fired, say)
    /// is not an error.
    ///
    /// ```no_run
    /// # async fn f(registration: tonic_etcd::Registration) -> tonic_etcd::Result<()> {
    /// registration.deregister().await?;
    /// # Ok(()) }
    /// ```
    pub async fn deregister(self) -> Result<()> {
        deregister(&self.commands).await
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

/// Asks the task to deregister and waits for its answer; `Ok` if it has
/// ended already.
pub(super) async fn deregister(commands: &mpsc::Sender<Command>) -> Result<()> {
    let (reply, answer) = oneshot::channel();
    let command = Command::Deregister {
        reply: Reply::Async(reply),
    };
    if commands.send(command).await.is_err() {
        return Ok(());
    }
    answer.await.unwrap_or(Ok(()))
}
