//! What the background task of a discovery and every view of it share.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use super::health::Health;
use super::state::State;

/// The service, its prefix, the state machine and the health receiver.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) service: String,
    pub(crate) prefix: String,
    state: Mutex<State>,
    pub(crate) health: watch::Receiver<Health>,
}

impl Shared {
    pub(crate) fn new(
        service: String,
        prefix: String,
        state: State,
        health: watch::Receiver<Health>,
    ) -> Self {
        Self {
            service,
            prefix,
            state: Mutex::new(state),
            health,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent after every apply; a panic elsewhere while
        // holding the lock cannot leave it half-updated for readers to fear.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
