//! The endpoint set of a balancer: one lazily connected [`Channel`] per
//! discovered instance, its state (ready or ejected), and the tasks that keep
//! it current: the driver (discovery changes) and the probes (ejected
//! endpoints).
//!
//! ```text
//! Insert ──► Ready ──(connect error on a request)──► Ejected ──(probe connects)──► Ready
//!              ▲                                        │ probe: connect with backoff
//!              └──── Insert with a new address ◄────────┘ Remove: probe aborted
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use tokio::sync::{oneshot, watch};
use tokio::task::AbortHandle;
use tonic::transport::{Channel, Endpoint};
use tower::discover::Change;
use tracing::{debug, info, info_span, warn, Instrument};

use super::load::{PeakEwma, DEFAULT_RTT};
use super::picker::{p2c, smooth_weighted, RoundRobin};
use super::{EndpointStatus, Policy, Template};
use crate::backoff::Backoff;
use crate::discovery::InstanceChanges;
use crate::instance::Instance;

/// First and longest pause between two connection attempts to an ejected
/// endpoint.
const PROBE_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// How many used clones of an endpoint's channel are kept for the next
/// requests. A clone is only held between asking the channel for room and
/// handing it the request, so a few cover any number of requests in flight.
const IDLE_CLONES: usize = 8;

/// What one request uses of an endpoint: its channel and load, and the epoch
/// that tells a failure of this channel from one of its replacement.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) key: String,
    pub(super) addr: String,
    pub(super) channel: Channel,
    pub(super) load: Arc<PeakEwma>,
    pub(super) epoch: u64,
    /// Clones of `channel` that have sent a request before. A fresh clone of
    /// tonic's channel allocates on its first use and bumps shared counters;
    /// a used one costs nothing more, so requests borrow them.
    idle: Mutex<Vec<Channel>>,
}

impl Target {
    /// A clone of the channel for one request: a used one when there is one.
    pub(super) fn borrow_channel(&self) -> Channel {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        idle.unwrap_or_else(|| self.channel.clone())
    }

    /// Gives back a clone from [`borrow_channel`](Self::borrow_channel) once
    /// it has taken its request (not while it waits for room: a clone that
    /// holds a slot of the channel's buffer must not be shared).
    pub(super) fn return_channel(&self, channel: Channel) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_CLONES {
            idle.push(channel);
        }
    }
}

/// One discovered instance.
#[derive(Debug)]
struct Entry {
    instance: Instance,
    endpoint: Endpoint,
    target: Arc<Target>,
    /// The probe of an ejected endpoint; `None` while it is ready.
    probe: Option<AbortHandle>,
}

impl Entry {
    fn ready(&self) -> bool {
        self.probe.is_none()
    }
}

/// The endpoints, sorted by key, and the pickers' state.
#[derive(Debug, Default)]
struct Set {
    entries: BTreeMap<String, Entry>,
    /// The targets of the ready entries, in key order: what every policy
    /// picks from without looking anything up.
    ready: Vec<Arc<Target>>,
    /// `(weight, current)` of each ready target, in the same order: the
    /// smooth weighted round robin state.
    weights: Vec<(u32, i64)>,
    round_robin: RoundRobin,
    next_epoch: u64,
}

impl Set {
    fn epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    /// The mean response time estimate of the ready endpoints: a new endpoint
    /// starts as an average peer, neither flooded nor starved by p2c.
    fn peer_rtt(&self) -> Duration {
        let rtts: Vec<Duration> = self
            .entries
            .values()
            .filter(|entry| entry.ready())
            .map(|entry| entry.target.load.rtt())
            .collect();
        match u32::try_from(rtts.len()) {
            Ok(n) if n > 0 => rtts.iter().sum::<Duration>() / n,
            _ => DEFAULT_RTT,
        }
    }

