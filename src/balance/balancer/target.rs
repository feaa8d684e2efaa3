//! [`Target`]: what one request uses of an endpoint.
//!
//! An endpoint that has never been picked costs only its data: its channel
//! (and the buffer task tonic spawns for it) is made on the first pick, in
//! one allocation with the clones kept for reuse.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tokio::runtime::Handle;
use tonic::transport::{Channel, Endpoint};

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
    /// What the channel connects to, and what a probe reconnects to.
    pub(super) endpoint: Endpoint,
    /// Made by the first [`channel`](Self::channel) (a probe's connected
    /// channel is there from the start).
    connection: OnceLock<Box<Connection>>,
    /// Where the lazily made channel spawns its task.
    runtime: Handle,
    pub(super) load: Arc<PeakEwma>,
    pub(super) epoch: u64,
    /// Its counters, outlier detection and health-service state.
    pub(super) health: Health,
    /// Its metric handles, made by its first request.
    pub(super) metrics: crate::observe::EndpointMetrics,
}

/// The channel of a target that has been used.
#[derive(Debug)]
struct Connection {
    channel: Channel,
    /// Clones of `channel` that have sent a request before. A fresh clone of
    /// tonic's channel allocates on its first use and bumps shared counters;
    /// a used one costs nothing more, so requests borrow them.
    idle: Mutex<Vec<Channel>>,
}

impl Connection {
    fn new(channel: Channel) -> Box<Self> {
        Box::new(Self {
            channel,
            idle: Mutex::new(Vec::new()),
        })
    }
}

impl Target {
    /// A target whose channel is made on its first use, on `runtime`.
    pub(super) fn new(
        key: String,
        addr: String,
        endpoint: Endpoint,
        runtime: Handle,
        load: PeakEwma,
        epoch: u64,
    ) -> Self {
        Self {
            key,
            addr,
            endpoint,
            connection: OnceLock::new(),
            runtime,
            load: Arc::new(load),
            epoch,
            health: Health::default(),
            metrics: Default::default(),
        }
    }

    /// A target over a channel that is already there (a probe's).
    pub(super) fn with_channel(self, channel: Channel) -> Self {
        let _ = self.connection.set(Connection::new(channel));
        self
    }

    /// The endpoint's channel, made (lazily connecting, as
    /// [`Endpoint::connect_lazy`]) on the first call.
    pub(super) fn channel(&self) -> &Channel {
        &self.connection().channel
    }

    fn connection(&self) -> &Connection {
        self.connection.get_or_init(|| {
            let _runtime = self.runtime.enter();
            Connection::new(self.endpoint.connect_lazy())
        })
    }

    /// Whether the channel has been made: false for an endpoint never used.
    #[cfg(test)]
    pub(super) fn has_channel(&self) -> bool {
        self.connection.get().is_some()
    }

    /// A clone of the channel for one request: a used one when there is one.
    pub(super) fn borrow_channel(&self) -> Channel {
        let connection = self.connection();
        let idle = connection
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        idle.unwrap_or_else(|| connection.channel.clone())
    }

    /// Gives back a clone from [`borrow_channel`](Self::borrow_channel) once
    /// it has taken its request (not while it waits for room: a clone that
    /// holds a slot of the channel's buffer must not be shared).
    pub(super) fn return_channel(&self, channel: Channel) {
        let mut idle = self
            .connection()
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_CLONES {
            idle.push(channel);
        }
    }
}
