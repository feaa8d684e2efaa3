//! Helpers shared by the layouts: weights and ids read from other systems'
//! values, and the namespace rule of layouts whose keys need no leading `/`.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value as Json;

use super::namespace::normalize_namespace;
use crate::error::{Error, Result};
use crate::instance::Instance;

/// An instance known only by its address, which is also its id: the layouts
/// that identify instances by address read every key holding one address as
/// the same instance, so that losing one of those keys changes nothing.
pub(super) fn bare_instance(service: &str, addr: &str) -> Instance {
    Instance {
        service: service.to_owned(),
        id: addr.to_owned(),
        addr: addr.to_owned(),
        version: String::new(),
        weight: Instance::DEFAULT_WEIGHT,
        metadata: BTreeMap::new(),
    }
}

/// The part of `key` after its last `{service}/` segment, where that segment
/// starts the key or follows a `/`; `None` if there is none or it is empty.
///
/// Decoders are not told the namespace; the last match is right whenever the
/// id itself does not contain `/{service}/`, which a namespace may well do.
pub(super) fn id_from_key<'k>(service: &str, key: &'k str) -> Option<&'k str> {
    let segment = format!("{service}/");
    let start = match key.rfind(&format!("/{segment}")) {
        Some(at) => at + 1 + segment.len(),
        None if key.starts_with(&segment) => segment.len(),
        None => return None,
    };
    Some(&key[start..]).filter(|id| !id.is_empty())
}

/// Clamps any integer into [`Instance::MIN_WEIGHT`]`..=`[`Instance::MAX_WEIGHT`].
pub(super) fn clamp_weight(weight: i128) -> u32 {
    weight.clamp(
        i128::from(Instance::MIN_WEIGHT),
        i128::from(Instance::MAX_WEIGHT),
    ) as u32
}

/// A weight written as a decimal string by another system (`"10"`, `" -3 "`),
/// clamped into range; `None` if it is not an integer.
pub(super) fn weight_from_str(text: &str) -> Option<u32> {
    text.trim().parse::<i128>().ok().map(clamp_weight)
}

/// A weight written as JSON by another system: an integer (`3`, `3.0`) or a
/// decimal string (`"3"`), clamped into range; `None` for anything else.
pub(super) fn weight_from_json(value: &Json) -> Option<u32> {
    match value {
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(clamp_weight(i128::from(i)))
            } else if let Some(u) = n.as_u64() {
                Some(clamp_weight(i128::from(u)))
            } else {
                // A float: accepted only when it is a whole number.
                let f = n.as_f64()?;
                (f.is_finite() && f.fract() == 0.0).then(|| clamp_weight(f as i128))
            }
        }
        Json::String(s) => weight_from_str(s),
        _ => None,
    }
}

/// The namespace rule of layouts whose keys need no leading `/` (go-zero's
/// `greet.rpc/...`, the gRPC target of etcd-naming): empty, or any prefix with
/// no whitespace, control characters or empty segment (`//`). A leading `/` is
/// allowed.
pub(super) fn validate_free_namespace(namespace: &str) -> Result<()> {
    let fail = |reason| {
        Err(Error::InvalidNamespace {
            namespace: namespace.to_owned(),
            reason,
        })
    };
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

/// A [`Error::Decode`] for the value at `key`.
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
    fn ids_from_keys() {
        let cases: &[(&str, Option<&str>)] = &[
            ("/services/svc/10.0.0.7:1", Some("10.0.0.7:1")),
            ("svc/1234", Some("1234")),
            ("/services/svc/host/42", Some("host/42")),
            ("/svc/svc/x", Some("x")),
            ("/services/svc/", None),
            ("/services/svcx/1", None),
            ("/services/xsvc/1", None),
        ];
        for (key, id) in cases {
            assert_eq!(id_from_key("svc", key), *id, "{key}");
        }
    }

    #[test]
    fn weights() {
        assert_eq!(weight_from_str("10"), Some(10));
        assert_eq!(weight_from_str(" 0 "), Some(Instance::MIN_WEIGHT));
        assert_eq!(weight_from_str("-4"), Some(Instance::MIN_WEIGHT));
        assert_eq!(weight_from_str("99999999999"), Some(Instance::MAX_WEIGHT));
        assert_eq!(weight_from_str("2.5"), None);
        assert_eq!(weight_from_str("heavy"), None);
        let json = |s: &str| serde_json::from_str::<Json>(s).unwrap();
        assert_eq!(weight_from_json(&json("3")), Some(3));
        assert_eq!(weight_from_json(&json("3.0")), Some(3));
        assert_eq!(weight_from_json(&json(r#""7""#)), Some(7));
        assert_eq!(
            weight_from_json(&json("18446744073709551615")),
            Some(10_000)
        );
        assert_eq!(weight_from_json(&json("-1")), Some(1));
        assert_eq!(weight_from_json(&json("2.5")), None);
        assert_eq!(weight_from_json(&json("null")), None);
        assert_eq!(weight_from_json(&json("[3]")), None);
    }

    #[test]
    fn free_namespaces() {
        for good in ["", "/", "prod", "prod/", "/prod", "a/b"] {
            validate_free_namespace(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["a b", "a//b", "a\n", "\t"] {
            assert!(
                matches!(
                    validate_free_namespace(bad),
                    Err(Error::InvalidNamespace { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }
}
