//! [`EtcdConfig`]: how to reach etcd, checked before connecting.
//!
//! (About 480 lines: one builder method per option, each with its example, and
//! the tests. The endpoint checks live in `endpoints.rs`, the TLS handshake
//! check in `probe.rs`.)

use std::fmt;
#[cfg(feature = "tls")]
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use super::failover::Failover;
#[cfg(feature = "tls")]
use super::pem::Pem;
#[cfg(feature = "tls")]
use super::probe;
use super::status::is_auth_refusal;
use super::{connect_options, endpoints};
use crate::error::{Error, Result};

/// How to reach etcd: endpoints, TLS with a CA, mutual TLS, user and
/// password, timeouts. [`connect`](EtcdConfig::connect) makes the client that
/// [`Registrar`](crate::Registrar) and [`Discovery`](crate::Discovery) take.
///
/// ```no_run
/// # async fn run() -> tonic_etcd::Result<()> {
/// use tonic_etcd::EtcdConfig;
///
/// // Plain HTTP, as `tonic_etcd::connect` does:
/// let etcd = EtcdConfig::new(["http://127.0.0.1:2379"]).connect().await?;
///
/// // TLS, client certificate, and a user whose role covers the service's prefix:
/// let password = std::env::var("ETCD_PASSWORD").unwrap_or_default();
/// let etcd = EtcdConfig::new(["https://etcd-0:2379", "https://etcd-1:2379"])
///     .ca_file("/etc/etcd/ca.pem")
///     .client_cert_files("/etc/etcd/client.pem", "/etc/etcd/client-key.pem")
///     .user("greeter", password)
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
///
/// TLS settings need the `tls` feature (on by default). With a CA or a client
/// certificate, every endpoint must be `https://` (or have no scheme);
/// without them, every endpoint must be `http://`.
///
/// With a user, the client authenticates when it connects, and again whenever
/// etcd says its token expired (etcd-client's automatic token refresh).
///
/// The `Debug` output shows the user name and file paths, never the password
/// or key material.
#[derive(Clone)]
pub struct EtcdConfig {
    endpoints: Vec<String>,
    #[cfg(feature = "tls")]
    ca: Option<Pem>,
    #[cfg(feature = "tls")]
    identity: Option<(Pem, Pem)>,
    #[cfg(feature = "tls")]
    domain: Option<String>,
    user: Option<(String, String)>,
    connect_timeout: Duration,
    keep_alive: (Duration, Duration),
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("EtcdConfig");
        s.field("endpoints", &self.endpoints);
        #[cfg(feature = "tls")]
        {
            s.field("ca", &self.ca);
            s.field("client_cert", &self.identity.as_ref().map(|(cert, _)| cert));
            // Pem's Debug is the path, or a byte count for inline PEM.
            s.field("client_key", &self.identity.as_ref().map(|(_, key)| key));
            s.field("tls_domain", &self.domain);
        }
        s.field("user", &self.user.as_ref().map(|(user, _)| user));
        if self.user.is_some() {
            s.field("password", &format_args!("<redacted>"));
        }
        s.field("connect_timeout", &self.connect_timeout)
            .field("keep_alive", &self.keep_alive)
            .finish()
    }
}

impl EtcdConfig {
    /// Connect timeout when none is set.
    ///
    /// ```
    /// assert_eq!(tonic_etcd::EtcdConfig::DEFAULT_CONNECT_TIMEOUT.as_secs(), 2);
    /// ```
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

