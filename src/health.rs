//! The server's gRPC health and its registration: an instance whose health
//! service says `NOT_SERVING` leaves discovery, and comes back on `SERVING`.
//!
//! The server serves `grpc.health.v1` with [`tonic_health`] (re-exported here,
//! so the versions match); [`follow`] ties a [`Registration`] to the
//! [`HealthReporter`] of that service, and [`shutdown_on`] is the graceful
//! shutdown that goes with it: `NOT_SERVING` first, then the key, then the
//! drain.
//!
//! # How the status is observed
//!
//! `tonic-health` 0.14's [`HealthReporter`] only sets statuses; it has no way
//! to read or subscribe to them. Its [`HealthService`], which serves them,
//! can be made from the reporter
//! ([`HealthService::from_health_reporter`]) and answers `Watch` in the
//! process: [`follow`] calls that `Watch` directly, with no network and no
//! second source of truth. What the server's clients see through their own
//! `Watch` streams is exactly what the registration follows.
//!
//! # Not serving deletes the key
//!
//! `NOT_SERVING` (and any other status than `SERVING`, or a service the
//! reporter does not know) **deletes** the instance's key, while the lease is
//! kept alive; `SERVING` puts the same value back on the same lease (see
//! [`Registration::set_serving`]). The alternative, marking the value
//! ("status: not serving") so that discovery leaves it out, works only for
//! this crate's readers: the other registry formats' clients (go-zero,
//! kratos, etcd's own naming resolver) understand only present or absent, and
//! would keep sending to a marked instance. Deleting works for every
//! [codec](crate::codec). The cost is none: the lease stays, so coming back
//! is one put, and a lease loss while withdrawn does not bring the key back.
//!
//! # Shutdown order
//!
//! [`shutdown_on`] waits for its signal, sets the given services
//! `NOT_SERVING` (the clients that check health stop sending at once: their
//! `Watch` stream carries it within a round trip), takes the key out, then
//! deregisters and waits `drain` while tonic still serves, as
//! [`Registration::deregister_on`] does; last, it clears those services
//! from the reporter, which ends the `Watch` streams (tonic's graceful
//! shutdown waits for every open stream).
//!
//! ```no_run
//! # async fn run(etcd: tonic_etcd::etcd_client::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tonic_etcd::health::{self, tonic_health};
//! use tonic_etcd::{shutdown_signal, Instance, Registrar};
//!
//! let (reporter, health_service) = tonic_health::server::health_reporter();
//! let registration = Registrar::new(etcd)
//!     .register(Instance::new("helloworld", "127.0.0.1:50051")?)
//!     .await?;
//! health::follow(&registration, &reporter, "");
//! let shutdown = health::shutdown_on(
//!     &registration,
//!     &reporter,
//!     ["", "helloworld.Greeter"],
//!     shutdown_signal(),
//!     Duration::from_secs(1),
//! );
//! // Server::builder()
//! //     .add_service(health_service)
//! //     .add_service(GreeterServer::new(MyGreeter))
//! //     .serve_with_shutdown(addr, shutdown)
//! //     .await?;
//! # drop(health_service); shutdown.await;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tonic::Request;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;
use tracing::{debug, info, warn};

use crate::error::{Error, ErrorChain};
use crate::registration::Registration;

/// The `tonic-health` this crate is built with.
pub use tonic_health;

/// How often a service the reporter does not know (or no longer knows) is
/// looked up again: `tonic-health` says nothing when one is added.
const RECHECK: Duration = Duration::from_millis(500);

