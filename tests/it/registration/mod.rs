//! Registration against a real etcd: the lease kept and revoked, updates,
//! recovery after operator actions and etcd outages, a crashed server, two
//! registrations of one key, and what ending the guard does (dropped,
//! held until `main` returns, `deregister_on`).

mod crash;
mod displaced;
mod guard;
mod lifecycle;
mod recovery;
