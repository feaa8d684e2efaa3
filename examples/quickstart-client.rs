//! Quick start, client side: finds the `helloworld` servers in etcd and sends
//! them a few greetings, in turn.
//!
//! ```text
//! etcd                                    # in another terminal
//! cargo run --example quickstart-server   # in another terminal
//! cargo run --example quickstart-client
//! ```
//!
//! `ETCD_ENDPOINTS` says where etcd is (comma-separated, default
//! `http://127.0.0.1:2379`).

use tonic_etcd::{Discovery, Policy};

use hello::greeter_client::GreeterClient;
use hello::HelloRequest;

mod hello {
    tonic::include_proto!("helloworld");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoints =
        std::env::var("ETCD_ENDPOINTS").unwrap_or_else(|_| "http://127.0.0.1:2379".to_owned());
    let etcd = tonic_etcd::connect(endpoints.split(',').collect::<Vec<_>>()).await?;

    // Reads the instances of `helloworld` from etcd, then watches them, and
    // sends each request to the next one in turn. A server that cannot be
    // reached is skipped; with no server at all, a request fails at once
    // (UNAVAILABLE) instead of waiting.
    let balancer = Discovery::new(etcd, "helloworld")
        .balancer(Policy::RoundRobin)
        .await?;
    let mut client = GreeterClient::new(balancer);

    for _ in 0..3 {
        let request = HelloRequest {
            name: "world".to_owned(),
        };
        let reply = client.say_hello(request).await?;
        println!("{}", reply.into_inner().message);
    }
    Ok(())
}
