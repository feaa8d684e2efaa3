//! The TLS flags of the example greeter: `--tls-cert`/`--tls-key` (and
//! `--tls-domain`) for the server, `--tls-ca` (and `--tls-domain`) for the
//! client.
//!
//! Wiring, in the server:
//!
//! ```text
//! #[path = "common/tls.rs"]
//! mod tls_args;
//!
//! #[command(flatten)]
//! tls: tls_args::ServerTlsArgs,
//!
//! let instance = args.tls.annotate(instance);        // before registering
//! let server = args.tls.server(Server::builder())?;  // instead of Server::builder()
//! ```
//!
//! and in the client:
//!
//! ```text
//! #[command(flatten)]
//! tls: tls_args::ClientTlsArgs,
//!
//! let template = args.tls.endpoint_template()?;
//! Balancer::builder(policy).endpoint(template).discover(discovery).await?
//! // or, for tonic's channel:
//! discovery.tonic_channel_with(template).await?
//! ```

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use tonic::transport::{Endpoint, Server};
use tonic_etcd::tls::{self, ClientTlsConfig, ServerTlsConfig};
use tonic_etcd::Instance;

/// How long a client's TLS handshake with a greeter may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

// TLS of the server. (No doc comment: clap would take it as the
// command's description.)
#[derive(Debug, Clone, clap::Args)]
pub struct ServerTlsArgs {
    /// Serve TLS with this certificate (PEM; with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The name in the certificate, published as the instance's `tls-domain`
    /// metadata so that clients check it (default: clients check the
    /// advertised address).
    #[arg(long, value_name = "NAME", requires = "tls_cert")]
    pub tls_domain: Option<String>,
}

impl ServerTlsArgs {
    /// The server TLS config, if --tls-cert is given.
    pub fn config(&self) -> tonic_etcd::Result<Option<ServerTlsConfig>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(
                ServerTlsConfig::new().identity(tls::read_identity(cert, key)?),
            )),
            _ => Ok(None),
        }
    }

    /// `builder` serving TLS if --tls-cert is given.
    pub fn server(&self, builder: Server) -> Result<Server, Box<dyn std::error::Error>> {
        Ok(match self.config()? {
            Some(config) => builder.tls_config(config)?,
            None => builder,
        })
    }

    /// `instance` with the `tls-domain` metadata of --tls-domain, if given.
    pub fn annotate(&self, instance: Instance) -> Instance {
        match &self.tls_domain {
            Some(domain) => instance.with_metadata(tls::DOMAIN_KEY, domain.as_str()),
            None => instance,
        }
    }
}

// TLS of the client to the greeters. (No doc comment: clap would take it as the
// command's description.)
#[derive(Debug, Clone, clap::Args)]
pub struct ClientTlsArgs {
    /// Reach the greeters over TLS, trusting this CA (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Check the greeters' certificates against this name (default: each
    /// instance's `tls-domain` metadata, else its address).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub tls_domain: Option<String>,
}

impl ClientTlsArgs {
    /// The client TLS config, if --tls-ca is given.
    pub fn config(&self) -> tonic_etcd::Result<Option<ClientTlsConfig>> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let mut config = ClientTlsConfig::new()
            .ca_certificate(tls::read_certificate(ca)?)
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some(domain) = &self.tls_domain {
            config = config.domain_name(domain.as_str());
        }
        Ok(Some(config))
    }

    /// The endpoint template: `https://` with TLS if --tls-ca is given,
    /// otherwise [`default_endpoint`](tonic_etcd::endpoint::default_endpoint).
    pub fn endpoint_template(
        &self,
    ) -> tonic_etcd::Result<
        impl Fn(&Instance) -> tonic_etcd::Result<Endpoint> + Clone + Send + Sync + 'static,
    > {
        let config = self.config()?;
        Ok(move |instance: &Instance| match &config {
            Some(config) => tls::endpoint(instance, config),
            None => tonic_etcd::endpoint::default_endpoint(instance),
        })
    }
}
