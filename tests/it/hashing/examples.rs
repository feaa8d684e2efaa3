//! The outside check of issue 17, item 1, through the example binaries:
//! five keys × 20 requests with `--balancer consistent-hash --hash-key KEY`,
//! each key's replies from one server; after one server's SIGTERM, only the
//! keys that were on it move. `--hash-key-header NAME` carries the same key
//! to the same server.

use std::collections::{BTreeMap, BTreeSet};

use super::last_word;
use crate::support::examples::{Cmd, Server, CLIENT_WITHIN, REGISTER_WITHIN};
use crate::support::{self, Etcd};

const KEYS: [&str; 5] = ["alpha", "bravo", "charlie", "delta", "echo"];

/// Runs `helloworld-client --balancer consistent-hash --hash-key KEY` with 20
/// requests and `extra` flags; the one server that answered them all.
async fn server_of(endpoint: &str, service: &str, key: &str, extra: &[&str]) -> String {
    let run = Cmd::client()
        .args(["--etcd", endpoint, "--service", service])
        .args(["--balancer", "consistent-hash", "--hash-key", key])
        .args(["--requests", "20"])
        .args(extra)
        .run(CLIENT_WITHIN)
        .await;
    run.assert_all_ok(20);
    let servers: BTreeSet<String> = run
        .replies()
        .into_iter()
        .map(|reply| last_word(reply).to_owned())
        .collect();
    assert_eq!(
        servers.len(),
        1,
        "key {key}: every reply from one server\n{run}"
    );
    servers.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_reaches_one_server_and_only_the_keys_of_a_stopped_one_move() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let endpoint = etcd.endpoint();
    let service = support::unique("hashing");
    let mut servers: Vec<Server> = (0..3)
        .map(|_| Server::start(Cmd::server().args(["--etcd", &endpoint, "--service", &service])))
        .collect();
    for server in &mut servers {
        let key = format!("/services/{service}/{}", server.addr);
        server.wait_registered(&client, &key, REGISTER_WITHIN).await;
    }

    let mut before = BTreeMap::new();
    for key in KEYS {
        before.insert(key, server_of(&endpoint, &service, key, &[]).await);
    }
    eprintln!("before: {before:?}");
    // Another header name carries the same key to the same server.
    let custom = server_of(
        &endpoint,
        &service,
        KEYS[0],
        &["--hash-key-header", "x-user-id"],
    )
    .await;
    assert_eq!(custom, before[KEYS[0]]);

    // Stop the server of the first key.
    let stopped = before[KEYS[0]].clone();
    let index = servers.iter().position(|s| s.addr == stopped).unwrap();
    let key = format!("/services/{service}/{stopped}");
    servers[index].stop_gracefully(&client, &key).await;

    let mut after = BTreeMap::new();
    for key in KEYS {
        after.insert(key, server_of(&endpoint, &service, key, &[]).await);
    }
    eprintln!("after SIGTERM of {stopped}: {after:?}");
    for key in KEYS {
        if before[key] == stopped {
            assert_ne!(after[key], stopped, "{key} moved off the stopped server");
        } else {
            assert_eq!(after[key], before[key], "{key} was not on it: it stays");
        }
    }
}
