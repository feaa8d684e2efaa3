//! The integration tests of tonic-etcd: one binary, one module per behaviour,
//! against real etcd processes, real gRPC servers and the example binaries.
//!
//! Every helper comes from `tests/support/` (`mod support`): the etcd fixture,
//! change-stream and key helpers, greeter servers, the example binaries' driver
//! and, with the `tls` feature, etcd with TLS and users. Tests run in parallel
//! threads of this one process, so none may rely on another's order or on
//! process-wide state: each starts its own etcd (or uses a unique service
//! name), takes its ports from [`support::free_port`] or `127.0.0.1:0`, and
//! passes environment variables to the processes it starts, never sets its own.
//!
//! ```text
//! cargo build --examples            # the example binaries that some tests run
//! cargo test --test it              # all of them
//! cargo test --test it --features cli cli::   # the operator CLI (builds it)
//! cargo test --test it discovery::  # one group
//! ```
//!
//! # Layout
//!
//! - `api`: the headline constructors: a balancer fed by any stream, the
//!   discovery view, the startup deadline.
//! - `registration`: register, update, deregister; recovery, crash, displacement,
//!   and what ending the guard does.
//! - `discovery`: the initial Get and the watch; compaction, etcd restarts,
//!   malformed values, shared prefixes.
//! - `balancer`: tonic's balanced channel and the crate's `Balancer`.
//! - `cli` (feature `cli`): the `tonic-etcd` operator CLI and overrides.
//! - `faults`: bad input, churn, cluster faults, etcd down, idle clients,
//!   operator actions, rolling restarts and startup of the example server.
//! - `security` (feature `tls`): TLS, mutual TLS and users, to etcd and to the
//!   services.
//! - `health`: a registration that follows the server's gRPC health.
//! - `examples`: the example binaries through their command-line contract.
//! - `interop_formats`: the registry formats of other systems.
//! - `metrics`: the metrics, scraped from the example binaries over HTTP.
//! - `hashing`: consistent hashing with bounded loads.
//! - `locality`: zone preference, spill-over and slow start's ramp.
//! - `fixture`: the etcd fixture itself.

#[path = "../support/mod.rs"]
mod support;

mod api;
mod balancer;
#[cfg(feature = "cli")]
mod cli;
mod discovery;
mod examples;
mod faults;
mod fixture;
mod hashing;
mod health;
mod interop_formats;
mod locality;
mod metrics;
mod registration;
#[cfg(feature = "tls")]
mod security;
mod subset;
