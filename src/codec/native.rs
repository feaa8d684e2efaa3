//! The crate's own JSON layout.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::namespace::join;
use super::shared::clamp_weight;
use super::shared::decode_error;
use super::Codec;
use crate::error::Result;
use crate::instance::{validate_addr, Instance};

/// The crate's own layout, the default.
///
/// ```text
/// key:   {namespace}/{service}/{id}          namespace defaults to "/services"
/// value: {"name":"helloworld","id":"10.0.0.7:50051","addr":"10.0.0.7:50051",
///         "version":"1.2.0","weight":1,"metadata":{"zone":"a"}}
/// ```
///
/// Readers ignore unknown fields, accept `service` for `name`, take the id from the
/// key when the value has none, and clamp the weight into the valid range.
#[derive(Debug, Clone, Copy, Default)]
pub struct Native;

#[derive(Serialize)]
struct Value<'a> {
    name: &'a str,
    id: &'a str,
    addr: &'a str,
    version: &'a str,
    weight: u32,
    metadata: &'a BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct OwnedValue {
    #[serde(default, alias = "service")]
    name: Option<String>,
    #[serde(default)]
    id: Option<String>,
    addr: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    weight: Option<u64>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

impl Codec for Native {
    fn name(&self) -> &'static str {
        "native"
    }

    fn default_namespace(&self) -> &'static str {
        "/services"
    }

    fn key(&self, namespace: &str, instance: &Instance) -> String {
        join(&join(namespace, &instance.service), &instance.id)
    }

    fn encode(&self, instance: &Instance) -> Result<Vec<u8>> {
        let value = Value {
            name: &instance.service,
            id: &instance.id,
            addr: &instance.addr,
            version: &instance.version,
            weight: instance.weight,
            metadata: &instance.metadata,
        };
        Ok(serde_json::to_vec(&value).expect("a map of strings always serialises"))
    }

    fn decode(&self, service: &str, key: &str, value: &[u8]) -> Result<Instance> {
        let v: OwnedValue = serde_json::from_slice(value).map_err(|e| decode_error(key, e))?;
        if let Some(name) = &v.name {
            if name != service {
                return Err(decode_error(
                    key,
                    format!("value names service {name:?}, not {service:?}"),
                ));
            }
        }
        validate_addr(&v.addr).map_err(|e| decode_error(key, e))?;
        let id = match v.id {
            Some(id) if !id.is_empty() => id,
            _ => key.rsplit('/').next().unwrap_or_default().to_owned(),
        };
        let weight = v
            .weight
            .map_or(Instance::DEFAULT_WEIGHT, |w| clamp_weight(i128::from(w)));
        Ok(Instance {
            service: service.to_owned(),
            id,
            addr: v.addr,
            version: v.version,
            weight,
            metadata: v.metadata,
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
            .with_version("1.2.0")
            .with_metadata("zone", "a")
    }

    #[test]
    fn golden_key_and_value() {
        let i = sample();
        assert_eq!(
            Native.key("/services", &i),
            "/services/helloworld/10.0.0.7:50051"
        );
        assert_eq!(
            String::from_utf8(Native.encode(&i).unwrap()).unwrap(),
            r#"{"name":"helloworld","id":"10.0.0.7:50051","addr":"10.0.0.7:50051","version":"1.2.0","weight":1,"metadata":{"zone":"a"}}"#
        );
        assert_eq!(
            Native.service_prefix("/services", "helloworld"),
            "/services/helloworld/"
        );
    }

    #[test]
    fn round_trip() {
        let i = sample().with_id("host/42").with_weight(7);
        let key = Native.key("/services", &i);
        assert_eq!(key, "/services/helloworld/host/42");
        let back = Native
            .decode("helloworld", &key, &Native.encode(&i).unwrap())
            .unwrap();
        assert_eq!(back, i);
    }

    #[test]
    fn lenient_reader() {
        let key = "/services/helloworld/x";
        let cases: &[(&str, u32, &str)] = &[
            (r#"{"addr":"h:1"}"#, 1, "x"),
            (
                r#"{"service":"helloworld","addr":"h:1","weight":0}"#,
                1,
                "x",
            ),
            (
                r#"{"addr":"h:1","weight":99999999,"extra":[1,2]}"#,
                10_000,
                "x",
            ),
            (r#"{"addr":"h:1","id":"given"}"#, 1, "given"),
        ];
        for (value, weight, id) in cases {
            let i = Native
                .decode("helloworld", key, value.as_bytes())
                .unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(i.weight, *weight, "{value}");
            assert_eq!(i.id, *id, "{value}");
            assert_eq!(i.addr, "h:1");
        }
    }

    #[test]
    fn bad_values_are_decode_errors() {
        for value in [
            "",
            "not json",
            "{}",
            "[]",
            r#"{"addr":"nope"}"#,
            r#"{"addr":42}"#,
            r#"{"name":"other","addr":"h:1"}"#,
            r#"{"addr":"h:1","metadata":{"a":1}}"#,
        ] {
            assert!(
                matches!(
                    Native.decode("helloworld", "/services/helloworld/x", value.as_bytes()),
                    Err(Error::Decode { .. })
                ),
                "{value:?} accepted"
            );
        }
        let bytes = [0xff, 0xfe, 0x00];
        assert!(Native.decode("helloworld", "k", &bytes).is_err());
    }
}
