//! The plain layout of go-kit's `sd/etcdv3` and of hand-written Go registries,
//! and the helpers shared by the layouts of other systems.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::{decode_error, join, Codec};
use crate::error::{Error, Result};
use crate::instance::{validate_addr, Instance};

/// The plain layout of go-kit's `sd/etcdv3` and of many hand-written Go
/// registries: the value is the bare address.
///
/// ```text
/// key:   {namespace}/{service}/{id}         namespace defaults to "/services"
///        e.g. /services/helloworld/10.0.0.7:50051
/// value: 10.0.0.7:50051
/// ```
///
/// - Writing: the value is [`Instance::addr`]; the id defaults to the address,
///   as above. Version, weight and metadata are not carried.
/// - Reading: surrounding whitespace is ignored, and so is a scheme
///   (`http://10.0.0.7:50051`, `grpc://10.0.0.7:50051/`, with or without a
///   trailing `/`): how to connect (TLS or not) is the business of the endpoint
///   template. Anything that is not then a `host:port` fails with
///   [`Error::Decode`]. The id is the address, whatever the key says; the
///   version is empty and the weight [`Instance::DEFAULT_WEIGHT`].
/// - Identity: the address, so that two keys holding one address are one
///   instance (go-kit's subscriber reads values, not keys), and since they read
///   as the same instance, deleting one of them changes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl Codec for Plain {
    fn name(&self) -> &'static str {
        "plain"
    }

    fn default_namespace(&self) -> &'static str {
        "/services"
    }

    fn key(&self, namespace: &str, instance: &Instance) -> String {
        join(&join(namespace, &instance.service), &instance.id)
    }

    fn encode(&self, instance: &Instance) -> Result<Vec<u8>> {
        Ok(instance.addr.as_bytes().to_vec())
    }

    fn decode(&self, service: &str, key: &str, value: &[u8]) -> Result<Instance> {
        let text = std::str::from_utf8(value)
            .map_err(|e| decode_error(key, e))?
            .trim();
        let addr = match text.split_once("://") {
            Some((scheme, rest)) if is_scheme(scheme) => rest,
            Some(_) => {
                return Err(decode_error(
                    key,
                    format!("{text:?} has a malformed scheme"),
                ))
            }
            None => text,
        };
        let addr = addr.trim_end_matches('/');
        validate_addr(addr).map_err(|e| decode_error(key, e))?;
        Ok(bare_instance(service, addr))
    }

    fn identity(&self, _key: &str, instance: &Instance) -> String {
        instance.addr.clone()
    }
}

/// A URL scheme: a letter, then letters, digits, `+`, `-` or `.` (RFC 3986).
fn is_scheme(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

// Helpers shared by the layouts of other systems (plain, go-zero, etcd-naming,
// kratos, versioned-json).

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
    if super::normalize_namespace(namespace).contains("//") {
        return fail("must not contain an empty segment ('//')");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "/services/helloworld/10.0.0.7:50051";

    #[test]
    fn golden_key_and_value() {
        let i = Instance::new("helloworld", "10.0.0.7:50051").unwrap();
        assert_eq!(Plain.key("/services", &i), KEY);
        assert_eq!(Plain.encode(&i).unwrap(), b"10.0.0.7:50051");
        assert_eq!(
            Plain.service_prefix("/services", "helloworld"),
            "/services/helloworld/"
        );
        assert_eq!(
            Plain.key("/prod/kit", &i),
            "/prod/kit/helloworld/10.0.0.7:50051"
        );
        assert_eq!(Plain.key("", &i), "helloworld/10.0.0.7:50051");
        assert_eq!(Plain.default_namespace(), "/services");
        assert_eq!(Plain.name(), "plain");
    }

    #[test]
    fn round_trip() {
        for i in [
            Instance::new("helloworld", "10.0.0.7:50051").unwrap(),
            Instance::new("helloworld", "[::1]:50051").unwrap(),
        ] {
            let key = Plain.key("/services", &i);
            let back = Plain
                .decode("helloworld", &key, &Plain.encode(&i).unwrap())
                .unwrap();
            assert_eq!(back, i);
        }
    }

    #[test]
    fn drops_what_it_cannot_carry() {
        let i = Instance::new("helloworld", "10.0.0.7:50051")
            .unwrap()
            .with_id("node-1")
            .with_version("1.0.0")
            .with_weight(5)
            .with_metadata("zone", "a");
        assert_eq!(Plain.key("/services", &i), "/services/helloworld/node-1");
        assert_eq!(Plain.encode(&i).unwrap(), b"10.0.0.7:50051");
        let back = Plain
            .decode("helloworld", KEY, &Plain.encode(&i).unwrap())
            .unwrap();
        assert_eq!(back.id, "10.0.0.7:50051");
        assert_eq!(back.version, "");
        assert_eq!(back.weight, Instance::DEFAULT_WEIGHT);
        assert!(back.metadata.is_empty());
    }

    #[test]
    fn lenient_reader() {
        for value in [
            "10.0.0.7:50051",
            " 10.0.0.7:50051\n",
            "http://10.0.0.7:50051",
            "grpc://10.0.0.7:50051/",
            "HTTPS://10.0.0.7:50051",
        ] {
            let i = Plain
                .decode("helloworld", KEY, value.as_bytes())
                .unwrap_or_else(|e| panic!("{value:?}: {e}"));
            assert_eq!(i.addr, "10.0.0.7:50051", "{value:?}");
            assert_eq!(i.id, "10.0.0.7:50051", "{value:?}");
        }
        // The id is the address, whatever the key says.
        let i = Plain
            .decode("helloworld", "/kit/helloworld/node-1", b"h:1")
            .unwrap();
        assert_eq!((i.id.as_str(), i.addr.as_str()), ("h:1", "h:1"));
    }

    #[test]
    fn bad_values_are_decode_errors() {
        for value in [
            "",
            "   ",
            "10.0.0.7",
            "://10.0.0.7:1",
            "1http://10.0.0.7:1",
            "http://",
            "http://10.0.0.7:1/path",
            r#"{"addr":"10.0.0.7:1"}"#,
            "10.0.0.7:0",
        ] {
            assert!(
                matches!(
                    Plain.decode("helloworld", KEY, value.as_bytes()),
                    Err(Error::Decode { .. })
                ),
                "{value:?} accepted"
            );
        }
        assert!(matches!(
            Plain.decode("helloworld", KEY, &[0xff, 0xfe]),
            Err(Error::Decode { .. })
        ));
    }

    #[test]
    fn identity_is_the_address() {
        let a = Plain
            .decode("helloworld", "/s/helloworld/a", b"h:1")
            .unwrap();
        let b = Plain
            .decode("helloworld", "/s/helloworld/b", b"http://h:1")
            .unwrap();
        assert_eq!(Plain.identity("/s/helloworld/a", &a), "h:1");
        assert_eq!(
            Plain.identity("/s/helloworld/a", &a),
            Plain.identity("/s/helloworld/b", &b)
        );
        // Identical instances: discovery has nothing to report when one key goes.
        assert_eq!(a, b);
    }

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
