//! Discovery against a real etcd: the initial Get and the watch, a compacted
//! revision, etcd killed or wiped, values that do not decode, and services
//! whose names share a prefix, and the watches shared by discoveries of
//! one connection.

mod basic;
mod compaction;
mod etcd_restart;
mod malformed;
mod prefix;
mod sharing;
