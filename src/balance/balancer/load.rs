//! Peak-EWMA load of one endpoint, as in [`tower::load::PeakEwma`]: a moving
//! average of response times that jumps up to any slower response at once and
//! decays slowly, times the number of requests in flight plus one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

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
        self.at = now;
    }
}

impl PeakEwma {
    pub(crate) fn new(initial: Duration) -> Self {
        Self {
            estimate: Mutex::new(Estimate {
                rtt_ns: initial.as_nanos() as f64,
                at: Instant::now(),
            }),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Estimate> {
        // Two floats, consistent after every statement.
        self.estimate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The response time estimate, decayed to now as if a zero-time response
    /// had just been seen: an endpoint that gets no traffic looks better and
    /// better, so that it is tried again.
    pub(crate) fn rtt(&self) -> Duration {
        let mut estimate = self.lock();
        estimate.observe(0.0, Instant::now());
        Duration::from_nanos(estimate.rtt_ns as u64)
    }

    /// The cost compared by power of two choices; lower is better.
    pub(crate) fn cost(&self) -> f64 {
        let in_flight = self.in_flight.load(Ordering::Relaxed) as f64;
        self.rtt().as_nanos() as f64 * (in_flight + 1.0)
    }

    /// Counts one request in flight until the returned guard is dropped.
    pub(crate) fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            load: self.clone(),
            sent: Instant::now(),
        }
    }
}

/// One request in flight on an endpoint.
#[derive(Debug)]
pub(crate) struct InFlight {
    load: Arc<PeakEwma>,
    sent: Instant,
}

impl InFlight {
    /// The response arrived: record its response time.
    pub(crate) fn finish(self) {
        let now = Instant::now();
        let rtt = now.saturating_duration_since(self.sent);
        self.load.lock().observe(rtt.as_nanos() as f64, now);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.load.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1_000_000.0;

    fn ms(load: &PeakEwma) -> f64 {
        load.rtt().as_nanos() as f64 / MS
    }

    #[tokio::test(start_paused = true)]
    async fn a_slower_response_is_taken_at_once() {
        let load = Arc::new(PeakEwma::new(Duration::from_millis(5)));
        let request = load.start();
        tokio::time::advance(Duration::from_millis(40)).await;
        request.finish();
        assert!((ms(&load) - 40.0).abs() < 0.1, "{}", ms(&load));
    }

    #[tokio::test(start_paused = true)]
    async fn faster_responses_pull_the_estimate_down_over_the_decay() {
        let load = Arc::new(PeakEwma::new(Duration::from_millis(40)));
        // One decay period of 1 ms responses: 40 → 1 + 39/e ≈ 15.3 ms.
        for _ in 0..10_000 {
            let request = load.start();
            tokio::time::advance(Duration::from_millis(1)).await;
            request.finish();
        }
        let estimate = ms(&load);
        assert!((14.0..17.0).contains(&estimate), "{estimate}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_estimate_decays() {
        let load = PeakEwma::new(Duration::from_millis(100));
        tokio::time::advance(DECAY).await;
        let estimate = ms(&load);
        assert!((36.0..37.5).contains(&estimate), "{estimate}");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_multiply_the_cost() {
        let load = Arc::new(PeakEwma::new(Duration::from_millis(10)));
        let idle = load.cost();
        let a = load.start();
        let b = load.start();
        assert!((load.cost() / idle - 3.0).abs() < 1e-6);
        drop(a);
        assert!((load.cost() / idle - 2.0).abs() < 1e-6);
        drop(b);
        assert!((load.cost() / idle - 1.0).abs() < 1e-6);
    }
}
