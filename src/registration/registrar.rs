//! [`Registrar`]: the etcd client and the options that [`Registration`]s are
//! made with, and the checks made before anything is written.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;

use super::guard::Registration;
use super::task::Task;
use crate::codec::{resolve_namespace, Codec, Native};
use crate::error::{Error, Result};
use crate::instance::Instance;

/// The largest key plus value accepted, a little under etcd's default request
/// limit of 1.5 MiB (`--max-request-bytes`), leaving room for the request framing.
pub const MAX_ENTRY_BYTES: usize = 1_500_000;

/// Builds [`Registration`]s: the etcd client plus options.
///
/// ```no_run
/// # async fn run() -> tonic_etcd::Result<()> {
/// use std::time::Duration;
/// use tonic_etcd::{Instance, Registrar};
///
/// let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
/// let registration = Registrar::new(etcd)
///     .ttl(Duration::from_secs(10))
///     .register(Instance::new("helloworld", "10.0.0.7:50051")?)
///     .await?;
/// # registration.deregister().await }
/// ```
#[derive(Clone)]
pub struct Registrar {
    client: Client,
    ttl: Duration,
    namespace: Option<String>,
    codec: Arc<dyn Codec>,
    startup_timeout: Duration,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("ttl", &self.ttl)
            .field("namespace", &self.namespace)
            .field("codec", &self.codec.name())
            .field("startup_timeout", &self.startup_timeout)
            .finish_non_exhaustive()
    }
}

impl Registrar {
    /// The TTL used when none is set.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

    /// A registrar that talks to etcd through `client`.
    ///
    /// Connect with [`crate::connect`] (or your own options that set
    /// `require_leader` and HTTP/2 keepalive) so that dead connections are noticed.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            ttl: Self::DEFAULT_TTL,
            namespace: None,
            codec: Arc::new(Native),
            startup_timeout: Duration::ZERO,
        }
    }

    /// Sets the lease TTL, rounded up to whole seconds, at least one second.
    /// Defaults to 10 s.
    ///
    /// A crashed server's key disappears at most this long after its last
    /// keepalive. The keepalive runs every TTL/3.
    ///
    /// ```
    /// # fn f(client: tonic_etcd::etcd_client::Client) {
    /// let registrar = tonic_etcd::Registrar::new(client).ttl(std::time::Duration::from_secs(3));
    /// # }
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the key prefix. Defaults to the codec's own (`/services` for the
    /// native format). A trailing `/` is ignored.
    ///
    /// ```
    /// # fn f(client: tonic_etcd::etcd_client::Client) {
    /// let registrar = tonic_etcd::Registrar::new(client).namespace("/prod/services");
    /// # }
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets the registry layout. Defaults to [`Native`].
    pub fn codec(mut self, codec: impl Codec) -> Self {
        self.codec = Arc::new(codec);
        self
    }

    /// Sets the registry layout from a shared codec. Defaults to [`Native`].
    pub fn codec_arc(mut self, codec: Arc<dyn Codec>) -> Self {
        self.codec = codec;
        self
    }

    /// How long [`register`](Registrar::register) keeps retrying while etcd
    /// cannot be reached. Defaults to zero: the first failure is returned at once
    /// (after about 0.3 s of quick retries of the failed request).
    ///
    /// Attempts follow a jittered backoff from 100 ms to 1 s, the last one at
    /// the deadline; if that fails too, `register` returns the last etcd error.
    /// Each failed attempt is logged (`warn!`).
    ///
    /// ```
    /// # fn f(client: tonic_etcd::etcd_client::Client) {
    /// let registrar = tonic_etcd::Registrar::new(client)
    ///     .startup_timeout(std::time::Duration::from_secs(30));
    /// # }
    /// ```
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// The key `instance` would be registered under.
    pub fn key_of(&self, instance: &Instance) -> Result<String> {
        let namespace = self.resolved_namespace()?;
        Ok(self.codec.key(namespace, instance))
    }

    fn resolved_namespace(&self) -> Result<&str> {
        resolve_namespace(self.codec.as_ref(), self.namespace.as_deref())
    }

    fn ttl_secs(&self) -> Result<i64> {
        if self.ttl.is_zero() {
            return Err(Error::InvalidTtl {
                ttl: self.ttl,
                reason: "must be at least one second",
            });
        }
        let mut secs = self.ttl.as_secs();
        if self.ttl.subsec_nanos() > 0 {
            secs += 1;
        }
        i64::try_from(secs)
            .ok()
            .filter(|s| *s <= 9_000_000_000)
            .ok_or(Error::InvalidTtl {
                ttl: self.ttl,
                reason: "too long for an etcd lease",
            })
    }

    /// Validates `instance`, grants a lease, writes the key with it and starts the
    /// keepalive task. Returns once the key is in etcd.
    ///
    /// Fails with a validation error (bad name, address, weight, namespace, TTL,
    /// or an entry over [`MAX_ENTRY_BYTES`]) before anything is written, or with
    /// the etcd error if etcd cannot be reached (after retrying for
    /// [`startup_timeout`](Registrar::startup_timeout), if set).
    pub async fn register(&self, instance: Instance) -> Result<Registration> {
        instance.validate()?;
        let ttl = self.ttl_secs()?;
        let namespace = self.resolved_namespace()?;
        let key = self.codec.key(namespace, &instance);
        let value = encode_checked(&*self.codec, &key, &instance)?;
        let task = Task::new(
            self.client.clone(),
            key,
            instance,
            value,
            ttl,
            self.codec.clone(),
        );
        Registration::start(task, self.startup_timeout).await
    }
}

