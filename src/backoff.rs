//! Jittered exponential backoff: the one used by every retry loop of the crate
//! (re-registration, the discovery watch, the balancer's reconnect probes).

use std::time::Duration;

use rand::Rng;

/// Delays that double from `base` up to `max`, each drawn uniformly from
/// 50 %..150 % of its nominal value so that many clients do not retry in step.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    attempts: u32,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempts: 0,
        }
    }

    /// How many delays were handed out since the last reset.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    pub(crate) fn reset(&mut self) {
        self.attempts = 0;
    }

    /// The next delay; counts one attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let nominal = self
            .base
            .saturating_mul(1u32 << self.attempts.min(16))
            .min(self.max);
        self.attempts = self.attempts.saturating_add(1);
        nominal.mul_f64(rand::rng().random_range(0.5..1.5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_within_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for nominal in [100u64, 200, 400, 800, 1000, 1000, 1000] {
            let d = b.next_delay();
            let n = Duration::from_millis(nominal);
            assert!(d >= n.mul_f64(0.5) && d <= n.mul_f64(1.5), "{d:?} vs {n:?}");
        }
        assert_eq!(b.attempts(), 7);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(150));
    }
}
