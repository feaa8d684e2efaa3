//! Getting a lease to hold the key: the first registration (with its startup
//! patience), later ones (after a check that no other lease took the key),
//! and the stale leases of ours that may still hold it until a new one does.

use std::time::Duration;

use etcd_client::WatchOptions;
use tokio::time::{timeout, Instant};
use tracing::{debug, info, warn};

use super::{Session, Task};
use crate::backoff::Backoff;
use crate::error::{ErrorChain, Result};
use crate::etcd::retry_transient;
use crate::registration::state::RegistrationState;

/// A session opened by [`Task::first_session`], handed to [`Task::run`].
pub(in crate::registration) struct SessionHandle(pub(super) Session);

impl Task {
    /// Registers for the first time, retrying until `deadline` if one is given.
    pub(in crate::registration) async fn first_session(
        &mut self,
        patience: Duration,
    ) -> Result<SessionHandle> {
        let deadline = Instant::now() + patience;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        loop {
            match self.establish().await {
                Ok(session) => {
                    self.state.send_replace(RegistrationState::Registered {
                        lease_id: session.lease_id,
                    });
                    return Ok(SessionHandle(session));
                }
                Err(error) => {
                    let now = Instant::now();
                    if now >= deadline {
                        // No key of a failed registration may outlive it.
                        for lease in std::mem::take(&mut self.stale_leases) {
                            self.revoke_in_background(lease);
                        }
                        return Err(error);
                    }
                    // The last attempt is made at the deadline.
                    let delay = backoff.next_delay().min(deadline - now);
                    warn!(key = %self.key, error = %ErrorChain(&error), "etcd not reachable yet, retrying");
                    self.set_reconnecting(ErrorChain(&error), backoff.attempts());
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// The live lease, not one of ours, that holds the key now, if any: a newer
    /// registration of the same key took over while ours was lost.
    pub(super) async fn taken_by(&self) -> Result<Option<i64>> {
        let key = self.key.as_str();
        let found = self
            .call(|mut client| async move { client.get(key, None).await })
            .await?;
        let Some(lease) = found.kvs().first().map(|kv| kv.lease()) else {
            return Ok(None);
        };
        if lease == 0 || self.stale_leases.contains(&lease) {
            return Ok(None);
        }
        Ok(self.lease_alive(lease).await?.then_some(lease))
    }

    /// Grants a lease, puts the key with it and opens the keepalive and watch
    /// streams.
    pub(super) async fn establish(&mut self) -> Result<Session> {
        let ttl = self.ttl;
        let lease = self
            .call(|mut client| async move { client.lease_grant(ttl, None).await })
            .await?;
        warn_if_raised(&self.key, ttl, lease.ttl());
        let lease_id = lease.id();
        match self.open(lease_id).await {
            Ok(session) => {
                // The key is on the new lease now: the old ones can go.
                for stale in std::mem::take(&mut self.stale_leases) {
                    self.revoke_in_background(stale);
                }
                Ok(session)
            }
            Err(error) => {
                // The put may have landed: revoking this lease now would delete
                // the key. Keep it with the stale ones until a lease holds it.
                self.stale_leases.push(lease_id);
                Err(error)
            }
        }
    }

    async fn lease_alive(&self, lease: i64) -> Result<bool> {
        let resp = self
            .call(|mut client| async move { client.lease_time_to_live(lease, None).await })
            .await?;
        Ok(resp.ttl() > 0)
    }

    async fn open(&self, lease_id: i64) -> Result<Session> {
        let revision = self.put_or_withhold(lease_id).await?;
        let (keeper, keepalive) = self
            .call(|mut client| async move { client.lease_keep_alive(lease_id).await })
            .await?;
        let key = self.key.as_str();
        let watch = self
            .call(|mut client| async move {
                let options = WatchOptions::new().with_start_revision(revision + 1);
                client.watch(key, Some(options)).await
            })
            .await?;
        info!(key = %self.key, lease_id, revision, "registered");
        Ok(Session {
            lease_id,
            keeper,
            keepalive,
            watch,
        })
    }

    /// Revokes a lease of ours that no longer holds the key, without waiting.
    pub(super) fn revoke_in_background(&self, lease_id: i64) {
        let client = self.client.clone();
        let limit = self.request_timeout();
        tokio::spawn(async move {
            let revoke = retry_transient(|| {
                let mut client = client.clone();
                async move { client.lease_revoke(lease_id).await }
            });
            match timeout(limit, revoke).await {
                Ok(Ok(_)) => debug!(lease_id, "revoked stale lease"),
                Ok(Err(error)) => debug!(lease_id, %error, "stale lease not revoked"),
                Err(_) => debug!(lease_id, "stale lease revoke timed out"),
            }
        });
    }
}

/// etcd raises a TTL below its minimum (1.5 × its election timeout, in whole
/// seconds) without an error: say so, as a crashed server's key then outlives
/// it by the granted TTL, not the one asked for.
fn warn_if_raised(key: &str, asked: i64, granted: i64) {
    if granted != asked {
        warn!(
            %key,
            asked_ttl = asked,
            granted_ttl = granted,
            "etcd granted a lease TTL other than the one asked for \
             (its minimum TTL depends on its election timeout)"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What a `fmt` subscriber wrote.
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Logs {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn logged(f: impl FnOnce()) -> String {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = logs.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn a_raised_ttl_is_a_warning_naming_both() {
        let text = logged(|| warn_if_raised("/services/a/1", 1, 2));
        assert!(text.contains("WARN"), "{text}");
        assert!(
            text.contains("asked_ttl=1") && text.contains("granted_ttl=2"),
            "{text}"
        );
        assert!(text.contains("/services/a/1"), "{text}");
        assert_eq!(logged(|| warn_if_raised("/services/a/1", 3, 3)), "");
    }
}
