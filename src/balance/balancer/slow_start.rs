//! Slow start: [`SlowStart`] (its settings and the ramp as a function of
//! time) and [`Ramps`], the endpoints ramping now, over plain data and an
//! injected clock so that it is tested alone.
//!
//! The model is Envoy's slow start mode
//! (<https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/slow_start>):
//! an endpoint's weight is scaled by `max(min_weight_percent / 100,
//! (elapsed / window) ^ (1 / aggression))` until the window is over. Unlike
//! Envoy, the elapsed time is not rounded up to a second, so a window under
//! a second ramps too.
//!
//! How each policy reads the ramp:
//!
//! - weighted round robin: the weight is scaled ([`SCALE`] × the registry
//!   weight × the factor, an integer), at O(log n) per change;
//! - round robin: with slow start on, it schedules by weight as weighted
//!   round robin does, all weights equal ([`SCALE`]) but the ramping ones;
//! - p2c: a ramping endpoint wins a comparison only with probability
//!   `factor / 2` (otherwise its cost reads as infinite). With `n`
//!   endpoints, a newcomer less loaded than all the others (the usual case:
//!   it has nothing in flight yet) is one of the two drawn in `2 / n` of
//!   the picks and would win them all; it now gets `factor / n`, the factor
//!   times its fair share, as with weighted round robin. When it is not the
//!   least loaded it gets less, never more. Dividing its cost by the factor
//!   instead does not ramp: with few requests in flight the comparison is
//!   between response time estimates, and an endpoint without traffic sees
//!   its estimate decay, so it would get nothing until the estimate fell
//!   below `factor ×` its peers', then a burst.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::instance::Instance;

/// What weights are multiplied by while slow start is on, so that a ramp's
/// factor shows in integer weights (a factor of 0.1 on weight 1 is 10).
pub(super) const SCALE: u32 = 100;

/// Slow start: a new endpoint's share of the requests ramps up from a
/// small fraction to its full share over a window, so that a server that
/// just started (cold caches, a JIT, connection pools to fill) is not
/// flooded. Set with
/// [`BalancerBuilder::slow_start`](crate::BalancerBuilder::slow_start); off
/// by default.
///
/// An endpoint ramps when it joins the set while others are ready, and when
/// it comes back into rotation after being out (unreachable, ejected,
/// unhealthy); the endpoints there when the balancer starts do not. Its
/// weight is `weight × max(min_weight_percent / 100, (t / window) ^ (1 /
/// aggression))` at `t` after the start, as in Envoy's slow start mode; an
/// aggression above 1 ramps faster at first. Weighted round robin and p2c
/// read it, and round robin too: with slow start on it schedules by weight
/// (all equal but the ramping ones; its picks then cost O(log n), as
/// weighted round robin's). The ramping weights are stepped every `window /
/// 40`, between 10 ms and 500 ms apart, only while something ramps.
///
/// ```
/// use std::time::Duration;
/// use tonic_etcd::balance::SlowStart;
///
/// let slow = SlowStart::new(Duration::from_secs(30)).aggression(2.0).min_weight_percent(5.0);
/// assert_eq!(slow.window(), Duration::from_secs(30));
/// // Half-way through, (1/2)^(1/2) of the weight.
/// assert!((slow.factor(Duration::from_secs(15)) - 0.7071).abs() < 1e-3);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SlowStart {
    window: Duration,
    aggression: f64,
    min_weight_percent: f64,
}