/// Encodes `instance` and checks the entry fits in one etcd request.
pub(crate) fn encode_checked(codec: &dyn Codec, key: &str, instance: &Instance) -> Result<Vec<u8>> {
    let value = codec.encode(instance)?;
    let size = key.len() + value.len();
    if size > MAX_ENTRY_BYTES {
        return Err(Error::TooLarge {
            size,
            limit: MAX_ENTRY_BYTES,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn registrar() -> Registrar {
        // A lazy client: nothing is dialled by these tests.
        let client = Client::connect(["http://127.0.0.1:1"], None).await.unwrap();
        Registrar::new(client)
    }

    #[tokio::test]
    async fn ttl_rounds_up_and_refuses_zero() {
        let r = registrar().await;
        assert_eq!(
            r.clone()
                .ttl(Duration::from_millis(1500))
                .ttl_secs()
                .unwrap(),
            2
        );
        assert_eq!(r.clone().ttl(Duration::from_secs(3)).ttl_secs().unwrap(), 3);
        assert!(matches!(
            r.ttl(Duration::ZERO).ttl_secs(),
            Err(Error::InvalidTtl { .. })
        ));
    }

    #[tokio::test]
    async fn namespace_is_validated_and_normalised() {
        let r = registrar().await;
        let i = Instance::new("helloworld", "127.0.0.1:1").unwrap();
        assert_eq!(r.key_of(&i).unwrap(), "/services/helloworld/127.0.0.1:1");
        assert_eq!(
            r.clone().namespace("/x/").key_of(&i).unwrap(),
            "/x/helloworld/127.0.0.1:1"
        );
        assert!(matches!(
            r.namespace("no-slash").key_of(&i),
            Err(Error::InvalidNamespace { .. })
        ));
    }

    #[tokio::test]
    async fn bad_input_fails_before_etcd() {
        let r = registrar().await;
        let i = Instance::new("helloworld", "127.0.0.1:1").unwrap();
        let err = r.register(i.clone().with_weight(0)).await.unwrap_err();
        assert!(matches!(err, Error::InvalidWeight { .. }), "{err}");
        let big = i.with_metadata("blob", "x".repeat(MAX_ENTRY_BYTES));
        let err = r.register(big).await.unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    }
}
