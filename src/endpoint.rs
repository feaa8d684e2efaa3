//! The tonic [`Endpoint`] the crate recommends for an instance: the transport
//! seam's one place for connection settings.
//!
//! Every balanced client needs `connect_timeout` and HTTP/2 keepalive on each
//! endpoint, or a black-holed address hangs its requests (grpc-rust #2746).
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
/// - HTTP/2 keepalive every 10 s, `keep_alive_timeout` 5 s, also while idle,
/// - `tcp_nodelay`.
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
        .keep_alive_while_idle(true)
        .tcp_nodelay(true)
}
