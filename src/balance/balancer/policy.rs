//! [`Policy`]: how a balancer chooses among its ready endpoints.

use std::fmt;
use std::str::FromStr;

/// How a [`Balancer`](crate::Balancer) chooses among the ready endpoints.
///
/// Parsed from and displayed as `round-robin`, `weighted`, `p2c` and
/// `consistent-hash`:
///
/// ```
/// use tonic_etcd::Policy;
///
/// let policy: Policy = "weighted".parse()?;
/// assert_eq!(policy, Policy::Weighted);
/// assert_eq!(policy.to_string(), "weighted");
/// # Ok::<(), tonic_etcd::balance::ParsePolicyError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Policy {
    /// Strict rotation over the ready endpoints, in key order.
    #[default]
    RoundRobin,
    /// Smooth weighted round robin over the instances' registry weights.
    Weighted,
    /// Power of two choices over a peak-EWMA load (response time × requests in
    /// flight).
    P2c,
    /// Consistent hashing with bounded loads: requests with the same key go
    /// to the same endpoint, and a hot key spills over to the next endpoints
    /// on the ring instead of overloading one. The key is a request's
    /// [`HashKey`](crate::balance::HashKey) extension, or the value of its
    /// key header ([`DEFAULT_HASH_KEY_HEADER`](crate::balance::DEFAULT_HASH_KEY_HEADER),
    /// or the one set with
    /// [`BalancerBuilder::hash_key_header`](crate::BalancerBuilder::hash_key_header));
    /// requests without a key are spread in turn, like round robin.
    ///
    /// The scheme is Karger et al.'s ring ("Consistent Hashing and Random
    /// Trees", STOC 1997; 100 points per endpoint by default, see
    /// [`hash_ring_vnodes`](crate::BalancerBuilder::hash_ring_vnodes)): when one of n
    /// endpoints leaves or joins, about 1/n of the keys move, and only those
    /// that were on it or now land on it. On top, the bounded loads of
    /// Mirrokni, Thorup and Zadimoghaddam ("Consistent Hashing with Bounded
    /// Loads", SODA 2018): an endpoint that has ⌈c × (requests in flight + 1)
    /// / n⌉ requests in flight or more is passed over for the next one on the
    /// ring, with c = 1.25 by default
    /// ([`hash_load_factor`](crate::BalancerBuilder::hash_load_factor)). A
    /// retry goes to the next endpoint on the ring too. Weights are not used.
    ///
    /// ```
    /// use tonic_etcd::Policy;
    ///
    /// assert_eq!("consistent-hash".parse::<Policy>()?, Policy::ConsistentHash);
    /// # Ok::<(), tonic_etcd::balance::ParsePolicyError>(())
    /// ```
    ConsistentHash,
}

impl Policy {
    /// Every policy, in the order of the docs.
    ///
    /// ```
    /// let names: Vec<&str> = tonic_etcd::Policy::ALL.iter().map(|p| p.name()).collect();
    /// assert_eq!(names, ["round-robin", "weighted", "p2c", "consistent-hash"]);
    /// ```
    pub const ALL: [Policy; 4] = [
        Policy::RoundRobin,
        Policy::Weighted,
        Policy::P2c,
        Policy::ConsistentHash,
    ];

    /// The name used by [`FromStr`] and [`Display`](fmt::Display).
    ///
    /// ```
    /// assert_eq!(tonic_etcd::Policy::P2c.name(), "p2c");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round-robin",
            Policy::Weighted => "weighted",
            Policy::P2c => "p2c",
            Policy::ConsistentHash => "consistent-hash",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Policy {
    type Err = ParsePolicyError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Policy::ALL
            .into_iter()
            .find(|policy| policy.name() == s)
            .ok_or_else(|| ParsePolicyError {
                input: s.to_owned(),
            })
    }
}

/// A policy name that is not `round-robin`, `weighted`, `p2c` or
/// `consistent-hash`.
///
/// ```
/// let error = "random".parse::<tonic_etcd::Policy>().unwrap_err();
/// assert!(error.to_string().contains("\"random\""));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsePolicyError {
    input: String,
}

impl fmt::Display for ParsePolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown balancing policy {:?}: expected round-robin, weighted, p2c or consistent-hash",
            self.input
        )
    }
}

impl std::error::Error for ParsePolicyError {}
