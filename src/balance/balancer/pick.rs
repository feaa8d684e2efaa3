//! [`Pick`]: what one pick reads of its request and of the balancer beyond
//! the endpoints, handed down from the call to the policy's structure; and
//! [`InFlight`], the balancer-wide count of requests in flight that the
//! bounded loads of consistent hashing read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What a pick goes by besides the endpoints (more fields may come).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Pick {
    /// The request's hashed key (consistent hashing); `None` without one.
    pub(super) key: Option<u64>,
    /// Requests in flight through the balancer, all endpoints together
    /// (consistent hashing's load bound).
    pub(super) in_flight: usize,
}

impl Pick {
    /// A pick for a request with the hashed `key`.
    pub(super) fn keyed(key: Option<u64>) -> Self {
        Pick {
            key,
            ..Pick::default()
        }
    }
}

/// The requests in flight through a balancer, all endpoints together: one
/// atomic, so that the load bound costs O(1) to read whatever n.
#[derive(Debug, Default)]
pub(super) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub(super) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts one more until the guard is dropped (with the attempt's
    /// outcome, as the endpoint's own count).
    pub(super) fn start(&self) -> Flight {
        self.0.fetch_add(1, Ordering::Relaxed);
        Flight(self.0.clone())
    }
}

/// One request counted in an [`InFlight`], until dropped.
#[derive(Debug)]
pub(super) struct Flight(Arc<AtomicUsize>);

impl Drop for Flight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
