//! The layout of kratos' `contrib/registry/etcd`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::namespace::join;
use super::shared::decode_error;
use super::shared::{id_from_key, weight_from_str};
use super::Codec;
use crate::error::Result;
use crate::instance::{validate_addr, Instance};

/// The layout of kratos' etcd registry (`github.com/go-kratos/kratos/contrib/registry/etcd`),
/// a JSON `registry.ServiceInstance`.
///
/// ```text
/// key:   {namespace}/{name}/{id}            namespace defaults to "/microservices"
///        e.g. /microservices/helloworld/host-1
/// value: {"id":"host-1","name":"helloworld","version":"v1.0.0",
///         "metadata":{"weight":"10"},
///         "endpoints":["grpc://10.0.0.7:9000?isSecure=false"]}
/// ```
///
/// - Writing: one endpoint, `grpc://{addr}?isSecure=false`; `metadata` is the
///   instance's metadata (`{}` when empty) plus `"weight"` as a decimal string
///   when the weight is not [`Instance::DEFAULT_WEIGHT`], which is what kratos'
///   weighted selectors read. Without it kratos applies its own default. The
///   instance's weight is authoritative: a metadata entry named `weight` is not
///   written.
/// - Reading: the address is the host of the first `grpc://` endpoint (its
///   query, such as `?isSecure=false`, and any path are ignored; other schemes,
///   such as `http://` or `grpcs://`, are skipped). A value without one fails
///   with [`Error::Decode`](crate::Error::Decode), as does a `name` other than
///   the service. `metadata["weight"]`, when it is an integer, becomes the weight
///   (clamped into range) and leaves the metadata; otherwise it stays in the
///   metadata and the weight is the default. The id is `id`, or the part of the
///   key after `{name}/` when `id` is empty.
/// - Whether to use TLS is the business of the endpoint template, as for every
///   layout.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kratos;

#[derive(Serialize)]
struct Value<'a> {
    id: &'a str,
    name: &'a str,
    version: &'a str,
    metadata: BTreeMap<&'a str, &'a str>,
    endpoints: [String; 1],
}

#[derive(Deserialize)]
struct OwnedValue {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    endpoints: Option<Vec<String>>,
}

impl Codec for Kratos {
    fn name(&self) -> &'static str {
        "kratos"
    }

    fn default_namespace(&self) -> &'static str {
        "/microservices"
    }

    fn key(&self, namespace: &str, instance: &Instance) -> String {
        join(&join(namespace, &instance.service), &instance.id)
    }

    fn encode(&self, instance: &Instance) -> Result<Vec<u8>> {
        let weight = instance.weight.to_string();
        let mut metadata: BTreeMap<&str, &str> = instance
            .metadata
            .iter()
            .filter(|(k, _)| k.as_str() != "weight")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if instance.weight != Instance::DEFAULT_WEIGHT {
            metadata.insert("weight", &weight);
        }
        let value = Value {
            id: &instance.id,
            name: &instance.service,
            version: &instance.version,
            metadata,
            endpoints: [format!("grpc://{}?isSecure=false", instance.addr)],
        };
        Ok(serde_json::to_vec(&value).expect("strings always serialise"))
    }

    fn decode(&self, service: &str, key: &str, value: &[u8]) -> Result<Instance> {
        let v: OwnedValue = serde_json::from_slice(value).map_err(|e| decode_error(key, e))?;
        if let Some(name) = v.name.as_deref().filter(|name| !name.is_empty()) {
            if name != service {
                return Err(decode_error(
                    key,
                    format!("value names service {name:?}, not {service:?}"),
                ));
            }
        }
        let endpoints = v.endpoints.unwrap_or_default();
        let addr = endpoints
            .iter()
            .find_map(|endpoint| grpc_host(endpoint))
            .ok_or_else(|| decode_error(key, format!("no grpc:// endpoint in {endpoints:?}")))?;
        validate_addr(addr).map_err(|e| decode_error(key, e))?;

        let mut metadata = v.metadata.unwrap_or_default();
        let weight = match metadata.get("weight").and_then(|w| weight_from_str(w)) {
            Some(weight) => {
                metadata.remove("weight");
                weight
            }
            None => Instance::DEFAULT_WEIGHT,
        };
        let id = match v.id {
            Some(id) if !id.is_empty() => id,
            _ => id_from_key(service, key).unwrap_or(addr).to_owned(),
        };
        Ok(Instance {
            service: service.to_owned(),
            id,
            addr: addr.to_owned(),
            version: v.version.unwrap_or_default(),
            weight,
            metadata,
        })
    }
}

