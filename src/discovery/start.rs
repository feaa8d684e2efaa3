//! The start of one watch of a prefix: the initial Get, the state, the
//! [`Watcher`] and its first subscriber; spawned by a scope of shared
//! watches (`hub`), alone for the subset's clients.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;
use tokio::sync::watch;
use tower::discover::Change;
use tracing::{info, info_span, Instrument};

use super::fanout::{Fanout, Receiver};
use super::filter::InstanceFilter;
use super::health::Health;
use super::shared::Shared;
use super::state::{Event, State};
use super::watcher::{self, Watcher};
use crate::codec::Codec;
use crate::error::{Error, Result};

/// What one watch needs, the options of [`Discovery`](super::Discovery) checked.
pub(crate) struct Params {
    pub(crate) client: Client,
    pub(crate) service: String,
    pub(crate) prefix: String,
    pub(crate) codec: Arc<dyn Codec>,
    pub(crate) version: Option<String>,
    pub(crate) filter: Option<InstanceFilter>,
    pub(crate) startup_timeout: Duration,
}

/// A running watch: its state (with health) and its subscribers.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    pub(crate) shared: Arc<Shared>,
    pub(crate) fanout: Fanout,
}

impl Running {
    /// A new subscriber, the current set queued first; `None` if the watch
    /// has stopped.
    pub(crate) fn subscribe(&self) -> Option<Receiver> {
        let state = self.shared.lock();
        let current = state
            .emitted()
            .map(|(identity, instance)| Change::Insert(identity.to_owned(), instance.clone()));
        self.fanout.subscribe(current)
    }

    /// [`subscribe`](Self::subscribe) with the state it reads.
    pub(crate) fn subscription(&self) -> Option<Subscription> {
        let rx = self.subscribe()?;
        Some(Subscription {
            shared: self.shared.clone(),
            rx,
        })
    }
}

/// One subscriber of a watch: the state and its stream of changes.
pub(crate) struct Subscription {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rx: Receiver,
}

/// A watch whose initial Get is done and applied, not yet spawned.
pub(crate) struct Prepared {
    pub(crate) running: Running,
    pub(crate) first: Receiver,
    watcher: Watcher,
    service: String,
}

impl Prepared {
    /// Spawns the watcher on the current runtime.
    pub(crate) fn spawn(self) -> (Running, Receiver) {
        let prefix = &self.running.shared.prefix;
        // The task outlives the start: its span must not nest under `discovery_start`.
        let span = info_span!(parent: None, "discovery", service = %self.service, %prefix);
        tokio::spawn(self.watcher.run().instrument(span));
        (self.running, self.first)
    }
}

/// Reads the prefix (within the startup timeout) and prepares its watch.
pub(crate) async fn prepare(params: Params) -> Result<Prepared> {
    let Params {
        client,
        service,
        prefix,
        codec,
        version,
        filter,
        startup_timeout: limit,
    } = params;
    let fetch = watcher::fetch(client.kv_client(), &prefix);
    let snapshot = match tokio::time::timeout(limit, fetch).await {
        Ok(snapshot) => snapshot?,
        Err(_) => return Err(Error::Timeout(limit)),
    };

    let (health_tx, health_rx) = watch::channel(Health::Connected);
    let state = State::new(service.clone(), codec, version, filter);
    let shared = Arc::new(Shared::new(
        service.clone(),
        prefix.clone(),
        state,
        health_rx,
    ));
    let fanout = Fanout::default();
    let first = fanout
        .subscribe([])
        .expect("a new fanout takes subscribers");
    let watcher = Watcher::new(
        client,
        prefix.clone(),
        shared.clone(),
        fanout.clone(),
        health_tx,
        snapshot.revision,
    );
    let keys = snapshot.kvs.len();
    watcher.apply([Event::Resync { kvs: snapshot.kvs }]);
    info!(
        %prefix,
        revision = snapshot.revision,
        keys,
        instances = shared.lock().len(),
        "discovery started"
    );
    Ok(Prepared {
        running: Running { shared, fanout },
        first,
        watcher,
        service,
    })
}
