//! The task's state ([`Task`]) and its top loop ([`Task::run`]): hold a
//! session until it ends, then register again, stop, or give way.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, PutOptions, WatchStream};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;
use tracing::warn;

use crate::backoff::Backoff;
use crate::codec::Codec;
use crate::error::{Error, ErrorChain, Result};
use crate::etcd::retry_transient;
use crate::instance::Instance;
use crate::registration::state::RegistrationState;

use super::{Command, Outcome, SessionHandle};

/// One lease and the streams that go with it.
pub(super) struct Session {
    pub(super) lease_id: i64,
    pub(super) keeper: LeaseKeeper,
    pub(super) keepalive: LeaseKeepAliveStream,
    pub(super) watch: WatchStream,
}

/// The registration's task state.
pub(in crate::registration) struct Task {
    pub(super) client: Client,
    pub(super) key: String,
    pub(super) instance: Instance,
    pub(super) value: Vec<u8>,
    pub(super) ttl: i64,
    pub(super) codec: Arc<dyn Codec>,
    pub(super) state: watch::Sender<RegistrationState>,
    /// Leases of ours that may still hold the key: the one lost, and those
    /// granted by attempts that failed after their put. Revoked once a new
    /// lease holds the key; never before, or the key would go with them.
    pub(super) stale_leases: Vec<i64>,
    /// Taken out of discovery on purpose (`withdraw.rs`): no key is put.
    pub(super) withdrawn: bool,
}

impl Task {
    pub(in crate::registration) fn new(
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
            withdrawn: false,
        }
    }

    pub(in crate::registration) fn key(&self) -> &str {
        &self.key
    }

    pub(in crate::registration) fn instance(&self) -> &Instance {
        &self.instance
    }

    pub(in crate::registration) fn codec(&self) -> Arc<dyn Codec> {
        self.codec.clone()
    }

    pub(in crate::registration) fn subscribe(&self) -> watch::Receiver<RegistrationState> {
        self.state.subscribe()
    }

    pub(in crate::registration) fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl as u64)
    }

    /// Deadline of one etcd request: the TTL, within 1..=5 s.
    pub(super) fn request_timeout(&self) -> Duration {
        self.ttl()
            .clamp(Duration::from_secs(1), Duration::from_secs(5))
    }

    /// Sends one etcd request built by `request` from a client, again at once
    /// if it fails on its way (a member down or changing leader), all within
    /// [`request_timeout`](Self::request_timeout).
    pub(super) async fn call<T, F, Fut>(&self, mut request: F) -> Result<T>
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
    pub(super) async fn put(&self, lease_id: i64) -> Result<etcd_client::PutResponse> {
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
    pub(super) fn set_reconnecting(&self, why: impl fmt::Display, attempt: u32) {
        self.state.send_replace(RegistrationState::Reconnecting {
            error: why.to_string(),
            attempt,
        });
    }

    /// Runs until deregistered, dropped or displaced.
    pub(in crate::registration) async fn run(
        mut self,
        first: SessionHandle,
        mut commands: mpsc::Receiver<Command>,
    ) {
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
                                Some(Command::Serving { serving, reply }) => {
                                    self.keep_serving(serving, reply, error);
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
            self.state.send_replace(self.held_state(lease_id));
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
