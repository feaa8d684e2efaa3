//! The tasks of a balancer: the driver, which applies the changes of its
//! stream as they come, in batches of all that is queued, and the probes,
//! which reconnect to ejected endpoints.

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_core::Stream;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::oneshot;
use tower::discover::Change;
use tracing::{debug, info};

use super::shared::Shared;
use super::target::Target;
use crate::backoff::Backoff;
use crate::error::ErrorChain;
use crate::instance::Instance;

/// First and longest pause between two connection attempts to an ejected
/// endpoint.
const PROBE_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// The stream a balancer is fed by: a discovery's, or any other.
pub(super) type Changes = Pin<Box<dyn Stream<Item = Change<String, Instance>> + Send>>;

/// Applies the changes `changes` has ready now, without waiting, as one
/// batch, so that a balancer knows the instances of a discovery's initial Get
/// (or of a static list) as soon as it exists.
pub(super) fn apply_ready(shared: &Arc<Shared>, changes: &mut Changes) {
    let mut batch = Vec::new();
    drain(changes, &mut batch);
    if !batch.is_empty() {
        shared.apply_batch(batch);
    }
}

/// Moves every change `changes` has ready now into `batch`; whether the
/// stream ended.
fn drain(changes: &mut Changes, batch: &mut Vec<Change<String, Instance>>) -> bool {
    loop {
        match changes.next().now_or_never() {
            Some(Some(change)) => batch.push(change),
            Some(None) => return true,
            None => return false,
        }
    }
}

/// The driver: applies the changes as soon as they arrive, whether or not
/// requests flow, until `stop` fires (every balancer clone is gone). Each
/// wake-up applies everything queued by then as one batch: a burst of k
/// changes costs O(k log n), not k rebuilds.
///
/// A stream that ends leaves the set as it is: the balancer goes on with the
/// last set of endpoints (and goes on ejecting and probing them).
pub(super) async fn drive(
    shared: Arc<Shared>,
    mut changes: Changes,
    mut stop: oneshot::Receiver<()>,
) {
    let mut open = true;
    // Slow start's steps: only while some endpoint ramps.
    let mut ramp: Option<tokio::time::Interval> = None;
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            step = shared.ramp_started(), if ramp.is_none() && shared.slow_start() => {
                let mut interval = tokio::time::interval(step);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ramp = Some(interval);
            }
            _ = async { ramp.as_mut().expect("guarded").tick().await }, if ramp.is_some() => {
                if !shared.ramp_step() {
                    ramp = None;
                }
            }
            change = changes.next(), if open => match change {
                Some(change) => {
                    let mut batch = vec![change];
                    let ended = drain(&mut changes, &mut batch);
                    shared.apply_batch(batch);
                    if ended {
                        info!("the change stream ended; keeping the last set of endpoints");
                        open = false;
                    }
                }
                None => {
                    // A static list, or a discovery whose task died.
                    info!("the change stream ended; keeping the last set of endpoints");
                    open = false;
                }
            },
        }
    }
    shared.clear();
    debug!("every clone of the balancer is gone; driver stopped");
}

/// Connects to an ejected endpoint with backoff until it answers, then puts it
/// back. Aborted when the endpoint is removed or replaced. Each attempt builds
/// the endpoint anew (the target holds none).
pub(super) async fn probe(shared: Weak<Shared>, target: Arc<Target>) {
    let mut backoff = Backoff::new(PROBE_BACKOFF.0, PROBE_BACKOFF.1);
    loop {
        tokio::time::sleep(backoff.next_delay()).await;
        let endpoint = match target.endpoint() {
            Ok(endpoint) => endpoint,
            Err(error) => {
                debug!(attempts = backoff.attempts(), %error, "the endpoint template refuses it");
                if shared.strong_count() == 0 {
                    return;
                }
                continue;
            }
        };
        match endpoint.connect().await {
            Ok(channel) => {
                if let Some(shared) = shared.upgrade() {
                    shared.restore(&target.key, target.epoch, channel);
                }
                return;
            }
            Err(error) => {
                debug!(attempts = backoff.attempts(), error = %ErrorChain(&error), "still cannot connect");
                if shared.strong_count() == 0 {
                    return;
                }
            }
        }
    }
}
