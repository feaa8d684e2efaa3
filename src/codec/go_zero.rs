//! The layout of go-zero's `core/discov`, used by zrpc.

use super::namespace::join;
use super::shared::decode_error;
use super::shared::{bare_instance, validate_free_namespace};
use super::Codec;
use crate::error::Result;
use crate::instance::{validate_addr, Instance};

/// The layout of go-zero's `core/discov` publisher and subscriber (zrpc).
///
/// ```text
/// key:   {namespace/}{service}/{id}         namespace defaults to "" (none)
///        e.g. greet.rpc/10.0.0.7:8080
/// value: 10.0.0.7:8080                      plain "host:port", no JSON
/// ```
///
/// - The service is go-zero's etcd `Key` (e.g. `greet.rpc`), written without a
///   leading `/`; a namespace, if set, is put in front with a `/` and needs no
///   leading `/` either.
/// - go-zero's publisher puts the lease id in decimal where this layout puts the
///   instance id (which defaults to the address): the key of a registration then
///   stays the same across lease loss, and go-zero's subscriber does not care,
///   since it reads only values.
/// - Version, weight and metadata are not carried.
/// - Reading: the value, with surrounding whitespace removed, must be a valid
///   `host:port`, or the value fails with [`Error::Decode`](crate::Error::Decode).
///   Read instances have the address as their id (a lease id says nothing about
///   the server), an empty version and the weight [`Instance::DEFAULT_WEIGHT`].
/// - Identity: the address. Because go-zero keys carry a lease id, one server
///   may briefly own two keys (an old lease not yet expired, a new one); like
///   go-zero's subscriber, discovery reports it once, and removes it only when
///   its last key goes. Both keys read as the same instance, so losing one of
///   them changes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct GoZero;

impl Codec for GoZero {
    fn name(&self) -> &'static str {
        "go-zero"
    }

    fn default_namespace(&self) -> &'static str {
        ""
    }

    /// Accepts `""` or any prefix without whitespace, control characters or an
    /// empty segment; a leading `/` is optional.
    fn validate_namespace(&self, namespace: &str) -> Result<()> {
        validate_free_namespace(namespace)
    }

    fn key(&self, namespace: &str, instance: &Instance) -> String {
        join(&join(namespace, &instance.service), &instance.id)
    }

    fn encode(&self, instance: &Instance) -> Result<Vec<u8>> {
        Ok(instance.addr.as_bytes().to_vec())
    }

    fn decode(&self, service: &str, key: &str, value: &[u8]) -> Result<Instance> {
        let addr = std::str::from_utf8(value)
            .map_err(|e| decode_error(key, e))?
            .trim();
        validate_addr(addr).map_err(|e| decode_error(key, e))?;
        Ok(bare_instance(service, addr))
    }

    fn identity(&self, _key: &str, instance: &Instance) -> String {
        instance.addr.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn golden_key_and_value() {
        let i = Instance::new("greet.rpc", "10.0.0.7:8080").unwrap();
        assert_eq!(GoZero.key("", &i), "greet.rpc/10.0.0.7:8080");
        assert_eq!(GoZero.encode(&i).unwrap(), b"10.0.0.7:8080");
        assert_eq!(GoZero.service_prefix("", "greet.rpc"), "greet.rpc/");
        // The key the Go publisher writes, with a lease id as the id.
        let lease = i.clone().with_id("7587869479254413059");
        assert_eq!(GoZero.key("", &lease), "greet.rpc/7587869479254413059");
        assert_eq!(GoZero.key("prod", &i), "prod/greet.rpc/10.0.0.7:8080");
        assert_eq!(
            GoZero.service_prefix("prod", "greet.rpc"),
            "prod/greet.rpc/"
        );
        assert_eq!(GoZero.default_namespace(), "");
        assert_eq!(GoZero.name(), "go-zero");
    }

    #[test]
    fn round_trip() {
        for i in [
            Instance::new("greet.rpc", "10.0.0.7:8080").unwrap(),
            Instance::new("greet.rpc", "[2001:db8::7]:8080").unwrap(),
        ] {
            let key = GoZero.key("", &i);
            let back = GoZero
                .decode("greet.rpc", &key, &GoZero.encode(&i).unwrap())
                .unwrap();
            assert_eq!(back, i);
        }
    }

    #[test]
    fn reads_what_go_writes() {
        let i = GoZero
            .decode(
                "greet.rpc",
                "greet.rpc/7587869479254413059",
                b"10.0.0.7:8080",
            )
            .unwrap();
        assert_eq!(i.addr, "10.0.0.7:8080");
        assert_eq!(i.id, "10.0.0.7:8080", "the lease id is not an instance id");
        assert_eq!(i.version, "");
        assert_eq!(i.weight, Instance::DEFAULT_WEIGHT);
        let i = GoZero
            .decode("greet.rpc", "greet.rpc/1", b" 10.0.0.7:8080\n")
            .unwrap();
        assert_eq!(i.addr, "10.0.0.7:8080");
    }

    #[test]
    fn namespaces_need_no_slash() {
        for good in ["", "prod", "prod/zrpc", "/prod"] {
            GoZero
                .validate_namespace(good)
                .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["a b", "a//b"] {
            assert!(matches!(
                GoZero.validate_namespace(bad),
                Err(Error::InvalidNamespace { .. })
            ));
        }
    }

    #[test]
    fn bad_values_are_decode_errors() {
        for value in [
            "",
            "10.0.0.7",
            "http://10.0.0.7:8080",
            r#"{"addr":"10.0.0.7:8080"}"#,
            "10.0.0.7:99999",
        ] {
            assert!(
                matches!(
                    GoZero.decode("greet.rpc", "greet.rpc/1", value.as_bytes()),
                    Err(Error::Decode { .. })
                ),
                "{value:?} accepted"
            );
        }
        assert!(matches!(
            GoZero.decode("greet.rpc", "greet.rpc/1", &[0xc3, 0x28]),
            Err(Error::Decode { .. })
        ));
    }

    #[test]
    fn identity_dedupes_by_address() {
        let a = GoZero
            .decode("greet.rpc", "greet.rpc/111", b"127.0.0.1:8080")
            .unwrap();
        let b = GoZero
            .decode("greet.rpc", "greet.rpc/222", b"127.0.0.1:8080")
            .unwrap();
        assert_eq!(a, b, "one server, two leases: the same instance");
        assert_eq!(GoZero.identity("greet.rpc/111", &a), "127.0.0.1:8080");
        assert_eq!(
            GoZero.identity("greet.rpc/111", &a),
            GoZero.identity("greet.rpc/222", &b)
        );
    }
}
