//! Holding one session: keepalives on a process-wide timer grid, the watch of
//! the own key (put back if deleted or overwritten by hand, displaced if
//! another lease took it), and the guard's commands, until one of them ends
//! the session.

use std::collections::VecDeque;
use std::time::Duration;

use etcd_client::EventType;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::outcome::{LeaseLoss, Outcome};
use super::{Command, Session, Task};
use crate::error::ErrorChain;

impl Task {
    /// Keeps one session alive until something ends it.
    ///
    /// Keepalives go out every TTL/3 from when the stream's first one was
    /// sent, answered or not, so a slow link delays the answers but not the
    /// renewals. Each answer says until when the lease holds at least (the
    /// send time of the keepalive it answers, plus the TTL it grants). A
    /// keepalive unanswered for one and a half periods (TTL/2) means the
    /// member serving the streams hangs (a round trip that long is past the
    /// slow-link limit of TTL/3): the keepalive and watch streams are opened again, on
    /// the same lease (the channel sends them to a member that answers),
    /// while the lease still holds the key. Only once the lease's known
    /// time is over is it given up for a fresh one.
    pub(super) async fn hold(
        &mut self,
        mut session: Session,
        commands: &mut mpsc::Receiver<Command>,
    ) -> Outcome {
        let lease_id = session.lease_id;
        let period = Duration::from_millis(self.ttl as u64 * 1000 / 3);
        let mut lease = Keepalives::new(session.since, period, self.ttl());
        let mut ticks = tokio::time::interval_at(on_grid(session.since + period, period), period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    let now = Instant::now();
                    if lease.lost(now) {
                        return Outcome::Lost(LeaseLoss::Unanswered(self.ttl()));
                    }
                    lease.send(now);
                    if let Err(error) = session.keeper.keep_alive().await {
                        return Outcome::Lost(error.into());
                    }
                }
                _ = tokio::time::sleep_until(lease.stall_at()) => {
                    warn!(key = %self.key, lease_id, "keepalive unanswered; opening the streams again on another member while the lease holds the key");
                    match self.reopen(&mut session).await {
                        Ok(()) => {
                            lease.restart(session.since);
                            info!(key = %self.key, lease_id, "keepalive and watch streams open again");
                        }
                        // etcd-client's "lease not found" from a new stream: etcd
                        // answered, the lease is gone.
                        Err(crate::Error::Etcd(etcd_client::Error::LeaseKeepAliveError(_))) => {
                            return Outcome::Lost(LeaseLoss::Expired);
                        }
                        Err(error) => {
                            lease.retry_later(Instant::now());
                            warn!(key = %self.key, lease_id, error = %ErrorChain(&error), "streams not open again yet");
                        }
                    }
                }
                answer = session.keepalive.message() => match answer {
                    Ok(Some(resp)) if resp.ttl() > 0 => {
                        let rtt = lease.answered(Instant::now(), resp.ttl());
                        if let Some(rtt) = rtt.filter(|rtt| lease.first_slow(*rtt)) {
                            warn!(key = %self.key, lease_id, ?rtt, limit = ?period, "etcd round trip near the limit of TTL/3; keepalives may come too late: raise the TTL");
                        }
                        debug!(key = %self.key, lease_id, ttl = resp.ttl(), ?rtt, "keepalive ok");
                    }
                    Ok(Some(_)) => return Outcome::Lost(LeaseLoss::Expired),
                    Ok(None) => return Outcome::Lost(LeaseLoss::KeepAliveClosed),
                    Err(error) => return Outcome::Lost(error.into()),
                },
                event = session.watch.message() => match event {
                    Ok(Some(resp)) => {
                        if resp.canceled() {
                            let reason = resp.cancel_reason().to_owned();
                            return Outcome::Lost(LeaseLoss::WatchCanceled(reason));
                        }
                        for event in resp.events() {
                            let Some(kv) = event.kv() else { continue };
                            session.revision = session.revision.max(kv.mod_revision());
                            match event.event_type() {
                                // Withdrawn (`withdraw.rs`): the key is meant
                                // to be absent; nothing of ours is put back.
                                EventType::Delete if self.withdrawn => {}
                                EventType::Put if self.withdrawn && kv.lease() == 0 => {}
                                EventType::Delete => {
                                    warn!(key = %self.key, lease_id, "key deleted while the lease lives, putting it back");
                                    if let Err(error) = self.put(lease_id).await {
                                        return Outcome::Lost(LeaseLoss::Failed(error));
                                    }
                                }
                                EventType::Put if kv.lease() == 0 => {
                                    // Registrations always write with a lease:
                                    // this is a hand-made write (garbage, a
                                    // test value). Ours is the live instance.
                                    warn!(key = %self.key, lease_id, "key overwritten without a lease, putting ours back");
                                    if let Err(error) = self.put(lease_id).await {
                                        return Outcome::Lost(LeaseLoss::Failed(error));
                                    }
                                }
                                EventType::Put if kv.lease() != lease_id => {
                                    return Outcome::Displaced(kv.lease());
                                }
                                EventType::Put => {}
                            }
                        }
                    }
                    Ok(None) => return Outcome::Lost(LeaseLoss::WatchClosed),
                    Err(error) => return Outcome::Lost(error.into()),
                },
                command = commands.recv() => match command {
                    Some(Command::Update { instance, value, reply }) => {
                        if let Err(outcome) = self.write_update(lease_id, instance, value, reply).await {
                            return outcome;
                        }
                    }
                    Some(Command::Deregister { reply }) => return Outcome::Stop(Some(reply)),
                    Some(Command::Serving { serving, reply }) => {
                        if let Err(outcome) = self.write_serving(lease_id, serving, reply).await {
                            return outcome;
                        }
                    }
                    None => return Outcome::Stop(None),
                },
            }
        }
    }

    /// Opens the keepalive and watch streams of `session` again, on the
    /// same lease, the watch from the last revision seen.
    async fn reopen(&self, session: &mut Session) -> crate::Result<()> {
        let (keepalive, watch) = tokio::join!(
            self.keepalive_stream(session.lease_id),
            self.own_key_watch(session.revision)
        );
        let ((keeper, keepalive, since), watch) = (keepalive?, watch?);
        session.keeper = keeper;
        session.keepalive = keepalive;
        session.watch = watch;
        session.since = since;
        Ok(())
    }
}

