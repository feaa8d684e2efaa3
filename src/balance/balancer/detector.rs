//! [`Detector`]: the outlier-detection state of one endpoint, over plain data
//! (outcomes and instants), so that it is tested alone. The balancer decides
//! whether an ejection it asks for may happen (the cap on ejected endpoints)
//! and runs the timer that readmits it.

use std::fmt;
use std::time::{Duration, Instant};

use super::outlier::OutlierDetection;

/// Why an endpoint was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// Its last `n` attempts failed.
    Consecutive(u32),
    /// `failed` of its `requests` attempts within the interval failed.
    Rate { failed: u32, requests: u32 },
    /// It failed on probation, just after coming back.
    Probation,
}

impl Cause {
    /// The `reason` label of `tonic_etcd_balancer_ejections_total`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Cause::Consecutive(_) => "consecutive_failures",
            Cause::Rate { .. } => "failure_rate",
            Cause::Probation => "probation",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Consecutive(n) => write!(f, "{n} consecutive failures"),
            Cause::Rate { failed, requests } => {
                write!(f, "{failed} of {requests} requests failed")
            }
            Cause::Probation => f.write_str("a failure on probation"),
        }
    }
}

/// The outlier-detection state of one endpoint.
#[derive(Debug)]
pub(crate) struct Detector {
    consecutive: u32,
    window_start: Instant,
    requests: u32,
    failed: u32,
    /// Ejections so far, less one per interval spent in rotation since.
    times_ejected: u32,
    /// Since when the count of ejections last went down (or the endpoint
    /// came back).
    decayed_at: Instant,
    ejected: bool,
    probation: bool,
}

