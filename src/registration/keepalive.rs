//! The background task of a [`Registration`](super::Registration): lease,
//! keepalive, watch of its own key, re-registration, clean-up.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, EventType, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn,
    TxnOp, WatchOptions, WatchStream,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{timeout, Instant};
use tracing::{debug, info, warn};

use super::RegistrationState;
use crate::backoff::Backoff;
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::etcd::retry_transient;
use crate::etcd::status::{fault_of, Fault};
use crate::instance::Instance;

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
    Deregister { reply: oneshot::Sender<Result<()>> },
}

/// One lease and the streams that go with it.
struct Session {
    lease_id: i64,
    keeper: LeaseKeeper,
    keepalive: LeaseKeepAliveStream,
    watch: WatchStream,
}

/// Why [`Task::hold`] returned.
enum Outcome {
    /// The lease is gone or the connection broke: register again.
    Lost(Error),
    /// Another lease holds our key now.
    Displaced(i64),
    /// Deregister (with a reply) or guard dropped (without one).
    Stop(Option<oneshot::Sender<Result<()>>>),
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

    fn ttl(&self) -> Duration {
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

    /// Registers for the first time, retrying until `deadline` if one is given.
    pub(super) async fn first_session(&mut self, patience: Duration) -> Result<SessionHandle> {
        let deadline = Instant::now() + patience;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        loop {
            match self.establish(false).await {
                Ok(session) => {
                    self.state.send_replace(RegistrationState::Registered {
                        lease_id: session.lease_id,
                    });
                    return Ok(SessionHandle(session));
                }
                Err(error) => {
                    let now = Instant::now();
                    if now >= deadline {
                        // No key of a failed registration may outlive it.
                        for lease in std::mem::take(&mut self.stale_leases) {
                            self.revoke_in_background(lease);
                        }
                        return Err(error);
                    }
                    // The last attempt is made at the deadline.
                    let delay = backoff.next_delay().min(deadline - now);
                    warn!(key = %self.key, %error, "etcd not reachable yet, retrying");
                    self.set_reconnecting(&error, backoff.attempts());
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Grants a lease, puts the key with it and opens the keepalive and watch
    /// streams. `recovering` checks first that no other lease took the key.
    async fn establish(&mut self, recovering: bool) -> Result<Session> {
        let key = self.key.as_str();
        if recovering {
            let found = self
                .call(|mut client| async move { client.get(key, None).await })
                .await?;
            if let Some(kv) = found.kvs().first() {
                let lease = kv.lease();
                if lease != 0
                    && !self.stale_leases.contains(&lease)
                    && self.lease_alive(lease).await?
                {
                    return Err(Error::Displaced {
                        key: self.key.clone(),
                        by_lease: lease,
                    });
                }
            }
        }
        let ttl = self.ttl;
        let lease_id = self
            .call(|mut client| async move { client.lease_grant(ttl, None).await })
            .await?
            .id();
        match self.open(lease_id).await {
            Ok(session) => {
                // The key is on the new lease now: the old ones can go.
                for stale in std::mem::take(&mut self.stale_leases) {
                    self.revoke_in_background(stale);
                }
                Ok(session)
            }
            Err(error) => {
                // The put may have landed: revoking this lease now would delete
                // the key. Keep it with the stale ones until a lease holds it.
                self.stale_leases.push(lease_id);
                Err(error)
            }
        }
    }

    async fn lease_alive(&self, lease: i64) -> Result<bool> {
        let resp = self
            .call(|mut client| async move { client.lease_time_to_live(lease, None).await })
            .await?;
        Ok(resp.ttl() > 0)
    }

    async fn open(&self, lease_id: i64) -> Result<Session> {
        let put = self.put(lease_id).await?;
        let revision = put.header().map_or(0, |h| h.revision());
        let (keeper, keepalive) = self
            .call(|mut client| async move { client.lease_keep_alive(lease_id).await })
            .await?;
        let key = self.key.as_str();
        let watch = self
            .call(|mut client| async move {
                let options = WatchOptions::new().with_start_revision(revision + 1);
                client.watch(key, Some(options)).await
            })
            .await?;
        info!(key = %self.key, lease_id, revision, "registered");
        Ok(Session {
            lease_id,
            keeper,
            keepalive,
            watch,
        })
    }

    fn revoke_in_background(&self, lease_id: i64) {
        let client = self.client.clone();
        let limit = self.request_timeout();
        tokio::spawn(async move {
            let revoke = retry_transient(|| {
                let mut client = client.clone();
                async move { client.lease_revoke(lease_id).await }
            });
            match timeout(limit, revoke).await {
                Ok(Ok(_)) => debug!(lease_id, "revoked stale lease"),
                Ok(Err(error)) => debug!(lease_id, %error, "stale lease not revoked"),
                Err(_) => debug!(lease_id, "stale lease revoke timed out"),
            }
        });
    }

    fn set_reconnecting(&self, error: &Error, attempt: u32) {
        self.state.send_replace(RegistrationState::Reconnecting {
            error: error.to_string(),
            attempt,
        });
    }

    /// Runs until deregistered, dropped or displaced.
    pub(super) async fn run(mut self, first: SessionHandle, mut commands: mpsc::Receiver<Command>) {
        let mut session = Some(first.0);
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        loop {
            let Some(current) = session.take() else {
                match self.establish(true).await {
                    Ok(new) => {
                        backoff.reset();
                        session = Some(new);
                    }
                    Err(Error::Displaced { by_lease, .. }) => {
                        self.displaced(by_lease, None, &mut commands).await;
                        return;
                    }
                    Err(error) => {
                        warn!(key = %self.key, %error, attempt = backoff.attempts() + 1, "re-registration failed");
                        self.set_reconnecting(&error, backoff.attempts() + 1);
                        let delay = backoff.next_delay();
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            command = commands.recv() => match command {
                                Some(Command::Update { instance, value, reply }) => {
                                    // Written when the registration recovers.
                                    self.instance = instance;
                                    self.value = value;
                                    let _ = reply.send(Err(error));
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
                Outcome::Lost(error) => {
                    warn!(key = %self.key, lease_id, %error, "lease lost, registering again");
                    self.set_reconnecting(&error, 0);
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

    /// Keeps one session alive until something ends it.
    async fn hold(
        &mut self,
        mut session: Session,
        commands: &mut mpsc::Receiver<Command>,
    ) -> Outcome {
        let lease_id = session.lease_id;
        let period = Duration::from_millis(self.ttl as u64 * 1000 / 3);
        let mut ticks = tokio::time::interval_at(on_grid(Instant::now() + period, period), period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_answer = Instant::now();
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if last_answer.elapsed() >= self.ttl() {
                        return Outcome::Lost(Error::Timeout(self.ttl()));
                    }
                    if let Err(error) = session.keeper.keep_alive().await {
                        return Outcome::Lost(error.into());
                    }
                }
                answer = session.keepalive.message() => match answer {
                    Ok(Some(resp)) if resp.ttl() > 0 => {
                        last_answer = Instant::now();
                        debug!(key = %self.key, lease_id, ttl = resp.ttl(), "keepalive ok");
                    }
                    Ok(Some(_)) => return Outcome::Lost(lease_gone("lease expired or revoked (TTL 0)")),
                    Ok(None) => return Outcome::Lost(lease_gone("keepalive stream closed")),
                    Err(error) => return Outcome::Lost(error.into()),
                },
                event = session.watch.message() => match event {
                    Ok(Some(resp)) => {
                        if resp.canceled() {
                            return Outcome::Lost(lease_gone("watch of own key canceled"));
                        }
                        for event in resp.events() {
                            let Some(kv) = event.kv() else { continue };
                            match event.event_type() {
                                EventType::Delete => {
                                    warn!(key = %self.key, lease_id, "key deleted while the lease lives, putting it back");
                                    if let Err(error) = self.put(lease_id).await {
                                        return Outcome::Lost(error);
                                    }
                                }
                                EventType::Put if kv.lease() == 0 => {
                                    // Registrations always write with a lease:
                                    // this is a hand-made write (garbage, a
                                    // test value). Ours is the live instance.
                                    warn!(key = %self.key, lease_id, "key overwritten without a lease, putting ours back");
                                    if let Err(error) = self.put(lease_id).await {
                                        return Outcome::Lost(error);
                                    }
                                }
                                EventType::Put if kv.lease() != lease_id => {
                                    return Outcome::Displaced(kv.lease());
                                }
                                EventType::Put => {}
                            }
                        }
                    }
                    Ok(None) => return Outcome::Lost(lease_gone("watch of own key closed")),
                    Err(error) => return Outcome::Lost(error.into()),
                },
                command = commands.recv() => match command {
                    Some(Command::Update { instance, value, reply }) => {
                        self.instance = instance;
                        self.value = value;
                        match self.put(lease_id).await {
                            Ok(_) => {
                                info!(key = %self.key, lease_id, "registration updated");
                                let _ = reply.send(Ok(()));
                            }
                            Err(error) => {
                                let _ = reply.send(Err(lease_gone(&format!("update not written yet: {error}"))));
                                return Outcome::Lost(error);
                            }
                        }
                    }
                    Some(Command::Deregister { reply }) => return Outcome::Stop(Some(reply)),
                    None => return Outcome::Stop(None),
                },
            }
        }
    }

    /// Another lease holds our key: report, let go of ours, wait for the end.
    async fn displaced(
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
                Command::Update { reply, .. } => {
                    let _ = reply.send(Err(Error::Displaced {
                        key: self.key.clone(),
                        by_lease,
                    }));
                }
                Command::Deregister { reply } => {
                    let _ = reply.send(Ok(()));
                    break;
                }
            }
        }
        self.state.send_replace(RegistrationState::Deregistered);
    }

    /// Deletes the key if one of our leases (`lease_id` or a stale one) still
    /// holds it, then revokes those leases.
    async fn finish(&mut self, lease_id: Option<i64>, reply: Option<oneshot::Sender<Result<()>>>) {
        if let (Some(lease), true) = (lease_id, self.stale_leases.is_empty()) {
            // One lease: revoking it deletes the key in the same step if, and
            // only if, the key still carries it. One request instead of three,
            // so that clients see the removal one round trip after the call.
            let revoke = |mut client: Client| async move { client.lease_revoke(lease).await };
            let result = match self.call(revoke).await {
                // Expired already: the key went with it.
                Err(error) if fault_of(&error) == Fault::LeaseNotFound => Ok(()),
                result => result.map(drop),
            };
            return self.finished(result, reply);
        }
        let ours: Vec<i64> = lease_id
            .into_iter()
            .chain(std::mem::take(&mut self.stale_leases))
            .collect();
        let key = self.key.as_str();
        // Two requests whatever the number of leases: which lease holds the
        // key, then a delete on condition that it still does.
        let delete = async {
            let found = self
                .call(|mut client| async move { client.get(key, None).await })
                .await?;
            let Some(holder) = found.kvs().first().map(|kv| kv.lease()) else {
                return Ok(());
            };
            if !ours.contains(&holder) {
                return Ok(());
            }
            self.call(|mut client| async move {
                let txn = Txn::new()
                    .when([Compare::lease(key, CompareOp::Equal, holder)])
                    .and_then([TxnOp::delete(key, None)]);
                client.txn(txn).await
            })
            .await
            .map(drop)
        };
        let mut result = delete.await;
        if result.is_ok() {
            if let Some(lease) = lease_id {
                let revoke = |mut client: Client| async move { client.lease_revoke(lease).await };
                if let Err(error) = self.call(revoke).await {
                    // Lease already gone is the goal anyway.
                    if fault_of(&error) != Fault::LeaseNotFound {
                        result = Err(error);
                    }
                }
            }
        }
        // The stale leases hold nothing now, or expire on their own.
        for lease in ours.into_iter().filter(|l| Some(*l) != lease_id) {
            self.revoke_in_background(lease);
        }
        self.finished(result, reply);
    }

    /// Reports the end of a deregistration.
    fn finished(&self, result: Result<()>, reply: Option<oneshot::Sender<Result<()>>>) {
        match &result {
            Ok(()) => info!(key = %self.key, "deregistered"),
            Err(error) => {
                warn!(key = %self.key, %error, "deregistration incomplete; the key expires with its lease")
            }
        }
        self.state.send_replace(RegistrationState::Deregistered);
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }
}

/// `at`, delayed to the next point of a process-wide grid of `period / 10`
/// (at most 100 ms) steps. The registrations of a process with the same TTL
/// then send their keepalives in the same timer tick: one wake-up and a few
/// socket writes for many leases rather than one each, which is most of what
/// idle registrations cost. A keepalive is late by less than a step, far
/// within the TTL.
fn on_grid(at: Instant, period: Duration) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let step = (period / 10)
        .min(Duration::from_millis(100))
        .as_nanos()
        .max(1);
    let late = if at >= epoch {
        let since = (at - epoch).as_nanos();
        (step - since % step) % step
    } else {
        (epoch - at).as_nanos() % step
    };
    at + Duration::from_nanos(late as u64)
}

/// A session opened by [`Task::first_session`], handed to [`Task::run`].
pub(super) struct SessionHandle(Session);

fn lease_gone(why: &str) -> Error {
    Error::Etcd(etcd_client::Error::LeaseKeepAliveError(why.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalives_start_on_a_shared_grid_and_barely_late() {
        let period = Duration::from_secs(2);
        let now = Instant::now();
        let a = on_grid(now, period);
        let b = on_grid(now + Duration::from_millis(37), period);
        let c = on_grid(now + Duration::from_millis(160), period);
        for t in [a, b, c] {
            // Same grid: 100 ms steps apart, whoever asks.
            assert_eq!((t - a).as_nanos() % 100_000_000, 0);
        }
        assert!(a - now < Duration::from_millis(100));
        assert_eq!(on_grid(a, period), a, "a grid point stays");
        assert!(b == a || b == a + Duration::from_millis(100));
        // Short TTLs get a finer grid: TTL 1 s, period 333 ms, steps of 33 ms.
        let short = Duration::from_millis(333);
        let d = on_grid(now, short);
        assert!(d - now < Duration::from_millis(34));
    }
}
