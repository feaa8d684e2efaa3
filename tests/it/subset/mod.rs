//! Subsetting and shared watches (issue 16, items 4 and 5), against a real
//! etcd: the size and spread of the subsets of many in-process clients, their
//! stability when a server leaves, ten example clients with `--subset 3`, and
//! one watch shared by the discoveries of a `DiscoveryHub`.

mod examples;
mod shared;
mod spread;
