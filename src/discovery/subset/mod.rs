//! Subsetting: each client connects to `K` of the `N` instances of a
//! service, and the clients of the service spread evenly over them.
//!
//! Off by default; turn it on with [`Discovery::subset`](super::Discovery::subset).
//! It filters the stream of changes, so it serves the crate's
//! [`Balancer`](crate::Balancer) and tonic's balanced channel alike. The
//! view's [`snapshot`](super::DiscoveryView::snapshot) still lists every
//! instance; [`DiscoveryView::subset`](super::DiscoveryView::subset) lists
//! the subset.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tonic_etcd::{discovery::Subset, Discovery, Policy};
//!
//! let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
//! let balancer = Discovery::new(etcd, "helloworld")
//!     .subset(Subset::new(10))
//!     .balancer(Policy::RoundRobin)
//!     .await?;
//! assert!(balancer.endpoints().len() <= 10);
//! # Ok(()) }
//! ```
//!
//! # Algorithm
//!
//! Deterministic aperture, after Twitter's Finagle ("Deterministic
//! Aperture", Finagle's documentation, *Aperture Load Balancers*; and Twitter's
//! engineering blog, "Deterministic Aperture: A distributed, load balancing
//! algorithm", 2019), in the discrete form of Google's SRE book's
//! deterministic subsetting (*Site Reliability Engineering*, O'Reilly 2016,
//! chapter 20, "Load Balancing in the Datacenter"): both need each client's
//! rank among the clients and their number.
//!
//! - The servers are put on a ring, ordered by a stable hash of their
//!   identity (the same on every client).
//! - The client of rank `r` among `C` clients takes the `K` consecutive
//!   servers of the ring from `round(r · N / C)`.
//! - Every server is then in the subsets of ⌊C·K/N⌋ or ⌈C·K/N⌉ clients: with
//!   100 clients, 100 servers and K = 10, exactly 10 each; ten clients with
//!   K = 3 over ten servers reach every server, 3 clients each.
//! - A server leaving: the clients that held it take the next one, and about
//!   a third of the others (at most about half) shift by one server; with
//!   C = N = 100, K = 10, 10 to 60 clients change one of their 10 servers,
//!   31 on average. A server joining moves as many.
//!
//! Rendezvous hashing of the client id alone (gRPC's A68 "random
//! subsetting") needs no coordination but spreads the clients binomially:
//! with ten clients of K = 3 over ten servers, some server is left out in
//! about a quarter of the draws. It is the fallback below.
//!
//! # The clients' rank
//!
//! A subsetting client registers its [id](Subset::client_id) under a prefix of
//! the crate's own, outside the instances' prefix (so readers of the
//! instances, in any format, never see it), with a lease of 10 s kept alive
//! in the background, and watches that prefix:
//!
//! ```text
//! /services/helloworld/...                            the instances
//! /tonic-etcd/subset/services/helloworld/{client id}  the subsetting clients
//! ```
//!
//! Its rank is the position of its id among the live ids, sorted; it counts
//! itself even when its key is missing.
//!
//! - **At start** the discovery waits until the set of clients has been
//!   quiet for the [settle](Subset::settle) period (1 s by default; at most
//!   four times that), so that clients started together agree on the set
//!   before their first request.
//! - **While the set of clients changes** (a client joins, or its key expires)
//!   the subset is recomputed once the set has been quiet for the settle
//!   period: until then the clients may briefly disagree (some servers with
//!   one client more or less than even), never with fewer than K servers
//!   each. A client that goes away is not revoked: its key stays until its
//!   lease expires (10 s), so that a client that exits or restarts does not
//!   move everyone twice.
//! - **Server changes** apply at once. The ring is kept with each change
//!   (O(log N) per server), not recomputed per batch: a batch costs about
//!   0.2 ms at 100,000 servers (a ring from scratch: about 25 ms).
//! - **Fallback**: if the client's key cannot be written (no permission, etcd
//!   refusing), or the clients' prefix cannot be read, the discovery logs a
//!   warning and uses rendezvous hashing of the client id: still K servers,
//!   still deterministic, spread binomial.
//! - Two clients with the same id get the same subset.

