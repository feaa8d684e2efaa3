//! Taking an endpoint out of rotation for its answers, and back: outlier
//! ejections (with the cap on ejected endpoints and the readmission timer)
//! and the health service's verdicts. Every change is an `info` event with
//! the fields `service`, `endpoint` and `reason`. Each is an
//! [`Exclusion`] of the set (`Ejected`, `Unhealthy`), set or lifted in
//! O(log n); the endpoint's [`Health`](super::health::Health) keeps the
//! detector's state and the reasons, not whether it is picked.
//!
//! ```text
//! Ready ──(failures, under the cap)──► Ejected ──(ejection time over)──► Ready, on probation
//! Ready ──(NOT_SERVING, SERVICE_UNKNOWN)──► Unhealthy ──(SERVING)──► Ready
//! ```

use std::sync::{Arc, Weak};
use std::time::Duration;

use tracing::{debug, info};

use super::detector::Cause;
use super::set::Exclusion;
use super::shared::Shared;
use super::target::Target;

impl Shared {
    /// Ejects `target` for `cause`, unless it is no longer the endpoint's
    /// current connection, is out already, or the cap on ejected endpoints
    /// is reached.
    pub(super) fn outlier_eject(self: &Arc<Self>, target: &Arc<Target>, cause: Cause) {
        let mut set = self.lock();
        let known = set.len();
        let ejected = set.ejected_len();
        let Some(entry) = set.entries.get(&target.key) else {
            return;
        };
        if entry.target.epoch != target.epoch || entry.is_excluded(Exclusion::Ejected) {
            return;
        }
        let settings = self.outlier();
        if ejected >= settings.max_ejected(known) {
            debug!(endpoint = %target.key, %cause, ejected, "would be ejected, but the cap on ejected endpoints is reached");
            return;
        }
        let weak = Arc::downgrade(self);
        let (key, epoch) = (target.key.clone(), target.epoch);
        let runtime = self.runtime();
        let ejection = target.health.eject(settings, cause, |duration| {
            runtime
                .spawn(readmit_after(weak, key, epoch, duration))
                .abort_handle()
        });
        info!(
            service = %self.service(),
            endpoint = %target.key,
            addr = %target.addr(),
            reason = %format_args!("ejected after {cause}, for {:?}", ejection.duration),
            "endpoint ejected"
        );
        set.exclude(&target.key, Exclusion::Ejected);
        crate::observe::ejected(self.service(), target.addr(), cause.label());
        self.changed(&mut set);
    }

    /// The ejection time of `key`'s connection `epoch` is over.
    fn readmit(&self, key: &str, epoch: u64) {
        let mut set = self.lock();
        let Some(entry) = set.entries.get(key) else {
            return;
        };
        if entry.target.epoch != epoch || !entry.target.health.readmit() {
            return;
        }
        info!(
            service = %self.service(),
            endpoint = %key,
            reason = "ejection time over; back on probation",
            "endpoint readmitted"
        );
        set.include(key, Exclusion::Ejected);
        self.changed(&mut set);
    }

    /// What the health service of `key`'s connection `epoch` says: `None`
    /// when serving, else why not.
    pub(super) fn set_health(&self, key: &str, epoch: u64, unhealthy: Option<String>) {
        let mut set = self.lock();
        let Some(entry) = set.entries.get(key) else {
            return;
        };
        if entry.target.epoch != epoch || !entry.target.health.set_unhealthy(unhealthy.clone()) {
            return;
        }
        match unhealthy {
            Some(reason) => {
                info!(service = %self.service(), endpoint = %key, %reason, "endpoint unhealthy");
                set.exclude(key, Exclusion::Unhealthy);
            }
            None => {
                info!(service = %self.service(), endpoint = %key, reason = "SERVING", "endpoint healthy again");
                set.include(key, Exclusion::Unhealthy);
            }
        }
        self.changed(&mut set);
    }
}

async fn readmit_after(shared: Weak<Shared>, key: String, epoch: u64, duration: Duration) {
    tokio::time::sleep(duration).await;
    if let Some(shared) = shared.upgrade() {
        shared.readmit(&key, epoch);
    }
}
