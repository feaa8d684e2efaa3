//! A registration's state changes, as metrics and events: a task of its own
//! follows the state watch of each [`Registration`](crate::Registration)
//! (spawned by [`follow_registration`]), so that the registration's task
//! needs no hook of its own.
//!
//! What the watch shows is turned into facts by [`Tracker`], over plain data:
//! the watch may skip states (a lease lost and another one granted between
//! two looks shows as one lease id following another), and the lease id tells
//! them apart.

use tokio::sync::watch;
use tracing::info;

use super::metrics;
use crate::instance::Instance;
use crate::registration::RegistrationState;

/// What one new state means.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Facts {
    /// Whether the key is held now.
    pub(crate) up: bool,
    /// The lease that held the key was lost.
    pub(crate) lost: bool,
    /// The key is held again, by a fresh lease.
    pub(crate) reregistered: bool,
    /// The registration ended (deregistered, dropped or displaced).
    pub(crate) ended: bool,
}

/// The state seen last.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// The lease that holds the key, as far as seen.
    holding: Option<i64>,
    /// Whether the key was ever held.
    ever: bool,
}

impl Tracker {
    pub(crate) fn step(&mut self, state: &RegistrationState) -> Facts {
        let mut facts = Facts::default();
        match state {
            RegistrationState::Registered { lease_id } => {
                facts.up = true;
                match self.holding {
                    Some(held) if held == *lease_id => {}
                    Some(_) => {
                        facts.lost = true;
                        facts.reregistered = true;
                    }
                    None => facts.reregistered = self.ever,
                }
                self.holding = Some(*lease_id);
                self.ever = true;
            }
            RegistrationState::Reconnecting { .. } => {
                facts.lost = self.holding.take().is_some();
            }
            _ => {
                self.holding = None;
                facts.ended = true;
            }
        }
        facts
    }
}

/// Follows `state`, the state watch of the registration of `instance`, until
/// the registration ends: sets `tonic_etcd_registration_up`, counts
/// re-registrations and lost leases, and logs each change at info level.
/// Spawned on the current tokio runtime.
pub(crate) fn follow_registration(
    instance: &Instance,
    mut state: watch::Receiver<RegistrationState>,
) {
    let (service, id, endpoint) = (
        instance.service.clone(),
        instance.id.clone(),
        instance.addr.clone(),
    );
    metrics::registration_followed(&service, &id);
    tokio::spawn(async move {
        let mut tracker = Tracker::default();
        loop {
            let current = state.borrow_and_update().clone();
            let facts = tracker.step(&current);
            metrics::registration_up(&service, &id, facts.up);
            if facts.lost {
                metrics::keepalive_failed(&service, &id);
            }
            if facts.reregistered {
                metrics::reregistered(&service, &id);
            }
            log(&service, &id, &endpoint, &current, &facts);
            if facts.ended || state.changed().await.is_err() {
                break;
            }
        }
        metrics::registration_up(&service, &id, false);
    });
}

/// The info event of a state change: `registration up` (`reason`:
/// `registered` or `re-registered`), `registration down` (`reason`: the
/// error), `registration ended` (`reason`: `deregistered` or `displaced`).
fn log(service: &str, id: &str, endpoint: &str, state: &RegistrationState, facts: &Facts) {
    match state {
        RegistrationState::Registered { lease_id } if facts.reregistered || !facts.lost => {
            let reason = if facts.reregistered {
                "re-registered"
            } else {
                "registered"
            };
            info!(service, id, endpoint, lease_id, reason, "registration up");
        }
        RegistrationState::Reconnecting { error, attempt } => {
            info!(service, id, endpoint, attempt, reason = %error, "registration down");
        }
        RegistrationState::Displaced { by_lease } => {
            info!(
                service,
                id,
                endpoint,
                by_lease,
                reason = "displaced",
                "registration ended"
            );
        }
        RegistrationState::Deregistered => {
            info!(
                service,
                id,
                endpoint,
                reason = "deregistered",
                "registration ended"
            );
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(lease_id: i64) -> RegistrationState {
        RegistrationState::Registered { lease_id }
    }

    fn reconnecting() -> RegistrationState {
        RegistrationState::Reconnecting {
            error: "etcd down".into(),
            attempt: 1,
        }
    }

    fn facts(up: bool, lost: bool, reregistered: bool, ended: bool) -> Facts {
        Facts {
            up,
            lost,
            reregistered,
            ended,
        }
    }

    #[test]
    fn a_lost_lease_then_a_new_one_is_one_failure_and_one_reregistration() {
        let mut t = Tracker::default();
        // The watch starts at "not registered yet".
        assert_eq!(t.step(&reconnecting()), facts(false, false, false, false));
        assert_eq!(t.step(&registered(1)), facts(true, false, false, false));
        assert_eq!(t.step(&registered(1)), facts(true, false, false, false));
        assert_eq!(t.step(&reconnecting()), facts(false, true, false, false));
        assert_eq!(t.step(&reconnecting()), facts(false, false, false, false));
        assert_eq!(t.step(&registered(2)), facts(true, false, true, false));
        assert_eq!(
            t.step(&RegistrationState::Deregistered),
            facts(false, false, false, true)
        );
    }

    #[test]
    fn a_skipped_reconnecting_state_shows_in_the_lease_id() {
        let mut t = Tracker::default();
        t.step(&registered(1));
        assert_eq!(t.step(&registered(2)), facts(true, true, true, false));
        assert_eq!(
            t.step(&RegistrationState::Displaced { by_lease: 9 }),
            facts(false, false, false, true)
        );
    }
}
