//! The subset algorithm, pure: deterministic aperture over the clients'
//! ranks, and rendezvous hashing as the fallback.
//!
//! ```text
//! ring:     the servers, ordered by a stable hash of their identity
//! client r of C, subset size K, N servers:
//!   start = round(r · N / C)
//!   subset = ring[start], ring[start + 1], ... ring[start + K - 1]  (mod N)
//! ```
//!
//! The starts of the C clients are spread evenly over the ring, so every
//! server is in the windows of ⌊C·K/N⌋ or ⌈C·K/N⌉ clients: the best integer
//! balance there is. This is Finagle's deterministic aperture (clients and
//! servers on one ring, each client taking a contiguous arc) in its discrete
//! form; the rank and count of clients are what Google's SRE book's
//! deterministic subsetting needs too.
//!
//! When a server leaves, the ring shrinks by one: the clients whose window
//! held it take the next server, and the starts of the others are rescaled;
//! rounding to the nearest index keeps the middle of the ring in place, so
//! only the clients between the middle and the leaving server shift, each by
//! one server. With C = N = 100 and K = 10: 10 to 60 clients change one of
//! their 10 servers, 31 on average (rendezvous hashing moves the 10 that must
//! move, but its spread is binomial).
//!
//! The hash is FNV-1a (64 bits) followed by splitmix64's finaliser: stable
//! across processes, platforms and versions of Rust, which std's hasher is
//! not, and a few lines, so written here rather than pulled in.

/// FNV-1a over `bytes`, mixed by splitmix64's finaliser.
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    mix(hash)
}

/// splitmix64's finaliser: every input bit reaches every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The servers in ring order: by hash of the identity, ties by identity.
/// Duplicates are kept once.
pub(crate) fn ring<'a>(servers: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut ring: Vec<(u64, &str)> = servers
        .into_iter()
        .map(|server| (stable_hash(server.as_bytes()), server))
        .collect();
    ring.sort_unstable();
    ring.dedup();
    ring.into_iter().map(|(_, server)| server).collect()
}

/// The window of the client of rank `rank` among `clients`: `size`
/// consecutive servers of `ring` (all of them if there are fewer).
pub(crate) fn aperture<'a>(
    ring: &[&'a str],
    rank: usize,
    clients: usize,
    size: usize,
) -> Vec<&'a str> {
    let n = ring.len();
    if n == 0 || clients == 0 {
        return Vec::new();
    }
    let start = window_start(rank, clients, n);
    (0..size.min(n)).map(|i| ring[(start + i) % n]).collect()
}

/// Where the window of the client of rank `rank` among `clients` starts on
/// a ring of `n` servers: round(rank · n / clients), halves up (`n` when
/// `rank == clients`, which no client has).
pub(crate) fn window_start(rank: usize, clients: usize, n: usize) -> usize {
    let (rank, clients, n) = (rank as u128, clients as u128, n as u128);
    ((2 * rank * n + clients) / (2 * clients)) as usize
}

/// Rendezvous (highest random weight) hashing: the `size` servers that score
/// highest for `client`. Needs nothing but the client's own id; spread is
/// binomial.
pub(crate) fn rendezvous<'a>(servers: &[&'a str], client: &str, size: usize) -> Vec<&'a str> {
    let seed = stable_hash(client.as_bytes());
    let mut scored: Vec<(u64, &str)> = servers
        .iter()
        .map(|server| (mix(seed ^ stable_hash(server.as_bytes())), *server))
        .collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.dedup();
    scored
        .into_iter()
        .take(size)
        .map(|(_, server)| server)
        .collect()
}

