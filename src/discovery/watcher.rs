//! The background task of a discovery: paginated Get, then Watch, with retry,
//! resume and resync.
//!
//! ```text
//! start():  Get (pages pinned at revision R) ──▶ Resync ──▶ spawn run()
//! run():    ┌──▶ [resync: Get + diff] ──▶ Watch from R+1 ──▶ events ──┐
//!           │        compacted / etcd behind us: resync, at once      │
//!           └── error, cancel, end of stream: back off, resume R+1 ◀──┘
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, KvClient, WatchOptions, WatchResponse};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, timeout};
use tower::discover::Change;
use tracing::{debug, info, warn};

use super::state::Event;
use super::stream::Shared;
use super::Health;
use crate::backoff::Backoff;
use crate::codec::key_str;
use crate::etcd::retry_transient;
use crate::etcd::status::{self, Fault};
use crate::instance::Instance;

/// Keys per page of the initial and resync Gets.
pub(crate) const PAGE_SIZE: i64 = 1000;
/// Deadline of a resync Get inside the task (the caller of `start` sets its own).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for etcd to confirm a new watch. A stream can open and then stay
/// silent when etcd is unreachable; without this the task would wait forever.
const CREATE_TIMEOUT: Duration = Duration::from_secs(5);

/// The sender side of the [`Change`] stream.
pub(crate) type ChangeSender = mpsc::UnboundedSender<Change<String, Instance>>;

/// The content of a prefix at one revision.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) revision: i64,
    pub(crate) kvs: Vec<(String, Vec<u8>)>,
}

/// The first key after every key that starts with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes: the range runs to the end of the keyspace.
    vec![0]
}

/// Reads every key under `prefix`, in pages of [`PAGE_SIZE`], all pinned at the
/// revision of the first page. If that revision is compacted between pages, the
/// read starts over (a few times) at a newer revision.
pub(crate) async fn fetch(kv: KvClient, prefix: &str) -> Result<Snapshot, etcd_client::Error> {
    let end = prefix_end(prefix.as_bytes());
    let mut restarts = 0;
    'read: loop {
        let mut from = prefix.as_bytes().to_vec();
        let mut revision = 0;
        let mut kvs = Vec::new();
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(PAGE_SIZE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            // Sent again at once if it fails on its way (a member of the
            // cluster down or electing a leader), so that `start` does not fail
            // because one endpoint of several is gone.
            let get = retry_transient(|| {
                let (mut kv, from, options) = (kv.clone(), from.clone(), options.clone());
                async move { kv.get(from, Some(options)).await }
            });
            let mut page = match get.await {
                Ok(page) => page,
                Err(error)
                    if revision > 0
                        && restarts < 3
                        && status::classify(&error) == Fault::Compacted =>
                {
                    restarts += 1;
                    debug!(revision, %error, "snapshot compacted between pages; reading again");
                    continue 'read;
                }
                Err(error) => return Err(error),
            };
            if revision == 0 {
                revision = page.header().map_or(0, |h| h.revision());
            }
            let more = page.more();
            let page = page.take_kvs();
            let next = page.last().map(|kv| {
                let mut key = kv.key().to_vec();
                key.push(0);
                key
            });
            for kv in page {
                let (key, value) = kv.into_key_value();
                match String::from_utf8(key) {
                    Ok(key) => kvs.push((key, value)),
                    Err(e) => warn!(key = %key_str(e.as_bytes()), "skipping key that is not UTF-8"),
                }
            }
            match next {
                Some(next) if more => from = next,
                _ => break 'read Ok(Snapshot { revision, kvs }),
            }
        }
    }
}

/// The backoff of the retry loop: 50 ms doubling to 2 s, each delay ±50 %.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// How one watch session ended.
#[derive(Debug)]
enum Session {
    /// The consumer dropped the stream.
    Shutdown,
    /// The watch cannot resume where it was: read everything again, now.
    Resync,
    /// Something failed: back off, then resume.
    Failed(String),
}

