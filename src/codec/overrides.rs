//! Overrides: an operator's drain and weight for one instance, kept in etcd
//! next to the registrations. The layout and its rules are in the docs of
//! [`codec`](crate::codec#overrides).

use serde::{Deserialize, Serialize};

use super::namespace::join;
use super::shared::decode_error;
use super::Codec;
use crate::error::{Error, Result};
use crate::instance::Instance;

/// The path segment between a service's prefix and the ids of its overrides.
///
/// ```
/// assert_eq!(tonic_etcd::codec::OVERRIDES_SEGMENT, ".overrides");
/// ```
pub const OVERRIDES_SEGMENT: &str = ".overrides";

/// The operator's override of one instance: drained or not, and a weight.
/// The default overrides nothing.
///
/// ```
/// use tonic_etcd::codec::Override;
///
/// let drained = Override { drained: true, weight: None };
/// assert_eq!(drained.encode(), br#"{"drained":true}"#);
/// let back = Override::decode("/services/helloworld/.overrides/a", br#"{"drained":true}"#)?;
/// assert_eq!(back, drained);
/// assert!(Override::default().is_empty());
/// # Ok::<(), tonic_etcd::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// Registered, but given no new requests.
    #[serde(default, skip_serializing_if = "is_false")]
    pub drained: bool,
    /// Replaces the registered weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl Override {
    /// Whether it overrides nothing (then its key is deleted rather than written).
    ///
    /// ```
    /// use tonic_etcd::codec::Override;
    /// assert!(Override::default().is_empty());
    /// assert!(!Override { drained: false, weight: Some(4) }.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        !self.drained && self.weight.is_none()
    }

    /// The value written to etcd.
    ///
    /// ```
    /// use tonic_etcd::codec::Override;
    /// let o = Override { drained: true, weight: Some(4) };
    /// assert_eq!(o.encode(), br#"{"drained":true,"weight":4}"#);
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a bool and a number always serialise")
    }

    /// Reads the value found at `key`. Fails with
    /// [`Error::Decode`] when it is not an override or its weight is out of
    /// range.
    ///
    /// ```
    /// use tonic_etcd::codec::Override;
    /// let key = "/services/helloworld/.overrides/a";
    /// assert_eq!(Override::decode(key, br#"{"weight":4}"#)?.weight, Some(4));
    /// assert!(Override::decode(key, br#"{"weight":0}"#).is_err());
    /// assert!(Override::decode(key, b"10.0.0.7:50051").is_err());
    /// # Ok::<(), tonic_etcd::Error>(())
    /// ```
    pub fn decode(key: &str, value: &[u8]) -> Result<Override> {
        let json: serde_json::Value =
            serde_json::from_slice(value).map_err(|e| decode_error(key, e))?;
        if !json.is_object() {
            return Err(decode_error(key, "an override is a JSON object"));
        }
        let o: Override = serde_json::from_value(json).map_err(|e| decode_error(key, e))?;
        if let Some(weight) = o.weight {
            check_weight(weight).map_err(|e| decode_error(key, e))?;
        }
        Ok(o)
    }

    /// Applies it to `instance`: `None` if drained, else the instance with the
    /// overridden weight.
    ///
    /// ```
    /// use tonic_etcd::codec::Override;
    /// use tonic_etcd::Instance;
    ///
    /// let instance = Instance::new("helloworld", "10.0.0.7:50051")?;
    /// let heavier = Override { drained: false, weight: Some(4) }.apply(instance.clone());
    /// assert_eq!(heavier.map(|i| i.weight), Some(4));
    /// assert!(Override { drained: true, weight: None }.apply(instance).is_none());
    /// # Ok::<(), tonic_etcd::Error>(())
    /// ```
    pub fn apply(&self, mut instance: Instance) -> Option<Instance> {
        if self.drained {
            return None;
        }
        if let Some(weight) = self.weight {
            instance.weight = weight;
        }
        Some(instance)
    }
}

