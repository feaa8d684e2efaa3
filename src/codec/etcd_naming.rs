//! The layout of etcd's own Go packages `naming/endpoints` and `naming/resolver`.
//!
//! (Over 400 lines because half of it is the tests: golden keys and values,
//! what Go writes, lenient metadata, bad values.)

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value as Json};

use super::namespace::join;
use super::shared::decode_error;
use super::shared::{id_from_key, validate_free_namespace, weight_from_json};
use super::Codec;
use crate::error::Result;
use crate::instance::{validate_addr, Instance};

/// The layout of etcd's Go packages `go.etcd.io/etcd/client/v3/naming/endpoints`
/// (the writer) and `naming/resolver` (the gRPC resolver of `etcd:///{target}`).
///
/// ```text
/// key:   {target}/{addr}        {target} = {namespace/}{service}; namespace defaults to ""
///        e.g. helloworld/10.0.0.7:50051, read by a Go client dialing etcd:///helloworld
/// value: {"Op":0,"Addr":"10.0.0.7:50051","Metadata":null}
/// ```
///
/// - The gRPC target is the service name, or `{namespace}/{service}` when a
///   namespace is set (a Go client then dials `etcd:///{namespace}/{service}`).
///   Neither needs a leading `/`.
/// - The key ends with the address, as `endpoints.Manager.AddEndpoint` is
///   usually called; the instance id is not written. Discovery takes the id from
///   the key (the part after `{service}/`), which Go writers may choose freely.
///
/// # Weight, version and metadata
///
/// The Go struct has a free `Metadata` field that Go readers pass through
/// untouched. This layout keeps the crate's fields there, as a JSON object:
///
/// ```text
/// Metadata: null                            default weight, no version, no metadata
/// Metadata: {"version":"1.2.0","weight":3,"zone":"a"}
///           every metadata entry as a string, plus "weight" (a number, only when
///           not the default) and "version" (only when not empty); keys sorted
/// ```
///
/// The instance's weight and version are authoritative: metadata entries named
/// `weight` or `version` are not written.
///
/// Reading is lenient, as Go readers are:
///
/// - `Op` is ignored (a PUT is an add whatever it says, a DELETE a removal), but
///   it must be an integer in `0..=255` or `null`, as Go requires. Field names
///   match case-insensitively, as in Go's `encoding/json`.
/// - `Addr` is required and must be a `host:port`.
/// - `Metadata` as an object: `weight` (an integer or a decimal string, clamped
///   into range) becomes the weight and `version` (a string or a number) the
///   version; every other entry, and a `weight` or `version` that does not
///   parse, goes to the metadata, strings as they are and other JSON values as
///   their compact JSON text; `null` entries are skipped.
/// - `Metadata` that is neither an object nor `null` (e.g. a string written by a
///   Go program) is kept whole, as JSON text, under the metadata key
///   [`EtcdNaming::RAW_METADATA`].
/// - Anything else fails with [`Error::Decode`](crate::Error::Decode).
#[derive(Debug, Clone, Copy, Default)]
pub struct EtcdNaming;

impl EtcdNaming {
    /// The metadata key under which a `Metadata` that is not a JSON object is
    /// kept, as JSON text: `raw`.
    ///
    /// ```
    /// use tonic_etcd::codec::{Codec, EtcdNaming};
    /// let value = br#"{"Op":0,"Addr":"10.0.0.7:50051","Metadata":"v1"}"#;
    /// let instance = EtcdNaming.decode("helloworld", "helloworld/10.0.0.7:50051", value)?;
    /// assert_eq!(instance.metadata[EtcdNaming::RAW_METADATA], r#""v1""#);
    /// # Ok::<(), tonic_etcd::Error>(())
    /// ```
    pub const RAW_METADATA: &'static str = "raw";
}

#[derive(Serialize)]
struct Update<'a> {
    #[serde(rename = "Op")]
    op: u8,
    #[serde(rename = "Addr")]
    addr: &'a str,
    #[serde(rename = "Metadata")]
    metadata: Option<BTreeMap<&'a str, Json>>,
}

/// `Op` of an add, in etcd's `naming/endpoints/internal`.
const OP_ADD: u8 = 0;

