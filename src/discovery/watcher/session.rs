//! One watch session, a step per concern: authenticate again (if etcd refused
//! the token), resync (if due), create the watch, confirm it, then pump its
//! responses until it ends. Each step either hands the next one its result or
//! says how the session ended ([`Session`]).

use std::future::Future;
use std::time::Duration;

use etcd_client::{WatchOptions, WatchResponse, WatchStream};
use tokio::time::{timeout, Instant};
use tracing::{debug, info, warn};

use super::fetch::fetch;
use super::task::{ChangeSender, Watcher};
use crate::backoff::Backoff;
use crate::discovery::health::Health;
use crate::discovery::state::Event;
use crate::etcd::status;

/// Deadline of a resync Get or a re-authentication inside the task.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for etcd to confirm a new watch. A stream can open and then stay
/// silent when etcd is unreachable; without this the task would wait forever.
const CREATE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a watch asks etcd for its progress (`WatchProgressRequest`),
/// which etcd answers at once with the revision it is at.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// A watch that hears nothing for this long, progress requests included,
/// is on a member that hangs (frozen, black-holed, stalled disk): the
/// session ends and the next watch goes to a member that answers. A hung
/// member is thus noticed within 3 s (plus a progress period).
pub(crate) const SILENT_LIMIT: Duration = Duration::from_secs(3);

/// How one watch session ended.
#[derive(Debug)]
pub(super) enum Session {
    /// The consumer dropped the stream.
    Shutdown,
    /// The watch cannot resume where it was: read everything again, now.
    Resync,
    /// Something failed: back off, then resume.
    Failed(String),
}

/// Runs `future` unless the consumer goes away first.
pub(super) async fn unless_closed<F: Future>(tx: &ChangeSender, future: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        _ = tx.closed() => None,
        output = future => Some(output),
    }
}

