//! The task that feeds tonic's balanced channel from a change stream,
//! coalescing changes while tonic's queue is full.

use std::collections::{HashMap, HashSet, VecDeque};

use futures_core::Stream;
use futures_util::StreamExt;
use tokio::sync::mpsc::Sender;
use tonic::transport::channel::Change as TonicChange;
use tonic::transport::Endpoint;
use tower::discover::Change;
use tracing::{debug, info, warn};

use crate::error::Result;
use crate::instance::Instance;

/// Changes waiting for room in tonic's queue: at most one per key, the latest,
/// in the order their keys first became pending.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Keys in arrival order; may hold keys whose change was withdrawn
    /// (skipped on pop), so that a withdrawal costs no search.
    order: VecDeque<String>,
    changes: HashMap<String, Change<String, Instance>>,
}

impl Pending {
    /// Queues `change`, replacing any pending change of the same key. A removal
    /// of a key that tonic does not have (`sent` says which it has) cancels
    /// instead.
    pub(crate) fn push(&mut self, change: Change<String, Instance>, sent: &HashSet<String>) {
        let key = match &change {
            Change::Insert(key, _) | Change::Remove(key) => key.clone(),
        };
        if matches!(change, Change::Remove(_)) && !sent.contains(&key) {
            self.changes.remove(&key);
            return;
        }
        if self.changes.insert(key.clone(), change).is_none() {
            self.order.push_back(key);
        }
    }

    /// The oldest pending change.
    pub(crate) fn pop(&mut self) -> Option<Change<String, Instance>> {
        while let Some(key) = self.order.pop_front() {
            if let Some(change) = self.changes.remove(&key) {
                return Some(change);
            }
        }
        None
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Reads `changes` and feeds `sender` until every receiver of `sender` is gone.
///
/// Reading the stream never waits for tonic: sending waits in its own branch of
/// the `select!`, while new changes are coalesced into [`Pending`].
pub(crate) async fn drive<S, F>(
    mut changes: S,
    sender: Sender<TonicChange<String, Endpoint>>,
    template: F,
) where
    S: Stream<Item = Change<String, Instance>> + Unpin,
    F: Fn(&Instance) -> Result<Endpoint>,
{
    let mut pending = Pending::default();
    // Keys tonic currently holds an endpoint for.
    let mut sent = HashSet::new();
    let mut discovering = true;
    loop {
        tokio::select! {
            biased;
            _ = sender.closed() => break,
            change = changes.next(), if discovering => match change {
                Some(change) => pending.push(change, &sent),
                None => {
                    // A static list, or a discovery whose task died.
                    info!("the change stream ended; keeping the last set of endpoints");
                    discovering = false;
                }
            },
            permit = sender.reserve(), if !pending.is_empty() => {
                let Ok(permit) = permit else { break };
                let change = match pending.pop() {
                    Some(Change::Insert(key, instance)) => match template(&instance) {
                        Ok(endpoint) => {
                            debug!(%key, uri = %endpoint.uri(), "endpoint inserted");
                            sent.insert(key.clone());
                            TonicChange::Insert(key, endpoint)
                        }
                        Err(error) => {
                            warn!(%key, addr = %instance.addr, %error, "cannot build an endpoint; instance left out");
                            if !sent.remove(&key) {
                                continue;
                            }
                            TonicChange::Remove(key)
                        }
                    },
                    Some(Change::Remove(key)) => {
                        if !sent.remove(&key) {
                            continue;
                        }
                        debug!(%key, "endpoint removed");
                        TonicChange::Remove(key)
                    }
                    None => continue,
                };
                permit.send(change);
            }
        }
    }
    debug!("every clone of the channel is gone; driver stopped");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;
    use tokio_stream::wrappers::UnboundedReceiverStream;

    use super::*;
    use crate::endpoint::default_endpoint;
    use crate::error::Error;

    fn instance(addr: &str) -> Instance {
        Instance::new("svc", addr).unwrap()
    }

    fn insert(key: &str, addr: &str) -> Change<String, Instance> {
        Change::Insert(key.into(), instance(addr))
    }

    fn remove(key: &str) -> Change<String, Instance> {
        Change::Remove(key.into())
    }

    fn show(change: &TonicChange<String, Endpoint>) -> String {
        match change {
            TonicChange::Insert(k, e) => format!("+{k}@{}", e.uri().authority().unwrap()),
            TonicChange::Remove(k) => format!("-{k}"),
        }
    }

    fn keys(pending: &mut Pending) -> Vec<String> {
        std::iter::from_fn(|| pending.pop())
            .map(|c| match c {
                Change::Insert(k, i) => format!("+{k}@{}", i.addr),
                Change::Remove(k) => format!("-{k}"),
            })
            .collect()
    }

    #[test]
    fn pending_keeps_the_latest_change_per_key() {
        let sent: HashSet<String> = ["old".to_owned()].into();
        let mut p = Pending::default();
        p.push(insert("a", "h:1"), &sent);
        p.push(insert("b", "h:2"), &sent);
        p.push(insert("a", "h:3"), &sent);
        p.push(remove("old"), &sent);
        assert_eq!(keys(&mut p), ["+a@h:3", "+b@h:2", "-old"]);
        assert!(p.is_empty());
    }

    #[test]
    fn pending_insert_then_remove_of_an_unsent_key_cancels() {
        let sent = HashSet::new();
        let mut p = Pending::default();
        p.push(insert("a", "h:1"), &sent);
        p.push(remove("a"), &sent);
        assert!(p.is_empty());
        // Re-inserted afterwards: queued again, once.
        p.push(insert("a", "h:2"), &sent);
        assert_eq!(keys(&mut p), ["+a@h:2"]);
    }

    #[test]
    fn pending_remove_then_insert_of_a_sent_key_is_the_insert() {
        let sent: HashSet<String> = ["a".to_owned()].into();
        let mut p = Pending::default();
        p.push(remove("a"), &sent);
        p.push(insert("a", "h:2"), &sent);
        assert_eq!(keys(&mut p), ["+a@h:2"]);
    }

    async fn recv(rx: &mut mpsc::Receiver<TonicChange<String, Endpoint>>) -> String {
        let change = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a change within 5 s")
            .expect("driver alive");
        show(&change)
    }

    #[tokio::test]
    async fn driver_coalesces_while_tonic_is_idle() {
        let (changes_tx, changes_rx) = mpsc::unbounded_channel();
        let (tx, mut rx) = mpsc::channel(1);
        for change in [
            insert("a", "h:1"),
            insert("b", "h:2"),
            remove("a"),
            insert("c", "h:3"),
            insert("b", "h:22"),
        ] {
            changes_tx.send(change).unwrap();
        }
        let driver = tokio::spawn(drive(
            UnboundedReceiverStream::new(changes_rx),
            tx,
            default_endpoint,
        ));
        assert_eq!(recv(&mut rx).await, "+b@h:22");
        assert_eq!(recv(&mut rx).await, "+c@h:3");
        // A removal of a key tonic has goes through.
        changes_tx.send(remove("b")).unwrap();
        assert_eq!(recv(&mut rx).await, "-b");
        assert!(rx.try_recv().is_err());
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), driver)
            .await
            .expect("driver stops when the channel is gone")
            .unwrap();
        assert!(changes_tx.is_closed(), "the driver dropped the discovery");
    }

