//! What an etcd error means, decided in one place.
//!
//! etcd answers with gRPC status codes (`rpctypes` in etcd's source), and
//! etcd-client hands them on inside [`etcd_client::Error::GRpcStatus`]. The
//! crate reacts to a few of them differently, so every decision is taken
//! here, by code first, and by etcd's message only where one code stands for
//! several errors (`OUT_OF_RANGE` is both "compacted" and "future revision").
//! A watch that etcd cancels carries no code, only its reason as text:
//! [`cancel_reason`] reads that.
//!
//! etcd-client's errors carry tonic's `Status`, so this module is where the
//! ground layer meets tonic's types, and the only place where it does.

use tonic::Code;

/// What an etcd error means for the crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The request did not reach a healthy member (connection error, member
    /// down, leader election): sending it again is likely to work.
    Transient,
    /// `NOT_FOUND`: of the requests the crate sends, only lease requests get
    /// it (`ErrGRPCLeaseNotFound`): the lease expired, was revoked, or etcd
    /// lost its data.
    LeaseNotFound,
    /// `OUT_OF_RANGE` for a compacted revision (`ErrGRPCCompacted`).
    Compacted,
    /// `UNAUTHENTICATED` (`ErrGRPCInvalidAuthToken`): the token expired or was
    /// issued by another member; authenticate again.
    InvalidAuthToken,
    /// `PERMISSION_DENIED`: the user's roles do not cover the request, or,
    /// from etcd before 3.5.6 and 3.4.22, a watch created with an expired
    /// token (those versions say "permission denied" where later ones say
    /// "invalid auth token"; etcd PRs 14547, 14548).
    PermissionDenied,
    /// `RESOURCE_EXHAUSTED`: the NOSPACE alarm ("database space exceeded"),
    /// or a request over etcd's size limit. etcd answered; it is not down.
    NoSpace,
    /// Anything else: a definite answer that a quick retry will not change.
    Other,
}

/// Classifies `error`.
pub(crate) fn classify(error: &etcd_client::Error) -> Fault {
    match error {
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            // etcd 3.4 sends some transport failures (a member shutting down,
            // "leader changed" from older members) as UNKNOWN.
            Code::Unavailable | Code::Unknown => Fault::Transient,
            Code::NotFound => Fault::LeaseNotFound,
            Code::OutOfRange if status.message().contains("compacted") => Fault::Compacted,
            Code::Unauthenticated => Fault::InvalidAuthToken,
            Code::PermissionDenied => Fault::PermissionDenied,
            Code::ResourceExhausted => Fault::NoSpace,
            _ => Fault::Other,
        },
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => Fault::Transient,
        _ => Fault::Other,
    }
}

/// Classifies the crate's `error`: the etcd client's error inside
/// [`Error::Etcd`](crate::Error::Etcd), [`Fault::Other`] for any other.
pub(crate) fn fault_of(error: &crate::Error) -> Fault {
    match error {
        crate::Error::Etcd(error) => classify(error),
        _ => Fault::Other,
    }
}

/// Classifies the reason etcd gives when it cancels a watch. It has no code,
/// only etcd's message, e.g. "etcdserver: mvcc: required revision has been
/// compacted" or "etcdserver: invalid auth token".
pub(crate) fn cancel_reason(reason: &str) -> Fault {
    if reason.contains("compacted") {
        Fault::Compacted
    } else if reason.contains("invalid auth token") {
        Fault::InvalidAuthToken
    } else if reason.contains("permission denied") {
        Fault::PermissionDenied
    } else if reason.contains("database space exceeded") {
        Fault::NoSpace
    } else {
        Fault::Other
    }
}

impl Fault {
    /// Whether authenticating again may cure it: a refused token, or a
    /// "permission denied" that older etcd versions give for an expired
    /// token. (Authenticating again costs one request, and without a user it
    /// does nothing; a real lack of permission then fails again and is paced
    /// by the caller's backoff.)
    pub(crate) fn may_need_new_token(self) -> bool {
        matches!(self, Fault::InvalidAuthToken | Fault::PermissionDenied)
    }
}

/// What an operator does about the NOSPACE alarm, for messages.
pub(crate) const NOSPACE_REMEDY: &str = "etcd's NOSPACE alarm is raised (database space \
    exceeded: its data reached --quota-backend-bytes) and it refuses writes until an operator \
    frees space: compact the history (`etcdctl compact REVISION`), defragment every member \
    (`etcdctl defrag`), then disarm the alarm (`etcdctl alarm disarm`)";

