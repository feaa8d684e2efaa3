//! etcd with TLS, client-certificate authentication and user authentication
//! (`support::secure`).
//!
//! - [`Pki`]: a CA made at test time with rcgen and the certificates it signs,
//!   as PEM files in a temporary dir. No key material is committed.
//! - [`SecureEtcd`]: one etcd member serving its clients over TLS, optionally
//!   requiring a client certificate signed by the CA
//!   ([`ClientCerts::Required`]), with extra flags such as `--auth-token-ttl`.
//!   Its health is checked on a plain-HTTP metrics listener.
//! - [`SecureEtcd::enable_auth`]: a root user, a user whose role covers one
//!   prefix only, then `auth enable`.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;

use etcd_client::{Client, Permission};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;
use tonic_etcd::EtcdConfig;

use super::{free_ports, kill_now, spawn_etcd, tail, unique, wait_healthy};

/// A fixture error and its sources, as the examples print them.
pub fn chain(error: &tonic_etcd::Error) -> String {
    tonic_etcd::ErrorChain(error).to_string()
}

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA made at test time, and the files of what it signed.
pub struct Pki {
    dir: TempDir,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// etcd's server certificate: 127.0.0.1 and localhost.
    pub server: Leaf,
    /// A client certificate (CN `tonic-etcd-test-client`, not an etcd user).
    pub client: Leaf,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Pki {
    /// A fresh CA with a server certificate for 127.0.0.1 and localhost and a
    /// client certificate.
    pub fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("tonic-etcd-pki-")
            .tempdir()
            .expect("create a temp dir for certificates");
        let ca_key = KeyPair::generate().expect("generate the CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(
            DnType::CommonName,
            format!("tonic-etcd test CA {}", unique("ca")),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = params.self_signed(&ca_key).expect("self-sign the CA");
        let ca = dir.path().join("ca.pem");
        fs::write(&ca, ca_cert.pem()).expect("write the CA certificate");
        let mut pki = Pki {
            dir,
            ca_cert,
            ca_key,
            ca,
            server: Leaf {
                cert: PathBuf::new(),
                key: PathBuf::new(),
            },
            client: Leaf {
                cert: PathBuf::new(),
                key: PathBuf::new(),
            },
        };
        pki.server = pki.issue("server", &["127.0.0.1", "localhost"]);
        pki.client = pki.issue("tonic-etcd-test-client", &[]);
        pki
    }

    /// A certificate signed by the CA with common name `name` and the subject
    /// alternative names `sans` (IP addresses or DNS names), good for both
    /// server and client authentication. Files `{name}.pem`, `{name}-key.pem`.
    pub fn issue(&self, name: &str, sans: &[&str]) -> Leaf {
        let key = KeyPair::generate().expect("generate a key");
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("certificate params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("sign a certificate");
        let leaf = Leaf {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}-key.pem")),
        };
        fs::write(&leaf.cert, cert.pem()).expect("write a certificate");
        fs::write(&leaf.key, key.serialize_pem()).expect("write a key");
        leaf
    }

    /// The temporary dir holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Whether etcd asks its clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    /// TLS only: `--cert-file`, `--key-file`.
    None,
    /// Mutual TLS: also `--client-cert-auth --trusted-ca-file`.
    Required,
}

/// The users made by [`SecureEtcd::enable_auth`]. Passwords are unique to the
/// test, so that a test can look for them in logs.
#[derive(Debug, Clone)]
pub struct Users {
    pub root_password: String,
    /// A user with read and write access to `prefix` only.
    pub limited: String,
    pub limited_password: String,
    pub prefix: String,
}

/// One etcd member with TLS on its client URL. Killed on drop.
pub struct SecureEtcd {
    pki: Pki,
    certs: ClientCerts,
    extra: Vec<String>,
    client_port: u16,
    peer_port: u16,
    metrics_port: u16,
    token: String,
    child: Option<Child>,
    // Declared last: dropped after the process is killed in `Drop`.
    dir: TempDir,
}

impl std::fmt::Debug for SecureEtcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureEtcd")
            .field("endpoint", &self.endpoint())
            .field("certs", &self.certs)
            .field("extra", &self.extra)
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl SecureEtcd {
    /// Starts a TLS member (with a fresh [`Pki`]) and waits until it is healthy.
    pub async fn start(certs: ClientCerts) -> SecureEtcd {
        Self::start_with(certs, &[]).await
    }

    /// Like [`start`](Self::start), with extra etcd flags.
    pub async fn start_with(certs: ClientCerts, extra: &[&str]) -> SecureEtcd {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        // A free port can be taken by someone else between our probe and
        // etcd's bind; try fresh ports a few times before giving up.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let [client_port, peer_port, metrics_port] = free_ports::<3>();
            let dir = tempfile::Builder::new()
                .prefix("tonic-etcd-secure-")
                .tempdir()
                .expect("create a temp dir for etcd");
            fs::create_dir(dir.path().join("data")).expect("create etcd data dir");
            let mut etcd = SecureEtcd {
                pki: Pki::new(),
                certs,
                extra: extra.clone(),
                client_port,
                peer_port,
                metrics_port,
                token: unique("secure-cluster"),
                child: None,
                dir,
            };
            etcd.spawn();
            match etcd.wait_healthy().await {
                Ok(()) => return etcd,
                Err(error) if attempt < 3 && etcd.log_tail().contains("address already in use") => {
                    eprintln!("secure etcd fixture: {error}; retrying on other ports");
                }
                Err(error) => panic!("{error}"),
            }
        }
    }

