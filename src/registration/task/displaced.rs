//! Standing by: another lease holds our key, so a newer registration of the
//! same instance took over. Report it, let go of our leases, answer the
//! guard, and check the key every TTL/3: once it is free (deleted, or
//! expired with its holder's lease, and not written again by anyone), take
//! it back with a fresh lease, on condition that it is still absent, so that
//! a holder writing it at the same moment keeps it.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{Command, Session, Task};
use crate::error::{Error, ErrorChain, Result};
use crate::registration::state::RegistrationState;

/// How a stand-by ended.
pub(super) enum Standby {
    /// The key was free and is ours again, held by this session.
    TookBack(Box<Session>),
    /// The key was put with a fresh lease of ours but its streams did not
    /// open: register again (the lease is among the stale ones).
    Reregister,
    /// Deregistered, or the guard dropped.
    Ended,
}

impl Task {
    /// Another lease holds our key: report, let go of ours, stand by until
    /// the key is free or the guard ends.
    pub(super) async fn displaced(
        &mut self,
        mut by_lease: i64,
        own_lease: Option<i64>,
        commands: &mut mpsc::Receiver<Command>,
    ) -> Standby {
        warn!(key = %self.key, by_lease, "displaced by a newer registration of the same key; standing by until the key is free");
        self.state
            .send_replace(RegistrationState::Displaced { by_lease });
        for lease in own_lease
            .into_iter()
            .chain(std::mem::take(&mut self.stale_leases))
        {
            self.revoke_in_background(lease);
        }
        let period = Duration::from_millis(self.ttl as u64 * 1000 / 3);
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // A withdrawn registration (not serving) does not take the key back.
                _ = ticks.tick(), if !self.withdrawn => match self.take_back().await {
                    Ok(Taken::Yes(session)) => {
                        info!(key = %self.key, lease_id = session.lease_id, "the key was free: registered again after standing by");
                        return Standby::TookBack(session);
                    }
                    Ok(Taken::OpenFailed) => return Standby::Reregister,
                    Ok(Taken::No(Some(holder))) if holder != by_lease => {
                        by_lease = holder;
                        self.state.send_replace(RegistrationState::Displaced { by_lease });
                    }
                    Ok(Taken::No(_)) => {}
                    Err(error) => warn!(key = %self.key, error = %ErrorChain(&error), "standing by: cannot check the key"),
                },
                command = commands.recv() => match command {
                    Some(Command::Update { instance, value, reply }) => {
                        // Kept for when the key is ours again.
                        self.instance = instance;
                        self.value = value;
                        let _ = reply.send(Err(Error::Displaced {
                            key: self.key.clone(),
                            by_lease,
                        }));
                    }
                    Some(Command::Serving { serving, reply }) => {
                        let displaced = Error::Displaced { key: self.key.clone(), by_lease };
                        self.keep_serving(serving, reply, displaced);
                    }
                    Some(Command::Deregister { reply }) => {
                        reply.send(Ok(()));
                        break;
                    }
                    None => break,
                },
            }
        }
        self.state.send_replace(RegistrationState::Deregistered);
        Standby::Ended
    }

    /// Takes the key if nobody holds it: a fresh lease, then a put on
    /// condition that the key does not exist.
    async fn take_back(&mut self) -> Result<Taken> {
        let key = self.key.as_str();
        let found = self
            .call(|mut client| async move { client.get(key, None).await })
            .await?;
        if let Some(kv) = found.kvs().first() {
            return Ok(Taken::No(Some(kv.lease())));
        }
        let ttl = self.ttl;
        let lease_id = self
            .call(|mut client| async move { client.lease_grant(ttl, None).await })
            .await?
            .id();
        let value = &self.value;
        let put = self
            .call(|mut client| {
                let txn = Txn::new()
                    .when([Compare::version(key, CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(
                        key,
                        value.clone(),
                        Some(PutOptions::new().with_lease(lease_id)),
                    )]);
                async move { client.txn(txn).await }
            })
            .await;
        let put = match put {
            Ok(put) => put,
            Err(error) => {
                // The put may have landed: keep the lease until one holds it.
                self.stale_leases.push(lease_id);
                return Err(error);
            }
        };
        if !put.succeeded() {
            self.revoke_in_background(lease_id);
            return Ok(Taken::No(None));
        }
        let revision = put.header().map_or(0, |h| h.revision());
        let (keepalive, watch) = tokio::join!(
            self.keepalive_stream(lease_id),
            self.own_key_watch(revision)
        );
        match (keepalive, watch) {
            (Ok((keeper, keepalive, since)), Ok(watch)) => Ok(Taken::Yes(Box::new(Session {
                lease_id,
                keeper,
                keepalive,
                watch,
                since,
                revision,
            }))),
            (Err(error), _) | (_, Err(error)) => {
                warn!(key = %self.key, error = %ErrorChain(&error), "took the key back but its streams did not open; registering again");
                self.stale_leases.push(lease_id);
                Ok(Taken::OpenFailed)
            }
        }
    }
}

/// What [`Task::take_back`] did.
enum Taken {
    Yes(Box<Session>),
    /// Put, but the streams did not open.
    OpenFailed,
    /// The key is held (by this lease, if known).
    No(Option<i64>),
}
