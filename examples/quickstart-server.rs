//! Quick start, server side: a greeter that registers itself in etcd as
//! `helloworld` while it serves, and deregisters on SIGTERM or Ctrl-C.
//!
//! ```text
//! etcd                                    # in another terminal
//! cargo run --example quickstart-server
//! cargo run --example quickstart-client
//! ```
//!
//! `ETCD_ENDPOINTS` says where etcd is (comma-separated, default
//! `http://127.0.0.1:2379`). `LISTEN_ADDR` (default `127.0.0.1:50051`) is both
//! the address served and the one registered, so it must be one that clients
//! can reach; run a second server with `LISTEN_ADDR=127.0.0.1:50052`.

use std::time::Duration;

use tonic::transport::Server;
use tonic::{Request, Response, Status};
use tonic_etcd::{Instance, Registrar};

use hello::greeter_server::{Greeter, GreeterServer};
use hello::{HelloReply, HelloRequest};

mod hello {
    tonic::include_proto!("helloworld");
}

/// Replies with its own address, so that a client sees who answered.
struct MyGreeter {
    addr: String,
}

#[tonic::async_trait]
impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let message = format!("Hello {} from {}", request.into_inner().name, self.addr);
        Ok(Response::new(HelloReply { message }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoints = env_or("ETCD_ENDPOINTS", "http://127.0.0.1:2379");
    let addr = env_or("LISTEN_ADDR", "127.0.0.1:50051");
    let etcd = tonic_etcd::connect(endpoints.split(',').collect::<Vec<_>>()).await?;

    // Puts `/services/helloworld/{addr}` in etcd on a lease that a background
    // task keeps alive. Keep the guard while serving: dropping it deregisters.
    // If the process crashes, the key expires with the lease, after the TTL.
    let registration = Registrar::new(etcd)
        .ttl(Duration::from_secs(10))
        .register(Instance::new("helloworld", addr.as_str())?)
        .await?;
    eprintln!("serving on {addr}, registered {}", registration.key());

    // On SIGTERM or Ctrl-C: remove the key at once, keep serving for a second
    // while clients see it go, then finish the requests in flight and return.
    Server::builder()
        .add_service(GreeterServer::new(MyGreeter { addr: addr.clone() }))
        .serve_with_shutdown(
            addr.parse()?,
            registration.deregister_on(tonic_etcd::shutdown_signal(), Duration::from_secs(1)),
        )
        .await?;
    Ok(())
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}
