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
//!
//! # Overrides
//!
//! An operator's drain and weight for one instance ([`Override`]), kept in
//! etcd next to the registrations, so that every discovery reads both as one
//! consistent view: one Get pinned at one revision, one watch. Written by the
//! `tonic-etcd` CLI or [`Overrides`](crate::overrides::Overrides).
//!
//! ```text
//! instance: {namespace}/{service}/{id}             written by the instance (leased)
//! override: {namespace}/{service}/.overrides/{id}  written by an operator (no lease)
//! value:    {"drained":true,"weight":4}            both optional; no key, no override
//! ```
//!
//! - An override names the instance by its id: it applies to the instance
//!   registered at `{namespace}/{service}/{id}`, whatever its lease, so it
//!   survives the instance's re-registration and restart. Registrations never
//!   write, and so never undo, an override; the CLI and
//!   [`Overrides`](crate::overrides::Overrides) never write an instance's key.
//! - `drained`: the instance stays registered but discovery reports it
//!   removed (a [`Change::Remove`](tower::discover::Change)), so no balancer
//!   policy and no tonic channel sends it new requests; un-draining inserts it
//!   again. [`DiscoveryView::registered`](crate::DiscoveryView::registered)
//!   still lists it, flagged.
//! - `weight` replaces the registered weight in what discovery reports (the
//!   weighted policy's weight), within
//!   [`Instance::MIN_WEIGHT`](crate::Instance::MIN_WEIGHT)..=[`Instance::MAX_WEIGHT`](crate::Instance::MAX_WEIGHT).
//! - Override keys carry no lease: they stay until cleared.
//!
//! **The native layout only.** The override keys sit under the service's
//! prefix, which is what makes the view consistent. Readers of the native
//! layout of earlier versions of this crate skip them (the value has no
//! `addr`: it does not decode as an instance). The other layouts are shared
//! with Go registries that read *every* value under the prefix as an instance
//! (go-zero and go-kit take it as an address; kratos fails its whole read on
//! a value it cannot parse), so the crate writes no override there:
//! [`supports_overrides`] says which layouts take them, and the CLI refuses
//! `drain`/`weight` with another `--format`.

mod etcd_naming;
mod formats;
mod go_zero;
mod kratos;
mod layout;
mod namespace;
mod native;
mod overrides;
mod plain;
mod shared;
mod versioned_json;

pub use etcd_naming::EtcdNaming;
pub use formats::{by_name, FORMATS};
pub use go_zero::GoZero;
pub use kratos::Kratos;
pub use layout::Codec;
pub use native::Native;
pub use overrides::{
    instance_key_of_override, override_key, overrides_prefix, supports_overrides, Override,
    OVERRIDES_SEGMENT,
};
pub use plain::Plain;
pub use versioned_json::VersionedJson;

pub(crate) use namespace::resolve_namespace;
pub(crate) use overrides::check_weight;
pub(crate) use shared::key_str;
