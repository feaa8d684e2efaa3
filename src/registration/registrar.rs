//! [`Registrar`]: the etcd client and the options that [`Registration`]s are
//! made with.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;

use super::guard::Registration;
use super::limits::{encode_checked, ttl_secs};
use super::task::Task;
use crate::codec::{resolve_namespace, Codec, Native};
use crate::error::Result;
use crate::instance::Instance;

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
    ///
    /// ```no_run
    /// # async fn run() -> tonic_etcd::Result<()> {
    /// let etcd = tonic_etcd::connect(["http://127.0.0.1:2379"]).await?;
    /// let registrar = tonic_etcd::Registrar::new(etcd);
    /// # Ok(()) }
    /// ```
    pub fn new(client: Client) -> Self {
        Self {
            client,
            ttl: Self::DEFAULT_TTL,
            namespace: None,
            codec: Arc::new(Native),
            startup_timeout: Duration::ZERO,
        }
    }

    /// Sets the lease TTL: whole seconds, at least one. Defaults to 10 s.
    ///
    /// A crashed server's key disappears at most this long after its last
    /// keepalive. The keepalive runs every TTL/3.
    ///
    /// etcd grants leases in whole seconds, so [`register`](Registrar::register)
    /// refuses a TTL under one second or with a fraction (`1500ms`) with
    /// [`Error::InvalidTtl`](crate::Error::InvalidTtl), before anything is
    /// written. etcd also raises a TTL below its own minimum (1.5 × its
    /// election timeout, rounded up: 2 s with etcd's default election timeout
    /// of 1 s); `register` then logs a warning naming both TTLs, and the key
    /// outlives a crash by the granted one.
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
    ///
    /// ```
    /// # fn f(client: tonic_etcd::etcd_client::Client) {
    /// use tonic_etcd::codec::Kratos;
    /// let registrar = tonic_etcd::Registrar::new(client).codec(Kratos);
    /// # }
    /// ```
    pub fn codec(mut self, codec: impl Codec) -> Self {
        self.codec = Arc::new(codec);
        self
    }

    /// Sets the registry layout from a shared codec, e.g. one picked by name
    /// with [`codec::by_name`](crate::codec::by_name). Defaults to [`Native`].
    ///
    /// ```
    /// # fn f(client: tonic_etcd::etcd_client::Client) {
    /// let codec = tonic_etcd::codec::by_name("go-zero").expect("a known format");
    /// let registrar = tonic_etcd::Registrar::new(client).codec_arc(codec);
    /// # }
    /// ```
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

    /// The key `instance` would be registered under. Fails only for a bad
    /// [`namespace`](Registrar::namespace).
    ///
    /// ```
    /// # fn f(client: tonic_etcd::etcd_client::Client) -> tonic_etcd::Result<()> {
    /// use tonic_etcd::{Instance, Registrar};
    ///
    /// let instance = Instance::new("helloworld", "10.0.0.7:50051")?;
    /// let key = Registrar::new(client).key_of(&instance)?;
    /// assert_eq!(key, "/services/helloworld/10.0.0.7:50051");
    /// # Ok(()) }
    /// ```
    pub fn key_of(&self, instance: &Instance) -> Result<String> {
        let namespace = self.resolved_namespace()?;
        Ok(self.codec.key(namespace, instance))
    }

    fn resolved_namespace(&self) -> Result<&str> {
        resolve_namespace(self.codec.as_ref(), self.namespace.as_deref())
    }

    /// Validates `instance`, grants a lease, writes the key with it and starts the
    /// keepalive task. Returns once the key is in etcd.
    ///
    /// Fails with a validation error (any that [`Instance::validate`] finds, a
    /// bad namespace or [`ttl`](Registrar::ttl), or an entry over
    /// [`MAX_ENTRY_BYTES`](super::MAX_ENTRY_BYTES)) before anything is
    /// written, or with the etcd error if etcd cannot be reached (after
    /// retrying for [`startup_timeout`](Registrar::startup_timeout), if set).
    ///
    /// Keep the returned guard for as long as the server serves: see
    /// [`Registration`] for what dropping it does, and
    /// [`Registration::deregister_on`] for the graceful stop of a tonic server.
    ///
    /// ```no_run
    /// # async fn run(etcd: tonic_etcd::etcd_client::Client) -> tonic_etcd::Result<()> {
    /// use tonic_etcd::{Instance, Registrar};
    ///
    /// let registration = Registrar::new(etcd)
    ///     .register(Instance::new("helloworld", "10.0.0.7:50051")?.with_weight(3))
    ///     .await?;
    /// assert_eq!(registration.key(), "/services/helloworld/10.0.0.7:50051");
    /// # registration.deregister().await }
    /// ```
    pub async fn register(&self, instance: Instance) -> Result<Registration> {
        instance.validate()?;
        let ttl = ttl_secs(self.ttl)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::registration::MAX_ENTRY_BYTES;

    async fn registrar() -> Registrar {
        // A lazy client: nothing is dialled by these tests.
        let client = Client::connect(["http://127.0.0.1:1"], None).await.unwrap();
        Registrar::new(client)
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
        let err = r.register(i.clone().with_id("a/b")).await.unwrap_err();
        assert!(matches!(err, Error::InvalidId { .. }), "{err}");
        let big = i.clone().with_metadata("blob", "x".repeat(MAX_ENTRY_BYTES));
        let err = r.register(big).await.unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        let err = r
            .ttl(Duration::from_millis(1500))
            .register(i)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidTtl { .. }), "{err}");
        assert!(err.to_string().contains("1.5s"), "{err}");
    }
}
