//! Load balancing over discovered greeter servers: tonic's balanced channel
//! and the crate's `Balancer`, its policies, and its behaviour under faults.

mod channel;
mod faults;
mod frozen;
mod health_checks;
mod outliers;
mod policies;
mod scale;
