//! Namespaces: the part of a key before the service name. The one rule that
//! registration and discovery share ([`resolve_namespace`]), and the usual
//! checks of a layout.

use super::shared::validate_free_namespace;
use super::Codec;
use crate::error::{Error, Result};

/// Joins a namespace and a path segment with one `/`; an empty namespace adds none.
pub(crate) fn join(namespace: &str, segment: &str) -> String {
    if namespace.is_empty() {
        segment.to_owned()
    } else {
        format!("{namespace}/{segment}")
    }
}

/// Removes trailing slashes, so that `/services/` and `/services` are one namespace.
pub(super) fn normalize_namespace(namespace: &str) -> &str {
    namespace.trim_end_matches('/')
}

/// The namespace a registration or a discovery uses with `codec`: `given`
/// (validated by the codec), else the codec's default, either way without
/// trailing slashes. Registration and discovery both resolve it here, so that
/// they always agree on the keys.
pub(crate) fn resolve_namespace<'a>(
    codec: &'a dyn Codec,
    given: Option<&'a str>,
) -> Result<&'a str> {
    let namespace = match given {
        Some(namespace) => {
            codec.validate_namespace(namespace)?;
            namespace
        }
        None => codec.default_namespace(),
    };
    Ok(normalize_namespace(namespace))
}

/// The usual namespace rule: empty, or starting with `/`; no whitespace or
/// control characters; no empty segment (`//`).
pub(crate) fn validate_slash_namespace(namespace: &str) -> Result<()> {
    if !namespace.is_empty() && !namespace.starts_with('/') {
        return Err(Error::InvalidNamespace {
            namespace: namespace.to_owned(),
            reason: "must start with '/'",
        });
    }
    validate_free_namespace(namespace)
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
