//! Writing a changed instance: on the current lease at once while a session
//! is held, or kept and written by the next session while reconnecting.

use tokio::sync::oneshot;
use tracing::info;

use super::hold::lease_gone;
use super::{Outcome, Task};
use crate::error::{Error, Result};
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
        match self.put(lease_id).await {
            Ok(_) => {
                info!(key = %self.key, lease_id, "registration updated");
                let _ = reply.send(Ok(()));
                Ok(())
            }
            Err(error) => {
                let _ = reply.send(Err(lease_gone(&format!("update not written yet: {error}"))));
                Err(Outcome::Lost(error))
            }
        }
    }

    /// Keeps the new value for the next session and replies with `error`,
    /// why there is no session now.
    pub(super) fn keep_update(
        &mut self,
        instance: Instance,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<()>>,
        error: Error,
    ) {
        self.instance = instance;
        self.value = value;
        let _ = reply.send(Err(error));
    }
}