mod algorithm;
mod members;
mod task;

use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, info_span, warn, Instrument};

use super::changes::InstanceChanges;
use super::start::{self, Params, Subscription};
use super::view::Chosen;
use crate::error::{Error, Result};
use crate::instance::Instance;
use members::{members_prefix, MemberCodec};
use task::{Io, Mode, Subsetter};

/// Subsetting options: the subset size `K`, the client id, the settle period.
///
/// ```
/// use std::time::Duration;
/// use tonic_etcd::discovery::Subset;
///
/// let subset = Subset::new(10).client_id("frontend-7").settle(Duration::from_millis(500));
/// assert_eq!(subset.size(), 10);
/// assert_eq!(subset.id(), "frontend-7");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subset {
    size: usize,
    client_id: Option<String>,
    settle: Duration,
}

impl Subset {
    /// The [`settle`](Self::settle) period used when none is set: 1 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(tonic_etcd::discovery::Subset::DEFAULT_SETTLE, Duration::from_secs(1));
    /// ```
    pub const DEFAULT_SETTLE: Duration = Duration::from_secs(1);

    /// Subsets of `size` instances (all of them when there are fewer). A size
    /// of 0 is refused when the discovery starts ([`Error::Config`]).
    ///
    /// ```
    /// let subset = tonic_etcd::discovery::Subset::new(3);
    /// assert_eq!(subset.size(), 3);
    /// ```
    pub fn new(size: usize) -> Self {
        Self {
            size,
            client_id: None,
            settle: Self::DEFAULT_SETTLE,
        }
    }

    /// Sets the client id, unique among the clients of the service; it
    /// decides the client's rank. Defaults to
    /// [`default_client_id`](Self::default_client_id). Same rules as an
    /// instance id (no `/`, whitespace or control character), else
    /// [`Error::InvalidId`] when the discovery starts.
    ///
    /// ```
    /// let subset = tonic_etcd::discovery::Subset::new(3).client_id("web-1");
    /// assert_eq!(subset.id(), "web-1");
    /// ```
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// Sets how long the set of clients must stay unchanged before a subset
    /// is computed from it, at start and after a change. Defaults to
    /// [`DEFAULT_SETTLE`](Self::DEFAULT_SETTLE). `Duration::ZERO` starts at
    /// once with the clients known then.
    ///
    /// ```
    /// use std::time::Duration;
    /// let subset = tonic_etcd::discovery::Subset::new(3).settle(Duration::ZERO);
    /// # let _ = subset;
    /// ```
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// The subset size `K`.
    ///
    /// ```
    /// assert_eq!(tonic_etcd::discovery::Subset::new(5).size(), 5);
    /// ```
    pub fn size(&self) -> usize {
        self.size
    }

    /// The client id: the one set, or [`default_client_id`](Self::default_client_id).
    ///
    /// ```
    /// let subset = tonic_etcd::discovery::Subset::new(5);
    /// assert!(subset.id().ends_with(&format!("-{}", std::process::id())));
    /// ```
    pub fn id(&self) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(Self::default_client_id)
    }

    /// The host name and the process id, `{host}-{pid}`; characters an id
    /// cannot hold (`/`, whitespace, control) become `-`.
    ///
    /// ```
    /// let id = tonic_etcd::discovery::Subset::default_client_id();
    /// assert!(id.ends_with(&format!("-{}", std::process::id())));
    /// ```
    pub fn default_client_id() -> String {
        let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|path| std::fs::read_to_string(path).ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|host| host.trim().to_owned())
            .filter(|host| !host.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        let host: String = host
            .chars()
            .map(|c| {
                if c == '/' || c.is_whitespace() || c.is_control() {
                    '-'
                } else {
                    c
                }
            })
            .collect();
        format!("{host}-{}", std::process::id())
    }
}

