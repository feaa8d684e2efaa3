//! [`Instance`]: one running server of a service, and its validation.
//!
//! (About 440 lines: the docs of each field and setter with examples, and the
//! tests of each validation rule, which take a third.)

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// One running server of a service, as written to and read from the registry.
///
/// Build one with [`Instance::new`], which validates the service name and the
/// address, then set the optional parts:
///
/// ```
/// use tonic_etcd::Instance;
///
/// let instance = Instance::new("helloworld", "10.0.0.7:50051")?
///     .with_version("1.2.0")
///     .with_weight(3)
///     .with_metadata("zone", "a");
/// assert_eq!(instance.id, "10.0.0.7:50051");
/// instance.validate()?;
/// # Ok::<(), tonic_etcd::Error>(())
/// ```
///
/// [`Instance::new`] checks the service name and the address. The setters
/// cannot fail, so call [`Instance::validate`] once the instance is built to
/// check the rest (id, weight, version, metadata) where it is built, with a
/// clear error; [`Registrar::register`](crate::Registrar::register) and
/// [`Registration::update`](crate::Registration::update) validate again
/// before they write anything:
///
/// ```
/// use tonic_etcd::{Error, Instance};
///
/// let instance = Instance::new("helloworld", "10.0.0.7:50051")?.with_weight(0);
/// assert!(matches!(instance.validate(), Err(Error::InvalidWeight { weight: 0, .. })));
/// # Ok::<(), tonic_etcd::Error>(())
/// ```
///
/// The fields are public so that discovery results are easy to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The service name, e.g. `helloworld`.
    pub service: String,
    /// The instance id, unique within the service. Defaults to the address.
    /// It is the last segment of the key (`{namespace}/{service}/{id}`), so it
    /// has no `/`.
    pub id: String,
    /// The address clients connect to, `host:port` (IPv6 hosts in brackets).
    pub addr: String,
    /// The version of the server, free text. Defaults to empty.
    pub version: String,
    /// The weight for weighted balancing. Defaults to [`Instance::DEFAULT_WEIGHT`].
    pub weight: u32,
    /// Free-form string metadata, e.g. `zone = a`.
    pub metadata: BTreeMap<String, String>,
}

impl Instance {
    /// The weight of an instance that sets none.
    ///
    /// ```
    /// use tonic_etcd::Instance;
    /// let instance = Instance::new("helloworld", "127.0.0.1:50051")?;
    /// assert_eq!(instance.weight, Instance::DEFAULT_WEIGHT);
    /// # Ok::<(), tonic_etcd::Error>(())
    /// ```
    pub const DEFAULT_WEIGHT: u32 = 1;
    /// The smallest weight accepted.
    ///
    /// ```
    /// use tonic_etcd::Instance;
    /// let instance = Instance::new("helloworld", "127.0.0.1:50051")?.with_weight(0);
    /// assert!(instance.validate().is_err(), "below {}", Instance::MIN_WEIGHT);
    /// # Ok::<(), tonic_etcd::Error>(())
    /// ```
    pub const MIN_WEIGHT: u32 = 1;
    /// The largest weight accepted.
    ///
    /// ```
    /// use tonic_etcd::Instance;
    /// let heavy = Instance::new("helloworld", "127.0.0.1:50051")?.with_weight(Instance::MAX_WEIGHT);
    /// assert!(heavy.validate().is_ok());
    /// assert!(heavy.with_weight(Instance::MAX_WEIGHT + 1).validate().is_err());
    /// # Ok::<(), tonic_etcd::Error>(())
    /// ```
    pub const MAX_WEIGHT: u32 = 10_000;

    /// A new instance of `service` reachable at `addr`, its id being the address.
    ///
    /// Fails with [`Error::InvalidServiceName`] or [`Error::InvalidAddress`].
    ///
    /// ```
    /// use tonic_etcd::Instance;
    /// let instance = Instance::new("helloworld", "[::1]:50051")?;
    /// assert_eq!(instance.id, "[::1]:50051");
    /// assert!(Instance::new("hello world", "127.0.0.1:50051").is_err());
    /// assert!(Instance::new("helloworld", "127.0.0.1").is_err(), "no port");
    /// # Ok::<(), tonic_etcd::Error>(())
    /// ```
    pub fn new(service: impl Into<String>, addr: impl Into<String>) -> Result<Self> {
        let service = service.into();
        let addr = addr.into();
        validate_service_name(&service)?;
        validate_addr(&addr)?;
        Ok(Self {
            service,
            id: addr.clone(),
            addr,
            version: String::new(),
            weight: Self::DEFAULT_WEIGHT,
            metadata: BTreeMap::new(),
        })
    }

