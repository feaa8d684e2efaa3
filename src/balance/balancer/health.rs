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
//!
//! An endpoint never used costs only its two counters: the rest (about 170
//! bytes with its lock) is allocated by the first outcome recorded with
//! outlier detection on, or the first verdict, whichever comes first. With
//! 100,000 endpoints of which few are used, that is most of an idle
//! endpoint's share of the balancer's memory beside its `Endpoint`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
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
#[derive(Debug, Default)]
pub(crate) struct Health {
    requests: AtomicU64,
    failures: AtomicU64,
    /// Made on first use (see the module docs); `None` reads as a fresh
    /// detector, no ejection, no verdict, no task.
    inner: OnceLock<Box<Mutex<Inner>>>,
}

impl Drop for Health {
    fn drop(&mut self) {
        let Some(inner) = self.inner.get_mut() else {
            return;
        };
        let inner = inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        for task in [inner.readmit.take(), inner.watch.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}

impl Health {
    /// The state, made now if it was not there: its detector's window starts
    /// at its first use.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        let inner = self.inner.get_or_init(|| {
            Box::new(Mutex::new(Inner {
                detector: Detector::new(Instant::now()),
                ejection: None,
                unhealthy: None,
                unreachable: None,
                readmit: None,
                watch: None,
            }))
        });
        // Plain fields, consistent after every statement.
        inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the state if it was made, without making it.
    fn peek<T>(&self, read: impl FnOnce(&Inner) -> Option<T>) -> Option<T> {
        let inner = self.inner.get()?;
        read(&inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether its state was made (false for an endpoint never used).
    #[cfg(test)]
    pub(super) fn is_allocated(&self) -> bool {
        self.inner.get().is_some()
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
        self.peek(|inner| inner.ejection.clone())
    }

    pub(super) fn unhealthy(&self) -> Option<String> {
        self.peek(|inner| inner.unhealthy.clone())
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
        if reason.is_none() && self.inner.get().is_none() {
            return false;
        }
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
        self.peek(|inner| inner.unreachable.clone())
    }

    /// Keeps its health-check task, aborted with it.
    pub(super) fn set_watch(&self, watch: AbortHandle) {
        if let Some(old) = self.lock().watch.replace(watch) {
            old.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_never_used_allocates_nothing() {
        let health = Health::default();
        assert_eq!(health.counts(), (0, 0));
        assert!(health.ejection().is_none() && health.unhealthy().is_none());
        assert!(health.unreachable().is_none());
        assert!(!health.set_unhealthy(None), "serving already");
        // Without outlier detection, outcomes only count.
        assert_eq!(health.record(&OutlierDetection::disabled(), true), None);
        assert_eq!(health.counts(), (1, 1));
        assert!(!health.is_allocated());
    }

    #[test]
    fn the_state_is_made_by_its_first_use() {
        let settings = OutlierDetection::new().no_failure_rate();
        let health = Health::default();
        for _ in 0..4 {
            assert_eq!(health.record(&settings, true), None);
        }
        assert!(health.is_allocated());
        assert_eq!(health.record(&settings, true), Some(Cause::Consecutive(5)));
        let verdict = Health::default();
        assert!(verdict.set_unhealthy(Some("NOT_SERVING".into())));
        assert_eq!(verdict.unhealthy().as_deref(), Some("NOT_SERVING"));
        assert!(verdict.set_unhealthy(None) && verdict.is_allocated());
        let unreachable = Health::default();
        unreachable.set_unreachable("refused".into());
        assert_eq!(unreachable.unreachable().as_deref(), Some("refused"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn dropping_it_aborts_its_tasks() {
        let health = Health::default();
        let watch = tokio::spawn(std::future::pending::<()>());
        health.set_watch(watch.abort_handle());
        let settings = OutlierDetection::new();
        let readmit = tokio::spawn(std::future::pending::<()>());
        let ejection = health.eject(&settings, Cause::Probation, |_| readmit.abort_handle());
        assert_eq!(health.ejection().unwrap().duration, ejection.duration);
        drop(health);
        assert!(watch.await.unwrap_err().is_cancelled());
        assert!(readmit.await.unwrap_err().is_cancelled());
    }
}