/// The `host:port` of a `grpc://` endpoint URL (scheme matched ignoring case, as
/// Go's `url.Parse` does); `None` for any other scheme.
fn grpc_host(endpoint: &str) -> Option<&str> {
    let (scheme, rest) = endpoint.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("grpc") {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Like Go's `url.URL.Host`: without any `user@`.
    Some(authority.rsplit('@').next().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    const KEY: &str = "/microservices/helloworld/host-1";

    fn sample() -> Instance {
        Instance::new("helloworld", "10.0.0.7:9000")
            .unwrap()
            .with_id("host-1")
            .with_version("v1.0.0")
            .with_weight(10)
    }

    fn text(i: &Instance) -> String {
        String::from_utf8(Kratos.encode(i).unwrap()).unwrap()
    }

    #[test]
    fn golden_key_and_value() {
        let i = sample();
        assert_eq!(Kratos.key("/microservices", &i), KEY);
        assert_eq!(
            text(&i),
            r#"{"id":"host-1","name":"helloworld","version":"v1.0.0","metadata":{"weight":"10"},"endpoints":["grpc://10.0.0.7:9000?isSecure=false"]}"#
        );
        assert_eq!(
            Kratos.service_prefix("/microservices", "helloworld"),
            "/microservices/helloworld/"
        );
        assert_eq!(Kratos.default_namespace(), "/microservices");
        assert_eq!(Kratos.name(), "kratos");
    }

    #[test]
    fn golden_defaults() {
        let i = Instance::new("helloworld", "10.0.0.7:9000").unwrap();
        assert_eq!(
            Kratos.key("/microservices", &i),
            "/microservices/helloworld/10.0.0.7:9000"
        );
        assert_eq!(
            text(&i),
            r#"{"id":"10.0.0.7:9000","name":"helloworld","version":"","metadata":{},"endpoints":["grpc://10.0.0.7:9000?isSecure=false"]}"#
        );
        // The typed weight wins over a metadata entry of the same name.
        let shadowed = i
            .clone()
            .with_metadata("weight", "5")
            .with_metadata("zone", "a");
        assert_eq!(
            text(&shadowed),
            r#"{"id":"10.0.0.7:9000","name":"helloworld","version":"","metadata":{"zone":"a"},"endpoints":["grpc://10.0.0.7:9000?isSecure=false"]}"#
        );
        let shadowed = shadowed.with_weight(2);
        assert!(text(&shadowed).contains(r#""metadata":{"weight":"2","zone":"a"}"#));
    }

    #[test]
    fn round_trip() {
        for i in [
            sample(),
            sample().with_metadata("zone", "a").with_id("host/1"),
            Instance::new("helloworld", "[::1]:9000").unwrap(),
        ] {
            let key = Kratos.key("/microservices", &i);
            let back = Kratos
                .decode("helloworld", &key, &Kratos.encode(&i).unwrap())
                .unwrap();
            assert_eq!(back, i);
        }
    }

    #[test]
    fn reads_what_kratos_writes() {
        let value = br#"{"id":"host-1","name":"helloworld","version":"v1.0.0","metadata":{"weight":"10"},"endpoints":["grpc://10.0.0.7:9000?isSecure=false","http://10.0.0.7:8000?isSecure=false"]}"#;
        assert_eq!(Kratos.decode("helloworld", KEY, value).unwrap(), sample());

        // The grpc endpoint wherever it is in the list; a Go nil map is null.
        let value = br#"{"id":"host-1","name":"helloworld","version":"v1","metadata":null,"endpoints":["http://10.0.0.7:8000","grpcs://10.0.0.7:9443","GRPC://10.0.0.7:9000"]}"#;
        let i = Kratos.decode("helloworld", KEY, value).unwrap();
        assert_eq!(i.addr, "10.0.0.7:9000");
        assert_eq!(i.weight, Instance::DEFAULT_WEIGHT);
        assert!(i.metadata.is_empty());
    }

    #[test]
    fn lenient_reader() {
        let cases: &[(&str, &str, u32, &str)] = &[
            // (value, addr, weight, id)
            (r#"{"endpoints":["grpc://h:1"]}"#, "h:1", 1, "host-1"),
            (
                r#"{"id":"","endpoints":["grpc://h:1/"]}"#,
                "h:1",
                1,
                "host-1",
            ),
            (
                r#"{"id":"x","endpoints":["grpc://u@h:1?a=b#f"]}"#,
                "h:1",
                1,
                "x",
            ),
            (
                r#"{"name":"","metadata":{"weight":"0"},"endpoints":["grpc://h:1"]}"#,
                "h:1",
                1,
                "host-1",
            ),
            (
                r#"{"metadata":{"weight":"20000"},"endpoints":["grpc://h:1"],"extra":1}"#,
                "h:1",
                10_000,
                "host-1",
            ),
        ];
        for (value, addr, weight, id) in cases {
            let i = Kratos
                .decode("helloworld", KEY, value.as_bytes())
                .unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(
                (i.addr.as_str(), i.weight, i.id.as_str()),
                (*addr, *weight, *id),
                "{value}"
            );
        }
        // A weight that is not an integer stays in the metadata.
        let i = Kratos
            .decode(
                "helloworld",
                KEY,
                br#"{"metadata":{"weight":"heavy"},"endpoints":["grpc://h:1"]}"#,
            )
            .unwrap();
        assert_eq!(i.weight, Instance::DEFAULT_WEIGHT);
        assert_eq!(i.metadata.get("weight").map(String::as_str), Some("heavy"));
    }

    #[test]
    fn bad_values_are_decode_errors() {
        for value in [
            "",
            "null",
            "[]",
            "{}",
            r#"{"endpoints":[]}"#,
            r#"{"endpoints":null}"#,
            r#"{"endpoints":["http://10.0.0.7:8000"]}"#,
            r#"{"endpoints":["grpc://"]}"#,
            r#"{"endpoints":["grpc://10.0.0.7"]}"#,
            r#"{"endpoints":"grpc://10.0.0.7:9000"}"#,
            r#"{"name":"other","endpoints":["grpc://h:1"]}"#,
            r#"{"metadata":{"weight":10},"endpoints":["grpc://h:1"]}"#,
        ] {
            assert!(
                matches!(
                    Kratos.decode("helloworld", KEY, value.as_bytes()),
                    Err(Error::Decode { .. })
                ),
                "{value:?} accepted"
            );
        }
    }

    #[test]
    fn identity_is_the_key() {
        let i = sample();
        assert_eq!(Kratos.identity(KEY, &i), KEY);
    }
}
