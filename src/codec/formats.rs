//! The layouts by name: [`FORMATS`] and [`by_name`].

use std::sync::Arc;

use super::{Codec, EtcdNaming, GoZero, Kratos, Native, Plain, VersionedJson};

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
