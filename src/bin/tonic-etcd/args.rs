//! The command line, and the etcd connection and registry layout it
//! describes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tonic_etcd::codec::{self, Codec, FORMATS};
use tonic_etcd::etcd_client::Client;
use tonic_etcd::EtcdConfig;

use crate::Failure;

/// The environment variable holding the password of `--etcd-user`.
const PASSWORD_VAR: &str = "ETCD_PASSWORD";

/// How long connecting to etcd may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Operator tool for tonic-etcd registries: list, watch, drain, re-weight,
/// register, diagnose.
#[derive(Debug, Parser)]
#[command(name = "tonic-etcd", version)]
pub(crate) struct Cli {
    /// etcd endpoints, comma-separated (https:// ones with --etcd-ca).
    #[arg(
        long = "etcd",
        value_name = "URLS",
        env = "ETCD_ENDPOINTS",
        default_value = "http://127.0.0.1:2379",
        value_delimiter = ',',
        global = true
    )]
    pub(crate) endpoints: Vec<String>,
    /// Key prefix before the service name (default: the format's own,
    /// /services for native).
    #[arg(long, value_name = "PREFIX", global = true)]
    pub(crate) namespace: Option<String>,
    /// Registry format.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "native",
        value_parser = clap::builder::PossibleValuesParser::new(FORMATS),
        global = true
    )]
    pub(crate) format: String,
    /// CA certificate (PEM) that signed etcd's server certificates: TLS to etcd.
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's --client-cert-auth (with --etcd-key).
    #[arg(long, value_name = "FILE", requires = "etcd_key", global = true)]
    pub(crate) etcd_cert: Option<PathBuf>,
    /// Private key (PEM) of --etcd-cert.
    #[arg(long, value_name = "FILE", requires = "etcd_cert", global = true)]
    pub(crate) etcd_key: Option<PathBuf>,
    /// etcd user; the password is read from $ETCD_PASSWORD.
    #[arg(long, value_name = "NAME", global = true)]
    pub(crate) etcd_user: Option<String>,
    /// Machine-readable output (JSON).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum Command {
    /// Every service under the namespace with its instance count, or, with
    /// SERVICE, one row per instance.
    Ls { service: Option<String> },
    /// One line per change of SERVICE (added, removed, changed) until
    /// interrupted.
    Watch { service: String },
    /// Take instance ID out of rotation; it stays registered.
    Drain {
        service: String,
        id: String,
        /// Write the override even if no instance ID is registered.
        #[arg(long)]
        force: bool,
    },
    /// Put a drained instance back into rotation.
    Undrain {
        service: String,
        id: String,
        /// Write the override even if no instance ID is registered.
        #[arg(long)]
        force: bool,
    },
    /// Override the weight of instance ID (or --clear the override).
    Weight {
        service: String,
        id: String,
        /// The new weight, 1..=10000.
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        weight: Option<u32>,
        /// Back to the registered weight.
        #[arg(long)]
        clear: bool,
        /// Write the override even if no instance ID is registered.
        #[arg(long)]
        force: bool,
    },
    /// Hold a registration for a server that cannot register itself, until
    /// SIGINT or SIGTERM.
    Register(Register),
    /// Check etcd's members, the permissions and the registry; exit 1 on any
    /// problem.
    Doctor { service: Option<String> },
}

#[derive(Debug, Clone, Args)]
pub(crate) struct Register {
    pub(crate) service: String,
    /// host:port that clients connect to.
    pub(crate) addr: String,
    /// Instance id (default: the address).
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Lease TTL in seconds.
    #[arg(long, value_name = "S", default_value_t = 10)]
    pub(crate) ttl: u64,
    /// Weight for weighted balancing.
    #[arg(long)]
    pub(crate) weight: Option<u32>,
    /// Version of the server.
    #[arg(long)]
    pub(crate) version: Option<String>,
    /// Metadata, repeatable.
    #[arg(long, value_name = "K=V", value_parser = parse_metadata)]
    pub(crate) metadata: Vec<(String, String)>,
}

fn parse_metadata(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected k=v, got {text:?}")),
    }
}

impl Cli {
    /// The etcd connection for `endpoints` (the flags' or one member's).
    pub(crate) fn config(&self, endpoints: &[String]) -> Result<EtcdConfig, Failure> {
        let mut config =
            EtcdConfig::new(endpoints.iter().cloned()).connect_timeout(CONNECT_TIMEOUT);
        if let Some(ca) = &self.etcd_ca {
            config = config.ca_file(ca);
        }
        if let (Some(cert), Some(key)) = (&self.etcd_cert, &self.etcd_key) {
            config = config.client_cert_files(cert, key);
        }
        if let Some(user) = &self.etcd_user {
            let password = std::env::var(PASSWORD_VAR).map_err(|_| {
                Failure::Usage(format!(
                    "--etcd-user {user} needs the password in ${PASSWORD_VAR}"
                ))
            })?;
            config = config.user(user, password);
        }
        Ok(config)
    }

    /// Connects to etcd.
    pub(crate) async fn connect(&self) -> Result<Client, Failure> {
        let config = self.config(&self.endpoints)?;
        config.connect().await.map_err(|error| {
            Failure::Failed(format!(
                "cannot connect to etcd at {}: {}",
                self.endpoints.join(","),
                tonic_etcd::ErrorChain(&error)
            ))
        })
    }

    /// The registry format of `--format`.
    pub(crate) fn codec(&self) -> Arc<dyn Codec> {
        codec::by_name(&self.format).expect("clap checked the format")
    }

    /// The namespace: `--namespace` (checked by the format, without trailing
    /// `/`), else the format's default.
    pub(crate) fn namespace(&self) -> Result<String, Failure> {
        let codec = self.codec();
        match &self.namespace {
            Some(namespace) => {
                codec
                    .validate_namespace(namespace)
                    .map_err(|e| Failure::Usage(e.to_string()))?;
                Ok(namespace.trim_end_matches('/').to_owned())
            }
            None => Ok(codec.default_namespace().to_owned()),
        }
    }
}
