//! The crate's own etcd channel: every request of a client goes to one
//! member (the pinned one) until that member stops answering, then to the
//! next one that answers.
//!
//! etcd-client's default channel is tonic's balance channel: each request
//! goes to a random ready endpoint. A member that hangs (frozen, black-holed,
//! stalled disk) keeps its HTTP/2 connection "ready", so a share of all
//! requests, and any keepalive or watch stream opened there, hangs with it.
//! This channel (handed to etcd-client through
//! `Client::connect_with_balanced_channel`, so that every client the crate
//! makes uses it) instead:
//!
//! - watches the traffic of each member (`liveness`): a member sent
//!   something [`PATIENCE`] ago and silent since, or whose last request
//!   failed on its way (refused, reset, "no leader"), is *suspect*;
//! - sends each new request to the pinned member unless it is suspect, else
//!   pins the next member that is not;
//! - probes each suspect member every 500 ms with a Maintenance `Status`
//!   request (with `hasleader`, so a member cut off from its cluster stays
//!   suspect); an answer clears it.
//!
//! Requests already on their way to a hung member are not moved: the
//! caller's deadline ends them (each attempt of
//! [`retry_transient`](super::retry_transient) has its own, longer than
//! [`PATIENCE`], so the attempt sent again goes to another member), and
//! long-lived streams are watched by their owners (the registration's
//! keepalives, the discovery's progress requests), which open new ones.
//!
//! (This module names tonic's types: etcd-client's channel is tonic's. It
//! is the ground layer's one other place, with `status.rs`, that does.)

mod body;
mod identity;
mod liveness;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{BalancedChannelBuilder, Channel};
use http::{Request, Response, Uri};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tonic::transport::channel::Change;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};
use tracing::{debug, warn};

use body::{unavailable, Heard, Once, Sent};
pub(crate) use identity::{connection_of, Connection};
pub(crate) use liveness::PATIENCE;
use liveness::{choose, Liveness};

type Body = tonic::body::Body;
type BoxError = tower::BoxError;
/// What etcd-client sends its endpoints through.
type EndpointUpdater = mpsc::Sender<Change<Uri, tonic::transport::Endpoint>>;

/// How often each suspect member is probed.
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// How long a probe may wait for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Makes the channel for `Client::connect_with_balanced_channel`.
pub(crate) struct Failover;

impl BalancedChannelBuilder for Failover {
    type Error = etcd_client::Error;

    fn balanced_channel(self, buffer: usize) -> Result<(Channel, EndpointUpdater), Self::Error> {
        let shared = Arc::new(Shared {
            members: RwLock::new(Vec::new()),
            pinned: AtomicUsize::new(0),
            changed: Notify::new(),
            connection: Connection::new(),
        });
        let (tx, rx) = mpsc::channel(buffer.max(1));
        tokio::spawn(apply_changes(Arc::downgrade(&shared), rx));
        tokio::spawn(probe_suspects(Arc::downgrade(&shared)));
        let service = FailoverChannel { shared };
        Ok((Channel::Custom(BoxCloneSyncService::new(service)), tx))
    }
}

/// One etcd member: its connection and what its traffic says.
pub(super) struct Member {
    uri: Uri,
    channel: tonic::transport::Channel,
    live: Mutex<Liveness>,
    probing: AtomicBool,
}

impl Member {
    fn live(&self) -> std::sync::MutexGuard<'_, Liveness> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn sent(&self, now: Instant) {
        self.live().sent(now);
    }

    pub(super) fn heard(&self) {
        self.live().heard();
    }

    pub(super) fn failed(&self) {
        self.live().failed();
    }

    fn suspect(&self, now: Instant) -> bool {
        self.live().suspect(now)
    }
}

struct Shared {
    members: RwLock<Vec<Arc<Member>>>,
    /// Index of the member new requests go to.
    pinned: AtomicUsize,
    /// Members were added or removed.
    changed: Notify,
    /// Which connect made this channel (see [`connection_of`]).
    connection: Connection,
}

