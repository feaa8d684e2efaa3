//! The subset stage: the full set of servers and the set of clients in,
//! the changes of this client's subset out.
//!
//! [`Subsetter`] is the pure part (tested on synthetic input); [`run`] is the
//! task around it: it waits for the set of clients to settle before the first
//! subset, applies server changes at once and client changes once they have
//! been quiet for the settle period.
//!
//! (Over 400 lines with its tests: the synthetic-input tests of the pure
//! part and the cost measurement sit beside it.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::PoisonError;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use tower::discover::Change;
use tracing::debug;

use super::algorithm::{rank_of, rendezvous, stable_hash};
use super::members::MemberLease;
use crate::discovery::fanout::Receiver;
use crate::discovery::view::Chosen;
use crate::instance::Instance;

/// How the subset is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Deterministic aperture over the registered clients.
    Aperture,
    /// Rendezvous hashing of the client id: the clients' keys could not be
    /// written or watched.
    Rendezvous,
}

/// This client's view: every server, every client, and what was emitted.
#[derive(Debug)]
pub(crate) struct Subsetter {
    size: usize,
    me: String,
    mode: Mode,
    servers: BTreeMap<String, Instance>,
    /// The servers' identities in ring order (see `algorithm::ring`), kept
    /// with each change: recomputing it per batch costs about 25 ms at
    /// 100,000 servers.
    ring: BTreeSet<(u64, String)>,
    /// Client key → client id.
    members: BTreeMap<String, String>,
    emitted: BTreeMap<String, Instance>,
}

impl Subsetter {
    pub(crate) fn new(size: usize, me: String, mode: Mode) -> Self {
        Self {
            size,
            me,
            mode,
            servers: BTreeMap::new(),
            ring: BTreeSet::new(),
            members: BTreeMap::new(),
            emitted: BTreeMap::new(),
        }
    }

    /// A change of the full set of servers.
    pub(crate) fn server(&mut self, change: Change<String, Instance>) {
        match change {
            Change::Insert(identity, instance) => {
                if !self.servers.contains_key(&identity) {
                    let hash = stable_hash(identity.as_bytes());
                    self.ring.insert((hash, identity.clone()));
                }
                self.servers.insert(identity, instance);
            }
            Change::Remove(identity) => {
                if self.servers.remove(&identity).is_some() {
                    let hash = stable_hash(identity.as_bytes());
                    self.ring.remove(&(hash, identity));
                }
            }
        }
    }

    /// A change of the set of clients.
    pub(crate) fn member(&mut self, change: Change<String, Instance>) {
        match change {
            Change::Insert(key, member) => {
                self.members.insert(key, member.id);
            }
            Change::Remove(key) => {
                self.members.remove(&key);
            }
        }
    }

    /// The identities of this client's subset now.
    pub(crate) fn chosen(&self) -> BTreeSet<String> {
        match self.mode {
            Mode::Aperture => {
                let clients: Vec<&str> = self.members.values().map(String::as_str).collect();
                let (rank, count) = rank_of(&clients, &self.me);
                self.aperture(rank, count)
            }
            Mode::Rendezvous => {
                let servers: Vec<&str> = self.servers.keys().map(String::as_str).collect();
                let chosen = rendezvous(&servers, &self.me, self.size);
                chosen.into_iter().map(str::to_owned).collect()
            }
        }
    }

    /// `algorithm::aperture` over the kept ring: a walk to the window's
    /// start (O(N) steps at worst, no hashing, no sort) and K more.
    fn aperture(&self, rank: usize, clients: usize) -> BTreeSet<String> {
        let n = self.ring.len();
        if n == 0 || clients == 0 {
            return BTreeSet::new();
        }
        let start = super::algorithm::window_start(rank, clients, n);
        let from_start = self.ring.iter().skip(start);
        from_start
            .chain(self.ring.iter())
            .take(self.size.min(n))
            .map(|(_, identity)| identity.clone())
            .collect()
    }

    /// What the consumer must be told to hold the subset now: inserts (new
    /// or changed instances) first, then removes, so that a move never
    /// leaves it with fewer servers than both ends.
    pub(crate) fn update(&mut self) -> Vec<Change<String, Instance>> {
        let chosen = self.chosen();
        let mut changes = Vec::new();
        for identity in &chosen {
            let instance = &self.servers[identity];
            if self.emitted.get(identity) != Some(instance) {
                self.emitted.insert(identity.clone(), instance.clone());
                changes.push(Change::Insert(identity.clone(), instance.clone()));
            }
        }
        let gone: Vec<String> = self
            .emitted
            .keys()
            .filter(|identity| !chosen.contains(*identity))
            .cloned()
            .collect();
        for identity in gone {
            self.emitted.remove(&identity);
            changes.push(Change::Remove(identity));
        }
        changes
    }
}