/// Ties `registration` to the status of `service` (`""` for the whole
/// server) in `reporter`: `SERVING` keeps the instance in discovery, anything
/// else takes it out (see the [module docs](self) for why the key is deleted,
/// not marked). Changes take effect within milliseconds.
///
/// The task ends with the registration (deregistered, displaced or the guard
/// dropped; it does not keep the registration alive); abort the handle to
/// stop following earlier. A service that the reporter does not know counts
/// as not serving, and is looked up again every 500 ms.
///
/// ```no_run
/// # async fn f(registration: tonic_etcd::Registration) {
/// use tonic_etcd::health::{self, tonic_health::{self, ServingStatus}};
///
/// let (reporter, _health_service) = tonic_health::server::health_reporter();
/// health::follow(&registration, &reporter, "helloworld.Greeter");
/// reporter.set_service_status("helloworld.Greeter", ServingStatus::NotServing).await;
/// // ... the key leaves etcd; back with ServingStatus::Serving.
/// # }
/// ```
pub fn follow(
    registration: &Registration,
    reporter: &HealthReporter,
    service: impl Into<String>,
) -> JoinHandle<()> {
    let switch = registration.serving_switch();
    let health = HealthService::from_health_reporter(reporter.clone());
    let service = service.into();
    tokio::spawn(async move {
        let following = async {
            loop {
                let request = Request::new(HealthCheckRequest {
                    service: service.clone(),
                });
                match health.watch(request).await {
                    Ok(response) => {
                        let mut statuses = response.into_inner();
                        while let Some(status) = statuses.next().await {
                            let serving = matches!(
                                status,
                                Ok(status) if status.status == WireStatus::Serving as i32
                            );
                            apply(&switch, &service, serving).await;
                        }
                        // The status was cleared from the reporter.
                        apply(&switch, &service, false).await;
                    }
                    Err(_) => apply(&switch, &service, false).await,
                }
                tokio::time::sleep(RECHECK).await;
            }
        };
        tokio::select! {
            _ = following => {}
            _ = switch.closed() => debug!(service, "registration ended; health no longer followed"),
        }
    })
}

async fn apply(switch: &crate::registration::ServingSwitch, service: &str, serving: bool) {
    match switch.set(serving).await {
        Ok(()) => debug!(service, serving, "registration follows health"),
        // Applied when the registration recovers.
        Err(error @ Error::UpdatePending { .. }) => {
            info!(service, serving, error = %ErrorChain(&error), "registration follows health once reconnected")
        }
        Err(error) => debug!(service, serving, error = %ErrorChain(&error), "registration ended"),
    }
}

/// A graceful shutdown future for tonic's `serve_with_shutdown`, in the order
/// that loses no request: when `signal` fires, sets each of `services`
/// `NOT_SERVING` in `reporter` (clients that check health stop sending),
/// takes the key out of discovery, deregisters, waits `drain` while still
/// serving, as [`Registration::deregister_on`] does, then clears those
/// services from the reporter: their `Watch` streams end, which tonic's
/// graceful shutdown would otherwise wait for forever. Serve with
/// `TCP_NODELAY` (`TcpIncoming::with_nodelay`), or the NOT_SERVING message
/// may sit ~40 ms in the server's socket (Nagle's algorithm).
///
/// ```no_run
/// # async fn f(registration: tonic_etcd::Registration) {
/// use std::time::Duration;
/// use tonic_etcd::health::{self, tonic_health};
///
/// let (reporter, _health_service) = tonic_health::server::health_reporter();
/// let shutdown = health::shutdown_on(
///     &registration,
///     &reporter,
///     [""],
///     tonic_etcd::shutdown_signal(),
///     Duration::from_secs(1),
/// );
/// // Server::builder().add_service(..).serve_with_shutdown(addr, shutdown).await?;
/// # shutdown.await;
/// # }
/// ```
pub fn shutdown_on<F>(
    registration: &Registration,
    reporter: &HealthReporter,
    services: impl IntoIterator<Item = impl Into<String>>,
    signal: F,
    drain: Duration,
) -> impl Future<Output = ()> + Send + 'static
where
    F: Future<Output = ()> + Send + 'static,
{
    let switch = registration.serving_switch();
    let mut reporter = reporter.clone();
    let services: Vec<String> = services.into_iter().map(Into::into).collect();
    let key = registration.key().to_owned();
    let not_serving_first = {
        let (reporter, services) = (reporter.clone(), services.clone());
        async move {
            signal.await;
            for service in &services {
                reporter
                    .set_service_status(service, ServingStatus::NotServing)
                    .await;
            }
            info!(%key, ?services, "shutting down: NOT_SERVING");
            if let Err(error) = switch.set(false).await {
                if !matches!(error, Error::Deregistered { .. }) {
                    warn!(%key, error = %ErrorChain(&error), "key not withdrawn before deregistering");
                }
            }
        }
    };
    let deregistered = registration.deregister_on(not_serving_first, drain);
    async move {
        deregistered.await;
        // End the `Watch` streams (clients saw NOT_SERVING), or tonic's
        // graceful shutdown would wait for them forever.
        for service in &services {
            reporter.clear_service_status(service).await;
        }
    }
}
