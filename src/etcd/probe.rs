//! A TLS handshake with each etcd endpoint before the client is made.
//!
//! A TLS mistake reaches the caller of a gRPC request only as tonic and
//! hyper pass it on: a wrong CA keeps rustls' "UnknownIssuer", but a client
//! certificate that etcd refuses (or one that is missing) arrives after the
//! TLS 1.3 handshake as a fatal alert, and becomes "operation was canceled:
//! connection closed". So [`EtcdConfig::connect`](super::EtcdConfig::connect)
//! shakes hands itself first, with the same settings, sends the HTTP/2
//! preface and reads the answer, and names what went wrong.
//!
//! Only a definite refusal fails the connect: an endpoint that cannot be
//! reached is left to the lazy client (etcd may simply not be up yet), and one
//! working endpoint is enough.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tracing::{debug, warn};

use super::endpoints::host_port;
use crate::error::{Error, Result};

/// The HTTP/2 connection preface and an empty SETTINGS frame: etcd answers
/// with its own SETTINGS, which proves the handshake was accepted.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// What one endpoint did.
enum Outcome {
    /// The handshake was accepted.
    Accepted,
    /// Not reached, or no definite answer: left to the client.
    Unknown(String),
    /// A TLS failure that a retry will not fix.
    Refused(Error),
}

/// The client side of the handshake, built like tonic builds it.
pub(super) struct TlsProbe {
    config: Arc<ClientConfig>,
    /// Whether the config presents a client certificate.
    client_cert: bool,
    domain: Option<String>,
    timeout: Duration,
}

impl TlsProbe {
    /// `ca` and the optional `(cert, key)` are PEM. Fails with
    /// [`Error::Config`] if they do not parse or the key does not fit.
    pub(super) fn new(
        ca: &[u8],
        identity: Option<(&[u8], &[u8])>,
        domain: Option<String>,
        timeout: Duration,
    ) -> Result<Self> {
        let config_error = |reason: String| Error::Config { reason };
        let provider = CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(crypto::ring::default_provider()));
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(format!("TLS: {e}")))?;
        let mut roots = RootCertStore::empty();
        let cas = CertificateDer::pem_slice_iter(ca)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| config_error(format!("etcd CA certificate: {e}")))?;
        let (added, _) = roots.add_parsable_certificates(cas);
        if added == 0 {
            return Err(config_error(
                "etcd CA certificate: no usable certificate in the PEM".into(),
            ));
        }
        let builder = builder.with_root_certificates(roots);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| config_error(format!("etcd client certificate: {e}")))?;
                if chain.is_empty() {
                    return Err(config_error(
                        "etcd client certificate: no certificate in the PEM".into(),
                    ));
                }
                // The parse error of a key says nothing about its content.
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| config_error(format!("etcd client key: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| config_error(format!("etcd client certificate and key: {e}")))?
            }
        };
        config.alpn_protocols.push(b"h2".to_vec());
        Ok(Self {
            config: Arc::new(config),
            client_cert: identity.is_some(),
            domain,
            timeout,
        })
    }

    /// Shakes hands with every `https://` (or scheme-less) endpoint at once.
    /// Fails with the first refusal if no endpoint accepted.
    pub(super) async fn check(&self, endpoints: &[String]) -> Result<()> {
        let outcomes = join_all(endpoints.iter().map(|endpoint| async move {
            let outcome = match timeout(self.timeout, self.probe(endpoint)).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::Unknown(format!("no answer within {:?}", self.timeout)),
            };
            (endpoint, outcome)
        }))
        .await;
        let mut refusal = None;
        let mut accepted = false;
        for (endpoint, outcome) in outcomes {
            match outcome {
                Outcome::Accepted => {
                    debug!(%endpoint, "TLS handshake with etcd accepted");
                    accepted = true;
                }
                Outcome::Unknown(why) => debug!(%endpoint, %why, "TLS check inconclusive"),
                Outcome::Refused(error) => {
                    warn!(%endpoint, %error, "TLS with etcd failed");
                    refusal.get_or_insert(error);
                }
            }
        }
        match refusal {
            Some(error) if !accepted => Err(error),
            _ => Ok(()),
        }
    }

    async fn probe(&self, endpoint: &str) -> Outcome {
        let Some((host, port)) = host_port(endpoint) else {
            return Outcome::Unknown("not [https://]host:port".into());
        };
        let name = self.domain.clone().unwrap_or_else(|| host.clone());
        let server_name = match ServerName::try_from(name.clone()) {
            Ok(server_name) => server_name,
            Err(_) => {
                return Outcome::Refused(Error::Config {
                    reason: format!("{name:?} is not a valid TLS server name"),
                })
            }
        };
        let tcp = match TcpStream::connect((host.as_str(), port)).await {
            Ok(tcp) => tcp,
            Err(error) => return Outcome::Unknown(error.to_string()),
        };
        let client_cert = self.client_cert;
        let refused = |source: io::Error| match explain(&source, &name, client_cert) {
            Some(reason) => Outcome::Refused(Error::Tls {
                endpoint: endpoint.to_owned(),
                reason,
                source,
            }),
            None => Outcome::Unknown(source.to_string()),
        };
        let mut tls = match TlsConnector::from(self.config.clone())
            .connect(server_name, tcp)
            .await
        {
            Ok(tls) => tls,
            Err(error) => return refused(error),
        };
        // In TLS 1.3 etcd judges the client certificate after the client has
        // finished: its verdict is in the first read.
        if let Err(error) = tls.write_all(PREFACE).await {
            return refused(error);
        }
        if let Err(error) = tls.flush().await {
            return refused(error);
        }
        let mut answer = [0u8; 64];
        match tls.read(&mut answer).await {
            Ok(0) => Outcome::Unknown("closed right after the handshake".into()),
            Ok(_) => Outcome::Accepted,
            Err(error) => refused(error),
        }
    }
}

/// What a TLS error means for the configuration; `None` if it is not a TLS
/// error (reset, closed: availability, not configuration). `client_cert`:
/// whether we presented one.
fn explain(error: &io::Error, name: &str, client_cert: bool) -> Option<String> {
    use tokio_rustls::rustls::Error as Tls;

    let tls = error.get_ref()?.downcast_ref::<Tls>()?;
    Some(match tls {
        Tls::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "etcd's certificate is not signed by the configured CA (ca_file)".into()
        }
        Tls::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "etcd's certificate is not valid for {name:?}; set tls_domain to a name it carries"
        ),
        Tls::InvalidCertificate(other) => format!("etcd's certificate is not acceptable: {other:?}"),
        // Go answers a missing certificate with "bad certificate" (TLS 1.2
        // and 1.3 alike), newer stacks with "certificate required".
        Tls::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::HandshakeFailure,
        ) if !client_cert => {
            "etcd requires a client certificate (it runs with --client-cert-auth): \
             give one with EtcdConfig::client_cert_files (--etcd-cert and --etcd-key in the examples)"
                .into()
        }
        Tls::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::UnsupportedCertificate),
        ) => format!(
            "etcd refused the client certificate ({alert:?}): it must be signed by etcd's --trusted-ca-file"
        ),
        Tls::InvalidMessage(_) => {
            "the endpoint does not speak TLS (plain http:// etcd?)".into()
        }
        other => format!("TLS handshake failed: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_without_certificates_is_a_config_error() {
        let error = TlsProbe::new(b"", None, None, Duration::from_secs(1))
            .err()
            .expect("no CA certificate");
        assert!(matches!(error, Error::Config { .. }), "{error}");
    }
}
