//! The endpoint set of a balancer: one [`Entry`] per instance, sorted by key,
//! and what the pickers read (the ready targets, the weights).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::AbortHandle;
use tonic::transport::{Channel, Endpoint};

use super::load::{PeakEwma, DEFAULT_RTT};
use super::picker::RoundRobin;
use super::target::Target;
use crate::instance::Instance;

/// One instance of the set.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) instance: Instance,
    pub(super) endpoint: Endpoint,
    pub(super) target: Arc<Target>,
    /// The probe of an ejected endpoint; `None` while it is ready.
    pub(super) probe: Option<AbortHandle>,
}

impl Entry {
    pub(super) fn ready(&self) -> bool {
        self.probe.is_none() && self.target.health.admits()
    }

    /// Connected (not probed), whatever its answers say: what panic mode
    /// routes to.
    pub(super) fn connected(&self) -> bool {
        self.probe.is_none()
    }
}

/// The endpoints, sorted by key, and the pickers' state.
#[derive(Debug, Default)]
pub(super) struct Set {
    pub(super) entries: BTreeMap<String, Entry>,
    /// The targets of the ready entries, in key order: what every policy
    /// picks from without looking anything up.
    pub(super) ready: Vec<Arc<Target>>,
    /// `(weight, current)` of each ready target, in the same order: the
    /// smooth weighted round robin state.
    pub(super) weights: Vec<(u32, i64)>,
    pub(super) round_robin: RoundRobin,
    next_epoch: u64,
    /// Route to the connected endpoints when none is ready (all ejected or
    /// unhealthy).
    pub(super) panic_mode: bool,
    /// Whether the ready list is panic mode's.
    pub(super) panicking: bool,
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

    /// A new target for `key` on `channel`, with a new epoch.
    pub(super) fn target(
        &mut self,
        key: &str,
        instance: &Instance,
        channel: Channel,
    ) -> Arc<Target> {
        let load = PeakEwma::new(self.peer_rtt());
        let epoch = self.epoch();
        Arc::new(Target::new(
            key.to_owned(),
            instance.addr.clone(),
            channel,
            load,
            epoch,
        ))
    }

    /// Recomputes the ready list after any change, and restarts the weighted
    /// rotation so that it follows the new weights exactly.
    pub(super) fn rebuild(&mut self) {
        let mut ready: Vec<&Entry> = self.entries.values().filter(|e| e.ready()).collect();
        self.panicking = false;
        if ready.is_empty() && self.panic_mode {
            ready = self.entries.values().filter(|e| e.connected()).collect();
            self.panicking = !ready.is_empty();
        }
        let ready = ready.into_iter();
        self.ready = ready.clone().map(|entry| entry.target.clone()).collect();
        self.weights = ready
            .map(|entry| (entry.instance.weight.max(1), 0))
            .collect();
    }

    /// Removes `key`, stopping its probe; whether it was there.
    pub(super) fn remove(&mut self, key: &str) -> bool {
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