    /// etcd at `endpoints`, e.g. `["https://10.0.0.1:2379", "https://10.0.0.2:2379"]`,
    /// with the defaults of [`connect_options`](super::connect_options). The
    /// client balances over the endpoints.
    ///
    /// ```
    /// let config = tonic_etcd::EtcdConfig::new(["http://127.0.0.1:2379", "http://127.0.0.1:22379"]);
    /// assert_eq!(config.endpoints().len(), 2);
    /// ```
    pub fn new<I>(endpoints: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            #[cfg(feature = "tls")]
            ca: None,
            #[cfg(feature = "tls")]
            identity: None,
            #[cfg(feature = "tls")]
            domain: None,
            user: None,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            keep_alive: (Duration::from_secs(5), Duration::from_secs(3)),
        }
    }

    /// The endpoints, as given.
    ///
    /// ```
    /// let config = tonic_etcd::EtcdConfig::new(["http://127.0.0.1:2379"]);
    /// assert_eq!(config.endpoints(), ["http://127.0.0.1:2379"]);
    /// ```
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Trusts the CA certificate(s) in the PEM file at `path` to sign etcd's
    /// server certificates. Read by [`connect`](Self::connect). Defaults to
    /// none: plain HTTP.
    ///
    /// ```
    /// let config = tonic_etcd::EtcdConfig::new(["https://127.0.0.1:2379"]).ca_file("ca.pem");
    /// ```
    #[cfg(feature = "tls")]
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca = Some(Pem::File(path.into()));
        self
    }

    /// Like [`ca_file`](Self::ca_file), with the PEM in memory.
    ///
    /// ```no_run
    /// let ca = std::fs::read("/etc/etcd/ca.pem")?;
    /// let config = tonic_etcd::EtcdConfig::new(["https://127.0.0.1:2379"]).ca_pem(ca);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(feature = "tls")]
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca = Some(Pem::Inline(pem.into()));
        self
    }

    /// Presents the client certificate (chain) in the PEM file `cert`, with
    /// the private key in the PEM file `key`, for etcd's
    /// `--client-cert-auth`. Read by [`connect`](Self::connect). Needs a CA
    /// too. Defaults to none.
    ///
    /// ```
    /// let config = tonic_etcd::EtcdConfig::new(["https://127.0.0.1:2379"])
    ///     .ca_file("ca.pem")
    ///     .client_cert_files("client.pem", "client-key.pem");
    /// ```
    #[cfg(feature = "tls")]
    pub fn client_cert_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some((Pem::File(cert.into()), Pem::File(key.into())));
        self
    }

    /// Like [`client_cert_files`](Self::client_cert_files), with the PEM in
    /// memory.
    ///
    /// ```no_run
    /// let (cert, key) = (std::fs::read("client.pem")?, std::fs::read("client-key.pem")?);
    /// let config = tonic_etcd::EtcdConfig::new(["https://127.0.0.1:2379"])
    ///     .ca_file("ca.pem")
    ///     .client_cert_pem(cert, key);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(feature = "tls")]
    pub fn client_cert_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.identity = Some((Pem::Inline(cert.into()), Pem::Inline(key.into())));
        self
    }

    /// The name to check etcd's server certificates against. Defaults to the
    /// host of each endpoint (an IP address must then be among the
    /// certificate's subject alternative names).
    ///
    /// ```
    /// let config = tonic_etcd::EtcdConfig::new(["https://10.0.0.1:2379"])
    ///     .ca_file("ca.pem")
    ///     .tls_domain("etcd.internal");
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls_domain(mut self, name: impl Into<String>) -> Self {
        self.domain = Some(name.into());
        self
    }

    /// Authenticates as `user` with `password` (etcd's `--auth`). Defaults to
    /// none. The password never appears in `Debug` output, logs or errors.
    ///
    /// ```
    /// let password = std::env::var("ETCD_PASSWORD").unwrap_or_default();
    /// let config = tonic_etcd::EtcdConfig::new(["http://127.0.0.1:2379"]).user("greeter", password);
    /// ```
    pub fn user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((user.into(), password.into()));
        self
    }

    /// How long a TCP connect to a member, and then a TLS handshake, may take.
    /// [`connect`](Self::connect) itself gives up after twice this. Defaults
    /// to [`DEFAULT_CONNECT_TIMEOUT`](Self::DEFAULT_CONNECT_TIMEOUT) (2 s).
    ///
    /// ```
    /// let config = tonic_etcd::EtcdConfig::new(["http://127.0.0.1:2379"])
    ///     .connect_timeout(std::time::Duration::from_secs(5));
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// HTTP/2 keepalive: a ping every `interval`, the connection closed if
    /// not answered within `timeout`, also while idle; this is how the
    /// keepalive and watch streams notice a dead connection. Defaults to 5 s
    /// and 3 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = tonic_etcd::EtcdConfig::new(["http://127.0.0.1:2379"])
    ///     .keep_alive(Duration::from_secs(10), Duration::from_secs(5));
    /// ```
    pub fn keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive = (interval, timeout);
        self
    }

    /// The etcd-client options this configuration stands for, with the
    /// certificate files read, for use with [`Client::connect`] directly.
    ///
    /// Fails with [`Error::Config`] for settings that cannot work together,
    /// or [`Error::ReadFile`] for a file that cannot be read. (The returned
    /// options show the password in their `Debug` output.)
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let options = tonic_etcd::EtcdConfig::new(["http://127.0.0.1:2379"]).options()?;
    /// let etcd = etcd_client::Client::connect(["http://127.0.0.1:2379"], Some(options)).await?;
    /// # Ok(()) }
    /// ```
    pub fn options(&self) -> Result<ConnectOptions> {
        Ok(self.prepare()?.0)
    }

    /// Connects: reads the certificate files, checks TLS, and with a user,
    /// authenticates.
    ///
    /// With TLS, each endpoint gets a TLS handshake first, so that a wrong
    /// CA, a certificate that does not fit the endpoint's name, or a client
    /// certificate that etcd refuses or requires fails here, named as such
    /// ([`Error::Tls`]), within the connect timeout. (Through the client, the
    /// last two would only show as "connection closed".) An endpoint that
    /// cannot be reached does not fail the check.
    ///
    /// Without a user the connection is then lazy, as with [`connect`](super::connect): this
    /// succeeds even when etcd is down, and the first request reports the
    /// failure. With a user, etcd must answer now.
    ///
    /// Fails with [`Error::Config`] or [`Error::ReadFile`] as
    /// [`options`](Self::options) does; with [`Error::Tls`] as above; with
    /// [`Error::Auth`] if etcd refuses the user or password; with
    /// [`Error::Resolve`] if no endpoint's host name resolves (one that does
    /// is enough; the others are logged); with
    /// [`Error::Etcd`] if etcd cannot be reached to authenticate; with
    /// [`Error::Timeout`] if authenticating takes more than twice the connect
    /// timeout.
    ///
    /// ```no_run
    /// # async fn run() -> tonic_etcd::Result<()> {
    /// let password = std::env::var("ETCD_PASSWORD").unwrap_or_default();
    /// let etcd = tonic_etcd::EtcdConfig::new(["http://127.0.0.1:2379"])
    ///     .user("greeter", password)
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(&self) -> Result<Client> {
        #[cfg_attr(not(feature = "tls"), allow(unused_variables))]
        let (options, check) = self.prepare()?;
        endpoints::resolve(&self.endpoints, self.connect_timeout).await?;
        #[cfg(feature = "tls")]
        if let Some(check) = check {
            check.check(&self.endpoints).await?;
        }
        let limit = self.connect_timeout * 2;
        let connecting =
            Client::connect_with_balanced_channel(&self.endpoints, Some(options), Failover);
        match tokio::time::timeout(limit, connecting).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(source)) => match &self.user {
                Some((user, _)) if is_auth_refusal(&source) => Err(Error::Auth {
                    user: user.clone(),
                    source,
                }),
                _ => Err(Error::Etcd(source)),
            },
            Err(_) => Err(Error::Timeout(limit)),
        }
    }

    /// The options, and with TLS the handshake check of [`connect`](Self::connect).
    fn prepare(&self) -> Result<(ConnectOptions, Option<Check>)> {
        #[cfg(feature = "tls")]
        if self.identity.is_some() && self.ca.is_none() {
            return Err(Error::Config {
                reason: "an etcd client certificate needs the etcd CA (ca_file) too".into(),
            });
        }
        endpoints::check(&self.endpoints, self.tls())?;
        let mut options = connect_options()
            .with_keep_alive(self.keep_alive.0, self.keep_alive.1)
            .with_connect_timeout(self.connect_timeout);
        if let Some((user, password)) = &self.user {
            // A simple token expires after `--auth-token-ttl` without use, and
            // is valid only on the member that issued it.
            options = options
                .with_user(user, password)
                .with_auto_token_refresh(true);
        }
        #[cfg(feature = "tls")]
        if let Some(ca) = &self.ca {
            use etcd_client::{Certificate, Identity, TlsOptions};

            let ca = ca.load("etcd CA certificate")?;
            let identity = match &self.identity {
                Some((cert, key)) => Some((
                    cert.load("etcd client certificate")?,
                    key.load("etcd client key")?,
                )),
                None => None,
            };
            let check = probe::TlsProbe::new(
                &ca,
                identity
                    .as_ref()
                    .map(|(cert, key)| (cert.as_slice(), key.as_slice())),
                self.domain.clone(),
                self.connect_timeout,
            )?;
            let mut tls = TlsOptions::new()
                .ca_certificate(Certificate::from_pem(ca))
                .timeout(self.connect_timeout);
            if let Some((cert, key)) = identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            if let Some(domain) = &self.domain {
                tls = tls.domain_name(domain.clone());
            }
            return Ok((options.with_tls(tls), Some(check)));
        }
        Ok((options, None))
    }

    fn tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.ca.is_some() || self.identity.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }
}

