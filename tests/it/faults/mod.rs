//! Faults, end to end: bad input, churn, a cluster losing members, etcd down
//! past the TTL, idle clients, operator actions with `etcdctl`, a rolling
//! restart under load, and the example server started without etcd.

mod bad_input;
mod churn;
mod cluster;
mod duplicate_address;
mod etcd_down;
mod frozen_etcd;
mod hung_member;
mod idle_client;
mod nospace;
mod operator;
mod proxy_modes;
mod rolling_restart;
mod startup;
