//! The paginated prefix Get: the content of a prefix at one revision.

use etcd_client::{GetOptions, KvClient};
use tracing::{debug, warn};

use crate::codec::key_str;
use crate::etcd::retry_transient;
use crate::etcd::status::{self, Fault};

/// Keys per page of the initial and resync Gets.
const PAGE_SIZE: i64 = 1000;

/// The content of a prefix at one revision.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) revision: i64,
    pub(crate) kvs: Vec<(String, Vec<u8>)>,
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes: the range runs to the end of the keyspace.
    vec![0]
}

/// Reads every key under `prefix`, in pages of [`PAGE_SIZE`], all pinned at the
/// revision of the first page. If that revision is compacted between pages, the
/// read starts over (a few times) at a newer revision.
///
/// No deadline of its own: the caller bounds it.
pub(crate) async fn fetch(kv: KvClient, prefix: &str) -> Result<Snapshot, etcd_client::Error> {
    let end = prefix_end(prefix.as_bytes());
    let mut restarts = 0;
    'read: loop {
        let mut from = prefix.as_bytes().to_vec();
        let mut revision = 0;
        let mut kvs = Vec::new();
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(PAGE_SIZE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            // Sent again at once if it fails on its way (a member of the
            // cluster down or electing a leader), so that a start does not
            // fail because one endpoint of several is gone.
            let get = retry_transient(|| {
                let (mut kv, from, options) = (kv.clone(), from.clone(), options.clone());
                async move { kv.get(from, Some(options)).await }
            });
            let mut page = match get.await {
                Ok(page) => page,
                Err(error)
                    if revision > 0
                        && restarts < 3
                        && status::classify(&error) == Fault::Compacted =>
                {
                    restarts += 1;
                    debug!(revision, %error, "snapshot compacted between pages; reading again");
                    continue 'read;
                }
                Err(error) => return Err(error),
            };
            if revision == 0 {
                revision = page.header().map_or(0, |h| h.revision());
            }
            let more = page.more();
            let page = page.take_kvs();
            let next = page.last().map(|kv| {
                let mut key = kv.key().to_vec();
                key.push(0);
                key
            });
            for kv in page {
                let (key, value) = kv.into_key_value();
                match String::from_utf8(key) {
                    Ok(key) => kvs.push((key, value)),
                    Err(e) => warn!(key = %key_str(e.as_bytes()), "skipping key that is not UTF-8"),
                }
            }
            match next {
                Some(next) if more => from = next,
                _ => break 'read Ok(Snapshot { revision, kvs }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/services/foo/"), b"/services/foo0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        // The range of "foo/" excludes "foobar/...".
        let end = prefix_end(b"/s/foo/");
        assert!(b"/s/foobar/x".as_slice() >= end.as_slice());
        assert!(b"/s/foo/x".as_slice() < end.as_slice());
    }
}
