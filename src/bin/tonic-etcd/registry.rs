//! Reading the registry as an operator sees it: every key under a service's
//! prefix (instances, overrides, what does not decode), with leases, in one
//! Get at one revision; and the services under a namespace.

use std::collections::{BTreeMap, HashMap};

use tonic_etcd::codec::{instance_key_of_override, supports_overrides, Codec, Override};
use tonic_etcd::etcd_client::{Client, GetOptions};
use tonic_etcd::{ErrorChain, Instance};

use crate::args::Cli;
use crate::Failure;

/// One instance key that decoded.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) key: String,
    pub(crate) instance: Instance,
    pub(crate) lease: i64,
}

/// One key under a service's prefix that is neither an instance nor an
/// override that decoded.
#[derive(Debug, Clone)]
pub(crate) struct Bad {
    pub(crate) key: String,
    pub(crate) reason: String,
}

/// One override key, decoded or not.
#[derive(Debug, Clone)]
pub(crate) struct FoundOverride {
    pub(crate) key: String,
    /// The instance key it names.
    pub(crate) target: String,
    pub(crate) value: Result<Override, String>,
}

/// Everything under one service's prefix.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub(crate) prefix: String,
    pub(crate) instances: Vec<Found>,
    pub(crate) bad: Vec<Bad>,
    pub(crate) overrides: Vec<FoundOverride>,
}

impl Scan {
    /// The decoded override of the instance at `key`, if any.
    pub(crate) fn override_of(&self, key: &str) -> Override {
        self.overrides
            .iter()
            .find(|o| o.target == key)
            .and_then(|o| o.value.clone().ok())
            .unwrap_or_default()
    }
}

/// Reads every key under the prefix of `service`.
pub(crate) async fn scan(
    cli: &Cli,
    client: &Client,
    codec: &dyn Codec,
    service: &str,
) -> Result<Scan, Failure> {
    let namespace = cli.namespace()?;
    let prefix = codec.service_prefix(&namespace, service);
    let mut kv = client.kv_client();
    let response = kv
        .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
        .await
        .map_err(|e| Failure::Failed(format!("cannot read {prefix}: {}", chain(e))))?;
    let mut scan = Scan {
        prefix,
        ..Scan::default()
    };
    let overridable = supports_overrides(codec);
    for kv in response.kvs() {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        if overridable {
            if let Some(target) = instance_key_of_override(&key) {
                let value = Override::decode(&key, kv.value()).map_err(|e| e.to_string());
                scan.overrides.push(FoundOverride { key, target, value });
                continue;
            }
        }
        match codec.decode(service, &key, kv.value()) {
            Ok(instance) => scan.instances.push(Found {
                key,
                instance,
                lease: kv.lease(),
            }),
            Err(error) => scan.bad.push(Bad {
                key,
                reason: match error {
                    tonic_etcd::Error::Decode { reason, .. } => reason,
                    other => other.to_string(),
                },
            }),
        }
    }
    Ok(scan)
}

/// The remaining TTL of each lease, in seconds (`None`: expired or unknown).
pub(crate) async fn ttls(
    client: &Client,
    leases: impl IntoIterator<Item = i64>,
) -> HashMap<i64, Option<i64>> {
    let mut client = client.clone();
    let mut ttls = HashMap::new();
    for lease in leases {
        if lease == 0 || ttls.contains_key(&lease) {
            continue;
        }
        let ttl = match client.lease_time_to_live(lease, None).await {
            Ok(response) if response.ttl() >= 0 => Some(response.ttl()),
            _ => None,
        };
        ttls.insert(lease, ttl);
    }
    ttls
}

/// The services under the namespace: the first key segment after it, with
/// the number of instances that decode (0 for one with only bad values).
pub(crate) async fn services(
    cli: &Cli,
    client: &Client,
    codec: &dyn Codec,
) -> Result<BTreeMap<String, usize>, Failure> {
    let namespace = cli.namespace()?;
    let base = if namespace.is_empty() {
        String::new()
    } else {
        format!("{namespace}/")
    };
    let mut kv = client.kv_client();
    let options = if base.is_empty() {
        GetOptions::new().with_all_keys()
    } else {
        GetOptions::new().with_prefix()
    };
    let from = if base.is_empty() { "\0" } else { base.as_str() };
    let response = kv
        .get(from, Some(options))
        .await
        .map_err(|e| Failure::Failed(format!("cannot read {base:?}: {}", chain(e))))?;
    let overridable = supports_overrides(codec);
    let mut services = BTreeMap::new();
    for kv in response.kvs() {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let Some((service, _)) = key[base.len()..].split_once('/') else {
            continue;
        };
        if service.is_empty() {
            continue;
        }
        let count = services.entry(service.to_owned()).or_insert(0);
        if overridable && instance_key_of_override(&key).is_some() {
            continue;
        }
        if codec.decode(service, &key, kv.value()).is_ok() {
            *count += 1;
        }
    }
    Ok(services)
}

/// An etcd error with its causes.
pub(crate) fn chain(error: tonic_etcd::etcd_client::Error) -> String {
    ErrorChain(&tonic_etcd::Error::from(error)).to_string()
}
