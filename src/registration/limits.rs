//! What etcd can hold, checked before anything is written: the size of one
//! entry ([`MAX_ENTRY_BYTES`]) and a lease TTL (whole seconds, within etcd's
//! range).

use std::time::Duration;

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::instance::Instance;

/// The largest key plus value accepted, a little under etcd's default request
/// limit of 1.5 MiB (`--max-request-bytes`), leaving room for the request framing.
///
/// ```
/// assert!(tonic_etcd::registration::MAX_ENTRY_BYTES < 1536 * 1024);
/// ```
pub const MAX_ENTRY_BYTES: usize = 1_500_000;

/// The longest lease TTL etcd accepts, in seconds (`MaxLeaseTTL`).
const MAX_TTL_SECS: i64 = 9_000_000_000;

/// `ttl` in whole seconds, as etcd grants leases: at least one, no fraction
/// (etcd would round it), not over etcd's maximum.
pub(super) fn ttl_secs(ttl: Duration) -> Result<i64> {
    let refuse = |reason| Error::InvalidTtl { ttl, reason };
    if ttl < Duration::from_secs(1) {
        return Err(refuse("must be at least one second"));
    }
    if ttl.subsec_nanos() != 0 {
        return Err(refuse("must be whole seconds, as etcd grants leases"));
    }
    i64::try_from(ttl.as_secs())
        .ok()
        .filter(|secs| *secs <= MAX_TTL_SECS)
        .ok_or(refuse("too long for an etcd lease"))
}

/// Encodes `instance` and checks the entry fits in one etcd request.
pub(super) fn encode_checked(codec: &dyn Codec, key: &str, instance: &Instance) -> Result<Vec<u8>> {
    let value = codec.encode(instance)?;
    let size = key.len() + value.len();
    if size > MAX_ENTRY_BYTES {
        return Err(Error::TooLarge {
            size,
            limit: MAX_ENTRY_BYTES,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Native;

    #[test]
    fn ttl_is_whole_seconds_at_least_one() {
        assert_eq!(ttl_secs(Duration::from_secs(1)).unwrap(), 1);
        assert_eq!(ttl_secs(Duration::from_secs(3)).unwrap(), 3);
        let refused = [
            (Duration::ZERO, "at least one second"),
            (Duration::from_millis(500), "at least one second"),
            (Duration::from_millis(999), "at least one second"),
            (Duration::from_millis(1500), "whole seconds"),
            (Duration::from_nanos(2_000_000_001), "whole seconds"),
            (Duration::from_secs(9_000_000_001), "too long"),
        ];
        for (ttl, why) in refused {
            match ttl_secs(ttl) {
                Err(Error::InvalidTtl { ttl: t, reason }) => {
                    assert_eq!(t, ttl);
                    assert!(reason.contains(why), "{ttl:?}: {reason}");
                }
                other => panic!("{ttl:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_entry_must_fit_one_request() {
        let i = Instance::new("helloworld", "127.0.0.1:1").unwrap();
        let key = "/services/helloworld/127.0.0.1:1";
        assert!(encode_checked(&Native, key, &i).is_ok());
        let big = i.with_metadata("blob", "x".repeat(MAX_ENTRY_BYTES));
        let error = encode_checked(&Native, key, &big).unwrap_err();
        assert!(
            matches!(error, Error::TooLarge { size, limit: MAX_ENTRY_BYTES } if size > MAX_ENTRY_BYTES),
            "{error}"
        );
    }
}