/// The TLS check of [`EtcdConfig::connect`].
#[cfg(feature = "tls")]
type Check = probe::TlsProbe;
/// Without TLS there is nothing to check.
#[cfg(not(feature = "tls"))]
type Check = std::convert::Infallible;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_password() {
        let config = EtcdConfig::new(["http://127.0.0.1:2379"]).user("greeter", "hunter2");
        let debug = format!("{config:?}");
        assert!(
            debug.contains("greeter") && debug.contains("<redacted>"),
            "{debug}"
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[cfg(feature = "tls")]
    #[test]
    fn debug_shows_no_key_material() {
        let config = EtcdConfig::new(["https://127.0.0.1:2379"])
            .ca_file("/etc/etcd/ca.pem")
            .client_cert_pem(
                "-----BEGIN CERTIFICATE-----",
                "-----BEGIN PRIVATE KEY----- secret",
            );
        let debug = format!("{config:?}");
        assert!(debug.contains("/etc/etcd/ca.pem"), "{debug}");
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn inconsistent_settings_are_refused_before_connecting() {
        let refused = |config: EtcdConfig| match config.options() {
            Err(Error::Config { reason }) => reason,
            other => panic!("expected a config error, got {:?}", other.map(|_| ())),
        };
        assert!(refused(EtcdConfig::new(Vec::<String>::new())).contains("no etcd endpoints"));
        assert!(refused(EtcdConfig::new(["https://127.0.0.1:2379"])).contains("https://"));
        assert!(refused(EtcdConfig::new(["unix:///tmp/etcd"])).contains("scheme"));
        let typo = refused(EtcdConfig::new(["htp://127.0.0.1:2379"]));
        assert!(
            typo.contains("\"htp\"") && typo.contains("use http://"),
            "{typo}"
        );
        assert!(refused(EtcdConfig::new(["http://:2379"])).contains("host:port"));
        #[cfg(feature = "tls")]
        {
            let tls =
                EtcdConfig::new(["http://127.0.0.1:2379"]).ca_pem("-----BEGIN CERTIFICATE-----");
            assert!(refused(tls).contains("plain http://"));
            let no_ca = EtcdConfig::new(["https://127.0.0.1:2379"]).client_cert_pem("", "");
            assert!(refused(no_ca).contains("needs the etcd CA"));
        }
        assert!(EtcdConfig::new(["127.0.0.1:2379", "http://127.0.0.1:2380"])
            .options()
            .is_ok());
    }

    #[tokio::test]
    async fn a_host_that_does_not_resolve_is_named() {
        let error = crate::connect(["http://no-such-host.invalid:2379"])
            .await
            .err()
            .expect("refused");
        assert!(matches!(error, Error::Resolve { .. }), "{error:?}");
        assert!(
            error.to_string().contains("no-such-host.invalid"),
            "{error}"
        );
        // The scheme typo of the first hour, through the plain `connect` too.
        let error = crate::connect(["htp://127.0.0.1:2379"])
            .await
            .err()
            .expect("refused");
        assert!(error.to_string().contains("\"htp\""), "{error}");
    }

    #[cfg(feature = "tls")]
    #[test]
    fn an_unreadable_ca_is_named_in_the_error() {
        let config = EtcdConfig::new(["https://127.0.0.1:2379"]).ca_file("/nonexistent/ca.pem");
        let error = config.options().unwrap_err();
        assert!(
            matches!(
                error,
                Error::ReadFile {
                    what: "etcd CA certificate",
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "cannot read etcd CA certificate from /nonexistent/ca.pem"
        );
    }
}
