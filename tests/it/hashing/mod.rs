//! Consistent hashing with bounded loads (issue 17, item 1), against a real
//! etcd and real greeter servers: each key's requests reach one server, and
//! only the keys of a server that stops move (through the example binaries,
//! `--balancer consistent-hash --hash-key KEY`); the key as a `HashKey`
//! extension or in the header; a hot key spilling over under concurrent slow
//! requests, within the load bound; a retry to the next endpoint on the ring.

mod examples;
mod keys;
mod load;
mod retry;

use std::collections::BTreeMap;

use tonic::Request;
use tonic_etcd::balance::HashKey;
use tonic_etcd::Balancer;

use crate::support::balancer::hello::greeter_client::GreeterClient;
use crate::support::balancer::hello::HelloRequest;

/// How a request carries its key.
#[derive(Debug, Clone, Copy)]
enum Key<'a> {
    Extension(&'a str),
    Header(&'a str, &'a str),
    None,
}

/// One SayHello through `balancer` with `key`: the address that answered.
async fn hello_with(balancer: &Balancer, key: Key<'_>) -> String {
    let mut client = GreeterClient::new(balancer.clone());
    let mut request = Request::new(HelloRequest {
        name: "hashing".into(),
    });
    match key {
        Key::Extension(key) => {
            request.extensions_mut().insert(HashKey::new(key));
        }
        Key::Header(name, key) => {
            let name: tonic::metadata::AsciiMetadataKey = name.parse().unwrap();
            request.metadata_mut().insert(name, key.parse().unwrap());
        }
        Key::None => {}
    }
    let reply = tokio::time::timeout(std::time::Duration::from_secs(5), client.say_hello(request))
        .await
        .expect("an answer within 5 s")
        .expect("SayHello succeeds");
    last_word(&reply.into_inner().message).to_owned()
}

/// The address at the end of `Hello … from ADDR`.
fn last_word(line: &str) -> &str {
    line.rsplit(' ').next().unwrap_or_default()
}

/// How many of `addrs` each address is.
fn tally<'a>(addrs: impl IntoIterator<Item = &'a String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for addr in addrs {
        *counts.entry(addr.clone()).or_default() += 1;
    }
    counts
}
