//! [`Shared`]: what every clone of a balancer, its tasks and its requests
//! share: the policy, the endpoint template, the endpoint set, and the rules
//! that change it. (About 490 lines: the batch apply, the removal grace and
//! the connect-failure ejection all take the one lock; ejections for answers
//! live in `exclusion.rs`, slow start's ramps in `slow_start.rs`.)
//!
//! ```text
//! Insert ──► Ready ──(connect error on a request)──► Unreachable ──(probe connects)──► Ready
//!              ▲                                        │ probe: connect with backoff
//!              └──── Insert with a new address ◄────────┘ Remove: probe aborted
//! ```
//!
//! Outlier ejections and health verdicts take endpoints out too, as
//! [`Exclusion`]s of the set (see `exclusion`); when they have taken out
//! every connected endpoint, panic mode routes to them (a slower pick, see
//! [`Set::pick_panic`]). A batch of changes whose removals would leave no
//! ready endpoint defers the removal of the last ready one for the removal
//! grace: a batch with an `Insert` meanwhile (the instance coming back, or
//! another one) ends the wait.

use std::collections::{HashMap, HashSet};
use std::error::Error as StdError;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::AbortHandle;
use tonic::transport::{Channel, Endpoint};
use tower::discover::Change;
use tracing::{info, info_span, warn, Instrument};

use super::hash_key::Hashing;
use super::health_wiring;
use super::locality::Locality;
use super::outlier::OutlierDetection;
use super::pick::{Flight, InFlight, Pick};
use super::policy::Policy;
use super::set::{Exclusion, Set};
use super::slow_start::SlowStart;
use super::status::{EndpointState, EndpointStatus};
use super::target::Target;
use super::tasks::probe;
use crate::error::ErrorChain;
use crate::error::Result;
use crate::instance::Instance;

/// Turns an instance into the tonic endpoint to connect to. It runs when the
/// instance joins, to refuse it if it cannot, and again on its first pick
/// and on each probe attempt (an idle target holds no endpoint, see
/// `target`): it must be a pure function of the instance.
pub(super) type Template = Arc<dyn Fn(&Instance) -> Result<Endpoint> + Send + Sync>;

/// The request-level health options of a balancer (see the builder).
#[derive(Debug, Clone)]
pub(super) struct Options {
    pub(super) outlier: OutlierDetection,
    pub(super) panic_mode: bool,
    /// The service name of the health checks; `None` without.
    pub(super) health_check: Option<String>,
    pub(super) removal_grace: Duration,
    /// Consistent hashing's key header, load factor and ring size.
    pub(super) hashing: Hashing,
    /// Locality-aware routing; `None` without.
    pub(super) locality: Option<Locality>,
    /// Slow start; `None` without.
    pub(super) slow_start: Option<SlowStart>,
}

/// How long a removal that would leave no ready endpoint waits by default.
pub(super) const REMOVAL_GRACE: Duration = Duration::from_secs(1);

impl Default for Options {
    fn default() -> Self {
        Self {
            outlier: OutlierDetection::new(),
            panic_mode: true,
            health_check: None,
            removal_grace: REMOVAL_GRACE,
            hashing: Hashing::default(),
            locality: None,
            slow_start: None,
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
    options: Options,
    runtime: tokio::runtime::Handle,
    set: Mutex<Set>,
    /// Removals waiting for the grace, by key.
    pending_removals: Mutex<HashMap<String, AbortHandle>>,
    /// Bumped on every change of the ready list, for requests waiting for an
    /// endpoint.
    generation: watch::Sender<u64>,
    /// Its share of the endpoint gauges of its service.
    gauges: crate::observe::BalancerGauges,
    /// Requests in flight, counted under consistent hashing only.
    in_flight: InFlight,
    /// Wakes the driver's ramp steps when an endpoint starts ramping.
    ramping: Notify,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.lock();
        f.debug_struct("Shared")
            .field("service", &self.service)
            .field("policy", &self.policy)
            .field("wait", &self.wait)
            .field("endpoints", &set.entries.len())
            .field("ready", &set.ready_len())
            .finish()
    }
}

impl Shared {
    /// Must be called inside a tokio runtime, whose handle the probes use.
    pub(super) fn new(service: String, policy: Policy, template: Template, wait: Duration) -> Self {
        Self::with_options(service, policy, template, wait, Options::default())
    }