    /// The client URL, `https://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    /// The client address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    /// The certificates of this member and its clients.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The configuration a client needs: the endpoint, the CA, and with
    /// [`ClientCerts::Required`] the client certificate. No user.
    pub fn config(&self) -> EtcdConfig {
        let config = EtcdConfig::new([self.endpoint()]).ca_file(&self.pki.ca);
        match self.certs {
            ClientCerts::None => config,
            ClientCerts::Required => {
                config.client_cert_files(&self.pki.client.cert, &self.pki.client.key)
            }
        }
    }

    /// A client without a user (or as root, once auth is enabled, with
    /// `root_password`).
    pub async fn client(&self, root_password: Option<&str>) -> Client {
        let config = match root_password {
            Some(password) => self.config().user("root", password),
            None => self.config(),
        };
        config.connect().await.expect("connect to the secure etcd")
    }

    /// Adds a root user and a user whose role reads and writes `prefix` only,
    /// then enables authentication.
    pub async fn enable_auth(&self, prefix: &str) -> Users {
        let users = Users {
            root_password: unique("root-secret"),
            limited: "limited".to_owned(),
            limited_password: unique("limited-secret"),
            prefix: prefix.to_owned(),
        };
        let mut client = self.client(None).await;
        client
            .user_add("root", users.root_password.as_str(), None)
            .await
            .expect("add the root user");
        client.role_add("root").await.expect("add the root role");
        client
            .user_grant_role("root", "root")
            .await
            .expect("grant root");
        client
            .role_add("limited-role")
            .await
            .expect("add the limited role");
        client
            .role_grant_permission("limited-role", Permission::read_write(prefix).with_prefix())
            .await
            .expect("grant the prefix");
        client
            .user_add(
                users.limited.as_str(),
                users.limited_password.as_str(),
                None,
            )
            .await
            .expect("add the limited user");
        client
            .user_grant_role(users.limited.as_str(), "limited-role")
            .await
            .expect("grant the limited role");
        client.auth_enable().await.expect("enable auth");
        users
    }

    /// Kills the member and starts it again with the same data, ports and
    /// flags; waits until it is healthy. (Simple auth tokens do not survive.)
    pub async fn restart(&mut self) {
        self.kill_now();
        self.spawn();
        if let Err(error) = self.wait_healthy().await {
            panic!("{error}");
        }
    }

    /// The last 4 KiB of the member's log.
    pub fn log_tail(&self) -> String {
        tail(&self.dir.path().join("etcd.log"), 4096)
    }

    fn kill_now(&mut self) {
        kill_now(&mut self.child);
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "etcd already running");
        let client_url = self.endpoint();
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let log = self.dir.path().join("etcd.log");
        let child = spawn_etcd(&log, &self.extra, |command| {
            command
                .args(["--name", "default", "--data-dir"])
                .arg(self.dir.path().join("data"))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .arg("--initial-cluster")
                .arg(format!("default={peer_url}"))
                .args(["--initial-cluster-token", &self.token])
                .args(["--initial-cluster-state", "new"])
                .arg("--listen-metrics-urls")
                .arg(format!("http://127.0.0.1:{}", self.metrics_port))
                .arg("--cert-file")
                .arg(&self.pki.server.cert)
                .arg("--key-file")
                .arg(&self.pki.server.key);
            if self.certs == ClientCerts::Required {
                command
                    .arg("--client-cert-auth")
                    .arg("--trusted-ca-file")
                    .arg(&self.pki.ca);
            }
        });
        self.child = Some(child);
    }

    /// Polls the plain-HTTP metrics listener's `/health` until it is healthy.
    async fn wait_healthy(&mut self) -> Result<(), String> {
        let (endpoint, log) = (self.endpoint(), self.dir.path().join("etcd.log"));
        wait_healthy(
            &mut self.child,
            "secure etcd",
            &endpoint,
            self.metrics_port,
            &log,
        )
        .await
    }
}

impl Drop for SecureEtcd {
    fn drop(&mut self) {
        self.kill_now();
    }
}
