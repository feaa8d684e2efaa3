//! Active health checks, wired in: one `grpc.health.v1.Health/Watch` stream
//! per endpoint connection (the protocol is `balance::health_check`), whose
//! verdicts take the endpoint out of rotation and back.
//!
//! Only a balancer built with
//! [`health_check`](super::BalancerBuilder::health_check) opens them. The
//! task belongs to the connection's target and is aborted with it (the
//! endpoint removed, or reconnected, which starts a new one).

use std::sync::Arc;

use tokio::task::AbortHandle;
use tracing::{info_span, Instrument};

use super::shared::Shared;
use super::target::Target;
use crate::balance::health_check::watch;

/// Starts the health checks of `target` for `service`.
pub(super) fn spawn(shared: &Arc<Shared>, target: &Arc<Target>, service: String) -> AbortHandle {
    let weak = Arc::downgrade(shared);
    let (key, epoch) = (target.key.clone(), target.epoch);
    let span =
        info_span!(parent: None, "health_check", service = %shared.service(), endpoint = %key);
    let on_change = move |serving: bool| {
        if let Some(shared) = weak.upgrade() {
            let reason =
                (!serving).then(|| "health check: NOT_SERVING (or SERVICE_UNKNOWN)".to_owned());
            shared.set_health(&key, epoch, reason);
        }
    };
    shared
        .runtime()
        .spawn(watch(target.channel().clone(), service, on_change).instrument(span))
        .abort_handle()
}