    /// As `new`, with the request-level health options.
    pub(super) fn with_options(
        service: String,
        policy: Policy,
        template: Template,
        wait: Duration,
        options: Options,
    ) -> Self {
        let runtime = tokio::runtime::Handle::current();
        let mut set = Set::new(policy, runtime.clone());
        set.panic_mode = options.panic_mode;
        // `route` makes the groups that `hashing` then sets up.
        set.route(policy, options.locality.clone(), options.slow_start.clone());
        set.hashing(options.hashing.vnodes, options.hashing.factor);
        Self {
            gauges: crate::observe::BalancerGauges::new(&service),
            service,
            policy,
            template,
            wait,
            options,
            runtime,
            set: Mutex::new(set),
            pending_removals: Mutex::new(HashMap::new()),
            generation: watch::Sender::new(0),
            in_flight: InFlight::default(),
            ramping: Notify::new(),
        }
    }

    pub(super) fn outlier(&self) -> &OutlierDetection {
        &self.options.outlier
    }

    pub(super) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    fn pending_removals(&self) -> MutexGuard<'_, HashMap<String, AbortHandle>> {
        self.pending_removals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Set> {
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

    /// Tells waiting requests and the endpoint gauges; called with the lock
    /// held, once per batch.
    pub(super) fn changed(&self, set: &mut Set) {
        set.settle();
        let (unreachable, unhealthy) = set.unreachable_and_unhealthy();
        self.gauges
            .set([set.ready_len(), unreachable, set.ejected_len(), unhealthy]);
        self.generation.send_modify(|g| *g += 1);
        if set.ramping().is_some() {
            self.ramping.notify_one();
        }
    }

    /// Whether slow start is on.
    pub(super) fn slow_start(&self) -> bool {
        self.options.slow_start.is_some()
    }

    /// Waits until some endpoint ramps up (slow start); then the step
    /// between two [`ramp_step`](Self::ramp_step)s.
    pub(super) async fn ramp_started(&self) -> Duration {
        loop {
            if let Some(step) = self.lock().ramping() {
                return step;
            }
            self.ramping.notified().await;
        }
    }

    /// Steps the ramping weights to now; whether some still ramp.
    pub(super) fn ramp_step(&self) -> bool {
        self.lock().ramp_step(Instant::now())
    }

    /// How many endpoints are known and how many of them are not ready.
    pub(super) fn counts(&self) -> (usize, usize) {
        let set = self.lock();
        (set.len(), set.len() - set.ready_len())
    }

    pub(super) fn statuses(&self) -> Vec<EndpointStatus> {
        let set = self.lock();
        let panicking = set.panicking();
        set.entries
            .iter()
            .map(|(key, entry)| {
                let health = &entry.target.health;
                let (state, mut reason) = if entry.is_excluded(Exclusion::Unreachable) {
                    (EndpointState::Connecting, health.unreachable())
                } else if entry.is_excluded(Exclusion::Ejected) {
                    (
                        EndpointState::Ejected,
                        health.ejection().map(|ejection| ejection.reason()),
                    )
                } else if entry.is_excluded(Exclusion::Unhealthy) {
                    (EndpointState::Unhealthy, health.unhealthy())
                } else {
                    (EndpointState::Ready, None)
                };
                let routed = entry.ready() || (panicking && entry.panic_eligible());
                if routed && state != EndpointState::Ready {
                    if let Some(reason) = &mut reason {
                        reason.push_str("; routed anyway: panic mode");
                    }
                }
                let (requests, failures) = health.counts();
                EndpointStatus {
                    key: key.clone(),
                    instance: Instance::clone(&entry.instance),
                    ready: routed,
                    state,
                    reason,
                    requests,
                    failures,
                    in_flight: entry.target.load.in_flight(),
                    latency: entry.target.load.rtt(),
                }
            })
            .collect()
    }

    /// Picks a ready endpoint by the policy, skipping the targets whose epochs
    /// are in `tried`; in panic mode, when none is ready, one excluded only
    /// for its answers.
    pub(super) fn pick(&self, tried: &[u64]) -> Option<Arc<Target>> {
        self.pick_with(Pick::default(), tried)
    }

    /// [`pick`](Self::pick) for a request's [`Pick`] (from
    /// [`request_pick`](Self::request_pick)).
    pub(super) fn pick_with(&self, mut pick: Pick, tried: &[u64]) -> Option<Arc<Target>> {
        if pick.key.is_some() {
            pick.in_flight = self.in_flight.get();
        }
        let mut set = self.lock();
        set.pick_with(&pick, tried)
            .or_else(|| set.pick_panic(tried))
    }

    /// What the picks of `request` go by: its hashed key under consistent
    /// hashing (hashed here, once per request), nothing otherwise.
    pub(super) fn request_pick<B>(&self, request: &http::Request<B>) -> Pick {
        match self.policy {
            Policy::ConsistentHash => Pick::keyed(self.options.hashing.key_of(request)),
            _ => Pick::default(),
        }
    }

    /// The attempts in flight counted by [`flight`](Self::flight).
    #[cfg(test)]
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// Counts one attempt in flight until the guard is dropped, under
    /// consistent hashing (its load bound reads the count).
    pub(super) fn flight(&self) -> Option<Flight> {
        (self.policy == Policy::ConsistentHash).then(|| self.in_flight.start())
    }

    /// Applies one discovery change.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) fn apply(self: &Arc<Self>, change: Change<String, Instance>) {
        self.apply_batch(vec![change]);
    }