/// The next change of an optional stream; pending forever without one.
async fn next(rx: &mut Option<Receiver>) -> Option<Change<String, Instance>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The task's inputs and output.
pub(crate) struct Io {
    pub(crate) servers: Receiver,
    pub(crate) members: Option<Receiver>,
    pub(crate) tx: mpsc::UnboundedSender<Change<String, Instance>>,
    /// What the stream carries, for the view.
    pub(crate) chosen: Chosen,
    pub(crate) ready: oneshot::Sender<()>,
    pub(crate) lease: Option<MemberLease>,
}

/// Runs the subset stage until the consumer drops its stream (or the
/// servers' stream ends): the first subset once the clients have been quiet
/// for `settle` (at most four times that after the start), then every change.
pub(crate) async fn run(mut subsetter: Subsetter, io: Io, settle: Duration) {
    let Io {
        mut servers,
        mut members,
        tx,
        chosen,
        mut ready,
        lease,
    } = io;
    let latest = Instant::now() + settle * 4;
    let mut quiet = Instant::now() + settle;
    loop {
        tokio::select! {
            biased;
            _ = ready.closed() => return,
            change = servers.recv() => match change {
                Some(change) => subsetter.server(change),
                None => return,
            },
            change = next(&mut members) => match change {
                Some(change) => {
                    subsetter.member(change);
                    quiet = Instant::now() + settle;
                }
                None => members = None,
            },
            _ = sleep_until(quiet.min(latest)) => break,
        }
    }
    // The view's subset changes with the changes queued, under one lock, so
    // that it always is what the stream has carried.
    let send = |subsetter: &mut Subsetter| {
        let mut published = chosen.lock().unwrap_or_else(PoisonError::into_inner);
        let changes = subsetter.update();
        if changes.is_empty() {
            return;
        }
        for change in changes {
            let _ = tx.send(change);
        }
        *published = subsetter.emitted.values().cloned().collect();
    };
    send(&mut subsetter);
    debug!("first subset sent");
    let _ = ready.send(());

    let mut pending: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = tx.closed() => break,
            change = servers.recv() => match change {
                Some(change) => {
                    subsetter.server(change);
                    while let Ok(change) = servers.try_recv() {
                        subsetter.server(change);
                    }
                    send(&mut subsetter);
                }
                None => break,
            },
            change = next(&mut members) => match change {
                Some(change) => {
                    subsetter.member(change);
                    pending = Some(Instant::now() + settle);
                }
                None => members = None,
            },
            _ = sleep_until(pending.unwrap_or(latest)), if pending.is_some() => {
                pending = None;
                send(&mut subsetter);
                debug!("clients changed; subset updated");
            }
        }
    }
    drop(lease);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(i: usize) -> Change<String, Instance> {
        let instance = Instance::new("svc", format!("127.0.0.1:{}", 5000 + i)).unwrap();
        Change::Insert(format!("/services/svc/{i}"), instance)
    }

    fn member(id: &str) -> Change<String, Instance> {
        Change::Insert(format!("/m/{id}"), super::super::members::member("svc", id))
    }

    fn inserted(changes: &[Change<String, Instance>]) -> usize {
        changes
            .iter()
            .filter(|c| matches!(c, Change::Insert(..)))
            .count()
    }

    #[test]
    fn emits_exactly_k_and_then_only_the_difference() {
        let mut s = Subsetter::new(3, "b".into(), Mode::Aperture);
        (0..10).for_each(|i| s.server(server(i)));
        ["a", "b", "c"]
            .into_iter()
            .for_each(|m| s.member(member(m)));
        let first = s.update();
        assert_eq!(inserted(&first), 3);
        assert_eq!(first.len(), 3);
        assert!(s.update().is_empty(), "nothing new");

        // A server outside the subset leaves: nothing to tell.
        let outside = (0..10)
            .map(|i| format!("/services/svc/{i}"))
            .find(|id| !s.chosen().contains(id))
            .unwrap();
        s.server(Change::Remove(outside));
        let after = s.update();
        assert!(after.len() <= 2, "at most one in, one out: {after:?}");

        // A server of the subset leaves: one in, then one out.
        let inside = s.chosen().into_iter().next().unwrap();
        s.server(Change::Remove(inside.clone()));
        let after = s.update();
        assert!(
            matches!(&after[..], [Change::Insert(..), Change::Remove(gone)] if *gone == inside)
        );
        assert_eq!(s.chosen().len(), 3);
    }

    #[test]
    fn a_changed_instance_of_the_subset_is_inserted_again() {
        let mut s = Subsetter::new(10, "a".into(), Mode::Aperture);
        (0..3).for_each(|i| s.server(server(i)));
        assert_eq!(s.update().len(), 3);
        let mut moved = Instance::new("svc", "127.0.0.1:6000").unwrap();
        moved.id = "0".into();
        s.server(Change::Insert("/services/svc/0".into(), moved.clone()));
        assert!(matches!(&s.update()[..], [Change::Insert(_, i)] if *i == moved));
    }

    #[test]
    fn clients_that_agree_on_the_members_split_the_servers_evenly() {
        let ids: Vec<String> = (0..10).map(|i| format!("host-{}", 977 * i + 13)).collect();
        let mut load = BTreeMap::<String, usize>::new();
        for me in &ids {
            let mut s = Subsetter::new(3, me.clone(), Mode::Aperture);
            (0..10).for_each(|i| s.server(server(i)));
            ids.iter().for_each(|m| s.member(member(m)));
            for identity in s.chosen() {
                *load.entry(identity).or_default() += 1;
            }
        }
        assert_eq!(load.len(), 10);
        assert!(load.values().all(|&n| n == 3), "{load:?}");
    }

    #[test]
    fn the_kept_ring_chooses_as_the_ring_from_scratch() {
        let ids: Vec<String> = (0..7).map(|i| format!("client-{i}")).collect();
        let mut clients: Vec<Subsetter> = ids
            .iter()
            .map(|me| {
                let mut s = Subsetter::new(4, me.clone(), Mode::Aperture);
                ids.iter().for_each(|m| s.member(member(m)));
                s
            })
            .collect();
        let mut live = BTreeSet::new();
        // A deterministic churn: servers join, leave, and are re-put.
        for step in 0..300usize {
            let i = (step * 37) % 41;
            let change = if live.contains(&i) && step % 3 != 0 {
                live.remove(&i);
                Change::Remove(format!("/services/svc/{i}"))
            } else {
                live.insert(i);
                server(i)
            };
            clients.iter_mut().for_each(|s| s.server(change.clone()));
            let servers: Vec<String> = live.iter().map(|i| format!("/services/svc/{i}")).collect();
            let servers: Vec<&str> = servers.iter().map(String::as_str).collect();
            let members: Vec<&str> = ids.iter().map(String::as_str).collect();
            for s in &clients {
                let scratch: BTreeSet<String> = super::super::choose(&servers, &members, &s.me, 4)
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                assert_eq!(s.chosen(), scratch, "step {step}, client {}", s.me);
            }
        }
    }

    #[test]
    fn rendezvous_ignores_the_members() {
        let mut s = Subsetter::new(3, "me".into(), Mode::Rendezvous);
        (0..10).for_each(|i| s.server(server(i)));
        let alone = s.chosen();
        ["x", "y", "z"]
            .into_iter()
            .for_each(|m| s.member(member(m)));
        assert_eq!(s.chosen(), alone);
        assert_eq!(alone.len(), 3);
    }
}