/// The subset that `client` connects to, among `clients` (the ids of every
/// subsetting client; `client` is added if missing), of `size` of `servers`
/// (their identities): the algorithm of [this module](self), pure, for
/// tools and tests that want to see where each client goes.
///
/// ```
/// use tonic_etcd::discovery::subset::choose;
///
/// let servers = ["a", "b", "c", "d"];
/// let clients = ["c1", "c2"];
/// let one = choose(&servers, &clients, "c1", 2);
/// let two = choose(&servers, &clients, "c2", 2);
/// assert_eq!(one.len(), 2);
/// assert!(one.iter().all(|s| !two.contains(s)), "two clients of 2 cover 4 servers");
/// ```
pub fn choose<'a>(
    servers: &[&'a str],
    clients: &[&str],
    client: &str,
    size: usize,
) -> Vec<&'a str> {
    let (rank, count) = algorithm::rank_of(clients, client);
    algorithm::aperture(&algorithm::ring(servers.iter().copied()), rank, count, size)
}

/// The subset `client` connects to under rendezvous hashing (gRPC A68's
/// random subsetting), the fallback when the clients cannot be counted:
/// deterministic from the id alone.
///
/// ```
/// use tonic_etcd::discovery::subset::rendezvous;
///
/// let servers = ["a", "b", "c", "d"];
/// assert_eq!(rendezvous(&servers, "c1", 2), rendezvous(&servers, "c1", 2));
/// assert_eq!(rendezvous(&servers, "c1", 2).len(), 2);
/// ```
pub fn rendezvous<'a>(servers: &[&'a str], client: &str, size: usize) -> Vec<&'a str> {
    algorithm::rendezvous(servers, client, size)
}

/// Puts the subset stage on `servers`: registers the client, watches the
/// clients, waits for them to settle, and returns the subset's changes.
pub(crate) async fn start(
    client: &Client,
    service: &str,
    subset: Subset,
    servers: Subscription,
    startup_timeout: Duration,
) -> Result<InstanceChanges> {
    if subset.size == 0 {
        return Err(Error::Config {
            reason: "subset size must be at least 1".into(),
        });
    }
    let id = subset.id();
    // An id follows the rules of an instance id (the last segment of a key).
    Instance::new(service, "127.0.0.1:1")?
        .with_id(id.as_str())
        .validate()?;
    let prefix = members_prefix(&servers.shared.prefix);
    let key = format!("{prefix}{id}");

    let lease = match members::register(client, key.clone(), id.clone(), startup_timeout).await {
        Ok(lease) => Some(lease),
        Err(error) => {
            warn!(%key, %error, "cannot write the subset client key; subsetting by rendezvous hashing of the client id");
            None
        }
    };
    let members = match &lease {
        None => None,
        Some(_) => {
            let params = Params {
                client: client.clone(),
                service: service.to_owned(),
                prefix: prefix.clone(),
                codec: Arc::new(MemberCodec {
                    prefix: prefix.clone(),
                }),
                version: None,
                filter: None,
                startup_timeout,
            };
            match start::prepare(params).await {
                Ok(prepared) => Some(prepared.spawn().1),
                Err(error) => {
                    warn!(%prefix, %error, "cannot read the subset clients; subsetting by rendezvous hashing of the client id");
                    None
                }
            }
        }
    };
    let mode = if members.is_some() {
        Mode::Aperture
    } else {
        Mode::Rendezvous
    };

    let (tx, rx) = mpsc::unbounded_channel();
    let (ready, started) = oneshot::channel();
    let shared = servers.shared.clone();
    let chosen = Chosen::default();
    let io = Io {
        servers: servers.rx,
        members,
        tx,
        chosen: chosen.clone(),
        ready,
        lease,
    };
    let subsetter = Subsetter::new(subset.size, id.clone(), mode);
    let span = info_span!(parent: None, "subset", %service, client = %id);
    tokio::spawn(task::run(subsetter, io, subset.settle).instrument(span));
    // An error means the servers' stream ended first: the stream then ends too.
    let _ = started.await;
    info!(%service, client = %id, size = subset.size, ?mode, "subset started");
    Ok(InstanceChanges::subset(rx, shared, chosen))
}
