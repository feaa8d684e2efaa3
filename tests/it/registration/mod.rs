//! Registration against a real etcd: the lease kept and revoked, updates,
//! recovery after operator actions and etcd outages, a crashed server, and
//! two registrations of one key.

mod crash;
mod displaced;
mod lifecycle;
mod recovery;
