//! [`Target`]: what one request uses of an endpoint.

use std::sync::{Arc, Mutex, PoisonError};

use tonic::transport::Channel;

use super::health::Health;
use super::load::PeakEwma;

/// How many used clones of an endpoint's channel are kept for the next
/// requests. A clone is only held between asking the channel for room and
/// handing it the request, so a few cover any number of requests in flight.
const IDLE_CLONES: usize = 8;

/// What one request uses of an endpoint: its channel and load, and the epoch
/// that tells a failure of this channel from one of its replacement.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) key: String,
    pub(super) addr: String,
    pub(super) channel: Channel,
    pub(super) load: Arc<PeakEwma>,
    pub(super) epoch: u64,
    /// Its counters, outlier detection and health-service state.
    pub(super) health: Health,
    /// Clones of `channel` that have sent a request before. A fresh clone of
    /// tonic's channel allocates on its first use and bumps shared counters;
    /// a used one costs nothing more, so requests borrow them.
    idle: Mutex<Vec<Channel>>,
}

impl Target {
    pub(super) fn new(
        key: String,
        addr: String,
        channel: Channel,
        load: PeakEwma,
        epoch: u64,
    ) -> Self {
        Self {
            key,
            addr,
            channel,
            load: Arc::new(load),
            epoch,
            health: Health::default(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A clone of the channel for one request: a used one when there is one.
    pub(super) fn borrow_channel(&self) -> Channel {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        idle.unwrap_or_else(|| self.channel.clone())
    }

    /// Gives back a clone from [`borrow_channel`](Self::borrow_channel) once
    /// it has taken its request (not while it waits for room: a clone that
    /// holds a slot of the channel's buffer must not be shared).
    pub(super) fn return_channel(&self, channel: Channel) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_CLONES {
            idle.push(channel);
        }
    }
}
