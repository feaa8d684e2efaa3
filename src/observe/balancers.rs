//! `tonic_etcd_balancer_endpoints` over every balancer of a service in the
//! process: each balancer holds a [`BalancerGauges`], its share of a
//! process-wide table; the gauge of a service and state is the sum of the
//! shares, published on each change of one, and a balancer's share leaves
//! the sum when the balancer is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Endpoints per state, in the order of
/// [`ENDPOINT_STATES`](super::ENDPOINT_STATES).
pub(crate) type Counts = [usize; 4];

/// The shares of the balancers of each service, and their sums.
#[derive(Debug, Default)]
struct Table {
    services: HashMap<String, Service>,
}

#[derive(Debug, Default)]
struct Service {
    shares: HashMap<u64, Counts>,
    sums: Counts,
}

impl Table {
    /// The balancer `id` of `service` now counts `counts`: the new sums.
    fn set(&mut self, service: &str, id: u64, counts: Counts) -> Counts {
        let entry = match self.services.get_mut(service) {
            Some(entry) => entry,
            None => self.services.entry(service.to_owned()).or_default(),
        };
        let old = entry.shares.insert(id, counts).unwrap_or_default();
        for ((sum, old), new) in entry.sums.iter_mut().zip(old).zip(counts) {
            *sum = *sum - old + new;
        }
        entry.sums
    }

    /// The balancer `id` of `service` is gone: the new sums (the service
    /// leaves the table with its last balancer).
    fn remove(&mut self, service: &str, id: u64) -> Counts {
        let Some(entry) = self.services.get_mut(service) else {
            return Counts::default();
        };
        let old = entry.shares.remove(&id).unwrap_or_default();
        for (sum, old) in entry.sums.iter_mut().zip(old) {
            *sum -= old;
        }
        let sums = entry.sums;
        if entry.shares.is_empty() {
            self.services.remove(service);
        }
        sums
    }
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Applies `f` to the table and publishes the sums it returns for
/// `service`, under the table's lock, so that the gauges end with the last
/// sums even when two balancers change at once.
fn publish(service: &str, f: impl FnOnce(&mut Table) -> Counts) {
    let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    let sums = f(table.get_or_insert_with(Table::default));
    for (state, n) in super::ENDPOINT_STATES.into_iter().zip(sums) {
        super::metrics::endpoints(service, state, n);
    }
}

/// One balancer's share of `tonic_etcd_balancer_endpoints`; see the module
/// docs.
#[derive(Debug)]
pub(crate) struct BalancerGauges {
    service: String,
    id: u64,
}

impl BalancerGauges {
    /// The share of a new balancer of `service`, counting nothing until its
    /// first [`set`](Self::set).
    pub(crate) fn new(service: &str) -> BalancerGauges {
        BalancerGauges {
            service: service.to_owned(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The balancer has these many endpoints in each state: its share, and
    /// the gauges of its service, change.
    pub(crate) fn set(&self, counts: Counts) {
        publish(&self.service, |table| {
            table.set(&self.service, self.id, counts)
        });
    }
}

impl Drop for BalancerGauges {
    fn drop(&mut self) {
        publish(&self.service, |table| table.remove(&self.service, self.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sums_add_the_shares_of_a_services_balancers() {
        let mut table = Table::default();
        assert_eq!(table.set("a", 1, [3, 0, 0, 0]), [3, 0, 0, 0]);
        assert_eq!(table.set("a", 2, [2, 1, 0, 0]), [5, 1, 0, 0]);
        assert_eq!(table.set("b", 3, [1, 1, 1, 1]), [1, 1, 1, 1]);
        // A balancer's change replaces its share.
        assert_eq!(table.set("a", 1, [1, 0, 2, 0]), [3, 1, 2, 0]);
        assert_eq!(table.remove("a", 2), [1, 0, 2, 0]);
        assert_eq!(table.remove("a", 1), [0, 0, 0, 0]);
        assert!(
            !table.services.contains_key("a"),
            "gone with its last balancer"
        );
        assert_eq!(
            table.remove("a", 1),
            [0, 0, 0, 0],
            "removing twice is harmless"
        );
        assert_eq!(table.services["b"].sums, [1, 1, 1, 1]);
    }

    #[cfg(feature = "metrics")]
    #[test]
    fn the_gauge_is_the_sum_over_the_balancers_and_forgets_a_dropped_one() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};

        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        // A service of its own: the table is the process's.
        let service = format!("gauges-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
        // One snapshot per look: taking one resets the recorder's values.
        let gauges = || {
            let snapshot = snapshotter.snapshot().into_vec();
            super::super::ENDPOINT_STATES.map(|state| {
                snapshot.iter().find_map(|(key, _, _, value)| {
                    let key = key.key();
                    let labels: Vec<_> = key.labels().map(|l| (l.key(), l.value())).collect();
                    let ours = key.name() == super::super::BALANCER_ENDPOINTS
                        && labels.contains(&("service", service.as_str()))
                        && labels.contains(&("state", state));
                    match value {
                        DebugValue::Gauge(g) if ours => Some(g.into_inner()),
                        _ => None,
                    }
                })
            })
        };
        metrics::with_local_recorder(&recorder, || {
            let first = BalancerGauges::new(&service);
            let second = BalancerGauges::new(&service);
            first.set([2, 1, 0, 0]);
            second.set([3, 0, 1, 0]);
            assert_eq!(gauges(), [Some(5.0), Some(1.0), Some(1.0), Some(0.0)]);
            first.set([0, 0, 0, 2]);
            assert_eq!(
                gauges(),
                [Some(3.0), Some(0.0), Some(1.0), Some(2.0)],
                "the first balancer's change"
            );
            drop(second);
            assert_eq!(
                gauges(),
                [Some(0.0), Some(0.0), Some(0.0), Some(2.0)],
                "the second balancer dropped"
            );
            drop(first);
            assert_eq!(gauges(), [Some(0.0); 4], "both dropped");
        });
    }
}
