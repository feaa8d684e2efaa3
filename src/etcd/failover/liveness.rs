//! Whether a member answers ([`Liveness`]), from the traffic itself, and
//! which member to send a new request to ([`choose`]).
//!
//! etcd answers every client message: a unary request with its response, a
//! lease keepalive with a keepalive response, a watch create or progress
//! request with a watch response. So a member that was sent something
//! [`PATIENCE`] ago and has said nothing since does not answer now, whatever
//! its connection looks like (a frozen process, a black-holed link and a
//! stalled disk all keep the HTTP/2 connection "ready"). Hearing anything
//! from it (a response's headers, a message, trailers) makes it live again.

use std::time::Duration;

use tokio::time::Instant;

/// How long a member may leave what it was sent unanswered before new
/// requests go to another member. Over the longest round trip a registry
/// should work on (see the README's slow-link limit), under the per-attempt
/// deadline of [`retry_transient`](crate::etcd::retry_transient), so that a
/// request sent again goes elsewhere.
pub(crate) const PATIENCE: Duration = Duration::from_millis(1000);

/// What the traffic says of one member.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Liveness {
    /// The first thing sent since the member was last heard from.
    unanswered_since: Option<Instant>,
    /// The last request failed on its way (connection refused or broken,
    /// "no leader"): not chosen until heard from again.
    failed: bool,
}

impl Liveness {
    /// Something was sent to the member at `now`.
    pub(super) fn sent(&mut self, now: Instant) {
        self.unanswered_since.get_or_insert(now);
    }

    /// The member answered.
    pub(super) fn heard(&mut self) {
        self.unanswered_since = None;
        self.failed = false;
    }

    /// A request to the member failed on its way.
    pub(super) fn failed(&mut self) {
        self.failed = true;
    }

    /// Whether new requests should avoid the member at `now`.
    pub(super) fn suspect(&self, now: Instant) -> bool {
        self.failed
            || self
                .unanswered_since
                .is_some_and(|since| now.saturating_duration_since(since) >= PATIENCE)
    }
}

/// The member for a new request: `current` unless it is suspect, else the
/// next one after it that is not; `current` if every member is suspect (one
/// of them has to be tried, and the pinned one is as good as any).
pub(super) fn choose(current: usize, suspect: &[bool]) -> usize {
    let n = suspect.len();
    if n == 0 || !suspect[current % n] {
        return current;
    }
    (1..n)
        .map(|step| (current + step) % n)
        .find(|&i| !suspect[i])
        .unwrap_or(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unanswered_traffic_makes_a_member_suspect_until_heard() {
        let t0 = Instant::now();
        let mut live = Liveness::default();
        assert!(!live.suspect(t0));
        live.sent(t0);
        live.sent(t0 + Duration::from_millis(900)); // the first one counts
        assert!(!live.suspect(t0 + PATIENCE - Duration::from_millis(1)));
        assert!(live.suspect(t0 + PATIENCE));
        live.heard();
        assert!(!live.suspect(t0 + PATIENCE * 5));
        live.failed();
        assert!(live.suspect(t0), "a failure counts at once");
        live.heard();
        assert!(!live.suspect(t0));
    }

    #[test]
    fn the_choice_sticks_and_moves_on_only_when_suspect() {
        assert_eq!(choose(0, &[false, false, false]), 0);
        assert_eq!(choose(1, &[false, false, false]), 1);
        assert_eq!(choose(0, &[true, false, false]), 1);
        assert_eq!(choose(1, &[false, true, true]), 0);
        assert_eq!(choose(2, &[true, true, false]), 2);
        assert_eq!(choose(1, &[true, true, true]), 1, "all suspect: stay");
        assert_eq!(choose(0, &[]), 0);
    }
}
