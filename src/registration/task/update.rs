//! Writing a changed instance: on the current lease at once while a session
//! is held, or kept and written by the next session while reconnecting.

use tokio::sync::oneshot;
use tracing::{info, warn};

use super::outcome::{LeaseLoss, Outcome};
use super::Task;
use crate::error::{Error, ErrorChain, Result};
use crate::instance::Instance;

impl Task {
    /// Puts the new value on `lease_id` and replies. A failed put ends the
    /// session: the new value is kept and written by the next one.
    pub(super) async fn write_update(
        &mut self,
        lease_id: i64,
        instance: Instance,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<()>>,
    ) -> Result<(), Outcome> {
        self.instance = instance;
        self.value = value;
        if self.withdrawn {
            // Written when serving again (`withdraw.rs`).
            let _ = reply.send(Ok(()));
            return Ok(());
        }
        match self.put(lease_id).await {
            Ok(_) => {
                info!(key = %self.key, lease_id, "registration updated");
                let _ = reply.send(Ok(()));
                Ok(())
            }
            Err(error) => {
                warn!(key = %self.key, lease_id, error = %ErrorChain(&error), "update not written; registering again");
                let _ = reply.send(Err(self.pending(error)));
                Err(Outcome::Lost(LeaseLoss::UpdateNotWritten))
            }
        }
    }

    /// Keeps the new value for the next session and replies that it is
    /// pending, because of `error`: why there is no session now.
    pub(super) fn keep_update(
        &mut self,
        instance: Instance,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<()>>,
        error: Error,
    ) {
        self.instance = instance;
        self.value = value;
        let _ = reply.send(Err(self.pending(error)));
    }

    fn pending(&self, error: Error) -> Error {
        Error::UpdatePending {
            key: self.key.clone(),
            source: Box::new(error),
        }
    }
}
