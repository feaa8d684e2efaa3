//! The layout of a widely copied Go tutorial registry: the version in the key,
//! JSON in the value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::shared::decode_error;
use super::shared::weight_from_json;
use super::Codec;
use crate::error::Result;
use crate::instance::{validate_addr, Instance};

/// The layout of a widely copied Go tutorial registry, with the version in the
/// key and a small JSON object as the value.
///
/// ```text
/// key:   {namespace}/{name}/{version}/{addr}   namespace defaults to "" (none)
///        {namespace}/{name}/{addr}             when the version is empty
///        e.g. /helloworld/1.0.0/10.0.0.7:50051
/// value: {"name":"helloworld","addr":"10.0.0.7:50051","version":"1.0.0","weight":2}
/// ```
///
/// - Discovery watches `{namespace}/{name}/`, which holds both key shapes; the
///   version is read from the value, not from the key.
/// - Writing: all four fields, always. The instance id and metadata are not
///   carried; read instances have the address as their id and no metadata.
/// - Reading: `addr` is required and must be a `host:port`; `name`, if present
///   and not empty, must be the service; `version` may be missing or `null`;
///   `weight` may be missing or `null` (the default weight), an integer or a
///   decimal string, clamped into range. Unknown fields are ignored. Anything
///   else fails with [`Error::Decode`](crate::Error::Decode).
/// - The key depends on the version, so
///   [`Registration::update`](crate::Registration::update) must not change the
///   version under this layout: the value would say the new version under a key
///   that says the old one. Register anew instead. The weight can be updated in
///   place, which is how this layout is meant to be used.
#[derive(Debug, Clone, Copy, Default)]
pub struct VersionedJson;

#[derive(Serialize)]
struct Value<'a> {
    name: &'a str,
    addr: &'a str,
    version: &'a str,
    weight: u32,
}

#[derive(Deserialize)]
struct OwnedValue {
    #[serde(default)]
    name: Option<String>,
    addr: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    weight: Option<Json>,
}

