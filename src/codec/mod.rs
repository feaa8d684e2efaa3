//! Registry layouts: how an [`Instance`](crate::Instance) becomes an etcd key and value, and back.
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
mod formats;
mod go_zero;
mod kratos;
mod layout;
mod namespace;
mod native;
mod plain;
mod shared;
mod versioned_json;

pub use etcd_naming::EtcdNaming;
pub use formats::{by_name, FORMATS};
pub use go_zero::GoZero;
pub use kratos::Kratos;
pub use layout::Codec;
pub use native::Native;
pub use plain::Plain;
pub use versioned_json::VersionedJson;

pub(crate) use namespace::resolve_namespace;
pub(crate) use shared::key_str;
