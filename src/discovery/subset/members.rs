//! The clients of a subset: each registers its id under a prefix of the
//! crate's own, with a lease, and watches that prefix to learn its rank.
//!
//! ```text
//! instances:  /services/helloworld/{instance}
//! clients:    /tonic-etcd/subset/services/helloworld/{client id}   value: the id
//! ```
//!
//! The clients' prefix is outside the instances' one, so that no reader of
//! the instances (the crate's other formats, Go clients) ever sees a client.
//! Written here rather than through [`Registrar`](crate::Registrar): a
//! client's key has no address, and it is left to expire rather than revoked
//! when the client goes (see [`MEMBER_TTL`]).

use std::time::Duration;

use etcd_client::{Client, PutOptions};
use tokio::sync::oneshot;
use tokio::time::{sleep, timeout};
use tracing::{debug, info_span, warn, Instrument};

use crate::backoff::Backoff;
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::instance::Instance;

/// The root of the clients' prefixes.
pub(crate) const MEMBERS_ROOT: &str = "/tonic-etcd/subset";

/// The lease of a client's key, in seconds. A client that goes away is not
/// revoked: its key stays until the lease expires, so that a client that
/// exits or restarts does not make every other client move twice.
pub(crate) const MEMBER_TTL: i64 = 10;

/// Deadline of one lease or put request of the keep-alive task.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The prefix of the clients of the instances under `instances_prefix`.
pub(crate) fn members_prefix(instances_prefix: &str) -> String {
    format!(
        "{MEMBERS_ROOT}/{}",
        instances_prefix.trim_start_matches('/')
    )
}

/// Reads a client key as a pseudo-instance whose id is the client id (with
/// no address), so that the discovery machinery watches the
/// clients like it watches the servers.
#[derive(Debug)]
pub(crate) struct MemberCodec {
    pub(crate) prefix: String,
}

impl Codec for MemberCodec {
    fn name(&self) -> &'static str {
        "tonic-etcd-subset-members"
    }

    fn default_namespace(&self) -> &'static str {
        MEMBERS_ROOT
    }

    fn validate_namespace(&self, _namespace: &str) -> Result<()> {
        Ok(())
    }

    fn key(&self, _namespace: &str, instance: &Instance) -> String {
        format!("{}{}", self.prefix, instance.id)
    }

    fn service_prefix(&self, _namespace: &str, _service: &str) -> String {
        self.prefix.clone()
    }

    fn encode(&self, instance: &Instance) -> Result<Vec<u8>> {
        Ok(instance.id.clone().into_bytes())
    }

    fn decode(&self, service: &str, key: &str, _value: &[u8]) -> Result<Instance> {
        let id = key.strip_prefix(&self.prefix).unwrap_or(key);
        Ok(member(service, id))
    }
}

/// A client as a pseudo-instance: its id, no address.
pub(crate) fn member(service: &str, id: &str) -> Instance {
    Instance {
        service: service.to_owned(),
        id: id.to_owned(),
        addr: String::new(),
        version: String::new(),
        weight: Instance::DEFAULT_WEIGHT,
        metadata: Default::default(),
    }
}

/// Keeps a client's key alive while held; dropping it stops the keep-alive
/// and leaves the key to expire.
#[derive(Debug)]
pub(crate) struct MemberLease {
    _stop: oneshot::Sender<()>,
}

/// Writes `key` (value `id`) with a lease of [`MEMBER_TTL`], within `limit`,
/// and keeps it alive in the background, writing it again if the lease is
/// lost.
pub(crate) async fn register(
    client: &Client,
    key: String,
    id: String,
    limit: Duration,
) -> Result<MemberLease> {
    let lease = match timeout(limit, put_with_lease(client, &key, &id)).await {
        Ok(lease) => lease?,
        Err(_) => return Err(Error::Timeout(limit)),
    };
    let (stop, stopped) = oneshot::channel();
    let span = info_span!(parent: None, "subset_member", %key);
    tokio::spawn(keep(client.clone(), key, id, lease, stopped).instrument(span));
    Ok(MemberLease { _stop: stop })
}

async fn put_with_lease(client: &Client, key: &str, id: &str) -> Result<i64> {
    let mut client = client.clone();
    let lease = client.lease_grant(MEMBER_TTL, None).await?.id();
    let options = PutOptions::new().with_lease(lease);
    client.put(key, id, Some(options)).await?;
    Ok(lease)
}

/// Keeps `lease` alive until `stopped`; when it is lost, writes the key again
/// under a new lease, with a backoff.
async fn keep(
    client: Client,
    key: String,
    id: String,
    mut lease: i64,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        let why = tokio::select! {
            _ = &mut stopped => break,
            why = keep_alive(&client, lease) => why,
        };
        warn!(%why, "subset client key lost; writing it again");
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = sleep(backoff.next_delay()) => {}
            }
            let put = tokio::select! {
                _ = &mut stopped => return,
                put = timeout(REQUEST_TIMEOUT, put_with_lease(&client, &key, &id)) => put,
            };
            match put {
                Ok(Ok(new)) => {
                    lease = new;
                    backoff.reset();
                    break;
                }
                Ok(Err(error)) => warn!(%error, "writing the subset client key"),
                Err(_) => warn!("writing the subset client key timed out"),
            }
        }
    }
    debug!("subset client gone; its key expires with its lease");
}

/// Sends keep-alives every third of the TTL; returns why it stopped.
async fn keep_alive(client: &Client, lease: i64) -> String {
    let mut client = client.clone();
    let (mut keeper, mut stream) =
        match timeout(REQUEST_TIMEOUT, client.lease_keep_alive(lease)).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(error)) => return format!("keep-alive: {error}"),
            Err(_) => return "keep-alive timed out".into(),
        };
    let period = Duration::from_secs(MEMBER_TTL as u64) / 3;
    loop {
        if let Err(error) = keeper.keep_alive().await {
            return format!("keep-alive: {error}");
        }
        match timeout(REQUEST_TIMEOUT, stream.message()).await {
            Ok(Ok(Some(response))) if response.ttl() > 0 => {}
            Ok(Ok(Some(_))) => return "lease expired".into(),
            Ok(Ok(None)) => return "keep-alive stream ended".into(),
            Ok(Err(error)) => return format!("keep-alive: {error}"),
            Err(_) => return "keep-alive answer timed out".into(),
        }
        sleep(period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_live_outside_the_instances_prefix() {
        let prefix = members_prefix("/services/helloworld/");
        assert_eq!(prefix, "/tonic-etcd/subset/services/helloworld/");
        assert!(!prefix.starts_with("/services/helloworld/"));
        assert_eq!(
            members_prefix("helloworld/"),
            "/tonic-etcd/subset/helloworld/"
        );
    }

    #[test]
    fn a_client_key_reads_as_its_id() {
        let codec = MemberCodec {
            prefix: members_prefix("/services/helloworld/"),
        };
        let key = "/tonic-etcd/subset/services/helloworld/host-42";
        let member = codec.decode("helloworld", key, b"host-42").unwrap();
        assert_eq!(member.id, "host-42");
        assert_eq!(codec.key("", &member), key);
    }
}