/// The keepalives of one lease: sent and not yet answered (etcd answers them
/// in order, one each), and until when the lease holds at least.
#[derive(Debug)]
struct Keepalives {
    period: Duration,
    ttl: Duration,
    unanswered: VecDeque<Instant>,
    held_until: Instant,
    warned: bool,
}

impl Keepalives {
    /// A stream whose first keepalive, sent at `since`, was answered
    /// (etcd-client reads that answer when it opens the stream).
    fn new(since: Instant, period: Duration, ttl: Duration) -> Self {
        Self {
            period,
            ttl,
            unanswered: VecDeque::new(),
            held_until: since + ttl,
            warned: false,
        }
    }

    fn send(&mut self, now: Instant) {
        self.unanswered.push_back(now);
    }

    /// An answer granting `ttl` seconds came at `now`; the round trip of
    /// the keepalive it answers.
    fn answered(&mut self, now: Instant, ttl: i64) -> Option<Duration> {
        let sent = self.unanswered.pop_front()?;
        let granted = Duration::from_secs(u64::try_from(ttl).unwrap_or(0));
        self.held_until = self.held_until.max(sent + granted);
        Some(now.saturating_duration_since(sent))
    }

    /// When the oldest keepalive has waited one and a half periods for its
    /// answer (far off if none waits): the member serving the streams is
    /// taken to hang. Half a period before the lease's known time ends if
    /// the hang began just after an answer (last renewal one period before
    /// the first unanswered keepalive, TTL three periods).
    fn stall_at(&self) -> Instant {
        match self.unanswered.front() {
            Some(sent) => *sent + self.period * 3 / 2,
            None => Instant::now() + self.period * 1000,
        }
    }

    #[cfg(test)]
    fn stalled(&self, now: Instant) -> bool {
        now >= self.stall_at()
    }

    /// The lease's known time is over.
    fn lost(&self, now: Instant) -> bool {
        now >= self.held_until
    }

    /// New streams, whose first keepalive, sent at `since`, was answered.
    fn restart(&mut self, since: Instant) {
        self.unanswered.clear();
        self.held_until = self.held_until.max(since + self.ttl);
    }

