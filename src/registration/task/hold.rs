//! Holding one session: keepalives on a process-wide timer grid, the watch of
//! the own key (put back if deleted or overwritten by hand, displaced if
//! another lease took it), and the guard's commands, until one of them ends
//! the session.

use std::time::Duration;

use etcd_client::EventType;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::outcome::{LeaseLoss, Outcome};
use super::{Command, Session, Task};

impl Task {
    /// Keeps one session alive until something ends it.
    pub(super) async fn hold(
        &mut self,
        mut session: Session,
        commands: &mut mpsc::Receiver<Command>,
    ) -> Outcome {
        let lease_id = session.lease_id;
        let period = Duration::from_millis(self.ttl as u64 * 1000 / 3);
        let mut ticks = tokio::time::interval_at(on_grid(Instant::now() + period, period), period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_answer = Instant::now();
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if last_answer.elapsed() >= self.ttl() {
                        return Outcome::Lost(LeaseLoss::Unanswered(self.ttl()));
                    }
                    if let Err(error) = session.keeper.keep_alive().await {
                        return Outcome::Lost(error.into());
                    }
                }
                answer = session.keepalive.message() => match answer {
                    Ok(Some(resp)) if resp.ttl() > 0 => {
                        last_answer = Instant::now();
                        debug!(key = %self.key, lease_id, ttl = resp.ttl(), "keepalive ok");
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
