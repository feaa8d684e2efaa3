//! [`HashKey`]: the key of a request under [`Policy::ConsistentHash`], and
//! how the balancer reads it from a request: the extension first, then the
//! header.
//!
//! A key is hashed once, with rapidhash V3 (`rapidhash::v3::rapidhash_v3`,
//! the C++ reference's default secrets): a 64-bit hash that passes SMHasher3,
//! costs a few nanoseconds on a short key, and whose output the crate
//! promises not to change between versions, nor between platforms. That
//! matters here: every client of a fleet must send one key to one server,
//! whatever version of this crate (or, with the C++ reference, language) it
//! runs. std's `DefaultHasher` promises no such stability, and `rand` has no
//! hash; rapidhash is already in the tree (through `metrics`).

use http::header::HeaderName;

#[cfg(doc)]
use super::policy::Policy;

/// The header a [`Balancer`](crate::Balancer) reads the key of a request
/// from under [`Policy::ConsistentHash`], unless
/// [`BalancerBuilder::hash_key_header`](crate::BalancerBuilder::hash_key_header)
/// names another: `x-hash-key` (gRPC metadata `x-hash-key`).
///
/// ```
/// assert_eq!(tonic_etcd::balance::DEFAULT_HASH_KEY_HEADER, "x-hash-key");
/// ```
pub const DEFAULT_HASH_KEY_HEADER: &str = "x-hash-key";

/// The key of a request for [`Policy::ConsistentHash`], set by the caller as
/// a request extension: requests with the same key go to the same endpoint
/// while it is there (and not over its load bound). It takes precedence over
/// the key header ([`DEFAULT_HASH_KEY_HEADER`]). A key in the header and the
/// same bytes in a `HashKey` hash alike, so both reach the same endpoint.
///
/// tonic carries a request's extensions to the balancer:
///
/// ```
/// use tonic_etcd::balance::HashKey;
///
/// let mut request = tonic::Request::new(()); // your message
/// request.extensions_mut().insert(HashKey::new("user-42"));
/// // client.say_hello(request).await?;
/// # assert_eq!(request.extensions().get::<HashKey>(), Some(&HashKey::new("user-42")));
/// ```
///
/// Or, without an extension, in the request's metadata:
///
/// ```
/// let mut request = tonic::Request::new(());
/// request.metadata_mut().insert("x-hash-key", "user-42".parse().unwrap());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashKey(u64);

impl HashKey {
    /// The key `key`, hashed now (rapidhash V3, stable across versions and
    /// platforms; see the module docs).
    ///
    /// ```
    /// use tonic_etcd::balance::HashKey;
    ///
    /// assert_eq!(HashKey::new("user-42"), HashKey::new(b"user-42"));
    /// assert_ne!(HashKey::new("user-42"), HashKey::new("user-43"));
    /// ```
    pub fn new(key: impl AsRef<[u8]>) -> Self {
        HashKey(hash(key.as_ref()))
    }

    /// A key whose 64-bit hash the caller computed already, used as is (it
    /// should be well spread over the 64 bits).
    ///
    /// ```
    /// use tonic_etcd::balance::HashKey;
    ///
    /// assert_eq!(HashKey::from_hash(7).hash(), 7);
    /// ```
    pub fn from_hash(hash: u64) -> Self {
        HashKey(hash)
    }

    /// Its 64-bit hash: its position on the balancer's ring.
    ///
    /// ```
    /// use tonic_etcd::balance::HashKey;
    ///
    /// let key = HashKey::new("user-42");
    /// assert_eq!(key.hash(), HashKey::new("user-42").hash());
    /// ```
    pub fn hash(self) -> u64 {
        self.0
    }
}

/// The hash of a key, or of an endpoint's key (its points derive from it).
pub(super) fn hash(bytes: &[u8]) -> u64 {
    rapidhash::v3::rapidhash_v3(bytes)
}

/// The consistent-hash options of a balancer (see the builder).
#[derive(Debug, Clone)]
pub(super) struct Hashing {
    pub(super) header: HeaderName,
    /// The bounded-load factor c: an endpoint takes a keyed request while
    /// its requests in flight are below ⌈c × (all in flight + 1) / n⌉.
    pub(super) factor: f64,
    pub(super) vnodes: u32,
}

/// The default bounded-load factor: no endpoint takes more than 25 % over
/// the mean of the requests in flight (rounded up).
pub(super) const DEFAULT_FACTOR: f64 = 1.25;

impl Default for Hashing {
    fn default() -> Self {
        Hashing {
            header: HeaderName::from_static(DEFAULT_HASH_KEY_HEADER),
            factor: DEFAULT_FACTOR,
            vnodes: super::ring::DEFAULT_VNODES,
        }
    }
}

impl Hashing {
    /// The hashed key of `request`: its [`HashKey`] extension, else its key
    /// header's value, else none.
    pub(super) fn key_of<B>(&self, request: &http::Request<B>) -> Option<u64> {
        if let Some(key) = request.extensions().get::<HashKey>() {
            return Some(key.hash());
        }
        request
            .headers()
            .get(&self.header)
            .map(|value| hash(value.as_bytes()))
    }
}

/// The load bound of the bounded-load scheme: how many requests in flight
/// an endpoint may have and still take one more, with `total` in flight
/// over `n` endpoints and the factor `c`: ⌈c × (total + 1) / n⌉, at least 1.
pub(super) fn load_bound(factor: f64, total: usize, n: usize) -> usize {
    if n == 0 || !factor.is_finite() {
        return usize::MAX;
    }
    let bound = (factor * (total as f64 + 1.0) / n as f64).ceil();
    (bound as usize).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_wins_over_the_header() {
        let hashing = Hashing::default();
        let mut request = http::Request::new(());
        assert_eq!(hashing.key_of(&request), None);
        request
            .headers_mut()
            .insert("x-hash-key", "user-42".parse().unwrap());
        assert_eq!(
            hashing.key_of(&request),
            Some(HashKey::new("user-42").hash())
        );
        request.extensions_mut().insert(HashKey::from_hash(9));
        assert_eq!(hashing.key_of(&request), Some(9));
    }

    #[test]
    fn the_header_name_is_configurable() {
        let hashing = Hashing {
            header: HeaderName::from_static("x-user"),
            ..Hashing::default()
        };
        let mut request = http::Request::new(());
        request
            .headers_mut()
            .insert("x-hash-key", "a".parse().unwrap());
        assert_eq!(hashing.key_of(&request), None);
        request.headers_mut().insert("x-user", "a".parse().unwrap());
        assert_eq!(hashing.key_of(&request), Some(HashKey::new("a").hash()));
    }

    #[test]
    fn the_hash_is_stable() {
        // rapidhash V3 with the C++ reference's secrets: fixed forever, so
        // that clients of different versions agree.
        assert_eq!(HashKey::new("").hash(), hash(b""));
        assert_eq!(HashKey::new("user-42").hash(), 0x15fc_bb5c_9fb4_43f8);
    }

    #[test]
    fn the_load_bound_follows_the_paper() {
        // ⌈1.25 × (0 + 1) / 3⌉ = 1: an idle endpoint takes a request.
        assert_eq!(load_bound(1.25, 0, 3), 1);
        // 11 in flight over 3: ⌈1.25 × 12 / 3⌉ = 5.
        assert_eq!(load_bound(1.25, 11, 3), 5);
        assert_eq!(load_bound(1.0, 2, 3), 1);
        assert_eq!(load_bound(f64::INFINITY, 2, 3), usize::MAX);
        assert_eq!(load_bound(1.25, 2, 0), usize::MAX);
    }
}
