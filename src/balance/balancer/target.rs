//! [`Target`]: what one request uses of an endpoint.
//!
//! An endpoint that has never been picked costs only its data (about 150
//! bytes here, pointers to the instance it shares with its entry): its
//! tonic [`Endpoint`] (some 630 bytes and a few allocations of its own) is
//! built by the template on the first pick, and its channel (and the buffer
//! task tonic spawns for it) made then, in one allocation with the clones
//! kept for reuse. The template ran once at insertion already, to refuse
//! the instances it cannot make an endpoint of; it is a pure function of
//! the instance, so the endpoint built again is the one it validated.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tokio::runtime::Handle;
use tonic::transport::{Channel, Endpoint};
use tracing::warn;

use super::health::Health;
use super::load::PeakEwma;
use super::shared::Template;
use crate::error::{Error, Result};
use crate::instance::Instance;

/// How many used clones of an endpoint's channel are kept for the next
/// requests. A clone is only held between asking the channel for room and
/// handing it the request, so a few cover any number of requests in flight.
const IDLE_CLONES: usize = 8;

/// What one request uses of an endpoint: its channel and load, and the epoch
/// that tells a failure of this channel from one of its replacement.
pub(super) struct Target {
    pub(super) key: String,
    /// The instance it was made for (its entry's, until a weight change).
    pub(super) instance: Arc<Instance>,
    /// Builds what the channel connects to, and what a probe reconnects to.
    template: Template,
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

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("key", &self.key)
            .field("instance", &self.instance)
            .field("connection", &self.connection)
            .field("load", &self.load)
            .field("epoch", &self.epoch)
            .field("health", &self.health)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
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
        instance: Arc<Instance>,
        template: Template,
        runtime: Handle,
        load: PeakEwma,
        epoch: u64,
    ) -> Self {
        Self {
            key,
            instance,
            template,
            connection: OnceLock::new(),
            runtime,
            load: Arc::new(load),
            epoch,
            health: Health::default(),
            metrics: Default::default(),
        }
    }

    /// Its address, for logs and metrics.
    pub(super) fn addr(&self) -> &str {
        &self.instance.addr
    }

    /// Its endpoint, built by the template (again: see the module docs).
    pub(super) fn endpoint(&self) -> Result<Endpoint> {
        (self.template)(&self.instance)
    }

    /// The template its endpoint is built by, for its replacement.
    pub(super) fn template(&self) -> Template {
        self.template.clone()
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
            let endpoint = self.endpoint().unwrap_or_else(|error| self.refused(&error));
            let _runtime = self.runtime.enter();
            Connection::new(endpoint.connect_lazy())
        })
    }

    /// What a channel connects to when the template, which built an
    /// endpoint for this instance at insertion, refuses it now (a template
    /// that is not a pure function of the instance): an address nothing
    /// listens on (port 0, refused at once), so that its requests fail to
    /// connect, are retried elsewhere and have it probed, and the probe
    /// asks the template again.
    fn refused(&self, error: &Error) -> Endpoint {
        warn!(
            endpoint = %self.key,
            addr = %self.addr(),
            %error,
            "the endpoint template refuses an instance it accepted at insertion; treating it as unreachable"
        );
        Endpoint::from_static("http://127.0.0.1:0")
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