/// The rank of `client` among `clients` (sorted, deduplicated, with `client`
/// added if missing), and their number.
pub(crate) fn rank_of(clients: &[&str], client: &str) -> (usize, usize) {
    let mut all: Vec<&str> = clients.to_vec();
    all.push(client);
    all.sort_unstable();
    all.dedup();
    let rank = all.binary_search(&client).expect("client was added");
    (rank, all.len())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}-{i}")).collect()
    }

    /// Every client's subset under the aperture.
    fn subsets(servers: &[String], clients: &[String], size: usize) -> Vec<BTreeSet<String>> {
        let ring = ring(servers.iter().map(String::as_str));
        let ids: Vec<&str> = clients.iter().map(String::as_str).collect();
        clients
            .iter()
            .map(|client| {
                let (rank, count) = rank_of(&ids, client);
                aperture(&ring, rank, count, size)
                    .into_iter()
                    .map(str::to_owned)
                    .collect()
            })
            .collect()
    }

    fn loads(subsets: &[BTreeSet<String>]) -> BTreeMap<String, usize> {
        let mut loads = BTreeMap::new();
        for server in subsets.iter().flatten() {
            *loads.entry(server.clone()).or_insert(0) += 1;
        }
        loads
    }

    #[test]
    fn every_client_gets_exactly_k_distinct_servers() {
        for (n, c, k) in [(100, 100, 10), (10, 10, 3), (7, 3, 5), (3, 5, 3), (1, 4, 2)] {
            let subsets = subsets(&names("s", n), &names("c", c), k);
            assert!(subsets.iter().all(|s| s.len() == k.min(n)), "{n} {c} {k}");
        }
    }

    #[test]
    fn loads_are_within_one_of_the_mean() {
        for (n, c, k) in [
            (100, 100, 10),
            (10, 10, 3),
            (99, 100, 10),
            (37, 100, 10),
            (100, 33, 10),
        ] {
            let loads = loads(&subsets(&names("s", n), &names("c", c), k));
            let mean = (c * k) as f64 / n as f64;
            let (min, max) = (loads.values().min().unwrap(), loads.values().max().unwrap());
            assert!(
                *max as f64 <= mean.ceil() && *min as f64 >= mean.floor(),
                "{n} {c} {k}: {min}..{max}"
            );
            assert_eq!(loads.len(), n, "{n} {c} {k}: every server is used");
        }
    }

    #[test]
    fn hundred_clients_over_hundred_servers_by_ten_are_perfectly_even() {
        let loads = loads(&subsets(&names("s", 100), &names("c", 100), 10));
        assert!(loads.values().all(|&load| load == 10), "{loads:?}");
    }

    #[test]
    fn ten_by_three_over_ten_covers_all_at_most_three_each() {
        // Random-looking ids, as host-pid defaults are.
        let clients: Vec<String> = (0..10)
            .map(|i| format!("host-{}", 4000 + i * 7919))
            .collect();
        let loads = loads(&subsets(&names("127.0.0.1", 10), &clients, 3));
        assert_eq!(loads.len(), 10);
        assert!(loads.values().all(|&load| load == 3), "{loads:?}");
    }

    #[test]
    fn a_leaving_server_moves_between_the_necessary_and_sixty_of_a_hundred() {
        let (servers, clients) = (names("s", 100), names("c", 100));
        let before = subsets(&servers, &clients, 10);
        let mut total = 0;
        for gone in 0..servers.len() {
            let mut rest = servers.clone();
            rest.remove(gone);
            let after = subsets(&rest, &clients, 10);
            let mut moved = 0;
            for (old, new) in before.iter().zip(&after) {
                if old != new {
                    moved += 1;
                    // A client moves by one server at most.
                    assert_eq!(old.difference(new).count(), 1);
                }
            }
            assert!((10..=60).contains(&moved), "{moved} moved when {gone} left");
            total += moved;
        }
        let mean = total as f64 / 100.0;
        assert!(mean < 35.0, "mean {mean}");
    }

    #[test]
    fn the_ring_is_a_pure_function_of_the_set() {
        let a = ring(["x", "y", "z", "y"]);
        let b = ring(["z", "y", "x"]);
        assert_eq!(a, b);
        assert_eq!(a.len(), 3);
        // Pinned (computed independently): the hash must never change between
        // versions, or clients of two versions would disagree on the ring.
        assert_eq!(stable_hash(b"127.0.0.1:50051"), 0xaa41_6fb7_5a36_16c4);
    }

    #[test]
    fn rank_adds_the_client_itself() {
        assert_eq!(rank_of(&["b", "a", "c"], "b"), (1, 3));
        assert_eq!(rank_of(&["b", "a", "c"], "bb"), (2, 4));
        assert_eq!(rank_of(&[], "a"), (0, 1));
    }

    #[test]
    fn rendezvous_is_stable_and_minimal_on_leave() {
        let servers = names("s", 20);
        let refs: Vec<&str> = servers.iter().map(String::as_str).collect();
        let before = rendezvous(&refs, "client-1", 5);
        assert_eq!(before.len(), 5);
        assert_eq!(before, rendezvous(&refs, "client-1", 5));
        let gone = before[0];
        let rest: Vec<&str> = refs.iter().copied().filter(|s| *s != gone).collect();
        let after = rendezvous(&rest, "client-1", 5);
        assert_eq!(after[..4], before[1..], "the others stay");
    }

    #[test]
    fn empty_inputs_give_empty_subsets() {
        assert!(aperture(&[], 0, 1, 3).is_empty());
        assert!(rendezvous(&[], "c", 3).is_empty());
    }
}
