//! [`Policy`]: how a balancer chooses among its ready endpoints.

use std::fmt;
use std::str::FromStr;

/// How a [`Balancer`](crate::Balancer) chooses among the ready endpoints.
///
/// Parsed from and displayed as `round-robin`, `weighted` and `p2c`:
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
}

impl Policy {
    /// Every policy, in the order of the docs.
    ///
    /// ```
    /// let names: Vec<&str> = tonic_etcd::Policy::ALL.iter().map(|p| p.name()).collect();
    /// assert_eq!(names, ["round-robin", "weighted", "p2c"]);
    /// ```
    pub const ALL: [Policy; 3] = [Policy::RoundRobin, Policy::Weighted, Policy::P2c];

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

/// A policy name that is not `round-robin`, `weighted` or `p2c`.
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
            "unknown balancing policy {:?}: expected round-robin, weighted or p2c",
            self.input
        )
    }
}

impl std::error::Error for ParsePolicyError {}
