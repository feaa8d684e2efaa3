//! Registry layouts: how an [`Instance`] becomes an etcd key and value, and back.
//!
//! A layout is a [`Codec`]: pure functions, no I/O. Registration writes with one
//! and discovery reads with one; both default to the crate's own, [`Native`].
//! The others let a Rust service join a fleet whose Go (or other) servers and
//! clients already use etcd: pick one with [`by_name`] or by its type, and pass
//! it to [`Registrar::codec`](crate::Registrar::codec) and
//! [`Discovery::codec`](crate::Discovery::codec). Every layout's namespace (the
//! part of the key before the service name) can be overridden with
//! [`Registrar::namespace`](crate::Registrar::namespace) and
//! [`Discovery::namespace`](crate::Discovery::namespace).
//!
//! [`Native`], `native`, the default:
//!
//! ```text
//! key:   {namespace}/{service}/{id}          namespace defaults to "/services"
//! value: {"name":"helloworld","id":"10.0.0.7:50051","addr":"10.0.0.7:50051",
//!         "version":"1.2.0","weight":1,"metadata":{"zone":"a"}}
//! ```
//!
//! [`EtcdNaming`], `etcd-naming`: etcd's Go `naming/endpoints` and the
//! `etcd:///{target}` gRPC resolver:
//!
//! ```text
//! key:   {target}/{addr}                     {target} = {namespace/}{service}, namespace defaults to ""
//!        e.g. helloworld/10.0.0.7:50051, read by a Go client dialing etcd:///helloworld
//! value: {"Op":0,"Addr":"10.0.0.7:50051","Metadata":null}
//!        Metadata {"version":"1.2.0","weight":3,"zone":"a"} when any is set
//! ```
//!
//! [`Kratos`], `kratos`: kratos' `contrib/registry/etcd`:
//!
//! ```text
//! key:   {namespace}/{name}/{id}             namespace defaults to "/microservices"
//! value: {"id":"host-1","name":"helloworld","version":"v1.0.0",
//!         "metadata":{"weight":"10"},
//!         "endpoints":["grpc://10.0.0.7:9000?isSecure=false"]}
//! ```
//!
//! [`GoZero`], `go-zero`: go-zero's `core/discov` (zrpc):
//!
//! ```text
//! key:   {namespace/}{service}/{id}          namespace defaults to ""
//!        e.g. greet.rpc/10.0.0.7:8080 (go-zero itself puts its lease id as the id)
//! value: 10.0.0.7:8080
//! ```
//!
//! [`Plain`], `plain`: go-kit's `sd/etcdv3` and hand-written Go registries:
//!
//! ```text
//! key:   {namespace}/{service}/{id}          namespace defaults to "/services"
//! value: 10.0.0.7:50051                      read also with a scheme: http://10.0.0.7:50051
//! ```
//!
//! [`VersionedJson`], `versioned-json`: a widely copied Go tutorial registry:
//!
//! ```text
//! key:   {namespace}/{name}/{version}/{addr} namespace defaults to ""
//!        {namespace}/{name}/{addr}           when the version is empty
//! value: {"name":"helloworld","addr":"10.0.0.7:50051","version":"1.0.0","weight":2}
//! ```
//!
//! Discovery watches [`Codec::service_prefix`], which ends with `/` so that the
//! service `foo` never sees the instances of `foobar`. A DELETE always removes
//! the instance, whatever its last value said. go-zero and plain identify
//! instances by address, so that several keys holding one address are one
//! instance; the other layouts by key.

mod etcd_naming;
mod go_zero;
mod kratos;
mod native;
mod plain;
mod shared;
mod versioned_json;

use std::fmt;
use std::sync::Arc;

pub use etcd_naming::EtcdNaming;
pub use go_zero::GoZero;
pub use kratos::Kratos;
pub use native::Native;
pub use plain::Plain;
pub use versioned_json::VersionedJson;

use crate::error::{Error, Result};
use crate::instance::Instance;

/// A registry layout: the key scheme and the value encoding of one format.
///
/// Implementations are pure functions, shared between registration and
/// discovery. `namespace` arguments have been checked with
/// [`Codec::validate_namespace`] and normalised (no trailing `/`).
///
/// A layout of your own, here the native one under another default
/// namespace:
///
/// ```
/// use tonic_etcd::codec::{Codec, Native};
/// use tonic_etcd::{Instance, Result};
///
/// #[derive(Debug)]
/// struct Mine;
///
/// impl Codec for Mine {
///     fn name(&self) -> &'static str { "mine" }
///     fn default_namespace(&self) -> &'static str { "/mine" }
///     fn key(&self, namespace: &str, instance: &Instance) -> String {
///         Native.key(namespace, instance)
///     }
///     fn encode(&self, instance: &Instance) -> Result<Vec<u8>> { Native.encode(instance) }
///     fn decode(&self, service: &str, key: &str, value: &[u8]) -> Result<Instance> {
///         Native.decode(service, key, value)
///     }
/// }
///
/// let instance = Instance::new("helloworld", "127.0.0.1:50051")?;
/// assert_eq!(Mine.key("/mine", &instance), "/mine/helloworld/127.0.0.1:50051");
/// assert_eq!(Mine.service_prefix("/mine", "helloworld"), "/mine/helloworld/");
/// # Ok::<(), tonic_etcd::Error>(())
/// ```
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

/// The names of every layout, as [`Codec::name`] gives them and [`by_name`]
/// accepts: the crate's own first.
///
/// ```
/// for name in tonic_etcd::codec::FORMATS {
///     assert_eq!(tonic_etcd::codec::by_name(name).unwrap().name(), *name);
/// }
/// ```
pub const FORMATS: &[&str] = &[
    "native",
    "etcd-naming",
    "kratos",
    "go-zero",
    "plain",
    "versioned-json",
];

/// The layout called `name` (one of [`FORMATS`]), or `None`.
///
/// ```
/// use tonic_etcd::codec;
///
/// let go_zero = codec::by_name("go-zero").expect("a known format");
/// assert_eq!(go_zero.name(), "go-zero");
/// assert!(codec::by_name("zookeeper").is_none());
/// ```
pub fn by_name(name: &str) -> Option<Arc<dyn Codec>> {
    let codec: Arc<dyn Codec> = match name {
        "native" => Arc::new(Native),
        "etcd-naming" => Arc::new(EtcdNaming),
        "kratos" => Arc::new(Kratos),
        "go-zero" => Arc::new(GoZero),
        "plain" => Arc::new(Plain),
        "versioned-json" => Arc::new(VersionedJson),
        _ => return None,
    };
    Some(codec)
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
fn normalize_namespace(namespace: &str) -> &str {
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
    shared::validate_free_namespace(namespace)
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
