//! [`Fanout`]: the sender side of a discovery's change streams, one per
//! subscriber, so that several [`InstanceChanges`](super::InstanceChanges)
//! share one watch (see `hub`).
//!
//! The watcher sends every change under the state lock; a subscriber joins
//! under the same lock, with the current set queued first, so it misses and
//! repeats nothing. The watcher stops when every subscriber is gone
//! ([`Fanout::closed`]); a stopped fanout takes no new subscriber.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::future::join_all;
use tokio::sync::mpsc;
use tower::discover::Change;

use crate::instance::Instance;

type Sender = mpsc::UnboundedSender<Change<String, Instance>>;
pub(crate) type Receiver = mpsc::UnboundedReceiver<Change<String, Instance>>;

/// The subscribers of one watch. Cloning shares them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fanout {
    inner: Arc<Mutex<Subscribers>>,
}

#[derive(Debug, Default)]
struct Subscribers {
    senders: Vec<Sender>,
    /// Every subscriber was gone once: the watch is over.
    stopped: bool,
}

impl Fanout {
    fn lock(&self) -> MutexGuard<'_, Subscribers> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new subscriber, `initial` queued first; `None` once stopped. The
    /// caller holds the state lock, so `initial` is exactly the set before
    /// the next change sent.
    pub(crate) fn subscribe(
        &self,
        initial: impl IntoIterator<Item = Change<String, Instance>>,
    ) -> Option<Receiver> {
        let mut subscribers = self.lock();
        if subscribers.stopped {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        for change in initial {
            let _ = tx.send(change);
        }
        subscribers.senders.push(tx);
        Some(rx)
    }

    /// Sends `change` to every subscriber still there; false if none is.
    pub(crate) fn send(&self, change: Change<String, Instance>) -> bool {
        let mut subscribers = self.lock();
        subscribers.senders.retain(|tx| !tx.is_closed());
        let Some((last, others)) = subscribers.senders.split_last() else {
            return false;
        };
        for tx in others {
            let _ = tx.send(change.clone());
        }
        let _ = last.send(change);
        true
    }

    /// Resolves when every subscriber is gone, and marks the fanout stopped.
    /// Cancel-safe (the watcher selects on it).
    pub(crate) async fn closed(&self) {
        loop {
            let senders = self.lock().senders.clone();
            join_all(senders.iter().map(|tx| tx.closed())).await;
            let mut subscribers = self.lock();
            subscribers.senders.retain(|tx| !tx.is_closed());
            if subscribers.senders.is_empty() {
                subscribers.stopped = true;
                return;
            }
            // Someone joined while we waited: wait for them too.
        }
    }

    /// Whether the watch is over (no subscriber left, none can join).
    pub(crate) fn is_stopped(&self) -> bool {
        let mut subscribers = self.lock();
        subscribers.senders.retain(|tx| !tx.is_closed());
        if subscribers.senders.is_empty() {
            subscribers.stopped = true;
        }
        subscribers.stopped
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn insert(key: &str) -> Change<String, Instance> {
        let instance = Instance::new("svc", "127.0.0.1:1").unwrap();
        Change::Insert(key.to_owned(), instance)
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_change_after_its_initial_set() {
        let fanout = Fanout::default();
        let mut a = fanout.subscribe([]).unwrap();
        assert!(fanout.send(insert("x")));
        let mut b = fanout.subscribe([insert("x")]).unwrap();
        assert!(fanout.send(insert("y")));
        let keys = |rx: &mut Receiver| {
            let mut keys = Vec::new();
            while let Ok(Change::Insert(key, _)) = rx.try_recv() {
                keys.push(key);
            }
            keys
        };
        assert_eq!(keys(&mut a), ["x", "y"]);
        assert_eq!(keys(&mut b), ["x", "y"]);
    }

    #[tokio::test]
    async fn closed_when_the_last_subscriber_goes_and_then_stopped() {
        let fanout = Fanout::default();
        let a = fanout.subscribe([]).unwrap();
        let b = fanout.subscribe([]).unwrap();
        drop(a);
        let waiting = tokio::time::timeout(Duration::from_millis(50), fanout.closed()).await;
        assert!(waiting.is_err(), "b is still there");
        assert!(!fanout.is_stopped());
        drop(b);
        tokio::time::timeout(Duration::from_secs(1), fanout.closed())
            .await
            .expect("closed once both are gone");
        assert!(fanout.is_stopped());
        assert!(
            fanout.subscribe([]).is_none(),
            "a stopped watch takes no one"
        );
        assert!(!fanout.send(insert("x")));
    }
}