/// One etcd request of a session, bounded by [`REQUEST_TIMEOUT`]: its output,
/// or how the session ends (the consumer gone, or the request `what` timed out
/// or failed).
async fn request<T, E: std::fmt::Display>(
    tx: &ChangeSender,
    what: &str,
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, Session> {
    match unless_closed(tx, timeout(REQUEST_TIMEOUT, future)).await {
        None => Err(Session::Shutdown),
        Some(Err(_)) => Err(Session::Failed(format!(
            "{what} timed out after {REQUEST_TIMEOUT:?}"
        ))),
        Some(Ok(Err(error))) => Err(Session::Failed(format!("{what}: {error}"))),
        Some(Ok(Ok(output))) => Ok(output),
    }
}

impl Watcher {
    /// One Watch (preceded by a Get if a resync is due), until it ends.
    pub(super) async fn session(&mut self, backoff: &mut Backoff) -> Session {
        let resynced = self.resync;
        match self.open(resynced, backoff).await {
            Ok((stream, first)) => self.pump(stream, first, resynced).await,
            Err(end) => end,
        }
    }

    /// Everything before the events: the watch, created and confirmed, with
    /// its first response.
    async fn open(
        &mut self,
        resynced: bool,
        backoff: &mut Backoff,
    ) -> Result<(WatchStream, WatchResponse), Session> {
        if self.reauthenticate {
            self.authenticate_again().await?;
        }
        if resynced {
            self.resync().await?;
        }
        let (stream, first) = self.create_watch().await?;
        self.confirm(&first, resynced, backoff)?;
        Ok((stream, first))
    }

    /// Gets a fresh auth token. A watch carries the token only when it is
    /// created, and etcd refuses an expired one in the watch response, where
    /// etcd-client's automatic refresh does not look.
    async fn authenticate_again(&mut self) -> Result<(), Session> {
        request(&self.tx, "authentication", self.client.refresh_token()).await?;
        info!("authenticated again after etcd refused the token");
        self.reauthenticate = false;
        Ok(())
    }

    /// Reads the prefix again and applies only the difference.
    async fn resync(&mut self) -> Result<(), Session> {
        let kv = self.client.kv_client();
        let snapshot = request(&self.tx, "resync Get", fetch(kv, &self.prefix)).await?;
        let before = self.revision;
        self.apply([Event::Resync { kvs: snapshot.kvs }]);
        crate::observe::resynced(&self.shared.service);
        self.revision = snapshot.revision;
        self.resync = false;
        info!(
            from = before,
            to = self.revision,
            instances = self.shared.lock().len(),
            "resynced"
        );
        Ok(())
    }

    /// Creates the watch from the next revision and waits, at most
    /// [`CREATE_TIMEOUT`], for etcd's first response.
    async fn create_watch(&mut self) -> Result<(WatchStream, WatchResponse), Session> {
        // Progress notifications (sent by etcd to up-to-date watchers on quiet
        // prefixes) move `revision` forward, so a resume after a long quiet
        // spell does not start from a compacted revision.
        let options = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_progress_notify()
            .with_start_revision(self.revision + 1);
        let mut client = self.client.watch_client();
        let prefix = self.prefix.clone();
        let create = async move {
            let mut stream = client.watch(prefix, Some(options)).await?;
            let first = stream.message().await?;
            Ok::<_, etcd_client::Error>((stream, first))
        };
        match unless_closed(&self.tx, timeout(CREATE_TIMEOUT, create)).await {
            None => Err(Session::Shutdown),
            Some(Err(_)) => Err(Session::Failed(format!(
                "etcd did not confirm the watch within {CREATE_TIMEOUT:?}"
            ))),
            Some(Ok(Err(error))) => {
                self.reauthenticate = status::classify(&error).may_need_new_token();
                Err(Session::Failed(format!("watch: {error}")))
            }
            Some(Ok(Ok((_, None)))) => Err(Session::Failed(
                "watch stream ended before it was created".into(),
            )),
            Some(Ok(Ok((stream, Some(first))))) => Ok((stream, first)),
        }
    }

    /// Checks etcd's answer to a new watch: a watch created by an etcd behind
    /// the revision already seen means a resync; otherwise the discovery is
    /// connected again. (A canceled answer is left to [`pump`](Self::pump).)
    fn confirm(
        &mut self,
        first: &WatchResponse,
        resynced: bool,
        backoff: &mut Backoff,
    ) -> Result<(), Session> {
        if !first.created() || first.canceled() {
            return Ok(());
        }
        let server = first.header().map_or(0, |h| h.revision());
        if server < self.revision && !resynced {
            // etcd never goes back in revisions unless its data was lost
            // (wiped, or restored from an old backup). A watch from our
            // revision would wait for "future" revisions forever.
            warn!(
                server_revision = server,
                revision = self.revision,
                "etcd is behind the revision already seen (data loss?); resyncing"
            );
            self.resync = true;
            return Err(Session::Resync);
        }
        debug!(
            start = self.revision + 1,
            server_revision = server,
            "watching"
        );
        self.set_health(Health::Connected);
        backoff.reset();
        Ok(())
    }

    /// Handles `first` and every later response of the watch, until one ends
    /// the session or the stream fails or ends.
    ///
    /// Asks for the watch's progress every [`PROGRESS_EVERY`], and ends the
    /// session when etcd says nothing for [`SILENT_LIMIT`].
    async fn pump(&mut self, stream: WatchStream, first: WatchResponse, resynced: bool) -> Session {
        let (mut requests, mut responses) = stream.split();
        let mut next = Some(first);
        let mut heard = Instant::now();
        let mut ticks = tokio::time::interval_at(heard + PROGRESS_EVERY, PROGRESS_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let response = match next.take() {
                Some(response) => response,
                None => {
                    let received = tokio::select! {
                        biased;
                        _ = self.tx.closed() => return Session::Shutdown,
                        received = responses.message() => received,
                        _ = ticks.tick() => {
                            if heard.elapsed() >= SILENT_LIMIT {
                                return Session::Failed(format!(
                                    "etcd answered nothing for {SILENT_LIMIT:?}, progress requests \
                                     included: the member hangs; watching through another"
                                ));
                            }
                            // A full request queue means etcd is not reading: the
                            // silence check above ends the session.
                            let _ = timeout(PROGRESS_EVERY, requests.request_progress()).await;
                            continue;
                        }
                    };
                    match received {
                        Ok(Some(response)) => {
                            heard = Instant::now();
                            response
                        }
                        Ok(None) => return Session::Failed("watch stream ended".into()),
                        Err(error) => return Session::Failed(format!("watch: {error}")),
                    }
                }
            };
            if let Some(end) = self.on_response(response, resynced) {
                return end;
            }
        }
    }
}