/// Checks that `weight` is within the instance weight range.
pub(crate) fn check_weight(weight: u32) -> Result<()> {
    if (Instance::MIN_WEIGHT..=Instance::MAX_WEIGHT).contains(&weight) {
        Ok(())
    } else {
        Err(Error::InvalidWeight {
            weight,
            min: Instance::MIN_WEIGHT,
            max: Instance::MAX_WEIGHT,
        })
    }
}

/// Whether discovery with `codec` reads overrides and the CLI writes them:
/// the native layout only (see [the layout](crate::codec#overrides)).
///
/// ```
/// use tonic_etcd::codec::{self, supports_overrides};
/// assert!(supports_overrides(&codec::Native));
/// assert!(!supports_overrides(&codec::GoZero));
/// ```
pub fn supports_overrides(codec: &dyn Codec) -> bool {
    codec.name() == "native"
}

/// The prefix of the overrides of `service` under `namespace` (normalised,
/// no trailing `/`), ending with `/`.
///
/// ```
/// use tonic_etcd::codec::overrides_prefix;
/// assert_eq!(overrides_prefix("/services", "helloworld"), "/services/helloworld/.overrides/");
/// ```
pub fn overrides_prefix(namespace: &str, service: &str) -> String {
    format!("{}/{OVERRIDES_SEGMENT}/", join(namespace, service))
}

/// The key of the override of instance `id` of `service`.
///
/// ```
/// use tonic_etcd::codec::override_key;
/// assert_eq!(override_key("/services", "helloworld", "a"), "/services/helloworld/.overrides/a");
/// ```
pub fn override_key(namespace: &str, service: &str, id: &str) -> String {
    format!("{}{id}", overrides_prefix(namespace, service))
}

/// The instance key an override key names, `{base}/.overrides/{id}` →
/// `{base}/{id}`; `None` for a key that is not an override's.
///
/// ```
/// use tonic_etcd::codec::instance_key_of_override;
/// assert_eq!(
///     instance_key_of_override("/services/helloworld/.overrides/a").as_deref(),
///     Some("/services/helloworld/a")
/// );
/// assert_eq!(instance_key_of_override("/services/helloworld/a"), None);
/// ```
pub fn instance_key_of_override(key: &str) -> Option<String> {
    let at = key.rfind(MARKER)?;
    let id = &key[at + MARKER.len()..];
    if id.is_empty() || id.contains('/') {
        return None;
    }
    Some(format!("{}/{id}", &key[..at]))
}

/// What separates the service's prefix from the id in an override key.
const MARKER: &str = "/.overrides/";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let key = override_key("/services", "svc", "id-1");
        assert_eq!(key, "/services/svc/.overrides/id-1");
        assert_eq!(
            instance_key_of_override(&key).as_deref(),
            Some("/services/svc/id-1")
        );
        assert_eq!(
            override_key("", "svc", "x"),
            "svc/.overrides/x",
            "an empty namespace"
        );
        assert_eq!(
            instance_key_of_override("svc/.overrides/x").as_deref(),
            Some("svc/x")
        );
        for not_one in [
            "/services/svc/.overrides/",
            "/services/svc/.overrides/a/b",
            "/services/svc/.overrides",
            "/services/svc/a",
        ] {
            assert_eq!(instance_key_of_override(not_one), None, "{not_one}");
        }
    }

    #[test]
    fn values() {
        let key = "k";
        assert_eq!(Override::decode(key, b"{}").unwrap(), Override::default());
        assert_eq!(
            Override::decode(key, br#"{"drained":false,"weight":10000,"extra":1}"#).unwrap(),
            Override {
                drained: false,
                weight: Some(10_000)
            }
        );
        for bad in [
            &b""[..],
            b"[]",
            br#"{"weight":0}"#,
            br#"{"weight":10001}"#,
            br#"{"drained":"yes"}"#,
        ] {
            assert!(
                matches!(Override::decode(key, bad), Err(Error::Decode { .. })),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(Override::default().encode(), b"{}");
    }

    #[test]
    fn an_override_is_not_a_native_instance() {
        // Readers of earlier versions skip override keys: no addr, no instance.
        let value = Override {
            drained: true,
            weight: Some(3),
        }
        .encode();
        assert!(super::super::Native
            .decode("svc", "/services/svc/.overrides/a", &value)
            .is_err());
    }
}
