//! The end of a registration: delete the key if one of our leases still holds
//! it, and revoke them. One revoke when a single lease is ours (etcd deletes
//! the key with it), else a read of the holder and a conditional delete.

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use tracing::{info, warn};

use super::{Reply, Task};
use crate::error::{ErrorChain, Result};
use crate::etcd::status::{fault_of, Fault};
use crate::registration::state::RegistrationState;

impl Task {
    /// Deletes the key if one of our leases (`lease_id` or a stale one) still
    /// holds it, then revokes those leases.
    pub(super) async fn finish(&mut self, lease_id: Option<i64>, reply: Option<Reply>) {
        if let (Some(lease), true) = (lease_id, self.stale_leases.is_empty()) {
            // One lease: revoking it deletes the key in the same step if, and
            // only if, the key still carries it. One request instead of three,
            // so that clients see the removal one round trip after the call.
            let revoke = |mut client: Client| async move { client.lease_revoke(lease).await };
            let result = match self.call(revoke).await {
                // Expired already: the key went with it.
                Err(error) if fault_of(&error) == Fault::LeaseNotFound => Ok(()),
                result => result.map(drop),
            };
            return self.finished(result, reply);
        }
        let ours: Vec<i64> = lease_id
            .into_iter()
            .chain(std::mem::take(&mut self.stale_leases))
            .collect();
        let key = self.key.as_str();
        // Two requests whatever the number of leases: which lease holds the
        // key, then a delete on condition that it still does.
        let delete = async {
            let found = self
                .call(|mut client| async move { client.get(key, None).await })
                .await?;
            let Some(holder) = found.kvs().first().map(|kv| kv.lease()) else {
                return Ok(());
            };
            if !ours.contains(&holder) {
                return Ok(());
            }
            self.call(|mut client| async move {
                let txn = Txn::new()
                    .when([Compare::lease(key, CompareOp::Equal, holder)])
                    .and_then([TxnOp::delete(key, None)]);
                client.txn(txn).await
            })
            .await
            .map(drop)
        };
        let mut result = delete.await;
        if result.is_ok() {
            if let Some(lease) = lease_id {
                let revoke = |mut client: Client| async move { client.lease_revoke(lease).await };
                if let Err(error) = self.call(revoke).await {
                    // Lease already gone is the goal anyway.
                    if fault_of(&error) != Fault::LeaseNotFound {
                        result = Err(error);
                    }
                }
            }
        }
        // The stale leases hold nothing now, or expire on their own.
        for lease in ours.into_iter().filter(|l| Some(*l) != lease_id) {
            self.revoke_in_background(lease);
        }
        self.finished(result, reply);
    }

    /// Reports the end of a deregistration.
    fn finished(&self, result: Result<()>, reply: Option<Reply>) {
        match &result {
            Ok(()) => info!(key = %self.key, "deregistered"),
            Err(error) => {
                warn!(key = %self.key, error = %ErrorChain(error), "deregistration incomplete; the key expires with its lease")
            }
        }
        self.state.send_replace(RegistrationState::Deregistered);
        if let Some(reply) = reply {
            reply.send(result);
        }
    }
}