impl Shared {
    fn members(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Member>>> {
        self.members.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The member for a new request, `None` before any is known.
    fn pick(&self) -> Option<Arc<Member>> {
        let members = self.members();
        if members.is_empty() {
            return None;
        }
        let now = Instant::now();
        let suspect: Vec<bool> = members.iter().map(|m| m.suspect(now)).collect();
        let pinned = self.pinned.load(Ordering::Relaxed) % members.len();
        let chosen = choose(pinned, &suspect);
        if chosen != pinned
            && self
                .pinned
                .compare_exchange(pinned, chosen, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(
                from = %members[pinned].uri,
                to = %members[chosen].uri,
                patience = ?PATIENCE,
                "etcd member does not answer (or failed); moving requests to another member"
            );
        }
        Some(members[chosen].clone())
    }

    /// Waits until a member is known, then picks one.
    async fn pick_eventually(&self) -> Arc<Member> {
        loop {
            let changed = self.changed.notified();
            if let Some(member) = self.pick() {
                return member;
            }
            changed.await;
        }
    }
}

/// The channel etcd-client sends every request through.
#[derive(Clone)]
struct FailoverChannel {
    shared: Arc<Shared>,
}

impl Service<Request<Body>> for FailoverChannel {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Each member's channel is made ready per request, in `send`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if identity::answer(self.shared.connection) {
            // `connection_of`'s question: answered, and nothing is sent.
            return Box::pin(std::future::ready(Err("connection identified".into())));
        }
        let shared = self.shared.clone();
        Box::pin(async move {
            let member = shared.pick_eventually().await;
            send(member, request).await
        })
    }
}

/// Sends `request` to `member`, noting what is sent and heard.
async fn send(member: Arc<Member>, request: Request<Body>) -> Result<Response<Body>, BoxError> {
    member.sent(Instant::now());
    let request = request.map(|inner| {
        Body::new(Sent {
            inner,
            member: member.clone(),
        })
    });
    let mut channel = member.channel.clone();
    let result = async {
        channel.ready().await?;
        channel.call(request).await
    }
    .await;
    match result {
        Ok(response) => {
            if unavailable(response.headers()) {
                member.failed();
            } else {
                member.heard();
            }
            let member = member.clone();
            Ok(response.map(|inner| Body::new(Heard { inner, member })))
        }
        Err(error) => {
            debug!(member = %member.uri, %error, "etcd request failed on its way");
            member.failed();
            Err(error.into())
        }
    }
}

/// Adds and removes members as etcd-client asks (at connect, and through
/// `Client::add_endpoint` / `remove_endpoint`).
async fn apply_changes(
    shared: Weak<Shared>,
    mut changes: mpsc::Receiver<Change<Uri, tonic::transport::Endpoint>>,
) {
    while let Some(change) = changes.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        {
            let mut members = shared.members.write().unwrap_or_else(|e| e.into_inner());
            match change {
                Change::Insert(uri, endpoint) => {
                    members.retain(|m| m.uri != uri);
                    members.push(Arc::new(Member {
                        uri,
                        channel: endpoint.connect_lazy(),
                        live: Mutex::new(Liveness::default()),
                        probing: AtomicBool::new(false),
                    }));
                }
                Change::Remove(uri) => members.retain(|m| m.uri != uri),
            }
        }
        shared.changed.notify_waiters();
    }
}

/// Probes every suspect member, one probe at a time each, until the client
/// is gone.
async fn probe_suspects(shared: Weak<Shared>) {
    let mut ticks = tokio::time::interval(PROBE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        for member in shared.members().iter() {
            if member.suspect(now) && !member.probing.swap(true, Ordering::Relaxed) {
                tokio::spawn(probe(member.clone()));
            }
        }
    }
}

/// One Maintenance `Status` request to `member`; its answer (or failure) is
/// noted like any other.
async fn probe(member: Arc<Member>) {
    // A gRPC message: uncompressed, length 0 (an empty StatusRequest).
    let body = Body::new(Once(Some(Bytes::from_static(&[0, 0, 0, 0, 0]))));
    let request = Request::builder()
        .method("POST")
        .uri("/etcdserverpb.Maintenance/Status")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("hasleader", "true")
        .body(body);
    if let Ok(request) = request {
        let answered = tokio::time::timeout(PROBE_TIMEOUT, send(member.clone(), request)).await;
        debug!(member = %member.uri, answered = matches!(answered, Ok(Ok(_))), "probed etcd member");
    }
    member.probing.store(false, Ordering::Relaxed);
}
