//! The [`Watcher`]: the task that keeps a discovery up to date, and its retry
//! loop.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;
use tokio::sync::watch;
use tokio::time::sleep;
use tower::discover::Change;
use tracing::{debug, warn};

use super::session::{unless_closed, Session};
use crate::backoff::Backoff;
use crate::discovery::health::Health;
use crate::discovery::shared::Shared;
use crate::discovery::state::Event;

/// The backoff of the retry loop: 50 ms doubling to 2 s, each delay ±50 %.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// The sender side of the [`Change`] streams: one per subscriber.
pub(crate) type ChangeSender = crate::discovery::fanout::Fanout;

/// The task that keeps a discovery up to date.
pub(crate) struct Watcher {
    pub(super) client: Client,
    pub(super) prefix: String,
    pub(super) shared: Arc<Shared>,
    pub(super) tx: ChangeSender,
    health: watch::Sender<Health>,
    /// Every event up to this revision has been applied.
    pub(super) revision: i64,
    /// The next session must start with a Get.
    pub(super) resync: bool,
    /// etcd refused our auth token (expired, or issued by another member):
    /// authenticate again before the next watch.
    pub(super) reauthenticate: bool,
}

impl Watcher {
    pub(crate) fn new(
        client: Client,
        prefix: String,
        shared: Arc<Shared>,
        tx: ChangeSender,
        health: watch::Sender<Health>,
        revision: i64,
    ) -> Self {
        Self {
            client,
            prefix,
            shared,
            tx,
            health,
            revision,
            resync: false,
            reauthenticate: false,
        }
    }

    /// Applies events and queues the resulting changes, under one lock so that
    /// the snapshot and the stream never disagree.
    pub(crate) fn apply(&self, events: impl IntoIterator<Item = Event>) {
        let mut state = self.shared.lock();
        for event in events {
            for change in state.apply(event) {
                match &change {
                    Change::Insert(identity, instance) => {
                        debug!(%identity, addr = %instance.addr, "insert")
                    }
                    Change::Remove(identity) => debug!(%identity, "remove"),
                }
                // A closed receiver means the consumer is gone; run() notices.
                let _ = self.tx.send(change);
            }
        }
        crate::observe::discovery_instances(&self.shared.service, state.len());
    }

    pub(super) fn set_health(&self, health: Health) {
        crate::observe::discovery_health(&self.shared.service, &self.health.borrow(), &health);
        self.health.send_if_modified(|current| {
            let changed = *current != health;
            *current = health;
            changed
        });
    }

    /// Watches until the consumer drops the stream: one session after
    /// another, with a backoff after each that failed.
    pub(crate) async fn run(mut self) {
        let mut backoff = Backoff::new(BACKOFF.0, BACKOFF.1);
        loop {
            let error = match self.session(&mut backoff).await {
                Session::Shutdown => break,
                Session::Resync => continue,
                Session::Failed(error) => error,
            };
            crate::observe::watch_restarted(&self.shared.service);
            let delay = backoff.next_delay();
            warn!(%error, revision = self.revision, ?delay, "watch lost; keeping the current set and retrying");
            self.set_health(Health::Reconnecting { error });
            if unless_closed(&self.tx, sleep(delay)).await.is_none() {
                break;
            }
        }
        debug!("consumer gone; discovery stopped");
    }
}
