//! The background task of a [`Registration`](super::Registration): what the
//! guard asks of it ([`Command`]), its state ([`Task`]) and its top loop
//! ([`Task::run`]): hold a session until it ends, then register again, stop,
//! or give way.
//!
//! - `lease`: granting a lease and putting the key (first and later
//!   sessions), and the stale leases that may still hold the key;
//! - `hold`: one session's loop: keepalives on a timer grid, the watch of the
//!   own key, commands;
//! - `outcome`: how a session ends, and why a lease was lost;
//! - `update`: writing a changed instance, now or on recovery;
//! - `displaced`: giving way to a newer registration of the same key;
//! - `deregister`: the two ways to delete the key and revoke the leases.

mod deregister;
mod displaced;
mod hold;
mod lease;
mod outcome;
mod update;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, PutOptions, WatchStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::timeout;
use tracing::warn;

use super::state::RegistrationState;
use crate::backoff::Backoff;
use crate::codec::Codec;
use crate::error::{Error, ErrorChain, Result};
use crate::etcd::retry_transient;
use crate::instance::Instance;

pub(super) use lease::SessionHandle;
use outcome::Outcome;

/// What the guard asks of its task.
#[derive(Debug)]
pub(super) enum Command {
    /// Write a new value on the current lease.
    Update {
        instance: Instance,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Stop, delete the key if ours, revoke the lease.
    Deregister { reply: Reply },
}

/// Where the task sends the result of a deregistration.
#[derive(Debug)]
pub(super) enum Reply {
    /// To an async caller: `deregister`, `deregister_on`.
    Async(oneshot::Sender<Result<()>>),
    /// To a thread blocked in the guard's `Drop`, which waits with a deadline
    /// that does not depend on the runtime's timers.
    Blocking(std::sync::mpsc::SyncSender<Result<()>>),
}

impl Reply {
    /// Sends `result`; a caller that stopped waiting does not mind.
    fn send(self, result: Result<()>) {
        match self {
            Self::Async(reply) => drop(reply.send(result)),
            Self::Blocking(reply) => drop(reply.try_send(result)),
        }
    }
}

/// One lease and the streams that go with it.
struct Session {
    lease_id: i64,
    keeper: LeaseKeeper,
    keepalive: LeaseKeepAliveStream,
    watch: WatchStream,
}

/// The registration's task state.
pub(super) struct Task {
    client: Client,
    key: String,
    instance: Instance,
    value: Vec<u8>,
    ttl: i64,
    codec: Arc<dyn Codec>,
    state: watch::Sender<RegistrationState>,
    /// Leases of ours that may still hold the key: the one lost, and those
    /// granted by attempts that failed after their put. Revoked once a new
    /// lease holds the key; never before, or the key would go with them.
    stale_leases: Vec<i64>,
}

impl Task {
    pub(super) fn new(
        client: Client,
        key: String,
        instance: Instance,
        value: Vec<u8>,
        ttl: i64,
        codec: Arc<dyn Codec>,
    ) -> Self {
        let (state, _) = watch::channel(RegistrationState::Reconnecting {
            error: "not registered yet".into(),
            attempt: 0,
        });
        Self {
            client,
            key,
            instance,
            value,
            ttl,
            codec,
            state,
            stale_leases: Vec::new(),
        }
    }

    pub(super) fn key(&self) -> &str {
        &self.key
    }

    pub(super) fn instance(&self) -> &Instance {
        &self.instance
    }

    pub(super) fn codec(&self) -> Arc<dyn Codec> {
        self.codec.clone()
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<RegistrationState> {
        self.state.subscribe()
    }

    pub(super) fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl as u64)
    }

    /// Deadline of one etcd request: the TTL, within 1..=5 s.
    fn request_timeout(&self) -> Duration {
        self.ttl()
            .clamp(Duration::from_secs(1), Duration::from_secs(5))
    }

    /// Sends one etcd request built by `request` from a client, again at once
    /// if it fails on its way (a member down or changing leader), all within
    /// [`request_timeout`](Self::request_timeout).
    async fn call<T, F, Fut>(&self, mut request: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let limit = self.request_timeout();
        let client = &self.client;
        match timeout(limit, retry_transient(|| request(client.clone()))).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(Error::Timeout(limit)),
        }
    }

    /// Puts the key with our value on `lease_id`.
    async fn put(&self, lease_id: i64) -> Result<etcd_client::PutResponse> {
        let (key, value) = (self.key.as_str(), &self.value);
        self.call(|mut client| {
            let value = value.clone();
            async move {
                client
                    .put(key, value, Some(PutOptions::new().with_lease(lease_id)))
                    .await
            }
        })
        .await
    }

    /// Reports `why` (an error's chain, or a lease loss) as `Reconnecting`.
    fn set_reconnecting(&self, why: impl fmt::Display, attempt: u32) {
        self.state.send_replace(RegistrationState::Reconnecting {
            error: why.to_string(),
            attempt,
        });
    }

    /// Runs until deregistered, dropped or displaced.
    pub(super) async fn run(mut self, first: SessionHandle, mut commands: mpsc::Receiver<Command>) {
        let mut session = Some(first.0);
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        loop {
            let Some(current) = session.take() else {
                let attempt = match self.taken_by().await {
                    Ok(Some(by_lease)) => {
                        self.displaced(by_lease, None, &mut commands).await;
                        return;
                    }
                    Ok(None) => self.establish().await,
                    Err(error) => Err(error),
                };
                match attempt {
                    Ok(new) => {
                        backoff.reset();
                        session = Some(new);
                    }
                    Err(error) => {
                        let attempt = backoff.attempts() + 1;
                        warn!(key = %self.key, error = %ErrorChain(&error), attempt, "re-registration failed");
                        self.set_reconnecting(ErrorChain(&error), attempt);
                        let delay = backoff.next_delay();
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            command = commands.recv() => match command {
                                Some(Command::Update { instance, value, reply }) => {
                                    self.keep_update(instance, value, reply, error);
                                }
                                Some(Command::Deregister { reply }) => {
                                    self.finish(None, Some(reply)).await;
                                    return;
                                }
                                None => {
                                    self.finish(None, None).await;
                                    return;
                                }
                            }
                        }
                    }
                }
                continue;
            };
            let lease_id = current.lease_id;
            self.state
                .send_replace(RegistrationState::Registered { lease_id });
            match self.hold(current, &mut commands).await {
                Outcome::Lost(loss) => {
                    warn!(key = %self.key, lease_id, reason = %loss, "lease lost, registering again");
                    self.set_reconnecting(&loss, 0);
                    self.stale_leases.push(lease_id);
                }
                Outcome::Displaced(by_lease) => {
                    self.displaced(by_lease, Some(lease_id), &mut commands)
                        .await;
                    return;
                }
                Outcome::Stop(reply) => {
                    self.finish(Some(lease_id), reply).await;
                    return;
                }
            }
        }
    }
}