impl Detector {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            consecutive: 0,
            window_start: now,
            requests: 0,
            failed: 0,
            times_ejected: 0,
            decayed_at: now,
            ejected: false,
            probation: false,
        }
    }

    /// Takes in one attempt's outcome at `now`: the cause if the endpoint
    /// should be ejected now. Outcomes while ejected (requests that were
    /// already on their way, or panic mode) change nothing.
    pub(crate) fn record(
        &mut self,
        settings: &OutlierDetection,
        failed: bool,
        now: Instant,
    ) -> Option<Cause> {
        if self.ejected {
            return None;
        }
        self.decay(settings, now);
        if now.saturating_duration_since(self.window_start) >= settings.interval {
            self.window_start = now;
            self.requests = 0;
            self.failed = 0;
        }
        self.requests += 1;
        if !failed {
            self.consecutive = 0;
            self.probation = false;
            return None;
        }
        self.failed += 1;
        self.consecutive += 1;
        if self.probation {
            return Some(Cause::Probation);
        }
        let n = settings.consecutive_failures;
        if n > 0 && self.consecutive >= n {
            return Some(Cause::Consecutive(self.consecutive));
        }
        match settings.failure_rate {
            Some((percent, min))
                if self.requests >= min && self.failed * 100 >= percent * self.requests =>
            {
                Some(Cause::Rate {
                    failed: self.failed,
                    requests: self.requests,
                })
            }
            _ => None,
        }
    }

    /// The ejection asked for by [`record`](Self::record) happened: how long
    /// it lasts.
    pub(crate) fn eject(&mut self, settings: &OutlierDetection) -> Duration {
        self.ejected = true;
        self.times_ejected += 1;
        self.consecutive = 0;
        self.requests = 0;
        self.failed = 0;
        settings.ejection_for(self.times_ejected)
    }

    /// The ejection time is over: back in rotation, on probation.
    pub(crate) fn readmit(&mut self, now: Instant) {
        self.ejected = false;
        self.probation = true;
        self.window_start = now;
        self.decayed_at = now;
    }

    #[cfg(test)]
    pub(crate) fn times_ejected(&self) -> u32 {
        self.times_ejected
    }

    /// One ejection forgiven per interval spent in rotation.
    fn decay(&mut self, settings: &OutlierDetection, now: Instant) {
        let elapsed = now.saturating_duration_since(self.decayed_at);
        let intervals = (elapsed.as_nanos() / settings.interval.as_nanos().max(1)) as u32;
        if intervals > 0 {
            self.times_ejected = self.times_ejected.saturating_sub(intervals);
            self.decayed_at += settings.interval * intervals;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn five_failures_in_a_row_eject_and_a_success_resets_the_count() {
        let settings = OutlierDetection::new().no_failure_rate();
        let t0 = Instant::now();
        let mut detector = Detector::new(t0);
        for _ in 0..4 {
            assert_eq!(detector.record(&settings, true, t0), None);
        }
        assert_eq!(detector.record(&settings, false, t0), None);
        for _ in 0..4 {
            assert_eq!(detector.record(&settings, true, t0), None);
        }
        assert_eq!(
            detector.record(&settings, true, t0),
            Some(Cause::Consecutive(5))
        );
        assert_eq!(detector.eject(&settings), Duration::from_secs(30));
        // Outcomes of requests already on their way change nothing.
        assert_eq!(detector.record(&settings, true, t0), None);
    }

    #[test]
    fn a_failure_rate_ejects_once_the_minimum_volume_is_reached() {
        let settings = OutlierDetection::new()
            .consecutive_failures(0)
            .failure_rate(50, 20);
        let t0 = Instant::now();
        let mut detector = Detector::new(t0);
        // Alternating: 50 % but never two in a row.
        let mut verdicts = Vec::new();
        for i in 0..20 {
            verdicts.push(detector.record(&settings, i % 2 == 1, at(t0, i)));
        }
        assert!(verdicts[..19].iter().all(Option::is_none), "{verdicts:?}");
        assert_eq!(
            verdicts[19],
            Some(Cause::Rate {
                failed: 10,
                requests: 20
            })
        );
    }

    #[test]
    fn the_rate_window_restarts_each_interval() {
        let settings = OutlierDetection::new()
            .consecutive_failures(0)
            .failure_rate(50, 20);
        let t0 = Instant::now();
        let mut detector = Detector::new(t0);
        // 19 requests, 10 failed, then the interval ends: a new window.
        for i in 0..19 {
            assert_eq!(detector.record(&settings, i % 2 == 0, t0), None);
        }
        for i in 0..19 {
            assert_eq!(
                detector.record(&settings, i % 2 == 0, at(t0, 10_000 + i)),
                None
            );
        }
    }

    #[test]
    fn a_low_failure_rate_never_ejects() {
        let settings = OutlierDetection::new();
        let t0 = Instant::now();
        let mut detector = Detector::new(t0);
        for i in 0..1000 {
            assert_eq!(detector.record(&settings, i % 3 == 0, at(t0, i)), None);
        }
    }

    #[test]
    fn ejections_grow_longer_on_probation_and_are_forgiven_over_time() {
        let settings = OutlierDetection::new().no_failure_rate();
        let t0 = Instant::now();
        let mut detector = Detector::new(t0);
        let eject = |detector: &mut Detector, now| {
            for _ in 0..4 {
                assert_eq!(detector.record(&settings, true, now), None);
            }
            assert!(detector.record(&settings, true, now).is_some());
            detector.eject(&settings)
        };
        assert_eq!(eject(&mut detector, t0), Duration::from_secs(30));
        detector.readmit(at(t0, 30_000));
        // On probation, the first failure ejects again, for longer.
        assert_eq!(
            detector.record(&settings, true, at(t0, 30_001)),
            Some(Cause::Probation)
        );
        assert_eq!(detector.eject(&settings), Duration::from_secs(60));
        detector.readmit(at(t0, 90_000));
        // A success ends the probation.
        assert_eq!(detector.record(&settings, false, at(t0, 90_001)), None);
        assert_eq!(detector.record(&settings, true, at(t0, 90_002)), None);
        assert_eq!(detector.times_ejected(), 2);
        // Two intervals in rotation forgive both ejections: the next one
        // lasts the base time again.
        assert_eq!(detector.record(&settings, false, at(t0, 110_000)), None);
        assert_eq!(detector.times_ejected(), 0);
        assert_eq!(
            eject(&mut detector, at(t0, 110_001)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn the_ejection_time_is_capped() {
        let settings = OutlierDetection::new()
            .no_failure_rate()
            .ejection_time(Duration::from_secs(30), Duration::from_secs(70));
        let t0 = Instant::now();
        let mut detector = Detector::new(t0);
        let mut times = Vec::new();
        for _ in 0..4 {
            while detector.record(&settings, true, t0).is_none() {}
            times.push(detector.eject(&settings).as_secs());
            detector.readmit(t0);
        }
        assert_eq!(times, [30, 60, 70, 70]);
    }
}