    /// Opening new streams failed at `now`: try again one period later
    /// (the lease's known time still decides when it is given up).
    fn retry_later(&mut self, now: Instant) {
        self.unanswered.clear();
        self.unanswered.push_back(now - self.period / 2);
    }

    /// Whether `rtt` is the first round trip of at least 3/4 of the period
    /// (the slow-link limit).
    fn first_slow(&mut self, rtt: Duration) -> bool {
        let slow = rtt >= self.period * 3 / 4 && !self.warned;
        self.warned |= slow;
        slow
    }
}

/// `at`, delayed to the next point of a process-wide grid of `period / 10`
/// (at most 100 ms) steps. The registrations of a process with the same TTL
/// then send their keepalives in the same timer tick: one wake-up and a few
/// socket writes for many leases rather than one each, which is most of what
/// idle registrations cost. A keepalive is late by less than a step, far
/// within the TTL.
fn on_grid(at: Instant, period: Duration) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let step = (period / 10)
        .min(Duration::from_millis(100))
        .as_nanos()
        .max(1);
    let late = if at >= epoch {
        let since = (at - epoch).as_nanos();
        (step - since % step) % step
    } else {
        (epoch - at).as_nanos() % step
    };
    at + Duration::from_nanos(late as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_link_delays_answers_not_renewals() {
        let t0 = Instant::now();
        let (period, ttl) = (Duration::from_secs(1), Duration::from_secs(3));
        let mut lease = Keepalives::new(t0, period, ttl);
        assert_eq!(
            lease.answered(t0, 3),
            None,
            "the first was answered already"
        );
        // RTT 1 s: each keepalive is answered one period later.
        for n in 1..10u32 {
            let now = t0 + period * n;
            if n > 1 {
                let rtt = lease.answered(now, 3).unwrap();
                assert_eq!(rtt, period);
            }
            assert!(!lease.lost(now), "at {n} s");
            assert!(!lease.stalled(now), "at {n} s");
            lease.send(now);
        }
        assert!(lease.first_slow(Duration::from_millis(800)));
        assert!(!lease.first_slow(Duration::from_secs(1)), "warned once");
    }

    #[test]
    fn two_unanswered_periods_stall_before_the_lease_is_lost() {
        let t0 = Instant::now();
        let (period, ttl) = (Duration::from_secs(1), Duration::from_secs(3));
        let mut lease = Keepalives::new(t0, period, ttl);
        // The member hangs: the keepalive of 1 s is never answered.
        lease.send(t0 + period);
        assert!(!lease.stalled(t0 + period * 2));
        lease.send(t0 + period * 2);
        let stall = t0 + period * 5 / 2;
        assert!(!lease.stalled(stall - Duration::from_millis(1)));
        assert!(lease.stalled(stall));
        assert!(!lease.lost(stall), "half a period left to renew");
        assert!(
            lease.lost(t0 + period * 3),
            "held until the answered send + TTL"
        );
        // New streams: the old unanswered ones are forgotten, the lease's time kept.
        lease.restart(stall);
        assert!(!lease.stalled(stall + period));
        assert!(!lease.lost(t0 + period * 5));
        lease.retry_later(stall);
        assert!(lease.stalled(stall + period));
    }

    #[test]
    fn keepalives_start_on_a_shared_grid_and_barely_late() {
        let period = Duration::from_secs(2);
        let now = Instant::now();
        let a = on_grid(now, period);
        let b = on_grid(now + Duration::from_millis(37), period);
        let c = on_grid(now + Duration::from_millis(160), period);
        for t in [a, b, c] {
            // Same grid: 100 ms steps apart, whoever asks.
            assert_eq!((t - a).as_nanos() % 100_000_000, 0);
        }
        assert!(a - now < Duration::from_millis(100));
        assert_eq!(on_grid(a, period), a, "a grid point stays");
        assert!(b == a || b == a + Duration::from_millis(100));
        // Short TTLs get a finer grid: TTL 1 s, period 333 ms, steps of 33 ms.
        let short = Duration::from_millis(333);
        let d = on_grid(now, short);
        assert!(d - now < Duration::from_millis(34));
    }
}