impl crate::Error {
    /// What an operator can do about this error, when etcd said precisely
    /// what is wrong: today, etcd's NOSPACE alarm ("database space
    /// exceeded"), with its fix (compact, defragment, `etcdctl alarm
    /// disarm`). `None` for any other error.
    ///
    /// A registration keeps retrying meanwhile, as its startup wait does
    /// ([`Registrar::startup_timeout`](crate::Registrar::startup_timeout)),
    /// and logs this with each failed attempt.
    ///
    /// ```
    /// let error = tonic_etcd::Error::Timeout(std::time::Duration::from_secs(1));
    /// assert_eq!(error.remedy(), None);
    /// ```
    pub fn remedy(&self) -> Option<&'static str> {
        let error = match self {
            crate::Error::Etcd(error) => error,
            crate::Error::UpdatePending { source, .. } => return source.remedy(),
            _ => return None,
        };
        (classify(error) == Fault::NoSpace).then_some(NOSPACE_REMEDY)
    }
}

/// Whether etcd refused an Authenticate call (wrong password, unknown user,
/// authentication not enabled), as opposed to not answering it.
pub(crate) fn is_auth_refusal(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::GRpcStatus(status) => matches!(
            status.code(),
            Code::InvalidArgument
                | Code::FailedPrecondition
                | Code::Unauthenticated
                | Code::PermissionDenied
                | Code::NotFound
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    fn status(status: Status) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(status)
    }

    #[test]
    fn codes_decide_before_messages() {
        // etcd's own messages, from its rpctypes.
        let cases = [
            (
                Status::not_found("etcdserver: requested lease not found"),
                Fault::LeaseNotFound,
            ),
            (
                Status::out_of_range("etcdserver: mvcc: required revision has been compacted"),
                Fault::Compacted,
            ),
            (
                Status::out_of_range("etcdserver: mvcc: required revision is a future revision"),
                Fault::Other,
            ),
            (
                Status::unauthenticated("etcdserver: invalid auth token"),
                Fault::InvalidAuthToken,
            ),
            (
                Status::resource_exhausted("etcdserver: mvcc: database space exceeded"),
                Fault::NoSpace,
            ),
            (
                Status::unavailable("etcdserver: leader changed"),
                Fault::Transient,
            ),
            (Status::unknown("etcdserver: no leader"), Fault::Transient),
            (
                Status::invalid_argument("etcdserver: key not found"),
                Fault::Other,
            ),
            // The code wins over a misleading message.
            (
                Status::unavailable("requested lease not found"),
                Fault::Transient,
            ),
        ];
        for (given, fault) in cases {
            assert_eq!(classify(&status(given.clone())), fault, "{given:?}");
        }
        let io = etcd_client::Error::IoError(std::io::Error::other("reset"));
        assert_eq!(classify(&io), Fault::Transient);
        assert_eq!(
            classify(&etcd_client::Error::InvalidArgs("x".into())),
            Fault::Other
        );
    }

    #[test]
    fn cancel_reasons_are_read_as_text() {
        assert_eq!(
            cancel_reason("etcdserver: mvcc: required revision has been compacted"),
            Fault::Compacted
        );
        assert_eq!(
            cancel_reason("etcdserver: invalid auth token"),
            Fault::InvalidAuthToken
        );
        assert_eq!(
            cancel_reason("etcdserver: permission denied"),
            Fault::PermissionDenied
        );
        assert_eq!(cancel_reason("etcdserver: no leader"), Fault::Other);
        assert!(cancel_reason("etcdserver: permission denied").may_need_new_token());
        assert!(!Fault::Compacted.may_need_new_token());
    }

    #[test]
    fn nospace_names_the_alarm_and_its_fix() {
        let full = crate::Error::Etcd(status(Status::resource_exhausted(
            "etcdserver: mvcc: database space exceeded",
        )));
        let remedy = full.remedy().expect("a remedy");
        for part in ["NOSPACE", "compact", "defrag", "etcdctl alarm disarm"] {
            assert!(remedy.contains(part), "{remedy}");
        }
        let down = crate::Error::Etcd(status(Status::unavailable("down")));
        assert_eq!(down.remedy(), None);
    }

    #[test]
    fn auth_refusals_are_answers_not_silence() {
        assert!(is_auth_refusal(&status(Status::invalid_argument(
            "etcdserver: authentication failed, invalid user ID or password"
        ))));
        assert!(!is_auth_refusal(&status(Status::unavailable("down"))));
    }
}
