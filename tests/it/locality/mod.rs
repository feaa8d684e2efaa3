//! Locality-aware routing and slow start (issue 17, items 2, 3 and their
//! tests), against a real etcd and real servers: a client in zone `a`
//! reaches only `a` while it is ready, spills over to `b` as `a` fails or
//! stops (through the example binaries, with no failed request), and a
//! server that joins gets a share of the requests per second that ramps up
//! over the slow start window, for round robin, weighted and p2c.

mod examples;
mod ramp;
mod zones;
