//! Peak-EWMA load of one endpoint, as in [`tower::load::PeakEwma`]: a moving
//! average of response times that jumps up to any slower response at once and
//! decays slowly, times the number of requests in flight plus one.
//!
//! Every attempt leaves a sample, whatever its end: an answer, an error, or a
//! future dropped by its caller (a deadline). As with tower's handle, the
//! sample is taken when the [`InFlight`] guard is dropped, so an endpoint
//! that never answers looks as slow as the longest wait for it, never as
//! fast as an idle one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How quickly old response times are forgotten: a sample's weight falls to
/// 1/e after this long. Finagle and linkerd use the same 10 s.
pub(crate) const DECAY: Duration = Duration::from_secs(10);

/// The estimate of an endpoint that has answered nothing yet and has no peers
/// to borrow an estimate from.
pub(crate) const DEFAULT_RTT: Duration = Duration::from_millis(10);

/// The load of one endpoint: `rtt estimate × (in flight + 1)`.
#[derive(Debug)]
pub(crate) struct PeakEwma {
    estimate: Mutex<Estimate>,
    in_flight: AtomicUsize,
}

#[derive(Debug)]
struct Estimate {
    rtt_ns: f64,
    at: Instant,
}

impl Estimate {
    /// Folds in a response time observed now. A slower one replaces the
    /// estimate (the "peak"); a faster one pulls it down by how much time has
    /// passed since the last update, relative to [`DECAY`].
    fn observe(&mut self, rtt_ns: f64, now: Instant) {
        if rtt_ns > self.rtt_ns {
            self.rtt_ns = rtt_ns;
        } else {
            let elapsed = now.saturating_duration_since(self.at).as_nanos() as f64;
            let keep = (-elapsed / DECAY.as_nanos() as f64).exp();
            self.rtt_ns = self.rtt_ns * keep + rtt_ns * (1.0 - keep);
        }
        // A reader that took `now` before another's update must not move the
        // clock back, or the next decay would count that time twice.
        self.at = self.at.max(now);
    }
}

// The clock is std's, read once per event, and passed in (`*_at`) so that the
// tests drive it: tokio's clock, pausable for tests, costs a lock per read in
// builds with its test utilities.
impl PeakEwma {
    pub(crate) fn new(initial: Duration) -> Self {
        Self::new_at(initial, Instant::now())
    }

    fn new_at(initial: Duration, now: Instant) -> Self {
        Self {
            estimate: Mutex::new(Estimate {
                rtt_ns: initial.as_nanos() as f64,
                at: now,
            }),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Starts the estimate again from `initial`, as a new endpoint's: for an
    /// endpoint back after a time without traffic, whose old estimate says
    /// nothing of now.
    pub(crate) fn restart(&self, initial: Duration) {
        *self.lock() = Estimate {
            rtt_ns: initial.as_nanos() as f64,
            at: Instant::now(),
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Estimate> {
        // Two floats, consistent after every statement.
        self.estimate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The response time estimate, decayed to now as if a zero-time response
    /// had just been seen: an endpoint that gets no traffic looks better and
    /// better, so that it is tried again.
    pub(crate) fn rtt(&self) -> Duration {
        self.rtt_at(Instant::now())
    }

    fn rtt_at(&self, now: Instant) -> Duration {
        let mut estimate = self.lock();
        estimate.observe(0.0, now);
        Duration::from_nanos(estimate.rtt_ns as u64)
    }

    /// The cost compared by power of two choices at `now`; lower is better.
    pub(crate) fn cost(&self, now: Instant) -> f64 {
        let in_flight = self.in_flight.load(Ordering::Relaxed) as f64;
        self.rtt_at(now).as_nanos() as f64 * (in_flight + 1.0)
    }

    /// Counts one request in flight until the returned guard is dropped.
    pub(crate) fn start(self: &Arc<Self>) -> InFlight {
        self.start_at(Instant::now())
    }

    fn start_at(self: &Arc<Self>, now: Instant) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            load: self.clone(),
            sent: now,
            recorded: false,
        }
    }

    /// How many requests are in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// One request in flight on an endpoint: counted until dropped, when its
/// time since [`PeakEwma::start`] becomes a sample (answered, failed or
/// cancelled alike).
#[derive(Debug)]
pub(crate) struct InFlight {
    load: Arc<PeakEwma>,
    sent: Instant,
    recorded: bool,
}

impl InFlight {
    /// Records the time since the start at `now`, once.
    fn record_at(&mut self, now: Instant) -> Duration {
        let rtt = now.saturating_duration_since(self.sent);
        if !self.recorded {
            self.recorded = true;
            self.load.lock().observe(rtt.as_nanos() as f64, now);
        }
        rtt
    }

    /// Ends the attempt now: records its time and returns it.
    pub(crate) fn finish(mut self) -> Duration {
        self.record_at(Instant::now())
    }

    #[cfg(test)]
    fn finish_at(mut self, now: Instant) {
        self.record_at(now);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.record_at(Instant::now());
        self.load.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1_000_000.0;

    fn ms(load: &PeakEwma, now: Instant) -> f64 {
        load.rtt_at(now).as_nanos() as f64 / MS
    }

    fn after(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_slower_response_is_taken_at_once() {
        let t0 = Instant::now();
        let load = Arc::new(PeakEwma::new_at(Duration::from_millis(5), t0));
        load.start_at(t0).finish_at(after(t0, 40));
        let estimate = ms(&load, after(t0, 40));
        assert!((estimate - 40.0).abs() < 0.1, "{estimate}");
    }

    #[test]
    fn faster_responses_pull_the_estimate_down_over_the_decay() {
        let t0 = Instant::now();
        let load = Arc::new(PeakEwma::new_at(Duration::from_millis(40), t0));
        // One decay period of 1 ms responses: 40 → 1 + 39/e ≈ 15.3 ms.
        for i in 0..10_000 {
            load.start_at(after(t0, i)).finish_at(after(t0, i + 1));
        }
        let estimate = ms(&load, after(t0, 10_000));
        assert!((14.0..17.0).contains(&estimate), "{estimate}");
    }

    #[test]
    fn an_idle_estimate_decays() {
        let t0 = Instant::now();
        let load = PeakEwma::new_at(Duration::from_millis(100), t0);
        let estimate = ms(&load, t0 + DECAY);
        assert!((36.0..37.5).contains(&estimate), "{estimate}");
    }

    #[test]
    fn requests_in_flight_multiply_the_cost() {
        let t0 = Instant::now();
        let load = Arc::new(PeakEwma::new_at(Duration::from_millis(10), t0));
        let idle = load.cost(t0);
        let a = load.start_at(t0);
        let b = load.start_at(t0);
        assert!((load.cost(t0) / idle - 3.0).abs() < 1e-6);
        // Dropping one records its (tiny) time: the estimate barely moves.
        drop(a);
        assert!((load.cost(t0) / idle - 2.0).abs() < 1e-2);
        drop(b);
        assert_eq!(load.in_flight(), 0);
    }

    #[test]
    fn a_dropped_request_leaves_its_wait_as_a_sample() {
        // A request cancelled by its caller (a deadline) never finishes: the
        // drop must still record how long it waited, or a silent endpoint
        // would look like the fastest.
        let load = Arc::new(PeakEwma::new(Duration::from_millis(1)));
        let waiting = load.start();
        std::thread::sleep(Duration::from_millis(30));
        drop(waiting);
        assert_eq!(load.in_flight(), 0);
        assert!(load.rtt() >= Duration::from_millis(25), "{:?}", load.rtt());
    }
}
