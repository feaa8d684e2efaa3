//! Service registration, discovery and client-side load balancing for
//! [tonic](https://docs.rs/tonic) gRPC services, through [etcd](https://etcd.io).
//!
//! - A server holds a [`Registration`]: a key under its service's prefix, bound to
//!   an etcd lease that a background task keeps alive, re-creates after lease loss
//!   or an etcd restart, and removes on [`Registration::deregister`].
//! - A client runs a [`Discovery`]: one etcd Get, then a Watch from the next
//!   revision, turned into tower [`Change`] events, which feed the crate's
//!   [`Balancer`] or tonic's balanced [`Channel`](tonic::transport::Channel).
//!
//! # Quick start
//!
//! Server side:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tonic_etcd::{Instance, Registrar};
//!
//! let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
//! let registration = Registrar::new(etcd)
//!     .ttl(Duration::from_secs(10))
//!     .register(Instance::new("helloworld", "127.0.0.1:50051")?)
//!     .await?;
//! // ... serve with tonic; on shutdown:
//! registration.deregister().await?;
//! # Ok(()) }
//! ```
//!
//! Client side, one constructor per kind of client:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tonic_etcd::{Discovery, Policy};
//!
//! let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
//!
//! // The crate's balancer (recommended): round robin, fails fast when there
//! // is no instance, ejects the ones it cannot reach.
//! let balancer = Discovery::new(etcd.clone(), "helloworld")
//!     .balancer(Policy::RoundRobin)
//!     .await?;
//! // let mut client = GreeterClient::new(balancer.clone());
//! let discovery = balancer.discovery().expect("fed by a discovery");
//! println!("{} instances", discovery.snapshot().len());
//!
//! // Or tonic's own balanced channel:
//! let channel = Discovery::new(etcd.clone(), "helloworld").tonic_channel().await?;
//! // let mut client = GreeterClient::new(channel);
//!
//! // Or the raw stream of changes:
//! let changes = Discovery::new(etcd, "helloworld").changes().await?;
//! # Ok(()) }
//! ```
//!
//! Each start fails with [`Error::Timeout`] if etcd does not answer within
//! the [startup timeout](Discovery::startup_timeout) (3 s by default).
//!
//! # Layout
//!
//! The layers point down only: a module never uses one above it.
//!
//! - **Ground** (no tonic in its API): [`Error`], the crate's backoff, the etcd
//!   connection ([`EtcdConfig`], [`connect`], what etcd's errors mean), and
//!   [`instance`] ([`Instance`] and its validation).
//! - **Registry** (no tonic): [`codec`] (registry layouts, [`Codec`]),
//!   [`registration`] ([`Registrar`], [`Registration`], graceful shutdown),
//!   [`discovery`] ([`Discovery`], the [`InstanceChanges`] stream of
//!   [`Change`]s, its [`DiscoveryView`] and [`Health`]; subsetting in
//!   [`discovery::subset`], [shared watches](Discovery#shared-watches)), [`overrides`]
//!   (an operator's drain and weight, read by every discovery).
//! - **Observability** (no tonic): [`observe`], the metrics (through the
//!   `metrics` facade) and the info events of state changes. It reads the
//!   registry's state types, and the registry and the balancer call its
//!   one-line hooks.
//! - **Transport seam** (the only layer that names tonic): [`endpoint`]
//!   (recommended endpoint settings), `tls` (`https://` endpoint templates),
//!   [`balance`] (the crate's [`Balancer`] with its [`Policy`], and tonic's
//!   balanced channel), [`health`] (a registration that follows the server's
//!   gRPC health, `tonic-health`). An adapter for another gRPC transport
//!   belongs here.
//! - **Outside the library**: the `tonic-etcd` operator CLI (`src/bin/`,
//!   feature `cli`), the examples (helloworld server and client,
//!   the quick starts), the tests (one binary, `tests/it`, with the etcd
//!   fixture in `tests/support`), and the benches.
//!
//! etcd-client's errors carry tonic's `Status`; the ground reads their codes in
//! one private module (`etcd::status`), and nothing above it sees them. The
//! etcd client's own channel is tonic's too: the crate's failover channel
//! (private `etcd::failover`: requests pinned to one member, moved when it
//! stops answering) is the ground's one other module that names tonic.
//!
//! # Feature flags
//!
//! - `tls` (default): TLS and mutual TLS, to etcd ([`EtcdConfig::ca_file`],
//!   [`EtcdConfig::client_cert_files`]) and to the services (the `tls`
//!   module), with rustls and ring. Without it, only `http://` works.
//! - `cli` (not default): the `tonic-etcd` binary (`cargo install --path .
//!   --features cli`); brings clap, which the library does not need.
//! - `metrics` (default): the metrics of [`observe`], recorded through the
//!   [`metrics`](https://docs.rs/metrics) facade into whatever recorder the
//!   application installs. Without it, the recording calls compile to
//!   nothing (the events stay).

#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![forbid(unsafe_code)]

// Ground.
mod backoff;
mod error;
mod etcd;
pub mod instance;

// Registry.
pub mod codec;
pub mod discovery;
pub mod overrides;
pub mod registration;

// Observability.
pub mod observe;

// Transport seam.
pub mod balance;
pub mod endpoint;
pub mod health;
#[cfg(feature = "tls")]
pub mod tls;

pub use balance::HashKey;
pub use balance::{Balancer, BalancerBuilder, Policy};
pub use balance::{EndpointState, EndpointStatus, OutlierDetection};
pub use balance::{Locality, SlowStart};
pub use codec::Codec;
pub use discovery::{Discovery, DiscoveryView, Health, InstanceChanges};
pub use error::{Error, ErrorChain, Result};
pub use etcd::{connect, connect_options, EtcdConfig};
pub use instance::Instance;
pub use registration::shutdown_signal;
pub use registration::{Registrar, Registration, RegistrationState};

/// A change of a set of instances, as a [`Discovery`] streams it and a
/// [`Balancer`] consumes it: tower's, re-exported so that users of the plain
/// stream need neither tower nor its features.
///
/// ```
/// use tonic_etcd::{Change, Instance};
///
/// let instance = Instance::new("helloworld", "10.0.0.7:50051")?;
/// let change: Change<String, Instance> = Change::Insert(instance.addr.clone(), instance);
/// assert!(matches!(change, Change::Insert(..)));
/// # Ok::<(), tonic_etcd::Error>(())
/// ```
pub use tower::discover::Change;

/// Re-export of the etcd client this crate is built on.
pub use etcd_client;

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Error>();
    assert_send_sync::<EtcdConfig>();
    assert_send_sync::<Instance>();
    assert_send_sync::<Registrar>();
    assert_send_sync::<Registration>();
    assert_send_sync::<Discovery>();
    assert_send_sync::<InstanceChanges>();
    assert_send_sync::<DiscoveryView>();
    assert_send_sync::<overrides::Overrides>();
    assert_send_sync::<Balancer>();
    assert_send_sync::<BalancerBuilder>();
};
