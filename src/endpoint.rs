//! The tonic [`Endpoint`] the crate recommends for an instance: the transport
//! seam's one place for connection settings.
//!
//! Every balanced client needs `connect_timeout` and HTTP/2 keepalive on each
//! endpoint, or a black-holed address or a frozen peer hangs its requests
//! (grpc-rust #2746).
//! [`default_endpoint`] gives a plain `http://` endpoint with them;
//! [`recommended`] applies them to an endpoint you built yourself, and the
//! `tls` module's `https://` endpoints use it.

use std::time::Duration;

use tonic::transport::Endpoint;

use crate::error::{Error, Result};
use crate::instance::Instance;

/// The endpoint the crate recommends for `instance`: `http://{addr}` with
///
/// - `connect_timeout` 1 s,
/// - HTTP/2 keepalive: a ping after 10 s without any frame from the server
///   while requests are in flight, answered within 5 s or the connection is
///   closed (`keep_alive_while_idle` off),
/// - `tcp_nodelay`.
///
/// So a peer that stops answering (a frozen process, a dead host, a cut
/// link) has its connection closed at most 15 s after the last frame it sent
/// while a request waits on it; the requests on it fail then if their own
/// deadline has not expired before, and the endpoint's next request opens a
/// new connection (an unreachable peer is ejected until a probe reconnects
/// it). Outlier detection usually takes a frozen peer out sooner: its
/// requests' deadlines count as failures.
///
/// Idle connections are not pinged: gRPC servers in Go refuse pings more
/// often than every 5 minutes by default on a connection without streams
/// (they answer `GOAWAY` `ENHANCE_YOUR_CALM` "too_many_pings" and close it).
/// With streams in flight, a grpc-go server counts a strike for each ping
/// less than 5 minutes after the last one unless it has sent data since, and
/// closes the connection at the third: a stream silent for 40 s or more
/// (a long poll, a health watch) needs `MinTime` of 10 s or less in the
/// server's `keepalive.EnforcementPolicy`, or a longer interval here. tonic
/// servers do not police pings.
///
/// Fails with [`Error::Endpoint`] if the address does not make a URI.
///
/// ```
/// let instance = tonic_etcd::Instance::new("helloworld", "127.0.0.1:50051")?;
/// let endpoint = tonic_etcd::endpoint::default_endpoint(&instance)?;
/// assert_eq!(endpoint.uri(), "http://127.0.0.1:50051/");
/// # Ok::<(), tonic_etcd::Error>(())
/// ```
pub fn default_endpoint(instance: &Instance) -> Result<Endpoint> {
    let endpoint =
        Endpoint::from_shared(format!("http://{}", instance.addr)).map_err(|source| {
            Error::Endpoint {
                addr: instance.addr.clone(),
                source: source.into(),
            }
        })?;
    Ok(recommended(endpoint))
}

/// The settings of [`default_endpoint`], applied to any endpoint (the `tls`
/// module's endpoints get them too).
///
/// ```
/// let endpoint = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051");
/// let endpoint = tonic_etcd::endpoint::recommended(endpoint)
///     .timeout(std::time::Duration::from_secs(2));
/// # let _ = endpoint;
/// ```
pub fn recommended(endpoint: Endpoint) -> Endpoint {
    endpoint
        .connect_timeout(Duration::from_secs(1))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(false)
        .tcp_nodelay(true)
}
