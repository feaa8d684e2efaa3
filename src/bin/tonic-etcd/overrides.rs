//! `tonic-etcd drain|undrain SERVICE ID` and `weight SERVICE ID N|--clear`:
//! writes the override key, never the instance's own.

use serde_json::json;
use tonic_etcd::codec::supports_overrides;
use tonic_etcd::overrides::Overrides;

use crate::args::Cli;
use crate::registry::scan;
use crate::{Failure, Outcome};

/// What to change.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Change {
    Drain,
    Undrain,
    Weight(u32),
    ClearWeight,
}

pub(crate) async fn run(
    cli: &Cli,
    service: String,
    id: String,
    force: bool,
    change: Change,
) -> Outcome {
    let codec = cli.codec();
    if !supports_overrides(codec.as_ref()) {
        return Err(Failure::Usage(format!(
            "overrides apply to the native format only, not {} (its Go clients would read an override as an instance)",
            codec.name()
        )));
    }
    let usage = |e: tonic_etcd::Error| Failure::Usage(e.to_string());
    let client = cli.connect().await?;
    let mut overrides = Overrides::new(client.clone());
    if cli.namespace.is_some() {
        overrides = overrides.namespace(cli.namespace()?);
    }
    let key = overrides.key(&service, &id).map_err(usage)?;
    if let Change::Weight(weight) = change {
        if !(tonic_etcd::Instance::MIN_WEIGHT..=tonic_etcd::Instance::MAX_WEIGHT).contains(&weight)
        {
            return Err(Failure::Usage(format!(
                "weight {weight} is not within {}..={}",
                tonic_etcd::Instance::MIN_WEIGHT,
                tonic_etcd::Instance::MAX_WEIGHT
            )));
        }
    }
    if !force {
        let scan = scan(cli, &client, codec.as_ref(), &service).await?;
        if !scan.instances.iter().any(|f| f.instance.id == id) {
            return Err(Failure::Failed(format!(
                "no instance {id:?} registered under {} (--force writes the override anyway)",
                scan.prefix
            )));
        }
    }
    let written = match change {
        Change::Drain => overrides.drain(&service, &id).await?,
        Change::Undrain => overrides.undrain(&service, &id).await?,
        Change::Weight(weight) => overrides.set_weight(&service, &id, weight).await?,
        Change::ClearWeight => overrides.clear_weight(&service, &id).await?,
    };
    if cli.json {
        println!(
            "{}",
            json!({
                "service": service,
                "id": id,
                "key": key,
                "drained": written.drained,
                "weight": written.weight,
            })
        );
    } else {
        let weight = written
            .weight
            .map_or("registered".to_owned(), |w| w.to_string());
        let state = if written.drained {
            "drained"
        } else {
            "in rotation"
        };
        println!("{service}/{id}: {state}, weight {weight} ({key})");
    }
    Ok(())
}
