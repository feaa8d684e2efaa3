//! The crate's one error type.

use std::fmt;
use std::time::Duration;

/// A result with the crate's [`Error`].
///
/// ```
/// fn weight(text: &str) -> tonic_etcd::Result<u32> {
///     let instance = tonic_etcd::Instance::new("helloworld", "127.0.0.1:50051")?;
///     Ok(text.parse().unwrap_or(instance.weight))
/// }
/// assert_eq!(weight("x").unwrap(), 1);
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in tonic-etcd.
///
/// Each variant's message says what went wrong at this level, and never
/// repeats its cause: the cause (an etcd client error, an I/O error, a
/// transport error) is the [`source`](std::error::Error::source), so that
/// printing the chain (`error`, `error.source()`, ...) shows each part once.
///
/// ```
/// use std::error::Error as _;
///
/// let error = tonic_etcd::Instance::new("hello world", "127.0.0.1:1").unwrap_err();
/// assert!(matches!(error, tonic_etcd::Error::InvalidServiceName { .. }));
/// assert!(error.to_string().contains("hello world"));
/// assert!(error.source().is_none());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A service name is empty or contains `/`, whitespace or a control character.
    #[error("invalid service name {name:?}: {reason}")]
    InvalidServiceName {
        /// The name that was refused.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An instance id is empty or contains `/`, whitespace or a control character.
    #[error("invalid instance id {id:?}: {reason}")]
    InvalidId {
        /// The id that was refused.
        id: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An address is not `host:port` (IPv6 hosts in brackets).
    #[error("invalid address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address that was refused.
        addr: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A weight outside [`Instance::MIN_WEIGHT`](crate::Instance::MIN_WEIGHT)..=
    /// [`Instance::MAX_WEIGHT`](crate::Instance::MAX_WEIGHT).
    #[error("invalid weight {weight}: must be within {min}..={max}")]
    InvalidWeight {
        /// The weight that was refused.
        weight: u32,
        /// The smallest weight allowed.
        min: u32,
        /// The largest weight allowed.
        max: u32,
    },
    /// A metadata key or value, or a version string, is not acceptable.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A change that would alter what an existing registration is: its
    /// service or its id (they make its key).
    #[error("the {field} of a registration cannot change (from {from:?} to {to:?})")]
    Immutable {
        /// Which field: "service" or "id".
        field: &'static str,
        /// The registered value.
        from: String,
        /// The value that was refused.
        to: String,
    },
    /// A namespace (key prefix) is not acceptable.
    #[error("invalid namespace {namespace:?}: {reason}")]
    InvalidNamespace {
        /// The namespace that was refused.
        namespace: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A lease TTL that etcd cannot honour.
    #[error("invalid TTL {ttl:?}: {reason}")]
    InvalidTtl {
        /// The TTL that was refused.
        ttl: Duration,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The encoded key and value would exceed etcd's request size limit.
    #[error("registry entry too large: {size} bytes, limit {limit}")]
    TooLarge {
        /// Size of key plus value in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A registry value that the codec cannot read.
    #[error("cannot decode registry value at {key:?}: {reason}")]
    Decode {
        /// The etcd key, lossily converted to UTF-8.
        key: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// An instance could not be turned into a client endpoint (the transport
    /// refused its address or its TLS settings).
    #[error("cannot build endpoint for {addr:?}")]
    Endpoint {
        /// The address of the instance.
        addr: String,
        /// The transport's error (a `tonic::transport::Error` with tonic).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// etcd answered a request with an error, or could not be reached; the
    /// etcd client's error is the source.
    #[error("etcd request failed")]
    Etcd(#[from] etcd_client::Error),
    /// No etcd endpoint's host name resolves: a typo, or a name not (yet) in
    /// DNS. Names the first endpoint that failed.
    #[error("cannot resolve etcd endpoint {endpoint:?}")]
    Resolve {
        /// The endpoint, as configured.
        endpoint: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// etcd did not answer within the deadline the caller set.
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    /// The registration was displaced: another registration now owns its key.
    #[error("registration of {key:?} was displaced by lease {by_lease:x}")]
    Displaced {
        /// The etcd key.
        key: String,
        /// The lease that now holds the key.
        by_lease: i64,
    },
    /// An update that was accepted but not written yet: the registration is
    /// reconnecting, or writing failed and it reconnects now. The new instance
    /// is kept and written as soon as the registration is back; the source
    /// says why it could not be written now.
    #[error("update of {key:?} not written yet; it is written when the registration recovers")]
    UpdatePending {
        /// The etcd key.
        key: String,
        /// Why the value could not be written now.
        #[source]
        source: Box<Error>,
    },
    /// The registration has been deregistered, or its task has ended.
    #[error("registration of {key:?} is no longer active")]
    Deregistered {
        /// The etcd key.
        key: String,
    },
    /// A connection setting that cannot work, found before connecting: no
    /// endpoints, TLS options with a plain `http://` endpoint, a file that is
    /// not PEM, ...
    #[error("invalid configuration: {reason}")]
    Config {
        /// What is wrong, naming the setting.
        reason: String,
    },
    /// A certificate, key or CA file that cannot be read.
    #[error("cannot read {what} from {}", path.display())]
    ReadFile {
        /// Which file: "etcd CA certificate", "private key", ...
        what: &'static str,
        /// The path as given.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake with an etcd endpoint failed in a way a retry will
    /// not fix: its certificate is not signed by the configured CA or not
    /// valid for its name, or etcd refused (or required) the client
    /// certificate.
    #[error("TLS with etcd at {endpoint} failed: {reason}")]
    Tls {
        /// The endpoint, as configured.
        endpoint: String,
        /// What it means for the configuration.
        reason: String,
        /// The TLS error.
        #[source]
        source: std::io::Error,
    },
    /// etcd refused to authenticate the user: wrong password, unknown user, or
    /// authentication not enabled on the cluster. The password is never part
    /// of the error.
    #[error("etcd refused to authenticate user {user:?}")]
    Auth {
        /// The user name.
        user: String,
        /// etcd's answer.
        #[source]
        source: etcd_client::Error,
    },
}

/// Shows an error with its sources, `error: cause: root cause`: how the crate
/// renders errors in its logs and in [`RegistrationState`](crate::RegistrationState),
/// and how the examples print them.
///
/// Every error of this crate leaves its cause to
/// [`source`](std::error::Error::source), so each part is said once. One
/// rule covers other crates' errors that do repeat theirs (tonic's
/// `ConnectError` shows its inner error and returns it as its source): a
/// source that reads exactly like the part before it is left out.
///
/// ```
/// use tonic_etcd::ErrorChain;
///
/// let cause = tonic_etcd::etcd_client::Error::IoError(std::io::Error::other("connection reset"));
/// let error = tonic_etcd::Error::from(cause);
/// assert_eq!(error.to_string(), "etcd request failed");
/// assert_eq!(
///     ErrorChain(&error).to_string(),
///     "etcd request failed: io error: connection reset"
/// );
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            let message = cause.to_string();
            if message != last {
                write!(f, ": {message}")?;
                last = message;
            }
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_says_each_part_once() {
        let cause = etcd_client::Error::IoError(std::io::Error::other("connection reset"));
        let error = Error::UpdatePending {
            key: "/services/a/1".into(),
            source: Box::new(Error::Etcd(cause)),
        };
        assert_eq!(
            ErrorChain(&error).to_string(),
            "update of \"/services/a/1\" not written yet; it is written when the \
             registration recovers: etcd request failed: io error: connection reset"
        );
    }

    #[test]
    fn a_source_that_repeats_its_error_is_said_once() {
        #[derive(Debug)]
        struct Repeats(std::io::Error);
        impl fmt::Display for Repeats {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
        impl std::error::Error for Repeats {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = Repeats(std::io::Error::other("refused"));
        assert_eq!(ErrorChain(&error).to_string(), "refused");
    }
}
