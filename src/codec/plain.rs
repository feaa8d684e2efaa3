//! The plain layout of go-kit's `sd/etcdv3` and of hand-written Go registries.

use super::namespace::join;
use super::shared::bare_instance;
use super::shared::decode_error;
use super::Codec;
use crate::error::Result;
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
///   [`Error::Decode`](crate::Error::Decode). The id is the address, whatever the key says; the
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

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
}