    /// Applies a batch of discovery changes (the last of each key wins) with
    /// one notification of waiting requests: O(k log n) for k changes. The
    /// removal grace is decided per batch, in O(k) (see the module docs).
    pub(super) fn apply_batch(self: &Arc<Self>, mut changes: Vec<Change<String, Instance>>) {
        self.grace(&mut changes);
        let plan = self.lock().plan(changes);
        let mut changed = plan.changed;
        // The user's template runs without the lock held, to refuse the
        // instances it cannot make an endpoint of. Only the driver
        // inserts and removes, so the entries cannot change meanwhile.
        let mut built = Vec::with_capacity(plan.fresh.len());
        let mut refused = Vec::new();
        for (key, instance) in plan.fresh {
            // The endpoint itself is built again on the first pick (see
            // `target`): an idle one holds none.
            match (self.template)(&instance) {
                Ok(_) => built.push((key, instance)),
                Err(error) => {
                    warn!(%key, addr = %instance.addr, %error, "cannot build an endpoint; instance left out");
                    refused.push(key);
                }
            }
        }
        let mut set = self.lock();
        for key in refused {
            changed |= set.remove(&key);
        }
        if !built.is_empty() {
            let rtt = set.peer_rtt();
            // Slow start: the endpoints there at the start, or joining an
            // empty set, take no traffic from anyone; they do not ramp.
            let warm = set.ready_len() > 0;
            for (key, instance) in built {
                let target = set.insert(key, instance, self.template.clone(), rtt);
                if warm {
                    set.ramp_up(&target.key, Instant::now());
                }
                self.attach(&target);
            }
            changed = true;
        }
        if changed {
            self.changed(&mut set);
        }
    }

    /// The removal grace, on a batch: with an `Insert` in it, the removals
    /// that waited take effect with it (but not those of keys it changes);
    /// without, if its removals would take out every ready endpoint, the
    /// last ready one is kept for the grace.
    fn grace(self: &Arc<Self>, changes: &mut Vec<Change<String, Instance>>) {
        let grace = self.options.removal_grace;
        if changes
            .iter()
            .any(|change| matches!(change, Change::Insert(..)))
        {
            let waiting: Vec<String> = self
                .pending_removals()
                .drain()
                .map(|(pending, timer)| {
                    timer.abort();
                    pending
                })
                .collect();
            if waiting.is_empty() {
                return;
            }
            let named: HashSet<&str> = changes.iter().map(change_key).collect();
            let waiting: Vec<String> = waiting
                .into_iter()
                .filter(|pending| !named.contains(pending.as_str()))
                .collect();
            changes.extend(waiting.into_iter().map(Change::Remove));
            return;
        }
        if grace.is_zero() {
            return;
        }
        let last = {
            let set = self.lock();
            let mut removed = HashSet::new();
            let mut last = None;
            for change in changes.iter() {
                if let Change::Remove(key) = change {
                    if set.entries.get(key).is_some_and(|entry| entry.ready())
                        && removed.insert(key.as_str())
                    {
                        last = Some(key.clone());
                    }
                }
            }
            match last {
                Some(last) if set.ready_len() > 0 && removed.len() == set.ready_len() => last,
                _ => return,
            }
        };
        changes.retain(|change| !matches!(change, Change::Remove(key) if *key == last));
        info!(
            service = %self.service,
            endpoint = %last,
            reason = %format_args!("removed, but it is the last ready endpoint: kept for {grace:?} in case one comes"),
            "endpoint removal deferred"
        );
        let shared = Arc::downgrade(self);
        let timer_key = last.clone();
        let timer = self.runtime.spawn(async move {
            tokio::time::sleep(grace).await;
            if let Some(shared) = shared.upgrade() {
                if shared.pending_removals().remove(&timer_key).is_some() {
                    shared.remove_now(&timer_key);
                }
            }
        });
        if let Some(old) = self.pending_removals().insert(last, timer.abort_handle()) {
            old.abort();
        }
    }