impl Codec for VersionedJson {
    fn name(&self) -> &'static str {
        "versioned-json"
    }

    fn default_namespace(&self) -> &'static str {
        ""
    }

    fn key(&self, namespace: &str, instance: &Instance) -> String {
        let service = &instance.service;
        let addr = &instance.addr;
        match instance.version.as_str() {
            "" => format!("{namespace}/{service}/{addr}"),
            version => format!("{namespace}/{service}/{version}/{addr}"),
        }
    }

    fn service_prefix(&self, namespace: &str, service: &str) -> String {
        format!("{namespace}/{service}/")
    }

    fn encode(&self, instance: &Instance) -> Result<Vec<u8>> {
        let value = Value {
            name: &instance.service,
            addr: &instance.addr,
            version: &instance.version,
            weight: instance.weight,
        };
        Ok(serde_json::to_vec(&value).expect("strings and numbers always serialise"))
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
        validate_addr(&v.addr).map_err(|e| decode_error(key, e))?;
        let weight = match v.weight {
            None | Some(Json::Null) => Instance::DEFAULT_WEIGHT,
            Some(weight) => weight_from_json(&weight)
                .ok_or_else(|| decode_error(key, format!("weight {weight} is not an integer")))?,
        };
        Ok(Instance {
            service: service.to_owned(),
            id: v.addr.clone(),
            addr: v.addr,
            version: v.version.unwrap_or_default(),
            weight,
            metadata: BTreeMap::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn sample() -> Instance {
        Instance::new("helloworld", "10.0.0.7:50051")
            .unwrap()
            .with_version("1.0.0")
            .with_weight(2)
    }

    #[test]
    fn golden_key_and_value() {
        let i = sample();
        assert_eq!(
            VersionedJson.key("", &i),
            "/helloworld/1.0.0/10.0.0.7:50051"
        );
        assert_eq!(
            String::from_utf8(VersionedJson.encode(&i).unwrap()).unwrap(),
            r#"{"name":"helloworld","addr":"10.0.0.7:50051","version":"1.0.0","weight":2}"#
        );
        assert_eq!(
            VersionedJson.service_prefix("", "helloworld"),
            "/helloworld/"
        );
        assert_eq!(VersionedJson.default_namespace(), "");
        assert_eq!(VersionedJson.name(), "versioned-json");
    }

    #[test]
    fn golden_without_version() {
        let i = Instance::new("helloworld", "10.0.0.7:50051").unwrap();
        assert_eq!(VersionedJson.key("", &i), "/helloworld/10.0.0.7:50051");
        assert_eq!(
            String::from_utf8(VersionedJson.encode(&i).unwrap()).unwrap(),
            r#"{"name":"helloworld","addr":"10.0.0.7:50051","version":"","weight":1}"#
        );
    }

    #[test]
    fn namespace_is_prepended() {
        let i = sample();
        assert_eq!(
            VersionedJson.key("/tutorial", &i),
            "/tutorial/helloworld/1.0.0/10.0.0.7:50051"
        );
        assert_eq!(
            VersionedJson.service_prefix("/tutorial", "helloworld"),
            "/tutorial/helloworld/"
        );
        assert!(matches!(
            VersionedJson.validate_namespace("tutorial"),
            Err(Error::InvalidNamespace { .. })
        ));
        VersionedJson.validate_namespace("/tutorial").unwrap();
    }

    #[test]
    fn round_trip() {
        for i in [
            sample(),
            Instance::new("helloworld", "[::1]:50051").unwrap(),
            sample().with_weight(10_000),
        ] {
            let key = VersionedJson.key("", &i);
            assert!(key.starts_with(&VersionedJson.service_prefix("", "helloworld")));
            let back = VersionedJson
                .decode("helloworld", &key, &VersionedJson.encode(&i).unwrap())
                .unwrap();
            assert_eq!(back, i);
        }
    }

    #[test]
    fn drops_what_it_cannot_carry() {
        let i = sample().with_id("host/1").with_metadata("zone", "a");
        let back = VersionedJson
            .decode("helloworld", "k", &VersionedJson.encode(&i).unwrap())
            .unwrap();
        assert_eq!(back.id, "10.0.0.7:50051");
        assert!(back.metadata.is_empty());
        assert_eq!((back.version.as_str(), back.weight), ("1.0.0", 2));
    }

    #[test]
    fn lenient_reader() {
        let cases: &[(&str, &str, u32)] = &[
            // (value, version, weight)
            (r#"{"addr":"h:1"}"#, "", 1),
            (r#"{"addr":"h:1","version":null,"weight":null}"#, "", 1),
            (
                r#"{"name":"","addr":"h:1","version":"2","weight":"3"}"#,
                "2",
                3,
            ),
            (r#"{"addr":"h:1","weight":0,"extra":{}}"#, "", 1),
            (r#"{"addr":"h:1","weight":-5}"#, "", 1),
            (r#"{"addr":"h:1","weight":123456789}"#, "", 10_000),
        ];
        for (value, version, weight) in cases {
            // The version comes from the value, whatever the key says.
            let i = VersionedJson
                .decode("helloworld", "/helloworld/9.9.9/h:1", value.as_bytes())
                .unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(
                (i.version.as_str(), i.weight),
                (*version, *weight),
                "{value}"
            );
            assert_eq!(i.addr, "h:1");
        }
    }

    #[test]
    fn bad_values_are_decode_errors() {
        for value in [
            "",
            "h:1",
            "{}",
            "[]",
            r#"{"addr":""}"#,
            r#"{"addr":"nope"}"#,
            r#"{"addr":null}"#,
            r#"{"name":"other","addr":"h:1"}"#,
            r#"{"addr":"h:1","weight":"heavy"}"#,
            r#"{"addr":"h:1","weight":1.5}"#,
            r#"{"addr":"h:1","version":1}"#,
        ] {
            assert!(
                matches!(
                    VersionedJson.decode("helloworld", "/helloworld/h:1", value.as_bytes()),
                    Err(Error::Decode { .. })
                ),
                "{value:?} accepted"
            );
        }
    }

    #[test]
    fn identity_is_the_key() {
        let key = "/helloworld/1.0.0/10.0.0.7:50051";
        assert_eq!(VersionedJson.identity(key, &sample()), key);
    }
}
