//! Registry layouts: how an [`Instance`] becomes an etcd key and value, and back.
//!
//! A layout is a [`Codec`]: pure functions, no I/O. The crate's own layout is
//! [`Native`]:
//!
//! ```text
//! key:   {namespace}/{service}/{id}          namespace defaults to "/services"
//! value: {"name":"helloworld","id":"10.0.0.7:50051","addr":"10.0.0.7:50051",
//!         "version":"1.2.0","weight":1,"metadata":{"zone":"a"}}
//! ```
//!
//! Discovery watches [`Codec::service_prefix`], which ends with `/` so that the
//! service `foo` never sees the instances of `foobar`.

mod native;

use std::fmt;

pub use native::Native;

use crate::error::{Error, Result};
use crate::instance::Instance;

/// A registry layout: the key scheme and the value encoding of one format.
///
/// Implementations are pure functions, shared between registration and
/// discovery. `namespace` arguments have been checked with
/// [`Codec::validate_namespace`] and normalised (no trailing `/`).
pub trait Codec: fmt::Debug + Send + Sync + 'static {
    /// The short name of the format, e.g. `native`.
    fn name(&self) -> &'static str;

    /// The namespace used when the user sets none.
    fn default_namespace(&self) -> &'static str;

    /// Checks a namespace the user set; the default accepts `""` or a prefix that
    /// starts with `/`, with no whitespace or control characters.
    fn validate_namespace(&self, namespace: &str) -> Result<()> {
        validate_slash_namespace(namespace)
    }

    /// The key under which `instance` is registered.
    fn key(&self, namespace: &str, instance: &Instance) -> String;

    /// The prefix that holds every instance of `service`, ending with `/`.
    fn service_prefix(&self, namespace: &str, service: &str) -> String {
        let mut prefix = join(namespace, service);
        prefix.push('/');
        prefix
    }

    /// The value written for `instance`.
    fn encode(&self, instance: &Instance) -> Result<Vec<u8>>;

    /// Reads the value found at `key`, a key under the prefix of `service`.
    ///
    /// Fails with [`Error::Decode`] when the value is not in this format.
    fn decode(&self, service: &str, key: &str, value: &[u8]) -> Result<Instance>;

    /// The identity of a discovered instance: discovery reports one
    /// [`Change`](tower::discover::Change) per identity. The default is the etcd key;
    /// formats whose keys change on re-registration use the address.
    fn identity(&self, key: &str, instance: &Instance) -> String {
        let _ = instance;
        key.to_owned()
    }
}

/// Joins a namespace and a path segment with one `/`; an empty namespace adds none.
pub(crate) fn join(namespace: &str, segment: &str) -> String {
    if namespace.is_empty() {
        segment.to_owned()
    } else {
        format!("{namespace}/{segment}")
    }
}

/// Removes trailing slashes, so that `/services/` and `/services` are one namespace.
pub(crate) fn normalize_namespace(namespace: &str) -> &str {
    namespace.trim_end_matches('/')
}

/// The usual namespace rule: empty, or starting with `/`; no whitespace or
/// control characters; no empty segment (`//`).
pub(crate) fn validate_slash_namespace(namespace: &str) -> Result<()> {
    let fail = |reason| {
        Err(Error::InvalidNamespace {
            namespace: namespace.to_owned(),
            reason,
        })
    };
    if namespace.is_empty() {
        return Ok(());
    }
    if !namespace.starts_with('/') {
        return fail("must start with '/'");
    }
    if namespace
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return fail("must not contain whitespace or control characters");
    }
    if normalize_namespace(namespace).contains("//") {
        return fail("must not contain an empty segment ('//')");
    }
    Ok(())
}

/// Lossy UTF-8 rendering of a key for errors and logs.
pub(crate) fn key_str(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

pub(crate) fn decode_error(key: &str, reason: impl fmt::Display) -> Error {
    Error::Decode {
        key: key.to_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        for good in ["", "/", "/services", "/a/b", "/services/"] {
            validate_slash_namespace(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["services", "/a b", "/a//b", "/a\n"] {
            assert!(
                matches!(
                    validate_slash_namespace(bad),
                    Err(Error::InvalidNamespace { .. })
                ),
                "{bad:?} accepted"
            );
        }
        assert_eq!(normalize_namespace("/services/"), "/services");
        assert_eq!(normalize_namespace("/"), "");
    }

    #[test]
    fn joins() {
        assert_eq!(join("/services", "helloworld"), "/services/helloworld");
        assert_eq!(join("", "helloworld"), "helloworld");
    }
}
