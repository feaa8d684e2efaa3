//! The [`Codec`] trait: what a registry layout is.

use std::fmt;

use super::namespace::{join, validate_slash_namespace};
use crate::error::Result;
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
    /// Fails with [`Error::Decode`](crate::Error::Decode) when the value is not in this format.
    fn decode(&self, service: &str, key: &str, value: &[u8]) -> Result<Instance>;

    /// The identity of a discovered instance: discovery reports one
    /// [`Change`](tower::discover::Change) per identity. The default is the etcd key;
    /// formats whose keys change on re-registration use the address.
    fn identity(&self, key: &str, instance: &Instance) -> String {
        let _ = instance;
        key.to_owned()
    }
}
