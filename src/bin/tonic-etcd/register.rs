//! `tonic-etcd register SERVICE ADDR ...`: holds a registration with the
//! crate's Registrar until SIGINT or SIGTERM, then deregisters.

use std::time::Duration;

use serde_json::json;
use tonic_etcd::{Instance, Registrar};

use crate::args::{Cli, Register};
use crate::{Failure, Outcome};

pub(crate) async fn run(cli: &Cli, args: Register) -> Outcome {
    let usage = |e: tonic_etcd::Error| Failure::Usage(e.to_string());
    let mut instance = Instance::new(args.service.as_str(), args.addr.as_str()).map_err(usage)?;
    if let Some(id) = args.id {
        instance = instance.with_id(id);
    }
    if let Some(weight) = args.weight {
        instance = instance.with_weight(weight);
    }
    if let Some(version) = args.version {
        instance = instance.with_version(version);
    }
    for (key, value) in args.metadata {
        instance = instance.with_metadata(key, value);
    }
    instance.validate().map_err(usage)?;
    let client = cli.connect().await?;
    let mut registrar = Registrar::new(client)
        .ttl(Duration::from_secs(args.ttl))
        .codec_arc(cli.codec());
    if cli.namespace.is_some() {
        registrar = registrar.namespace(cli.namespace()?);
    }
    let registration = registrar.register(instance).await.map_err(|e| match e {
        e @ (tonic_etcd::Error::InvalidTtl { .. } | tonic_etcd::Error::InvalidNamespace { .. }) => {
            Failure::Usage(e.to_string())
        }
        e => Failure::from(e),
    })?;
    let key = registration.key().to_owned();
    let lease = registration.lease_id().unwrap_or_default();
    if cli.json {
        println!(
            "{}",
            json!({ "event": "registered", "key": key, "lease": lease })
        );
    } else {
        println!("registered {key} (lease {lease:x}); SIGINT or SIGTERM deregisters");
    }
    tonic_etcd::shutdown_signal().await;
    registration.deregister().await?;
    if cli.json {
        println!("{}", json!({ "event": "deregistered", "key": key }));
    } else {
        println!("deregistered {key}");
    }
    Ok(())
}