/// Runs `future` unless the consumer goes away first.
async fn unless_closed<F: Future>(tx: &ChangeSender, future: F) -> Option<F::Output> {
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

/// The task that keeps a discovery up to date.
pub(crate) struct Watcher {
    client: Client,
    prefix: String,
    shared: Arc<Shared>,
    tx: ChangeSender,
    health: watch::Sender<Health>,
    /// Every event up to this revision has been applied.
    revision: i64,
    /// The next session must start with a Get.
    resync: bool,
    /// etcd refused our auth token (expired, or issued by another member):
    /// authenticate again before the next watch.
    reauthenticate: bool,
}

impl Watcher {
    pub(crate) fn new(
        client: Client,
        prefix: String,
        shared: Arc<Shared>,
        tx: ChangeSender,
        health: watch::Sender<Health>,
        revision: i64,
    ) -> Self {
        Self {
            client,
            prefix,
            shared,
            tx,
            health,
            revision,
            resync: false,
            reauthenticate: false,
        }
    }

    /// Applies events and queues the resulting changes, under one lock so that
    /// the snapshot and the stream never disagree.
    pub(crate) fn apply(&self, events: impl IntoIterator<Item = Event>) {
        let mut state = self.shared.lock();
        for event in events {
            for change in state.apply(event) {
                match &change {
                    Change::Insert(identity, instance) => {
                        debug!(%identity, addr = %instance.addr, "insert")
                    }
                    Change::Remove(identity) => debug!(%identity, "remove"),
                }
                // A closed receiver means the consumer is gone; run() notices.
                let _ = self.tx.send(change);
            }
        }
    }

    fn set_health(&self, health: Health) {
        self.health.send_if_modified(|current| {
            let changed = *current != health;
            *current = health;
            changed
        });
    }

    /// Watches until the consumer drops the stream.
    pub(crate) async fn run(mut self) {
        let mut backoff = Backoff::new(BACKOFF.0, BACKOFF.1);
        loop {
            let error = match self.session(&mut backoff).await {
                Session::Shutdown => break,
                Session::Resync => continue,
                Session::Failed(error) => error,
            };
            let delay = backoff.next_delay();
            warn!(%error, revision = self.revision, ?delay, "watch lost; keeping the current set and retrying");
            self.set_health(Health::Reconnecting { error });
            if unless_closed(&self.tx, sleep(delay)).await.is_none() {
                break;
            }
        }
        debug!("consumer gone; discovery stopped");
    }

    /// One Watch (preceded by a Get if a resync is due), until it fails.
    async fn session(&mut self, backoff: &mut Backoff) -> Session {
        if self.reauthenticate {
            // A watch carries the token only when it is created, and etcd
            // refuses an expired one in the watch response, where
            // etcd-client's automatic refresh does not look.
            if let Err(end) = request(&self.tx, "authentication", self.client.refresh_token()).await
            {
                return end;
            }
            info!("authenticated again after etcd refused the token");
            self.reauthenticate = false;
        }
        let resynced = self.resync;
        if self.resync {
            let kv = self.client.kv_client();
            let snapshot = match request(&self.tx, "resync Get", fetch(kv, &self.prefix)).await {
                Ok(snapshot) => snapshot,
                Err(end) => return end,
            };
            let before = self.revision;
            self.apply([Event::Resync { kvs: snapshot.kvs }]);
            self.revision = snapshot.revision;
            self.resync = false;
            info!(
                from = before,
                to = self.revision,
                instances = self.shared.lock().len(),
                "resynced"
            );
        }

        let start = self.revision + 1;
        // Progress notifications (sent by etcd to up-to-date watchers on quiet
        // prefixes) move `revision` forward, so a resume after a long quiet
        // spell does not start from a compacted revision.
        let options = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_progress_notify()
            .with_start_revision(start);
        let mut client = self.client.watch_client();
        let prefix = self.prefix.clone();
        let create = async move {
            let mut stream = client.watch(prefix, Some(options)).await?;
            let first = stream.message().await?;
            Ok::<_, etcd_client::Error>((stream, first))
        };
        let (mut stream, first) =
            match unless_closed(&self.tx, timeout(CREATE_TIMEOUT, create)).await {
                None => return Session::Shutdown,
                Some(Err(_)) => {
                    return Session::Failed(format!(
                        "etcd did not confirm the watch within {CREATE_TIMEOUT:?}"
                    ))
                }
                Some(Ok(Err(error))) => {
                    self.reauthenticate = status::classify(&error) == Fault::InvalidAuthToken;
                    return Session::Failed(format!("watch: {error}"));
                }
                Some(Ok(Ok((_, None)))) => {
                    return Session::Failed("watch stream ended before it was created".into())
                }
                Some(Ok(Ok((stream, Some(first))))) => (stream, first),
            };

        if first.created() && !first.canceled() {
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
                return Session::Resync;
            }
            debug!(start, server_revision = server, "watching");
            self.set_health(Health::Connected);
            backoff.reset();
        }

        let mut next = Some(first);
        loop {
            let response = match next.take() {
                Some(response) => response,
                None => match unless_closed(&self.tx, stream.message()).await {
                    None => return Session::Shutdown,
                    Some(Ok(Some(response))) => response,
                    Some(Ok(None)) => return Session::Failed("watch stream ended".into()),
                    Some(Err(error)) => return Session::Failed(format!("watch: {error}")),
                },
            };
            if let Some(end) = self.on_response(response, resynced) {
                return end;
            }
        }
    }

    /// Handles one watch response; `Some` ends the session.
    fn on_response(&mut self, response: WatchResponse, resynced: bool) -> Option<Session> {
        let compact = response.compact_revision();
        if compact > 0
            || (response.canceled()
                && status::cancel_reason(response.cancel_reason()) == Fault::Compacted)
        {
            self.resync = true;
            if resynced {
                // Compacted again right after reading: let the backoff pace it.
                return Some(Session::Failed(format!(
                    "watch from {} compacted (compact revision {compact}) right after a resync",
                    self.revision + 1
                )));
            }
            warn!(
                revision = self.revision,
                compact_revision = compact,
                "watch revision compacted; resyncing"
            );
            return Some(Session::Resync);
        }
        if response.canceled() {
            self.reauthenticate =
                status::cancel_reason(response.cancel_reason()) == Fault::InvalidAuthToken;
            return Some(Session::Failed(format!(
                "watch canceled by etcd: {}",
                response.cancel_reason()
            )));
        }
        if response.events().is_empty() {
            // A progress notification: every event up to the header revision
            // has been sent. (A created response's header says nothing of the
            // sort: events from our start revision may still be on their way.)
            if !response.created() {
                if let Some(header) = response.header() {
                    self.revision = self.revision.max(header.revision());
                }
            }
            return None;
        }
        let mut events = Vec::with_capacity(response.events().len());
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            self.revision = self.revision.max(kv.mod_revision());
            let Ok(key) = kv.key_str() else {
                warn!(key = %key_str(kv.key()), "skipping key that is not UTF-8");
                continue;
            };
            events.push(match event.event_type() {
                EventType::Put => Event::Put {
                    key: key.to_owned(),
                    value: kv.value().to_vec(),
                    mod_revision: kv.mod_revision(),
                },
                EventType::Delete => Event::Delete {
                    key: key.to_owned(),
                },
            });
        }
        self.apply(events);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/services/foo/"), b"/services/foo0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        // The range of "foo/" excludes "foobar/...".
        let end = prefix_end(b"/s/foo/");
        assert!(b"/s/foobar/x".as_slice() >= end.as_slice());
        assert!(b"/s/foo/x".as_slice() < end.as_slice());
    }
}
