//! [`Health`]: what the balancer knows of one endpoint's answers, beside its
//! connection: its counters, its outlier detector, and whether it is out of
//! rotation because of them (ejected) or because its health service said so
//! (unhealthy). Every endpoint's [`Target`](super::target::Target) has one.
//!
//! Whether it is picked is the set's business (its `Exclusion`s); this keeps
//! the detector's state and the reasons shown in statuses. Its ejection and
//! verdict change only under the set's lock (see `exclusion`), together with
//! the set's exclusions; the counters and the detector have their own lock,
//! taken without the set's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::task::AbortHandle;

use super::detector::{Cause, Detector};
use super::outlier::OutlierDetection;

/// An outlier ejection in force.
#[derive(Debug, Clone)]
pub(super) struct Ejection {
    pub(super) cause: Cause,
    pub(super) until: Instant,
    pub(super) duration: Duration,
}

impl Ejection {
    /// As [`EndpointStatus::reason`](super::EndpointStatus::reason) shows it.
    pub(super) fn reason(&self) -> String {
        let left = self.until.saturating_duration_since(Instant::now());
        format!(
            "ejected after {}, for {:?} ({:.1}s left)",
            self.cause,
            self.duration,
            left.as_secs_f64()
        )
    }
}

#[derive(Debug)]
struct Inner {
    detector: Detector,
    ejection: Option<Ejection>,
    /// Why the health service takes it out (`NOT_SERVING`, …).
    unhealthy: Option<String>,
    /// The error that made it unreachable, while probed.
    unreachable: Option<String>,
    /// The timer that readmits it after an ejection.
    readmit: Option<AbortHandle>,
    /// Its health-check stream's task, when health checks are on.
    watch: Option<AbortHandle>,
}

/// The answers of one endpoint, and what they decided.
#[derive(Debug)]
pub(crate) struct Health {
    requests: AtomicU64,
    failures: AtomicU64,
    inner: Mutex<Inner>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                detector: Detector::new(Instant::now()),
                ejection: None,
                unhealthy: None,
                unreachable: None,
                readmit: None,
                watch: None,
            }),
        }
    }
}

impl Drop for Health {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        for task in [inner.readmit.take(), inner.watch.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}

impl Health {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Plain fields, consistent after every statement.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one attempt that reached the endpoint; with outlier detection
    /// on, the cause if it should now be ejected.
    pub(super) fn record(&self, settings: &OutlierDetection, failed: bool) -> Option<Cause> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        if !settings.is_enabled() {
            return None;
        }
        self.lock()
            .detector
            .record(settings, failed, Instant::now())
    }

    /// `(requests, failures)` so far.
    pub(super) fn counts(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }

    pub(super) fn ejection(&self) -> Option<Ejection> {
        self.lock().ejection.clone()
    }

    pub(super) fn unhealthy(&self) -> Option<String> {
        self.lock().unhealthy.clone()
    }

    /// Ejects it (under the set's lock): how long for.
    pub(super) fn eject(
        &self,
        settings: &OutlierDetection,
        cause: Cause,
        readmit: impl FnOnce(Duration) -> AbortHandle,
    ) -> Ejection {
        let mut inner = self.lock();
        let duration = inner.detector.eject(settings);
        let ejection = Ejection {
            cause,
            until: Instant::now() + duration,
            duration,
        };
        inner.ejection = Some(ejection.clone());
        if let Some(old) = inner.readmit.replace(readmit(duration)) {
            old.abort();
        }
        ejection
    }

    /// Ends its ejection (under the set's lock), on probation: whether it was
    /// ejected.
    pub(super) fn readmit(&self) -> bool {
        let mut inner = self.lock();
        inner.readmit = None;
        inner.detector.readmit(Instant::now());
        inner.ejection.take().is_some()
    }

    /// Sets what its health service says (under the set's lock): `None` for
    /// serving, else why not. Whether that changed anything.
    pub(super) fn set_unhealthy(&self, reason: Option<String>) -> bool {
        let mut inner = self.lock();
        if inner.unhealthy == reason {
            return false;
        }
        inner.unhealthy = reason;
        true
    }

    /// Why it could not be connected to, for its status.
    pub(super) fn set_unreachable(&self, error: String) {
        self.lock().unreachable = Some(error);
    }

    pub(super) fn unreachable(&self) -> Option<String> {
        self.lock().unreachable.clone()
    }

    /// Keeps its health-check task, aborted with it.
    pub(super) fn set_watch(&self, watch: AbortHandle) {
        if let Some(old) = self.lock().watch.replace(watch) {
            old.abort();
        }
    }
}
