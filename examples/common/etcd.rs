//! The etcd connection flags the examples share: endpoints, TLS, mutual TLS
//! and a user. The password comes from `$ETCD_PASSWORD`, never from a flag,
//! so that it does not show in `ps`.
//!
//! Wiring, in an example:
//!
//! ```text
//! #[path = "common/etcd.rs"]
//! mod etcd_args;
//!
//! struct Args {
//!     #[command(flatten)]
//!     etcd: etcd_args::EtcdArgs,
//!     ...
//! }
//!
//! let etcd = args.etcd.connect().await?;
//! ```

#![allow(dead_code)]

use std::path::PathBuf;

use tonic_etcd::etcd_client::Client;
use tonic_etcd::{Error, EtcdConfig};

/// The environment variable holding the password of `--etcd-user`.
pub const PASSWORD_VAR: &str = "ETCD_PASSWORD";

// How to reach etcd. (No doc comment: clap would take it as the
// command's description.)
#[derive(Debug, Clone, clap::Args)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated (https:// ones with --etcd-ca).
    #[arg(
        long = "etcd",
        value_name = "URLS",
        env = "ETCD_ENDPOINTS",
        default_value = "http://127.0.0.1:2379",
        value_delimiter = ','
    )]
    pub endpoints: Vec<String>,
    /// CA certificate (PEM) that signed etcd's server certificates: TLS to etcd.
    #[arg(long, value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's --client-cert-auth (with --etcd-key).
    #[arg(long, value_name = "FILE", requires_all = ["etcd_key", "etcd_ca"])]
    pub etcd_cert: Option<PathBuf>,
    /// Private key (PEM) of --etcd-cert.
    #[arg(long, value_name = "FILE", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user; the password is read from $ETCD_PASSWORD.
    #[arg(long, value_name = "NAME")]
    pub etcd_user: Option<String>,
}

impl EtcdArgs {
    /// The endpoints, comma-separated, for messages.
    pub fn endpoints(&self) -> String {
        self.endpoints.join(",")
    }

    /// The connection these flags describe. Fails if --etcd-user is given
    /// without $ETCD_PASSWORD.
    pub fn config(&self) -> tonic_etcd::Result<EtcdConfig> {
        let mut config = EtcdConfig::new(self.endpoints.iter().cloned());
        if let Some(ca) = &self.etcd_ca {
            config = config.ca_file(ca);
        }
        if let (Some(cert), Some(key)) = (&self.etcd_cert, &self.etcd_key) {
            config = config.client_cert_files(cert, key);
        }
        if let Some(user) = &self.etcd_user {
            let password = std::env::var(PASSWORD_VAR).map_err(|_| Error::Config {
                reason: format!("--etcd-user {user} needs the password in ${PASSWORD_VAR}"),
            })?;
            config = config.user(user, password);
        }
        Ok(config)
    }

    /// Connects to etcd (see [`EtcdConfig::connect`]).
    pub async fn connect(&self) -> tonic_etcd::Result<Client> {
        self.config()?.connect().await
    }
}

/// The message for an error etcd explained (its NOSPACE alarm: "database
/// space exceeded"), naming the fix, instead of "is etcd running?": etcd
/// answered, it is full.
pub fn remedy(error: &Error) -> Option<String> {
    let remedy = error.remedy()?;
    Some(format!(
        "etcd refused the registration: {error}; {remedy}. \
         (--etcd-wait-ms N keeps retrying meanwhile)"
    ))
}
