//! The crate's own balancer, [`Balancer`], split by concern:
//!
//! - `service`: the [`Balancer`] itself, a `tower::Service`, and its
//!   [`ResponseFuture`];
//! - `builder`: [`BalancerBuilder`] and the ways to feed it (a discovery, any
//!   stream), with `Discovery::balancer`;
//! - `policy`: [`Policy`] and [`ParsePolicyError`]; `status`: [`EndpointStatus`];
//! - `shared`: the state every clone shares and the rules that change the
//!   endpoint set (insert, eject, restore), over `set` (the entries in key
//!   order) and `target` (what one request uses of an endpoint);
//! - `tasks`: the driver that applies the stream's changes, and the probes
//!   of ejected endpoints;
//! - `call`: one request, with its retry, over `head` (the request's head for
//!   another attempt), `body` (the body lent to each attempt) and `failure`
//!   (what a failed attempt means);
//! - `picker` and `load`: the picking rules and the peak-EWMA load, over plain
//!   data;
//! - request-level health: `outcome` (how an attempt ended, and the one place
//!   it is taken in), `outlier` ([`OutlierDetection`]'s settings), `detector`
//!   (its state machine, over plain data), `health` (an endpoint's counters
//!   and verdicts), `exclusion` (ejection, readmission, health verdicts under
//!   the set's lock), `health_wiring` (active health checks).
//! - `ready`: what the policies pick from, O(1) or O(log n) per pick and per
//!   change: `rotation` (round robin in key order), `schedule` (weighted
//!   round robin, earliest deadline first), p2c's dense list and `ring`
//!   (consistent hashing with bounded loads);
//! - `hash_key`: [`HashKey`] and how a request's key is read and hashed;
//!   `pick`: what a pick goes by besides the endpoints (the request's key,
//!   the requests in flight);
//! - routing: `locality` ([`Locality`], the client's zone first, spilling
//!   over smoothly) and `slow_start` ([`SlowStart`], the ramp of a new
//!   endpoint's weight), both over plain data;
//! - `bench`: a hidden hook that lets the benchmarks time a pick alone.

mod bench;
mod body;
mod builder;
mod call;
mod detector;
mod exclusion;
mod failure;
mod hash_key;
mod head;
mod health;
mod health_wiring;
mod load;
mod locality;
mod outcome;
mod outlier;
mod pick;
mod picker;
mod policy;
mod ready;
mod ring;
mod rotation;
mod schedule;
mod service;
mod set;
mod shared;
mod slow_start;
mod status;
mod target;
mod tasks;

#[doc(hidden)]
pub use bench::PickBench;
pub use builder::BalancerBuilder;
pub use hash_key::{HashKey, DEFAULT_HASH_KEY_HEADER};
pub use locality::Locality;
pub use outlier::OutlierDetection;
pub use policy::{ParsePolicyError, Policy};
pub use service::{Balancer, ResponseFuture};
pub use slow_start::SlowStart;
pub use status::{EndpointState, EndpointStatus};

const _: () = {
    const fn assert_bounds<T: Send + Sync + Clone + Unpin + 'static>() {}
    const fn assert_send_sync<T: Send + Sync>() {}
    const fn assert_send<T: Send>() {}
    assert_bounds::<Balancer>();
    assert_bounds::<Policy>();
    assert_bounds::<EndpointStatus>();
    assert_bounds::<OutlierDetection>();
    assert_bounds::<Locality>();
    assert_bounds::<SlowStart>();
    assert_bounds::<EndpointState>();
    assert_bounds::<HashKey>();
    assert_send_sync::<BalancerBuilder>();
    assert_send_sync::<ParsePolicyError>();
    assert_send::<ResponseFuture>();
};
