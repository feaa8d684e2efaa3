//! Peak-EWMA load of one endpoint, as in [`tower::load::PeakEwma`]: a moving
//! average of response times that jumps up to any slower response at once and
//! decays slowly, times the number of requests in flight plus one.
//!
//! Every attempt leaves a sample, whatever its end: an answer, an error, or a
//! future dropped by its caller (a deadline). As with tower's handle, the
//! sample is taken when the [`InFlight`] guard is dropped, so an endpoint
//! that never answers looks as slow as the longest wait for it, never as
//! fast as an idle one.
//!
//! Unlike tower's, reading the load writes nothing: tower folds a zero-time
//! sample into the estimate at every read, so the weight of the next real
//! sample depended on how often p2c happened to look at the endpoint. Here
//! the estimate decays with the time since its last real sample, read or
//! not, and a read is a few atomic loads.

use std::sync::atomic::{fence, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How quickly old response times are forgotten: a sample's weight falls to
/// 1/e after this long. Finagle and linkerd use the same 10 s.
pub(crate) const DECAY: Duration = Duration::from_secs(10);

/// The estimate of an endpoint that has answered nothing yet and has no peers
/// to borrow an estimate from.
pub(crate) const DEFAULT_RTT: Duration = Duration::from_millis(10);

/// How many times a reader spins on an update in progress before it lets
/// another thread run (the writer may have been preempted mid-update).
const SPINS: u32 = 64;

/// A point in time as nanoseconds since a process-wide origin, so that it
/// fits in an atomic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Nanos(i64);

impl Nanos {
    /// Now, by std's clock.
    pub(crate) fn now() -> Self {
        Self::at(Instant::now())
    }

    fn at(instant: Instant) -> Self {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        let origin = *ORIGIN.get_or_init(Instant::now);
        // Signed: an instant taken before the origin was fixed (a test's
        // t0) stays before it.
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        match instant.checked_duration_since(origin) {
            Some(after) => Self(nanos(after)),
            None => Self(-nanos(origin.duration_since(instant))),
        }
    }

    /// Nanoseconds from `earlier` to `self`, 0 if `earlier` is later.
    fn since(self, earlier: Nanos) -> f64 {
        self.0.saturating_sub(earlier.0).max(0) as f64
    }
}

/// The load of one endpoint: `rtt estimate × (in flight + 1)`.
///
/// Read by every p2c draw, so reading takes no lock and writes nothing: the
/// estimate and the time of its last sample sit in atomics, and the read
/// decays the estimate to now on the fly. Samples (one per request) update
/// both under a sequence lock: a writer makes `seq` odd, writes, and makes it
/// even again; a reader that sees `seq` change (or odd) reads again, so it
/// never mixes one sample's estimate with another's time.
#[derive(Debug)]
pub(crate) struct PeakEwma {
    seq: AtomicU64,
    /// The estimate in nanoseconds, as `f64` bits, at `at`.
    rtt_ns: AtomicU64,
    at: AtomicI64,
    in_flight: AtomicUsize,
}

/// The estimate decayed from `at` to `now`, as if zero-time responses had
/// been seen meanwhile: an endpoint that gets no traffic looks better and
/// better, so that it is tried again.
fn decayed(rtt_ns: f64, at: Nanos, now: Nanos) -> f64 {
    rtt_ns * (-now.since(at) / DECAY.as_nanos() as f64).exp()
}

/// Folds a response time observed at `now` into the estimate `rtt_ns` of
/// `at`. A slower one replaces the estimate (the "peak"); a faster one pulls
/// it down by how much time has passed since the last sample, relative to
/// [`DECAY`].
fn observe(rtt_ns: f64, at: Nanos, sample_ns: f64, now: Nanos) -> (f64, Nanos) {
    let rtt_ns = if sample_ns > rtt_ns {
        sample_ns
    } else {
        let keep = (-now.since(at) / DECAY.as_nanos() as f64).exp();
        rtt_ns * keep + sample_ns * (1.0 - keep)
    };
    // A sample taken before another's update must not move the clock back,
    // or the next decay would count that time twice.
    (rtt_ns, at.max(now))
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
            seq: AtomicU64::new(0),
            rtt_ns: AtomicU64::new((initial.as_nanos() as f64).to_bits()),
            at: AtomicI64::new(Nanos::at(now).0),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Starts the estimate again from `initial`, as a new endpoint's: for an
    /// endpoint back after a time without traffic, whose old estimate says
    /// nothing of now.
    pub(crate) fn restart(&self, initial: Duration) {
        let now = Nanos::now();
        self.update(|_, _| (initial.as_nanos() as f64, now));
    }

    /// The estimate and the time of its last sample, as one writer left
    /// them.
    fn read(&self) -> (f64, Nanos) {
        let mut spins = 0;
        loop {
            let seq = self.seq.load(Ordering::Acquire);
            if seq & 1 == 0 {
                let rtt_ns = f64::from_bits(self.rtt_ns.load(Ordering::Relaxed));
                let at = Nanos(self.at.load(Ordering::Relaxed));
                // Orders the loads above before the check below: if they saw
                // a writer's stores, the check sees its odd `seq`.
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == seq {
                    return (rtt_ns, at);
                }
            }
            pause(&mut spins);
        }
    }

    /// Replaces the estimate and its time by `f` of them, one writer at a
    /// time.
    fn update(&self, f: impl FnOnce(f64, Nanos) -> (f64, Nanos)) {
        let mut spins = 0;
        let mut seq = self.seq.load(Ordering::Relaxed);
        loop {
            if seq & 1 == 0 {
                match self.seq.compare_exchange_weak(
                    seq,
                    seq + 1,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(current) => seq = current,
                }
            } else {
                pause(&mut spins);
                seq = self.seq.load(Ordering::Relaxed);
            }
        }
        // Orders the odd `seq` before the stores below (see `read`).
        fence(Ordering::Release);
        let rtt_ns = f64::from_bits(self.rtt_ns.load(Ordering::Relaxed));
        let at = Nanos(self.at.load(Ordering::Relaxed));
        let (rtt_ns, at) = f(rtt_ns, at);
        self.rtt_ns.store(rtt_ns.to_bits(), Ordering::Relaxed);
        self.at.store(at.0, Ordering::Relaxed);
        self.seq.store(seq + 2, Ordering::Release);
    }

    /// The response time estimate, decayed to now (see [`decayed`]).
    pub(crate) fn rtt(&self) -> Duration {
        self.rtt_at(Nanos::now())
    }

    fn rtt_at(&self, now: Nanos) -> Duration {
        let (rtt_ns, at) = self.read();
        Duration::from_nanos(decayed(rtt_ns, at, now) as u64)
    }

    /// The cost compared by power of two choices at `now`; lower is better.
    /// Takes no lock and writes nothing.
    pub(crate) fn cost(&self, now: Nanos) -> f64 {
        let in_flight = self.in_flight.load(Ordering::Relaxed) as f64;
        let (rtt_ns, at) = self.read();
        decayed(rtt_ns, at, now) * (in_flight + 1.0)
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

/// One wait for a sequence lock's writer: spins, then yields to let a
/// preempted writer finish.
fn pause(spins: &mut u32) {
    if *spins < SPINS {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
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
            let (sample, now) = (rtt.as_nanos() as f64, Nanos::at(now));
            self.load
                .update(|rtt_ns, at| observe(rtt_ns, at, sample, now));
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
        load.rtt_at(Nanos::at(now)).as_nanos() as f64 / MS
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
        let t0 = Nanos::at(t0);
        let idle = load.cost(t0);
        let a = load.start_at(Instant::now());
        let b = load.start_at(Instant::now());
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

    #[test]
    fn reading_changes_nothing() {
        // Two loads with the same samples, one read a thousand times in
        // between: the same estimate after the next sample.
        let t0 = Instant::now();
        let read = Arc::new(PeakEwma::new_at(Duration::from_millis(500), t0));
        let unread = Arc::new(PeakEwma::new_at(Duration::from_millis(500), t0));
        for i in 0..1_000 {
            let cost = read.cost(Nanos::at(after(t0, i)));
            assert!(cost <= 500.0 * MS, "{cost}");
        }
        for load in [&read, &unread] {
            load.start_at(after(t0, 4_900)).finish_at(after(t0, 5_000));
        }
        let (a, b) = (ms(&read, after(t0, 5_000)), ms(&unread, after(t0, 5_000)));
        assert_eq!(a, b);
        // A 100 ms sample 5 s after 500: 500 / √e + 100 (1 - 1 / √e). (Had
        // the reads folded in zero-time samples, as tower's do, 336.)
        assert!((a - 342.6).abs() < 0.1, "{a}");
    }

    #[test]
    fn a_reader_never_sees_half_an_update() {
        // Writers store an estimate equal to its time; readers racing them
        // must always see a matching pair.
        let load = Arc::new(PeakEwma::new_at(Duration::ZERO, Instant::now()));
        load.update(|_, _| (0.0, Nanos(0)));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let (load, stop) = (load.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut i = w;
                    while !stop.load(Ordering::Relaxed) {
                        i += 2;
                        load.update(|_, _| (i as f64, Nanos(i)));
                    }
                })
            })
            .collect();
        let mut reads = 0;
        let deadline = Instant::now() + Duration::from_millis(200);
        while Instant::now() < deadline || reads < 10_000 {
            let (rtt_ns, at) = load.read();
            assert_eq!(rtt_ns, at.0 as f64);
            reads += 1;
        }
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.join().unwrap();
        }
    }

    #[test]
    fn concurrent_requests_all_count_and_end() {
        let load = Arc::new(PeakEwma::new(Duration::from_millis(1)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let load = load.clone();
                std::thread::spawn(move || {
                    let mut longest = Duration::ZERO;
                    for _ in 0..5_000 {
                        let t = Instant::now();
                        let request = load.start();
                        assert!(load.in_flight() >= 1);
                        drop(request);
                        longest = longest.max(t.elapsed());
                    }
                    longest
                })
            })
            .collect();
        let mut longest = Duration::from_millis(1);
        for thread in threads {
            longest = longest.max(thread.join().unwrap());
        }
        assert_eq!(load.in_flight(), 0);
        // No sample was longer (a preempted thread makes a long one): the
        // estimate is one of them or between them, never garbage.
        let rtt = load.rtt();
        assert!(rtt <= longest, "{rtt:?} > {longest:?}");
    }
}