    fn target(&mut self, key: &str, instance: &Instance, channel: Channel) -> Arc<Target> {
        Arc::new(Target {
            key: key.to_owned(),
            addr: instance.addr.clone(),
            channel,
            load: Arc::new(PeakEwma::new(self.peer_rtt())),
            epoch: self.epoch(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Recomputes the ready list after any change, and restarts the weighted
    /// rotation so that it follows the new weights exactly.
    fn rebuild(&mut self) {
        let ready = self.entries.values().filter(|entry| entry.ready());
        self.ready = ready.clone().map(|entry| entry.target.clone()).collect();
        self.weights = ready
            .map(|entry| (entry.instance.weight.max(1), 0))
            .collect();
    }

    fn remove(&mut self, key: &str) -> bool {
        match self.entries.remove(key) {
            Some(entry) => {
                if let Some(probe) = entry.probe {
                    probe.abort();
                }
                true
            }
            None => false,
        }
    }
}

/// What every clone of a balancer, its driver, its probes and its requests
/// share.
pub(super) struct Shared {
    service: String,
    policy: Policy,
    template: Template,
    wait: Duration,
    runtime: tokio::runtime::Handle,
    set: Mutex<Set>,
    /// Bumped on every change of the ready list, for requests waiting for an
    /// endpoint.
    generation: watch::Sender<u64>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.lock();
        f.debug_struct("Shared")
            .field("service", &self.service)
            .field("policy", &self.policy)
            .field("wait", &self.wait)
            .field("endpoints", &set.entries.len())
            .field("ready", &set.ready.len())
            .finish()
    }
}

impl Shared {
    /// Must be called inside a tokio runtime, whose handle the probes use.
    pub(super) fn new(service: String, policy: Policy, template: Template, wait: Duration) -> Self {
        Self {
            service,
            policy,
            template,
            wait,
            runtime: tokio::runtime::Handle::current(),
            set: Mutex::new(Set::default()),
            generation: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Set> {
        // Every method leaves the set consistent before it can panic.
        self.set.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn service(&self) -> &str {
        &self.service
    }

    pub(super) fn policy(&self) -> Policy {
        self.policy
    }

    pub(super) fn wait(&self) -> Duration {
        self.wait
    }

    /// A receiver that sees every later change of the ready list.
    pub(super) fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn changed(&self, set: &mut Set) {
        set.rebuild();
        self.generation.send_modify(|g| *g += 1);
    }

    /// How many endpoints are known and how many of them are ejected.
    pub(super) fn counts(&self) -> (usize, usize) {
        let set = self.lock();
        (set.entries.len(), set.entries.len() - set.ready.len())
    }

    pub(super) fn statuses(&self) -> Vec<EndpointStatus> {
        self.lock()
            .entries
            .iter()
            .map(|(key, entry)| EndpointStatus {
                key: key.clone(),
                instance: entry.instance.clone(),
                ready: entry.ready(),
            })
            .collect()
    }

    /// Picks a ready endpoint by the policy, skipping the targets whose epochs
    /// are in `tried`.
    pub(super) fn pick(&self, tried: &[u64]) -> Option<Arc<Target>> {
        let mut guard = self.lock();
        let Set {
            ready,
            weights,
            round_robin,
            ..
        } = &mut *guard;
        let untried = |index: usize| tried.is_empty() || !tried.contains(&ready[index].epoch);
        let index = match self.policy {
            Policy::RoundRobin | Policy::P2c => {
                // Every request starts with nothing tried: pick from the ready
                // list itself, without allocating.
                let candidates: Cow<'_, [Arc<Target>]> = if tried.is_empty() {
                    Cow::Borrowed(ready)
                } else {
                    ready
                        .iter()
                        .filter(|target| !tried.contains(&target.epoch))
                        .cloned()
                        .collect()
                };
                let index = if self.policy == Policy::RoundRobin {
                    round_robin.pick(candidates.len())
                } else {
                    let now = std::time::Instant::now();
                    p2c(
                        candidates.len(),
                        |i| candidates[i].load.cost(now),
                        &mut rand::rng(),
                    )
                }?;
                return Some(candidates[index].clone());
            }
            Policy::Weighted => smooth_weighted(weights, |index| !untried(index))?,
        };
        Some(ready[index].clone())
    }

    /// Applies one discovery change.
    fn apply(self: &Arc<Self>, change: Change<String, Instance>) {
        let (key, instance) = match change {
            Change::Insert(key, instance) => (key, instance),
            Change::Remove(key) => {
                let mut set = self.lock();
                if set.remove(&key) {
                    debug!(%key, "endpoint removed");
                    self.changed(&mut set);
                }
                return;
            }
        };
        {
            let mut set = self.lock();
            if let Some(entry) = set.entries.get_mut(&key) {
                let mut reweighted = entry.instance.clone();
                reweighted.weight = instance.weight;
                if reweighted == instance {
                    // Same endpoint: keep its connection (and its ejection).
                    if entry.instance.weight != instance.weight {
                        debug!(%key, weight = instance.weight, "weight changed");
                        entry.instance = instance;
                        self.changed(&mut set);
                    }
                    return;
                }
            }
        }
        // The user's template runs without the lock held. Only this task
        // inserts and removes, so the entry cannot change meanwhile.
        let (channel, endpoint) = match (self.template)(&instance) {
            Ok(endpoint) => (endpoint.connect_lazy(), endpoint),
            Err(error) => {
                warn!(%key, addr = %instance.addr, %error, "cannot build an endpoint; instance left out");
                let mut set = self.lock();
                if set.remove(&key) {
                    self.changed(&mut set);
                }
                return;
            }
        };
        let mut set = self.lock();
        set.remove(&key);
        let target = set.target(&key, &instance, channel);
        debug!(%key, addr = %instance.addr, weight = instance.weight, "endpoint inserted");
        set.entries.insert(
            key,
            Entry {
                instance,
                endpoint,
                target,
                probe: None,
            },
        );
        self.changed(&mut set);
    }

    /// Takes `target` out of the ready list after its connection failed, and
    /// probes it in the background until it connects again. Does nothing if
    /// the endpoint has since been ejected, replaced or removed.
    pub(super) fn eject(self: &Arc<Self>, target: &Target, error: &(dyn StdError + 'static)) {
        let mut set = self.lock();
        let Some(entry) = set.entries.get_mut(&target.key) else {
            return;
        };
        if entry.target.epoch != target.epoch || !entry.ready() {
            return;
        }
        warn!(
            key = %target.key,
            addr = %target.addr,
            error = %chain(error),
            "cannot connect; endpoint ejected, probing it in the background"
        );
        let span = info_span!(parent: None, "probe", service = %self.service, key = %target.key, addr = %target.addr);
        let probe = probe(
            Arc::downgrade(self),
            target.key.clone(),
            target.epoch,
            entry.endpoint.clone(),
        );
        entry.probe = Some(self.runtime.spawn(probe.instrument(span)).abort_handle());
        self.changed(&mut set);
    }

    /// Puts an ejected endpoint back with the channel its probe connected.
    fn restore(&self, key: &str, epoch: u64, channel: Channel) {
        let mut set = self.lock();
        let instance = match set.entries.get(key) {
            Some(entry) if entry.target.epoch == epoch && !entry.ready() => entry.instance.clone(),
            _ => return,
        };
        let target = set.target(key, &instance, channel);
        let entry = set.entries.get_mut(key).expect("checked above");
        entry.target = target;
        entry.probe = None;
        info!(%key, addr = %instance.addr, "connected again; endpoint back");
        self.changed(&mut set);
    }

    /// Forgets every endpoint and stops every probe.
    fn clear(&self) {
        let mut set = self.lock();
        let keys: Vec<String> = set.entries.keys().cloned().collect();
        for key in keys {
            set.remove(&key);
        }
        self.changed(&mut set);
    }

    /// Applies the changes already queued in `discovered`, so that a balancer
    /// knows the instances of the initial Get as soon as it exists.
    pub(super) fn apply_queued(self: &Arc<Self>, discovered: &mut InstanceChanges) {
        while let Some(Some(change)) = discovered.next().now_or_never() {
            self.apply(change);
        }
    }
}

/// The driver: applies each discovery change as soon as it arrives, whether
/// or not requests flow, until `stop` fires (every balancer clone is gone).
pub(super) async fn drive(
    shared: Arc<Shared>,
    mut discovered: InstanceChanges,
    mut stop: oneshot::Receiver<()>,
) {
    let mut discovering = true;
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            change = discovered.next(), if discovering => match change {
                Some(change) => shared.apply(change),
                None => {
                    // Only if the discovery task died: keep the set as it is.
                    warn!("discovery ended; the endpoint set will not change any more");
                    discovering = false;
                }
            },
        }
    }
    shared.clear();
    debug!("every clone of the balancer is gone; driver stopped");
}

/// Connects to an ejected endpoint with backoff until it answers, then puts it
/// back. Aborted when the endpoint is removed or replaced.
async fn probe(shared: Weak<Shared>, key: String, epoch: u64, endpoint: Endpoint) {
    let mut backoff = Backoff::new(PROBE_BACKOFF.0, PROBE_BACKOFF.1);
    loop {
        tokio::time::sleep(backoff.next_delay()).await;
        match endpoint.connect().await {
            Ok(channel) => {
                if let Some(shared) = shared.upgrade() {
                    shared.restore(&key, epoch, channel);
                }
                return;
            }
            Err(error) => {
                debug!(attempts = backoff.attempts(), error = %chain(&error), "still cannot connect");
                if shared.strong_count() == 0 {
                    return;
                }
            }
        }
    }
}

/// An error and its sources, `outer: inner: root`, skipping repeats.
pub(super) fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::default_endpoint;

    fn shared(policy: Policy) -> Arc<Shared> {
        Arc::new(Shared::new(
            "svc".into(),
            policy,
            Arc::new(default_endpoint),
            Duration::ZERO,
        ))
    }

    /// An instance at a port nothing listens on: the channels are lazy, so
    /// nothing connects unless a probe does.
    fn instance(port: u16, weight: u32) -> Instance {
        Instance::new("svc", format!("127.0.0.1:{port}"))
            .unwrap()
            .with_weight(weight)
    }

    fn insert(shared: &Arc<Shared>, key: &str, port: u16, weight: u32) {
        shared.apply(Change::Insert(key.into(), instance(port, weight)));
    }

    fn picks(shared: &Shared, n: usize) -> String {
        (0..n)
            .map(|_| shared.pick(&[]).map_or("-".into(), |t| t.key.clone()))
            .collect()
    }

    fn ready(shared: &Shared) -> String {
        shared
            .statuses()
            .iter()
            .filter(|s| s.ready)
            .map(|s| s.key.clone())
            .collect()
    }

    #[tokio::test]
    async fn round_robin_rotates_in_key_order_and_follows_changes() {
        let shared = shared(Policy::RoundRobin);
        assert_eq!(picks(&shared, 1), "-");
        insert(&shared, "c", 1, 1);
        insert(&shared, "a", 2, 1);
        insert(&shared, "b", 3, 1);
        assert_eq!(picks(&shared, 6), "abcabc");
        shared.apply(Change::Remove("b".into()));
        assert_eq!(picks(&shared, 4), "acac");
        assert_eq!(shared.counts(), (2, 0));
    }

    #[tokio::test]
    async fn weighted_follows_weight_changes_on_the_same_connection() {
        let shared = shared(Policy::Weighted);
        insert(&shared, "a", 1, 5);
        insert(&shared, "b", 2, 1);
        insert(&shared, "c", 3, 1);
        assert_eq!(picks(&shared, 9), "aabacaaaa");
        let before = shared.lock().entries["a"].target.clone();
        // Only the weight changes: same target, rotation restarted.
        insert(&shared, "a", 1, 1);
        assert_eq!(picks(&shared, 3), "abc");
        assert!(Arc::ptr_eq(&shared.lock().entries["a"].target, &before));
        // A new address is a new endpoint.
        insert(&shared, "a", 9, 1);
        let after = shared.lock().entries["a"].target.clone();
        assert_ne!(after.epoch, before.epoch);
        assert_eq!(after.addr, "127.0.0.1:9");
        assert_eq!(picks(&shared, 3), "abc");
    }

    #[tokio::test]
    async fn an_ejected_endpoint_is_skipped_until_removed_or_replaced() {
        let shared = shared(Policy::RoundRobin);
        insert(&shared, "a", 1, 1);
        insert(&shared, "b", 2, 1);
        let a = shared.lock().entries["a"].target.clone();
        let changes = shared.changes();
        shared.eject(&a, &std::io::Error::other("refused"));
        assert!(changes.has_changed().unwrap(), "waiting requests are told");
        assert_eq!(ready(&shared), "b");
        assert_eq!(shared.counts(), (2, 1));
        assert_eq!(picks(&shared, 3), "bbb");
        // A second failure of the same connection changes nothing.
        shared.eject(&a, &std::io::Error::other("refused"));
        assert_eq!(shared.counts(), (2, 1));
        // A weight change keeps it ejected; a new address makes it ready.
        insert(&shared, "a", 1, 3);
        assert_eq!(ready(&shared), "b");
        insert(&shared, "a", 7, 3);
        assert_eq!(ready(&shared), "ab");
        // A failure of the old connection does not eject the new one.
        shared.eject(&a, &std::io::Error::other("late"));
        assert_eq!(ready(&shared), "ab");
        // Tried targets are skipped.
        let b = shared.lock().entries["b"].target.clone();
        assert_eq!(shared.pick(&[b.epoch]).unwrap().key, "a");
    }

    #[tokio::test]
    async fn removing_an_ejected_endpoint_stops_its_probe() {
        let shared = shared(Policy::RoundRobin);
        insert(&shared, "a", 1, 1);
        let a = shared.lock().entries["a"].target.clone();
        shared.eject(&a, &std::io::Error::other("refused"));
        let probe = shared.lock().entries["a"].probe.clone().unwrap();
        assert!(!probe.is_finished());
        shared.apply(Change::Remove("a".into()));
        tokio::time::timeout(Duration::from_secs(5), async {
            while !probe.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the probe was aborted");
        assert_eq!(shared.counts(), (0, 0));
    }

    #[tokio::test]
    async fn a_restored_endpoint_is_ready_with_a_new_connection() {
        let shared = shared(Policy::RoundRobin);
        insert(&shared, "a", 1, 1);
        let a = shared.lock().entries["a"].target.clone();
        shared.eject(&a, &std::io::Error::other("refused"));
        let channel = default_endpoint(&instance(1, 1)).unwrap().connect_lazy();
        // A stale probe (old epoch) cannot restore.
        shared.restore("a", a.epoch + 100, channel.clone());
        assert_eq!(ready(&shared), "");
        shared.restore("a", a.epoch, channel);
        assert_eq!(ready(&shared), "a");
        assert_ne!(shared.pick(&[]).unwrap().epoch, a.epoch);
    }
}
