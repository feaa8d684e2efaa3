//! Taking the key out of discovery while the server is not serving, and
//! putting it back, on the same lease ([`Command::Serving`]).
//!
//! Withdrawn means: the lease is kept alive, the key is deleted. While
//! withdrawn, the watch of the own key does not put a deleted key back, an
//! update is kept and written when serving again, and a session opened after
//! a lease loss deletes whatever key one of our leases still holds instead of
//! putting it. Deleting (rather than marking the value) is what every
//! registry format understands: go-zero, kratos and etcd-naming clients only
//! know present or absent.

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::outcome::{LeaseLoss, Outcome};
use super::Task;
use crate::error::{Error, ErrorChain, Result};
use crate::registration::state::RegistrationState;

impl Task {
    /// Applies a change of serving on the held session `lease_id` and
    /// replies. A failed write ends the session; the next one applies it.
    pub(super) async fn write_serving(
        &mut self,
        lease_id: i64,
        serving: bool,
        reply: oneshot::Sender<Result<()>>,
    ) -> Result<(), Outcome> {
        if serving != self.withdrawn {
            let _ = reply.send(Ok(()));
            return Ok(());
        }
        self.withdrawn = !serving;
        let written = if serving {
            self.put(lease_id).await.map(drop)
        } else {
            self.delete_held_by(&[lease_id]).await.map(drop)
        };
        match written {
            Ok(()) => {
                info!(key = %self.key, lease_id, serving, "serving changed");
                self.state.send_replace(self.held_state(lease_id));
                let _ = reply.send(Ok(()));
                Ok(())
            }
            Err(error) => {
                warn!(key = %self.key, lease_id, serving, error = %ErrorChain(&error), "serving change not written; registering again");
                let _ = reply.send(Err(self.serving_pending(error)));
                Err(Outcome::Lost(LeaseLoss::ServingNotWritten))
            }
        }
    }

    /// Records a change of serving while there is no session (`why`): the
    /// next session applies it.
    pub(super) fn keep_serving(
        &mut self,
        serving: bool,
        reply: oneshot::Sender<Result<()>>,
        why: Error,
    ) {
        if serving != self.withdrawn {
            let _ = reply.send(Ok(()));
            return;
        }
        self.withdrawn = !serving;
        let _ = reply.send(Err(self.serving_pending(why)));
    }

    /// The state of a held session on `lease_id`.
    pub(super) fn held_state(&self, lease_id: i64) -> RegistrationState {
        if self.withdrawn {
            RegistrationState::Withdrawn { lease_id }
        } else {
            RegistrationState::Registered { lease_id }
        }
    }

    /// What a new session on `lease_id` writes: our key, or, while
    /// withdrawn, the deletion of any key one of our leases still holds.
    /// The revision of the write, where the watch of the own key starts.
    pub(super) async fn put_or_withhold(&self, lease_id: i64) -> Result<i64> {
        if !self.withdrawn {
            let put = self.put(lease_id).await?;
            return Ok(put.header().map_or(0, |h| h.revision()));
        }
        let mut ours = self.stale_leases.clone();
        ours.push(lease_id);
        self.delete_held_by(&ours).await
    }

    /// Deletes the key if one of `leases` holds it; the revision after.
    async fn delete_held_by(&self, leases: &[i64]) -> Result<i64> {
        let key = self.key.as_str();
        let mut revision = 0;
        for &lease in leases {
            let response = self
                .call(|mut client| async move {
                    let txn = Txn::new()
                        .when([Compare::lease(key, CompareOp::Equal, lease)])
                        .and_then([TxnOp::delete(key, None)]);
                    client.txn(txn).await
                })
                .await?;
            revision = response.header().map_or(0, |h| h.revision());
            if response.succeeded() {
                break;
            }
        }
        Ok(revision)
    }

    fn serving_pending(&self, error: Error) -> Error {
        Error::UpdatePending {
            key: self.key.clone(),
            source: Box::new(error),
        }
    }
}
