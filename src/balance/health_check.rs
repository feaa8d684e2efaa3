//! The client side of gRPC health checking (gRFC A17): one
//! `grpc.health.v1.Health/Watch` stream to an endpoint, read into "healthy or
//! not". The protocol (messages, client stub) comes from `tonic-health`; the
//! balancer decides what a change does to the endpoint.
//!
//! What each answer means:
//!
//! | the server says | reported |
//! |---|---|
//! | `SERVING` | `true` |
//! | `NOT_SERVING`, `SERVICE_UNKNOWN`, `UNKNOWN` (A17: anything but `SERVING`) | `false` |
//! | the call fails with `NOT_FOUND` (how `tonic-health` answers a `Watch` for a service it does not know, where the spec streams `SERVICE_UNKNOWN`) | `false`, then retried with backoff (the service may be registered later, and `tonic-health` sends nothing when it is) |
//! | the call fails with `UNIMPLEMENTED` (no health service) | `true`, with one warning per watch; re-checked every [`UNIMPLEMENTED_RECHECK`] in case the server gains a health service (A17 disables the check instead; re-checking rarely costs one call a minute and follows a server that is upgraded in place) |
//! | any other failure, or the stream ends | nothing: retried with [`Backoff`] |
//!
//! Only changes are reported, never repeats; a failed stream leaves the last
//! report standing (A17: the endpoint's state changes with its connection,
//! which the balancer watches on its own).

use std::time::Duration;

use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::backoff::Backoff;

/// The first and the longest wait before a failed or ended stream is opened again.
const RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// How often a server without a health service is asked again.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const UNIMPLEMENTED_RECHECK: Duration = Duration::from_secs(60);

/// Watches `service` on `channel` and calls `on_change` with each change of
/// health (the first answer is a change). Never returns: the caller aborts
/// the task when the endpoint goes.
// Until the balancer opens one per endpoint (issue 12, the `health` branch).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) async fn watch(
    channel: Channel,
    service: String,
    mut on_change: impl FnMut(bool) + Send + 'static,
) {
    let mut client = HealthClient::new(channel);
    let mut last: Option<bool> = None;
    let mut report = |healthy: bool| {
        if last != Some(healthy) {
            last = Some(healthy);
            on_change(healthy);
        }
    };
    let mut backoff = Backoff::new(RETRY.0, RETRY.1);
    let mut warned = false;
    loop {
        let request = HealthCheckRequest {
            service: service.clone(),
        };
        let failure = match client.watch(request).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(message)) => {
                            backoff.reset();
                            report(message.status == ServingStatus::Serving as i32);
                        }
                        Ok(None) => break None,
                        Err(status) => break Some(status),
                    }
                }
            }
            Err(status) => Some(status),
        };
        let delay = match failure.as_ref().map(tonic::Status::code) {
            Some(Code::Unimplemented) => {
                if !warned {
                    warned = true;
                    tracing::warn!(
                        service,
                        "the endpoint has no gRPC health service (UNIMPLEMENTED): \
                         counted as healthy, asked again every {UNIMPLEMENTED_RECHECK:?}"
                    );
                }
                report(true);
                backoff.reset();
                UNIMPLEMENTED_RECHECK
            }
            Some(Code::NotFound) => {
                report(false);
                backoff.next_delay()
            }
            Some(code) => {
                tracing::debug!(service, ?code, "health watch failed; retrying");
                backoff.next_delay()
            }
            None => {
                tracing::debug!(service, "health watch ended; retrying");
                backoff.next_delay()
            }
        };
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests;