#[cfg(test)]
mod cost {
    use std::time::Instant;

    use super::*;

    /// Measures, at 100,000 servers, what one batch of server changes costs
    /// the subset stage, against recomputing the ring from every server (as
    /// each batch did before the ring was kept).
    /// Run with `cargo test --release --lib subset::task::cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement: run it in release"]
    fn one_batch_at_100k_servers_costs_under_a_tenth_of_a_ring_from_scratch() {
        let n = 100_000;
        let mut s = Subsetter::new(10, "client-42".into(), Mode::Aperture);
        for i in 0..n {
            let instance = Instance::new(
                "svc",
                format!("10.{}.{}.{}:50051", i >> 16, (i >> 8) & 255, i & 255),
            )
            .unwrap();
            s.server(Change::Insert(
                format!("/services/svc/10.0.0.{i}:50051"),
                instance,
            ));
        }
        (0..100).for_each(|m| {
            s.member(Change::Insert(
                format!("/m/{m}"),
                super::super::members::member("svc", &format!("client-{m}")),
            ))
        });
        s.update();
        let mut times = Vec::new();
        for round in 0..21 {
            let gone = format!("/services/svc/10.0.0.{round}:50051");
            let started = Instant::now();
            s.server(Change::Remove(gone));
            let _ = s.update();
            times.push(started.elapsed());
        }
        times.sort();
        let ring_only = {
            let servers: Vec<&str> = s.servers.keys().map(String::as_str).collect();
            let started = Instant::now();
            let ring = super::super::algorithm::ring(servers.iter().copied());
            let took = started.elapsed();
            assert_eq!(ring.len(), n - 21);
            took
        };
        println!(
            "one change at {n} servers: min {:?}, median {:?}, max {:?} (21 batches); a ring from scratch {ring_only:?}",
            times[0], times[10], times[20]
        );
        assert!(
            times[10] * 10 < ring_only,
            "{:?} vs {ring_only:?}",
            times[10]
        );
    }
}