impl Codec for EtcdNaming {
    fn name(&self) -> &'static str {
        "etcd-naming"
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
        join(&join(namespace, &instance.service), &instance.addr)
    }

    fn encode(&self, instance: &Instance) -> Result<Vec<u8>> {
        let mut metadata: BTreeMap<&str, Json> = instance
            .metadata
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "weight" | "version"))
            .map(|(k, v)| (k.as_str(), Json::String(v.clone())))
            .collect();
        if instance.weight != Instance::DEFAULT_WEIGHT {
            metadata.insert("weight", Json::from(instance.weight));
        }
        if !instance.version.is_empty() {
            metadata.insert("version", Json::String(instance.version.clone()));
        }
        let update = Update {
            op: OP_ADD,
            addr: &instance.addr,
            metadata: (!metadata.is_empty()).then_some(metadata),
        };
        Ok(serde_json::to_vec(&update).expect("strings and numbers always serialise"))
    }

    fn decode(&self, service: &str, key: &str, value: &[u8]) -> Result<Instance> {
        let json: Json = serde_json::from_slice(value).map_err(|e| decode_error(key, e))?;
        let Json::Object(fields) = json else {
            return Err(decode_error(key, "not a JSON object"));
        };
        match field(&fields, "Op") {
            None | Some(Json::Null) => {}
            Some(Json::Number(n)) if n.as_u64().is_some_and(|op| op <= 255) => {}
            Some(other) => {
                return Err(decode_error(key, format!("Op {other} is not a uint8")));
            }
        }
        let addr = match field(&fields, "Addr") {
            Some(Json::String(addr)) => addr,
            Some(other) => return Err(decode_error(key, format!("Addr {other} is not a string"))),
            None => return Err(decode_error(key, "missing Addr")),
        };
        validate_addr(addr).map_err(|e| decode_error(key, e))?;

        let mut instance = Instance {
            service: service.to_owned(),
            id: id_from_key(service, key)
                .unwrap_or(addr.as_str())
                .to_owned(),
            addr: addr.clone(),
            version: String::new(),
            weight: Instance::DEFAULT_WEIGHT,
            metadata: BTreeMap::new(),
        };
        match field(&fields, "Metadata") {
            None | Some(Json::Null) => {}
            Some(Json::Object(entries)) => {
                for (name, value) in entries {
                    let taken = match (name.as_str(), value) {
                        ("weight", value) => weight_from_json(value)
                            .map(|weight| instance.weight = weight)
                            .is_some(),
                        ("version", Json::String(version)) => {
                            instance.version = version.clone();
                            true
                        }
                        ("version", Json::Number(version)) => {
                            instance.version = version.to_string();
                            true
                        }
                        _ => false,
                    };
                    if !taken {
                        if let Some(text) = json_text(value) {
                            instance.metadata.insert(name.clone(), text);
                        }
                    }
                }
            }
            Some(other) => {
                instance
                    .metadata
                    .insert(Self::RAW_METADATA.to_owned(), other.to_string());
            }
        }
        Ok(instance)
    }
}

