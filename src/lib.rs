//! Service registration, discovery and client-side load balancing for
//! [tonic](https://docs.rs/tonic) gRPC services, through [etcd](https://etcd.io).
//!
//! - A server holds a [`Registration`]: a key under its service's prefix, bound to
//!   an etcd lease that a background task keeps alive, re-creates after lease loss
//!   or an etcd restart, and removes on [`Registration::deregister`].
//! - A client runs a [`Discovery`]: one etcd Get, then a Watch from the next
//!   revision, turned into tower [`Change`](tower::discover::Change) events, which
//!   feed the crate's [`Balancer`] or tonic's balanced
//!   [`Channel`](tonic::transport::Channel).
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
//! Client side:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tonic_etcd::{Discovery, Policy};
//!
//! let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
//! // The crate's balancer: round robin, fails fast when there is no instance.
//! let balancer = Discovery::new(etcd.clone(), "helloworld")
//!     .balancer(Policy::RoundRobin)
//!     .await?;
//! // let mut client = GreeterClient::new(balancer);
//!
//! // Or tonic's own balanced channel, fed by the same discovery.
//! let channel = Discovery::new(etcd, "helloworld").balance_channel().await?;
//! // let mut client = GreeterClient::new(channel);
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`instance`]: [`Instance`] and its validation.
//! - [`codec`]: registry layouts ([`Codec`], [`Native`](codec::Native)).
//! - [`registration`]: [`Registrar`], [`Registration`], graceful shutdown.
//! - [`discovery`]: [`Discovery`], the [`Discovered`] stream, [`Health`].
//! - [`balance`]: the crate's [`Balancer`] with its [`Policy`], the tonic
//!   `balance_channel` driver, and endpoint templates.
//! - [`EtcdConfig`]: endpoints, TLS, mutual TLS and authentication to etcd.
//! - `tls`: TLS to the services (`https://` endpoint templates).
//!
//! # Feature flags
//!
//! - `tls` (default): TLS and mutual TLS, to etcd ([`EtcdConfig::ca_file`],
//!   [`EtcdConfig::client_cert_files`]) and to the services (the `tls`
//!   module), with rustls and ring. Without it, only `http://` works.

#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![forbid(unsafe_code)]

mod backoff;
pub mod balance;
pub mod codec;
pub mod discovery;
pub mod endpoint;
mod error;
mod etcd;
pub mod instance;
pub mod registration;
#[cfg(feature = "tls")]
pub mod tls;

pub use balance::{Balancer, Policy};
pub use codec::Codec;
pub use discovery::{Discovered, Discovery, DiscoveryHandle, Health};
pub use error::{Error, Result};
pub use etcd::{connect, connect_options, EtcdConfig};
pub use instance::Instance;
pub use registration::shutdown_signal;
pub use registration::{Registrar, Registration, RegistrationState};

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
    assert_send_sync::<DiscoveryHandle>();
};