    #[tokio::test]
    async fn driver_never_blocks_reading_discovery() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        let (changes_tx, changes_rx) = mpsc::unbounded_channel();
        let (tx, mut rx) = mpsc::channel(1);
        let read = Arc::new(AtomicUsize::new(0));
        let counted = {
            let read = read.clone();
            UnboundedReceiverStream::new(changes_rx).inspect(move |_| {
                read.fetch_add(1, Ordering::SeqCst);
            })
        };
        tokio::spawn(drive(counted, tx, default_endpoint));
        // Nobody reads tonic's side, whose queue is full after the first send:
        // thousands of changes to a few keys must still be consumed and
        // coalesced to the latest per key.
        for round in 0..2000u32 {
            for key in ["a", "b", "c"] {
                changes_tx
                    .send(insert(key, &format!("h:{}", round + 1)))
                    .unwrap();
            }
            if round % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let drained = async {
            while read.load(Ordering::SeqCst) < 6000 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), drained)
            .await
            .expect("driver kept reading discovery");
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(recv(&mut rx).await);
        }
        assert_eq!(seen, ["+a@h:1", "+b@h:2000", "+c@h:2000", "+a@h:2000"]);
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err(), "one change per key, no more");
    }

    #[tokio::test]
    async fn driver_skips_instances_the_template_refuses() {
        let (changes_tx, changes_rx) = mpsc::unbounded_channel();
        let (tx, mut rx) = mpsc::channel(8);
        let template = |i: &Instance| {
            if i.metadata.contains_key("bad") {
                Err(Error::InvalidField {
                    field: "metadata",
                    reason: "refused by the test".into(),
                })
            } else {
                default_endpoint(i)
            }
        };
        tokio::spawn(drive(
            UnboundedReceiverStream::new(changes_rx),
            tx,
            template,
        ));
        changes_tx
            .send(Change::Insert(
                "x".into(),
                instance("h:1").with_metadata("bad", "1"),
            ))
            .unwrap();
        changes_tx.send(insert("a", "h:2")).unwrap();
        assert_eq!(recv(&mut rx).await, "+a@h:2");
        // A known instance whose new value the template refuses is taken out.
        changes_tx
            .send(Change::Insert(
                "a".into(),
                instance("h:2").with_metadata("bad", "1"),
            ))
            .unwrap();
        assert_eq!(recv(&mut rx).await, "-a");
        // The removal of a key that never reached tonic is dropped.
        changes_tx.send(remove("x")).unwrap();
        changes_tx.send(insert("b", "h:3")).unwrap();
        assert_eq!(recv(&mut rx).await, "+b@h:3");
    }
}