impl SlowStart {
    /// Ramps over `window`, linearly (aggression 1), from 10 % of the
    /// weight: Envoy's defaults. A zero window ramps nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tonic_etcd::balance::SlowStart;
    ///
    /// let slow = SlowStart::new(Duration::from_secs(10));
    /// assert_eq!(slow.factor(Duration::ZERO), 0.1);
    /// assert_eq!(slow.factor(Duration::from_secs(5)), 0.5);
    /// assert_eq!(slow.factor(Duration::from_secs(10)), 1.0);
    /// ```
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            aggression: 1.0,
            min_weight_percent: 10.0,
        }
    }

    /// Sets how the ramp bends: the factor is `(t / window) ^ (1 /
    /// aggression)`; 1 is linear, above 1 faster at first, below 1 slower.
    /// Defaults to 1; a value that is not positive counts as 1.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tonic_etcd::balance::SlowStart;
    ///
    /// let slow = SlowStart::new(Duration::from_secs(10)).aggression(0.5);
    /// assert!((slow.factor(Duration::from_secs(5)) - 0.25).abs() < 1e-9);
    /// ```
    pub fn aggression(mut self, aggression: f64) -> Self {
        self.aggression = if aggression > 0.0 && aggression.is_finite() {
            aggression
        } else {
            1.0
        };
        self
    }

    /// Sets the weight a ramp starts from, in percent of the full weight,
    /// within 0..=100. Defaults to 10.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tonic_etcd::balance::SlowStart;
    ///
    /// let slow = SlowStart::new(Duration::from_secs(10)).min_weight_percent(1.0);
    /// assert_eq!(slow.factor(Duration::ZERO), 0.01);
    /// ```
    pub fn min_weight_percent(mut self, percent: f64) -> Self {
        self.min_weight_percent = if percent.is_nan() {
            10.0
        } else {
            percent.clamp(0.0, 100.0)
        };
        self
    }

    /// The window.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tonic_etcd::balance::SlowStart;
    ///
    /// assert_eq!(SlowStart::new(Duration::from_secs(3)).window(), Duration::from_secs(3));
    /// ```
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The fraction of its weight an endpoint has `elapsed` after its ramp
    /// started: within `min_weight_percent / 100..=1`, 1 from the end of
    /// the window on.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tonic_etcd::balance::SlowStart;
    ///
    /// let slow = SlowStart::new(Duration::from_secs(10));
    /// assert_eq!(slow.factor(Duration::from_secs(60)), 1.0);
    /// ```
    pub fn factor(&self, elapsed: Duration) -> f64 {
        if elapsed >= self.window {
            return 1.0;
        }
        let time = elapsed.as_secs_f64() / self.window.as_secs_f64();
        let floor = self.min_weight_percent / 100.0;
        time.powf(1.0 / self.aggression).max(floor).min(1.0)
    }

    /// How often the ramping weights are stepped: about 40 steps per
    /// window, between 10 ms and 500 ms apart.
    pub(super) fn step(&self) -> Duration {
        (self.window / 40).clamp(Duration::from_millis(10), Duration::from_millis(500))
    }
}

/// The endpoints ramping now, by key, and the weights the set gives them.
/// Without slow start every method is a no-op and weights are the
/// registry's.
#[derive(Debug, Default)]
pub(super) struct Ramps {
    settings: Option<SlowStart>,
    /// Round robin under slow start: every full weight is [`SCALE`].
    equal: bool,
    started: HashMap<String, Instant>,
}

impl Ramps {
    /// Ramps by `settings` (none: off); `equal` for round robin.
    pub(super) fn new(settings: Option<SlowStart>, equal: bool) -> Self {
        Self {
            settings: settings.filter(|slow| !slow.window.is_zero()),
            equal,
            started: HashMap::new(),
        }
    }

    pub(super) fn on(&self) -> bool {
        self.settings.is_some()
    }

    /// How often the ramps are stepped, if slow start is on.
    pub(super) fn step(&self) -> Option<Duration> {
        self.settings.as_ref().map(SlowStart::step)
    }

    /// Whether any endpoint is ramping.
    pub(super) fn ramping(&self) -> bool {
        !self.started.is_empty()
    }

    /// The weight of `instance` once ramped (or without a ramp).
    pub(super) fn full_weight(&self, instance: &Instance) -> u32 {
        match (&self.settings, self.equal) {
            (None, _) => instance.weight.max(1),
            (Some(_), true) => SCALE,
            (Some(_), false) => instance.weight.max(1).saturating_mul(SCALE),
        }
    }

    /// Starts (or starts again) the ramp of `key` at `now`, if slow start is
    /// on; whether it did.
    pub(super) fn start(&mut self, key: &str, now: Instant) -> bool {
        if self.settings.is_none() {
            return false;
        }
        self.started.insert(key.to_owned(), now);
        true
    }

    /// Forgets the ramp of `key`.
    pub(super) fn stop(&mut self, key: &str) {
        self.started.remove(key);
    }

    /// The factor of `key` at `now`: 1 unless it is ramping.
    pub(super) fn factor(&self, key: &str, now: Instant) -> f64 {
        match (&self.settings, self.started.get(key)) {
            (Some(slow), Some(&start)) => slow.factor(now.saturating_duration_since(start)),
            _ => 1.0,
        }
    }

    /// The weight of `key`'s `instance` at `now`, ramp included (at least
    /// 1).
    pub(super) fn weight(&self, key: &str, instance: &Instance, now: Instant) -> u32 {
        scaled(self.full_weight(instance), self.factor(key, now))
    }

