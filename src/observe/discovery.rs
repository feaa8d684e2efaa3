//! A discovery's state changes as events: its watch lost and back.

use tracing::info;

use crate::discovery::Health;

/// Logs, at info level, a change of a discovery's health from `old` to `new`
/// (nothing if both are connected, or both reconnecting): `discovery
/// reconnecting` with the error as `reason`, or `discovery connected`.
pub(crate) fn discovery_health(service: &str, old: &Health, new: &Health) {
    match (old.is_connected(), new) {
        (true, Health::Reconnecting { error }) => {
            info!(service, reason = %error, "discovery reconnecting");
        }
        (false, Health::Connected) => {
            info!(service, reason = "watch established", "discovery connected");
        }
        _ => {}
    }
}
