//! TLS, mutual TLS and user authentication, to etcd and to the services; auth
//! tokens that expire. The whole module needs the `tls` feature.

mod auth;
mod services;
mod tls;
mod token_expiry;
