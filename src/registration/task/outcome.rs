//! How a held session ends ([`Outcome`]) and, when the lease is lost, why
//! ([`LeaseLoss`]): the reasons the hold loop gives up a lease, in its own
//! words, carrying the real error where there is one.

use std::fmt;
use std::time::Duration;

use super::Reply;
use crate::error::{Error, ErrorChain};

/// Why [`Task::hold`](super::Task::hold) returned.
pub(super) enum Outcome {
    /// The lease is gone or the connection broke: register again.
    Lost(LeaseLoss),
    /// Another lease holds our key now.
    Displaced(i64),
    /// Deregister (with a reply) or guard dropped (without one).
    Stop(Option<Reply>),
}

/// Why a lease was given up. Each means "register again with a fresh lease";
/// they differ only in what the logs and the `Reconnecting` state say.
#[derive(Debug)]
pub(super) enum LeaseLoss {
    /// A keepalive was answered with TTL 0: the lease expired or was revoked.
    Expired,
    /// No keepalive was answered for a whole TTL.
    Unanswered(Duration),
    /// etcd ended the keepalive stream.
    KeepAliveClosed,
    /// etcd canceled the watch of the own key, with this reason.
    WatchCanceled(String),
    /// etcd ended the watch stream of the own key.
    WatchClosed,
    /// The updated value could not be written; the caller of `update` got the
    /// error, and the value is written by the next session.
    UpdateNotWritten,
    /// A change of serving (`withdraw.rs`) could not be written; the next
    /// session applies it.
    ServingNotWritten,
    /// A request failed: a keepalive, a stream, or putting the key back.
    Failed(Error),
}

impl From<etcd_client::Error> for LeaseLoss {
    fn from(error: etcd_client::Error) -> Self {
        Self::Failed(error.into())
    }
}

impl fmt::Display for LeaseLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Expired => f.write_str("the lease expired or was revoked (keepalive TTL 0)"),
            Self::Unanswered(ttl) => write!(f, "no keepalive answered for {ttl:?}"),
            Self::KeepAliveClosed => f.write_str("the keepalive stream closed"),
            Self::WatchCanceled(reason) => {
                write!(f, "the watch of the own key was canceled: {reason:?}")
            }
            Self::WatchClosed => f.write_str("the watch of the own key closed"),
            Self::UpdateNotWritten => f.write_str("the updated value could not be written"),
            Self::ServingNotWritten => f.write_str("the change of serving could not be written"),
            Self::Failed(error) => ErrorChain(error).fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_say_what_happened_and_keep_the_cause() {
        assert_eq!(
            LeaseLoss::Unanswered(Duration::from_secs(3)).to_string(),
            "no keepalive answered for 3s"
        );
        assert_eq!(
            LeaseLoss::WatchCanceled("etcdserver: permission denied".into()).to_string(),
            "the watch of the own key was canceled: \"etcdserver: permission denied\""
        );
        let io = std::io::Error::other("connection reset");
        assert_eq!(
            LeaseLoss::from(etcd_client::Error::IoError(io)).to_string(),
            "etcd request failed: io error: connection reset"
        );
    }
}
