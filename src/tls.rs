//! TLS to the gRPC services found through discovery (feature `tls`, on by
//! default). TLS to etcd itself is configured on [`EtcdConfig`](crate::EtcdConfig).
//!
//! A server serves TLS with tonic's [`ServerTlsConfig`] and may say in its
//! registry entry which name its certificate carries, under the metadata key
//! [`DOMAIN_KEY`] (`tls-domain`). A client turns each discovered instance into
//! an `https://` endpoint with [`template`]:
//!
//! ```no_run
//! # async fn run(etcd: etcd_client::Client) -> tonic_etcd::Result<()> {
//! use std::time::Duration;
//! use tonic_etcd::{tls, Discovery, Instance};
//!
//! // Server: its certificate is for `greeter.internal`.
//! let identity = tls::read_identity("server.pem", "server-key.pem")?;
//! let server_tls = tls::ServerTlsConfig::new().identity(identity);
//! let instance = Instance::new("helloworld", "10.0.0.7:50051")?
//!     .with_metadata(tls::DOMAIN_KEY, "greeter.internal");
//!
//! // Client: trust the CA that signed the servers' certificates.
//! let client_tls = tls::ClientTlsConfig::new()
//!     .ca_certificate(tls::read_certificate("ca.pem")?)
//!     .timeout(Duration::from_secs(1));
//! let channel = Discovery::new(etcd, "helloworld")
//!     .tonic_channel_with(tls::template(client_tls))
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! The name checked against a server's certificate is, in order: the
//! instance's `tls-domain` metadata, the
//! [`domain_name`](ClientTlsConfig::domain_name) of the config, the host of
//! the instance's address (an IP address must then be in the certificate's
//! subject alternative names). For mutual TLS, add the client's
//! [`Identity`] to the config.
//!
//! tonic's [`Identity`] and [`ClientTlsConfig`] print the private key's bytes
//! in their `Debug` output: never log them.

use std::path::Path;

use tonic::transport::Endpoint;

use crate::error::{Error, Result};
use crate::etcd::Pem;
use crate::instance::Instance;

pub use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The instance metadata key naming the server's certificate (its TLS
/// domain), used by [`endpoint`] instead of the address's host.
pub const DOMAIN_KEY: &str = "tls-domain";

/// The `https://` endpoint of `instance`, with `tls` (and the instance's
/// [`DOMAIN_KEY`] metadata, if any, as the domain name) and the same settings
/// as [`default_endpoint`](crate::endpoint::default_endpoint):
///
/// - `connect_timeout` 1 s,
/// - HTTP/2 keepalive every 10 s, `keep_alive_timeout` 5 s, also while idle,
/// - `tcp_nodelay`.
///
/// `connect_timeout` bounds the TCP connect only: set
/// [`ClientTlsConfig::timeout`] too, so that a server that accepts
/// connections but never completes the handshake cannot hang requests.
///
/// Fails with [`Error::Endpoint`] if the address does not make a URI or tonic
/// refuses the TLS settings.
///
/// ```
/// use tonic_etcd::{tls, Instance};
///
/// let instance = Instance::new("helloworld", "10.0.0.7:50051")?
///     .with_metadata(tls::DOMAIN_KEY, "greeter.internal");
/// let endpoint = tls::endpoint(&instance, &tls::ClientTlsConfig::new())?;
/// assert_eq!(endpoint.uri(), "https://10.0.0.7:50051/");
/// # Ok::<(), tonic_etcd::Error>(())
/// ```
pub fn endpoint(instance: &Instance, tls: &ClientTlsConfig) -> Result<Endpoint> {
    let endpoint_error = |source: tonic::transport::Error| Error::Endpoint {
        addr: instance.addr.clone(),
        source: source.into(),
    };
    let mut tls = tls.clone();
    if let Some(domain) = instance.metadata.get(DOMAIN_KEY) {
        tls = tls.domain_name(domain.clone());
    }
    let endpoint = Endpoint::from_shared(format!("https://{}", instance.addr))
        .map_err(endpoint_error)?
        .tls_config(tls)
        .map_err(endpoint_error)?;
    Ok(crate::endpoint::recommended(endpoint))
}

/// An endpoint template for
/// [`BalancerBuilder::endpoint`](crate::BalancerBuilder::endpoint),
/// [`Discovery::tonic_channel_with`](crate::Discovery::tonic_channel_with)
/// and [`balance::tonic_channel`](crate::balance::tonic_channel): [`endpoint`]
/// with `tls` for every instance.
///
/// To change more settings, write the closure yourself:
///
/// ```
/// use std::time::Duration;
/// use tonic_etcd::{tls, Instance};
///
/// let config = tls::ClientTlsConfig::new().domain_name("greeter.internal");
/// let template = move |instance: &Instance| -> tonic_etcd::Result<_> {
///     Ok(tls::endpoint(instance, &config)?.timeout(Duration::from_secs(2)))
/// };
/// # let _ = template(&Instance::new("helloworld", "10.0.0.7:50051")?)?;
/// # Ok::<(), tonic_etcd::Error>(())
/// ```
pub fn template(
    tls: ClientTlsConfig,
) -> impl Fn(&Instance) -> Result<Endpoint> + Clone + Send + Sync + 'static {
    move |instance| endpoint(instance, &tls)
}

/// Reads a PEM certificate file (a CA, or a chain), e.g. for
/// [`ClientTlsConfig::ca_certificate`].
///
/// Fails with [`Error::ReadFile`] if the file cannot be read, or
/// [`Error::Config`] if it holds no PEM block.
pub fn read_certificate(path: impl AsRef<Path>) -> Result<Certificate> {
    let pem = Pem::File(path.as_ref().to_owned()).load("certificate")?;
    Ok(Certificate::from_pem(pem))
}

/// Reads a PEM certificate (chain) and its PEM private key, e.g. for
/// [`ServerTlsConfig::identity`] or, for mutual TLS, [`ClientTlsConfig::identity`].
///
/// Fails with [`Error::ReadFile`] if a file cannot be read, or
/// [`Error::Config`] if one holds no PEM block. The key never appears in the
/// error.
pub fn read_identity(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Identity> {
    let cert = Pem::File(cert.as_ref().to_owned()).load("certificate")?;
    let key = Pem::File(key.as_ref().to_owned()).load("private key")?;
    Ok(Identity::from_pem(cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_https_with_or_without_a_domain() {
        let plain = Instance::new("s", "127.0.0.1:1").unwrap();
        let named = plain.clone().with_metadata(DOMAIN_KEY, "svc.internal");
        let template = template(ClientTlsConfig::new());
        assert_eq!(template(&plain).unwrap().uri(), "https://127.0.0.1:1/");
        assert_eq!(template(&named).unwrap().uri(), "https://127.0.0.1:1/");
    }

    #[test]
    fn missing_and_non_pem_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let error = read_certificate(&missing).unwrap_err();
        assert!(matches!(
            error,
            Error::ReadFile {
                what: "certificate",
                ..
            }
        ));
        assert!(error.to_string().contains("missing.pem"), "{error}");

        let garbage = dir.path().join("key.pem");
        std::fs::write(&garbage, "not a key at all: hunter2").unwrap();
        let error = read_identity(&garbage, &garbage).unwrap_err();
        assert!(matches!(error, Error::Config { .. }), "{error}");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