    /// Sets the instance id (e.g. `host-pid`). Defaults to the address.
    ///
    /// The id is the last segment of the key, `{namespace}/{service}/{id}`:
    /// it must be non-empty, without `/`, whitespace or control characters.
    /// [`validate`](Instance::validate) refuses others with [`Error::InvalidId`].
    ///
    /// ```
    /// use tonic_etcd::{Error, Instance};
    ///
    /// let instance = Instance::new("helloworld", "10.0.0.7:50051")?;
    /// instance.clone().with_id("host-1234").validate()?;
    /// let nested = instance.with_id("host/1234").validate();
    /// assert!(matches!(nested, Err(Error::InvalidId { .. })));
    /// # Ok::<(), tonic_etcd::Error>(())
    /// ```
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the version, free text without control characters (checked by
    /// [`validate`](Instance::validate)). Defaults to empty.
    ///
    /// ```
    /// let instance = tonic_etcd::Instance::new("helloworld", "10.0.0.7:50051")?
    ///     .with_version("1.2.0");
    /// instance.validate()?;
    /// # Ok::<(), tonic_etcd::Error>(())
    /// ```
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Sets the weight, within [`Instance::MIN_WEIGHT`]..=[`Instance::MAX_WEIGHT`]
    /// (checked by [`validate`](Instance::validate), which refuses others with
    /// [`Error::InvalidWeight`]). Defaults to [`Instance::DEFAULT_WEIGHT`].
    ///
    /// ```
    /// use tonic_etcd::Instance;
    ///
    /// let instance = Instance::new("helloworld", "10.0.0.7:50051")?;
    /// instance.clone().with_weight(3).validate()?;
    /// assert!(instance.with_weight(0).validate().is_err());
    /// # Ok::<(), tonic_etcd::Error>(())
    /// ```
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Adds one metadata entry; the key must not be empty (checked by
    /// [`validate`](Instance::validate)). Defaults to no metadata.
    ///
    /// ```
    /// let instance = tonic_etcd::Instance::new("helloworld", "10.0.0.7:50051")?
    ///     .with_metadata("zone", "a");
    /// instance.validate()?;
    /// # Ok::<(), tonic_etcd::Error>(())
    /// ```
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Checks every field: the service name and the address as
    /// [`new`](Instance::new) does, the id, the weight, the version and the
    /// metadata keys. [`Registrar::register`](crate::Registrar::register) and
    /// [`Registration::update`](crate::Registration::update) call it before
    /// they write anything.
    ///
    /// ```
    /// use tonic_etcd::{Error, Instance};
    ///
    /// let mut instance = Instance::new("helloworld", "10.0.0.7:50051")?;
    /// instance.validate()?;
    /// instance.addr = "10.0.0.7".into();
    /// assert!(matches!(instance.validate(), Err(Error::InvalidAddress { .. })));
    /// # Ok::<(), tonic_etcd::Error>(())
    /// ```
    pub fn validate(&self) -> Result<()> {
        validate_service_name(&self.service)?;
        validate_id(&self.id)?;
        validate_addr(&self.addr)?;
        if !(Self::MIN_WEIGHT..=Self::MAX_WEIGHT).contains(&self.weight) {
            return Err(Error::InvalidWeight {
                weight: self.weight,
                min: Self::MIN_WEIGHT,
                max: Self::MAX_WEIGHT,
            });
        }
        if self.version.chars().any(char::is_control) {
            return Err(Error::InvalidField {
                field: "version",
                reason: "contains a control character".into(),
            });
        }
        for key in self.metadata.keys() {
            if key.is_empty() {
                return Err(Error::InvalidField {
                    field: "metadata",
                    reason: "empty key".into(),
                });
            }
        }
        Ok(())
    }
}

/// Checks a service name: non-empty, no `/`, no whitespace, no control characters.
pub(crate) fn validate_service_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.contains('/') {
        Some("must not contain '/'")
    } else if name.chars().any(char::is_whitespace) {
        Some("must not contain whitespace")
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidServiceName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Checks an instance id: non-empty, no `/`, no whitespace, no control
/// characters.
///
/// The id is the last segment of the key, `{namespace}/{service}/{id}`. With
/// a `/` in it, the key would have one more segment than the layout says:
/// readers that take the id from the key (the native layout when the value
/// has no id, kratos, tools that split keys) would read another id, and
/// `{service}/{id}` could stand for a service and an id it is not.
pub(crate) fn validate_id(id: &str) -> Result<()> {
    let reason = if id.is_empty() {
        Some("must not be empty")
    } else if id.contains('/') {
        Some("must not contain '/' (it is the last segment of the key {namespace}/{service}/{id})")
    } else if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("must not contain whitespace or control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidId {
            id: id.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Checks `host:port`: a non-empty host (IPv6 in brackets), a port in 1..=65535.
pub(crate) fn validate_addr(addr: &str) -> Result<()> {
    let fail = |reason| {
        Err(Error::InvalidAddress {
            addr: addr.to_owned(),
            reason,
        })
    };
    if addr.contains("://") {
        return fail("must be host:port, without a scheme");
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return fail("missing ':port'");
    };
    if host.is_empty() {
        return fail("missing host");
    }
    if let Some(inner) = host.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return fail("unbalanced '[' in IPv6 host");
        };
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return fail("not an IPv6 address inside brackets");
        }
    } else if host.contains(':') {
        return fail("IPv6 hosts must be in brackets, e.g. [::1]:50051");
    } else if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    {
        return fail("host has characters not allowed in a host name");
    }
    match port.parse::<u16>() {
        Ok(0) => fail("port 0 cannot be dialled"),
        Ok(_) => Ok(()),
        Err(_) => fail("port is not a number in 1..=65535"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_defaults_id_to_addr() {
        let i = Instance::new("helloworld", "127.0.0.1:50051").unwrap();
        assert_eq!(i.id, "127.0.0.1:50051");
        assert_eq!(i.weight, 1);
        assert!(i.version.is_empty());
        i.validate().unwrap();
    }

    #[test]
    fn service_names() {
        for good in ["helloworld", "greet.rpc", "a-b_c", "UPPER"] {
            validate_service_name(good).unwrap();
        }
        for bad in ["", "a/b", "/a", "a b", "a\tb", "a\u{0}b", "a\nb"] {
            assert!(
                matches!(
                    validate_service_name(bad),
                    Err(Error::InvalidServiceName { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn addresses() {
        for good in [
            "127.0.0.1:50051",
            "localhost:1",
            "my-host.example.com:65535",
            "[::1]:50051",
            "[2001:db8::7]:443",
        ] {
            validate_addr(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "",
            "127.0.0.1",
            ":50051",
            "127.0.0.1:",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:port",
            "::1:50051",
            "[::1:50051",
            "[nope]:1",
            "http://127.0.0.1:50051",
            "host name:80",
            "a/b:80",
        ] {
            assert!(
                matches!(validate_addr(bad), Err(Error::InvalidAddress { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn weights() {
        let i = Instance::new("s", "h:1").unwrap();
        i.clone().with_weight(1).validate().unwrap();
        i.clone().with_weight(10_000).validate().unwrap();
        assert!(matches!(
            i.clone().with_weight(0).validate(),
            Err(Error::InvalidWeight { weight: 0, .. })
        ));
        assert!(matches!(
            i.with_weight(10_001).validate(),
            Err(Error::InvalidWeight { .. })
        ));
    }

    #[test]
    fn ids() {
        let i = Instance::new("s", "h:1").unwrap();
        for good in [
            "host-123",
            "10.0.0.7:50051",
            "[::1]:1",
            "7587869479254413059",
        ] {
            i.clone().with_id(good).validate().unwrap();
        }
        for bad in ["", "a b", "nl\n", "host/123", "/", "a/", "/a"] {
            assert!(
                matches!(
                    i.clone().with_id(bad).validate(),
                    Err(Error::InvalidId { .. })
                ),
                "{bad:?} accepted"
            );
        }
        let e = i.with_id("host/123").validate().unwrap_err().to_string();
        assert!(e.contains("host/123") && e.contains("'/'"), "{e}");
    }

    #[test]
    fn validate_catches_what_the_setters_let_through() {
        let i = Instance::new("s", "h:1").unwrap();
        let cases = [
            i.clone().with_weight(0),
            i.clone().with_id("a/b"),
            i.clone().with_version("1.0\n"),
            i.clone().with_metadata("", "x"),
        ];
        for bad in cases {
            assert!(bad.validate().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn error_messages_name_the_input() {
        let e = Instance::new("a/b", "h:1").unwrap_err().to_string();
        assert!(e.contains("a/b") && e.contains('/'), "{e}");
        let e = Instance::new("a", "nope").unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("port"), "{e}");
    }
}