    fn remove_now(&self, key: &str) {
        let mut set = self.lock();
        if set.remove(key) {
            info!(service = %self.service, endpoint = %key, reason = "removed from the change stream", "endpoint removed");
            self.changed(&mut set);
        }
    }

    /// Takes `target` out of the picks after its connection failed, and
    /// probes it in the background until it connects again. Does nothing if
    /// the endpoint is unreachable already, or has been replaced or removed.
    pub(super) fn eject(self: &Arc<Self>, target: &Target, error: &(dyn StdError + 'static)) {
        let mut set = self.lock();
        let Some(entry) = set.entries.get_mut(&target.key) else {
            return;
        };
        if entry.target.epoch != target.epoch || entry.is_excluded(Exclusion::Unreachable) {
            return;
        }
        let reason = format!("cannot connect: {}", ErrorChain(error));
        warn!(
            service = %self.service,
            endpoint = %target.key,
            addr = %target.addr(),
            %reason,
            "endpoint unreachable; probing it in the background"
        );
        entry.target.health.set_unreachable(reason);
        let span = info_span!(parent: None, "probe", service = %self.service, key = %target.key, addr = %target.addr());
        let probe = probe(Arc::downgrade(self), entry.target.clone());
        entry.probe = Some(self.runtime.spawn(probe.instrument(span)).abort_handle());
        set.exclude(&target.key, Exclusion::Unreachable);
        crate::observe::ejected(&self.service, target.addr(), "connect_error");
        self.changed(&mut set);
    }

    /// Puts an unreachable endpoint back with the channel its probe
    /// connected: a new target, whose answers start afresh.
    pub(super) fn restore(self: &Arc<Self>, key: &str, epoch: u64, channel: Channel) {
        let mut set = self.lock();
        let addr = match set.entries.get_mut(key) {
            Some(entry)
                if entry.target.epoch == epoch && entry.is_excluded(Exclusion::Unreachable) =>
            {
                entry.probe = None;
                entry.instance.addr.clone()
            }
            _ => return,
        };
        if let Some(target) = set.reconnect(key, channel) {
            self.attach(&target);
        }
        set.include(key, Exclusion::Unreachable);
        info!(service = %self.service, endpoint = %key, addr = %addr, reason = "connected again", "endpoint back");
        self.changed(&mut set);
    }

    /// Starts the health checks of a new target, if they are on (its
    /// channel is then made at once: the checks need a connection).
    fn attach(self: &Arc<Self>, target: &Arc<Target>) {
        if let Some(service) = &self.options.health_check {
            let task = health_wiring::spawn(self, target, service.clone());
            target.health.set_watch(task);
        }
    }

    /// Forgets every endpoint and stops every probe.
    pub(super) fn clear(&self) {
        for (_, timer) in self.pending_removals().drain() {
            timer.abort();
        }
        let mut set = self.lock();
        let keys: Vec<String> = set.entries.keys().cloned().collect();
        for key in keys {
            set.remove(&key);
        }
        self.changed(&mut set);
    }
}

/// The key a change is about.
fn change_key(change: &Change<String, Instance>) -> &str {
    match change {
        Change::Insert(key, _) | Change::Remove(key) => key,
    }
}

#[cfg(test)]
mod tests;