    /// Steps every ramp to `now`: the keys ramping and their factors; those
    /// whose window is over come with 1 and are forgotten.
    pub(super) fn advance(&mut self, now: Instant) -> Vec<(String, f64)> {
        let Some(slow) = &self.settings else {
            return Vec::new();
        };
        let steps: Vec<(String, f64)> = self
            .started
            .iter()
            .map(|(key, &start)| {
                (
                    key.clone(),
                    slow.factor(now.saturating_duration_since(start)),
                )
            })
            .collect();
        self.started
            .retain(|_, &mut start| now.saturating_duration_since(start) < slow.window);
        steps
    }
}

/// `full × factor`, rounded, at least 1.
pub(super) fn scaled(full: u32, factor: f64) -> u32 {
    ((f64::from(full) * factor).round() as u32).clamp(1, full.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn the_factor_follows_envoys_formula() {
        let slow = SlowStart::new(secs(10.0));
        for (t, wanted) in [(0.0, 0.1), (0.5, 0.1), (1.0, 0.1), (2.5, 0.25), (9.0, 0.9)] {
            assert!((slow.factor(secs(t)) - wanted).abs() < 1e-9, "{t}");
        }
        assert_eq!(slow.factor(secs(10.0)), 1.0);
        assert_eq!(slow.factor(secs(100.0)), 1.0);
        // Aggression 2: the square root of the time.
        let fast = slow.clone().aggression(2.0).min_weight_percent(0.0);
        assert!((fast.factor(secs(2.5)) - 0.5).abs() < 1e-9);
        assert_eq!(fast.factor(Duration::ZERO), 0.0);
        // Bad values fall back to the defaults or are clamped.
        assert_eq!(slow.clone().aggression(-1.0).aggression, 1.0);
        assert_eq!(
            slow.clone().min_weight_percent(200.0).factor(secs(1.0)),
            1.0
        );
        // The factor never goes down over time.
        let mut last = 0.0;
        for ms in (0..=12_000).step_by(100) {
            let factor = fast.factor(Duration::from_millis(ms));
            assert!(factor >= last);
            last = factor;
        }
    }

    #[test]
    fn steps_are_a_few_dozen_per_window() {
        assert_eq!(SlowStart::new(secs(4.0)).step(), secs(0.1));
        assert_eq!(SlowStart::new(secs(0.1)).step(), secs(0.01));
        assert_eq!(SlowStart::new(secs(600.0)).step(), secs(0.5));
    }

    #[test]
    fn a_ramp_scales_the_weight_over_the_window_then_ends() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + secs(s);
        let mut ramps = Ramps::new(Some(SlowStart::new(secs(10.0))), false);
        let instance = Instance::new("svc", "127.0.0.1:1").unwrap().with_weight(3);
        assert_eq!(ramps.full_weight(&instance), 300);
        assert!(ramps.start("a", t0));
        assert!(ramps.ramping());
        // Weight over time: 10 % until 1 s, then linear, then full.
        let weights: Vec<u32> = [0.0, 1.0, 2.0, 5.0, 9.9, 10.0]
            .iter()
            .map(|&s| ramps.weight("a", &instance, at(s)))
            .collect();
        assert_eq!(weights, [30, 30, 60, 150, 297, 300]);
        assert_eq!(ramps.weight("b", &instance, t0), 300, "not ramping");

        assert_eq!(ramps.advance(at(5.0)), [("a".to_owned(), 0.5)]);
        assert!(ramps.ramping());
        assert_eq!(ramps.advance(at(10.0)), [("a".to_owned(), 1.0)]);
        assert!(!ramps.ramping(), "over after the window");
        assert!(ramps.advance(at(11.0)).is_empty());

        // Started again (readmitted): from the bottom again.
        ramps.start("a", at(20.0));
        assert_eq!(ramps.weight("a", &instance, at(20.0)), 30);
        ramps.stop("a");
        assert!(!ramps.ramping());
    }

    #[test]
    fn round_robin_ramps_over_equal_weights_and_off_is_a_no_op() {
        let instance = Instance::new("svc", "127.0.0.1:1").unwrap().with_weight(7);
        let equal = Ramps::new(Some(SlowStart::new(secs(1.0))), true);
        assert_eq!(equal.full_weight(&instance), SCALE);
        let mut off = Ramps::new(None, false);
        assert!(!off.on() && off.step().is_none());
        assert_eq!(off.full_weight(&instance), 7);
        assert!(!off.start("a", Instant::now()));
        assert!(!off.ramping());
        let zero = Ramps::new(Some(SlowStart::new(Duration::ZERO)), false);
        assert!(!zero.on());
        assert_eq!(scaled(100, 0.0), 1, "never 0");
        assert_eq!(scaled(1, 0.5), 1);
    }
}