/// The field `name` of a Go struct decoded by `encoding/json`: the exact name if
/// present, else the first that matches ignoring ASCII case.
fn field<'a>(fields: &'a Map<String, Json>, name: &str) -> Option<&'a Json> {
    fields.get(name).or_else(|| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// A metadata value as a string: strings as they are, `null` as nothing, any
/// other JSON value as its compact JSON text.
fn json_text(value: &Json) -> Option<String> {
    match value {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    const KEY: &str = "helloworld/10.0.0.7:50051";

    fn text(i: &Instance) -> String {
        String::from_utf8(EtcdNaming.encode(i).unwrap()).unwrap()
    }

    #[test]
    fn golden_key_and_value() {
        let i = Instance::new("helloworld", "10.0.0.7:50051").unwrap();
        assert_eq!(EtcdNaming.key("", &i), KEY);
        assert_eq!(
            text(&i),
            r#"{"Op":0,"Addr":"10.0.0.7:50051","Metadata":null}"#
        );
        assert_eq!(EtcdNaming.service_prefix("", "helloworld"), "helloworld/");
        assert_eq!(EtcdNaming.default_namespace(), "");
        assert_eq!(EtcdNaming.name(), "etcd-naming");
        // The key a Go client dialing etcd:///helloworld reads.
        let local = Instance::new("helloworld", "127.0.0.1:50051").unwrap();
        assert_eq!(EtcdNaming.key("", &local), "helloworld/127.0.0.1:50051");
    }

    #[test]
    fn namespace_is_part_of_the_target() {
        let i = Instance::new("helloworld", "10.0.0.7:50051")
            .unwrap()
            .with_id("ignored");
        assert_eq!(EtcdNaming.key("prod", &i), "prod/helloworld/10.0.0.7:50051");
        assert_eq!(
            EtcdNaming.key("/prod", &i),
            "/prod/helloworld/10.0.0.7:50051"
        );
        assert_eq!(
            EtcdNaming.service_prefix("prod", "helloworld"),
            "prod/helloworld/"
        );
        for good in ["", "prod", "/prod", "a/b/"] {
            EtcdNaming
                .validate_namespace(good)
                .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["a b", "a//b", "a\u{7}"] {
            assert!(matches!(
                EtcdNaming.validate_namespace(bad),
                Err(Error::InvalidNamespace { .. })
            ));
        }
    }

    #[test]
    fn golden_metadata_convention() {
        let i = Instance::new("helloworld", "10.0.0.7:50051")
            .unwrap()
            .with_version("1.2.0")
            .with_weight(3)
            .with_metadata("zone", "a");
        assert_eq!(
            text(&i),
            r#"{"Op":0,"Addr":"10.0.0.7:50051","Metadata":{"version":"1.2.0","weight":3,"zone":"a"}}"#
        );
        let weight_only = Instance::new("helloworld", "10.0.0.7:50051")
            .unwrap()
            .with_weight(10_000);
        assert_eq!(
            text(&weight_only),
            r#"{"Op":0,"Addr":"10.0.0.7:50051","Metadata":{"weight":10000}}"#
        );
        // The typed fields win over metadata entries of the same name.
        let shadowed = Instance::new("helloworld", "10.0.0.7:50051")
            .unwrap()
            .with_metadata("weight", "5")
            .with_metadata("version", "x");
        assert_eq!(
            text(&shadowed),
            r#"{"Op":0,"Addr":"10.0.0.7:50051","Metadata":null}"#
        );
    }

    #[test]
    fn round_trip() {
        for i in [
            Instance::new("helloworld", "10.0.0.7:50051").unwrap(),
            Instance::new("helloworld", "[::1]:50051")
                .unwrap()
                .with_version("1.2.0")
                .with_weight(3)
                .with_metadata("zone", "a")
                .with_metadata("quote", "\"x\""),
        ] {
            let key = EtcdNaming.key("prod", &i);
            let back = EtcdNaming
                .decode("helloworld", &key, &EtcdNaming.encode(&i).unwrap())
                .unwrap();
            assert_eq!(back, i);
        }
    }

    #[test]
    fn reads_what_go_writes() {
        let i = EtcdNaming
            .decode(
                "helloworld",
                KEY,
                br#"{"Op":0,"Addr":"10.0.0.7:50051","Metadata":null}"#,
            )
            .unwrap();
        assert_eq!(i, Instance::new("helloworld", "10.0.0.7:50051").unwrap());

        // Op 1 on a PUT is still an add; the id is whatever the Go key says.
        let i = EtcdNaming
            .decode(
                "helloworld",
                "helloworld/node-1",
                br#"{"Op":1,"Addr":"10.0.0.7:50051"}"#,
            )
            .unwrap();
        assert_eq!(
            (i.id.as_str(), i.addr.as_str()),
            ("node-1", "10.0.0.7:50051")
        );

        // encoding/json matches field names case-insensitively.
        let i = EtcdNaming
            .decode(
                "helloworld",
                KEY,
                br#"{"op":0,"addr":"h:1","metadata":null}"#,
            )
            .unwrap();
        assert_eq!(i.addr, "h:1");
    }

    #[test]
    fn lenient_metadata() {
        let decode = |metadata: &str| {
            let value = format!(r#"{{"Op":0,"Addr":"h:1","Metadata":{metadata}}}"#);
            EtcdNaming
                .decode("helloworld", KEY, value.as_bytes())
                .unwrap_or_else(|e| panic!("{metadata}: {e}"))
        };
        let pairs = |i: &Instance| {
            i.metadata
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        };

        let i = decode(r#"{"weight":"7","version":2,"zone":"a","n":1.5,"on":true,"gone":null}"#);
        assert_eq!((i.weight, i.version.as_str()), (7, "2"));
        assert_eq!(pairs(&i), ["n=1.5", "on=true", "zone=a"]);

        let i = decode(r#"{"weight":0}"#);
        assert_eq!(i.weight, Instance::MIN_WEIGHT);
        let i = decode(r#"{"weight":1e9}"#);
        assert_eq!(i.weight, Instance::MAX_WEIGHT);

        let i = decode(r#"{"weight":"heavy","version":["v1"],"nested":{"a":[1]}}"#);
        assert_eq!((i.weight, i.version.as_str()), (1, ""));
        assert_eq!(
            pairs(&i),
            [r#"nested={"a":[1]}"#, r#"version=["v1"]"#, "weight=heavy"]
        );

        let i = decode(r#""a string from Go""#);
        assert_eq!(pairs(&i), [r#"raw="a string from Go""#]);
        let i = decode("[1,2]");
        assert_eq!(pairs(&i), ["raw=[1,2]"]);
        let i = decode("{}");
        assert!(i.metadata.is_empty());
    }

    #[test]
    fn bad_values_are_decode_errors() {
        for value in [
            "",
            "null",
            "[]",
            "\"10.0.0.7:50051\"",
            "10.0.0.7:50051",
            "{}",
            r#"{"Op":0,"Metadata":null}"#,
            r#"{"Op":0,"Addr":"","Metadata":null}"#,
            r#"{"Op":0,"Addr":"nope","Metadata":null}"#,
            r#"{"Op":0,"Addr":42}"#,
            r#"{"Op":256,"Addr":"h:1"}"#,
            r#"{"Op":-1,"Addr":"h:1"}"#,
            r#"{"Op":"0","Addr":"h:1"}"#,
            r#"{"Op":0,"Addr":"h:1""#,
        ] {
            assert!(
                matches!(
                    EtcdNaming.decode("helloworld", KEY, value.as_bytes()),
                    Err(Error::Decode { .. })
                ),
                "{value:?} accepted"
            );
        }
    }

    #[test]
    fn identity_is_the_key() {
        let i = EtcdNaming
            .decode("helloworld", KEY, br#"{"Addr":"10.0.0.7:50051"}"#)
            .unwrap();
        assert_eq!(EtcdNaming.identity(KEY, &i), KEY);
    }
}
