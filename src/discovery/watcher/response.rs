//! One watch response: compaction and cancellation end the session; events
//! become state machine [`Event`]s; a progress notification moves the
//! revision forward.

use etcd_client::{EventType, WatchResponse};
use tracing::warn;

use super::session::Session;
use super::task::Watcher;
use crate::codec::key_str;
use crate::discovery::state::Event;
use crate::etcd::status::{self, Fault};

impl Watcher {
    /// Handles one watch response; `Some` ends the session.
    pub(super) fn on_response(
        &mut self,
        response: WatchResponse,
        resynced: bool,
    ) -> Option<Session> {
        let compact = response.compact_revision();
        if compact > 0
            || (response.canceled()
                && status::cancel_reason(response.cancel_reason()) == Fault::Compacted)
        {
            self.resync = true;
            if resynced {
                // Compacted again right after reading: let the backoff pace it.
                return Some(Session::Failed(format!(
                    "watch from {} compacted (compact revision {compact}) right after a resync",
                    self.revision + 1
                )));
            }
            warn!(
                revision = self.revision,
                compact_revision = compact,
                "watch revision compacted; resyncing"
            );
            return Some(Session::Resync);
        }
        if response.canceled() {
            self.reauthenticate =
                status::cancel_reason(response.cancel_reason()).may_need_new_token();
            return Some(Session::Failed(format!(
                "watch canceled by etcd: {}",
                response.cancel_reason()
            )));
        }
        if response.events().is_empty() {
            // A progress notification: every event up to the header revision
            // has been sent. (A created response's header says nothing of the
            // sort: events from our start revision may still be on their way.)
            if !response.created() {
                if let Some(header) = response.header() {
                    self.revision = self.revision.max(header.revision());
                }
            }
            return None;
        }
        let events = self.events(&response);
        self.apply(events);
        None
    }

    /// The events of `response` for the state machine, moving the revision
    /// forward to the last one.
    fn events(&mut self, response: &WatchResponse) -> Vec<Event> {
        let mut events = Vec::with_capacity(response.events().len());
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            self.revision = self.revision.max(kv.mod_revision());
            let Ok(key) = kv.key_str() else {
                warn!(key = %key_str(kv.key()), "skipping key that is not UTF-8");
                continue;
            };
            events.push(match event.event_type() {
                EventType::Put => Event::Put {
                    key: key.to_owned(),
                    value: kv.value().to_vec(),
                    mod_revision: kv.mod_revision(),
                },
                EventType::Delete => Event::Delete {
                    key: key.to_owned(),
                },
            });
        }
        events
    }
}
