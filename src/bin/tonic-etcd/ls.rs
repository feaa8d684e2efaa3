//! `tonic-etcd ls [SERVICE]`.

use serde_json::json;

use crate::args::Cli;
use crate::registry::{scan, services, ttls};
use crate::{Failure, Outcome};

pub(crate) async fn run(cli: &Cli, service: Option<String>) -> Outcome {
    let client = cli.connect().await?;
    let codec = cli.codec();
    let Some(service) = service else {
        let services = services(cli, &client, codec.as_ref()).await?;
        if cli.json {
            let rows: Vec<_> = services
                .iter()
                .map(|(service, n)| json!({ "service": service, "instances": n }))
                .collect();
            println!("{}", serde_json::Value::Array(rows));
        } else {
            println!("{:<32} INSTANCES", "SERVICE");
            for (service, n) in &services {
                println!("{service:<32} {n}");
            }
        }
        return Ok(());
    };
    tonic_etcd::Instance::new(service.as_str(), "127.0.0.1:1")
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let scan = scan(cli, &client, codec.as_ref(), &service).await?;
    let ttls = ttls(&client, scan.instances.iter().map(|f| f.lease)).await;
    let mut rows = Vec::new();
    for found in &scan.instances {
        let o = scan.override_of(&found.key);
        let i = &found.instance;
        let weight = o.weight.unwrap_or(i.weight);
        let ttl = ttls.get(&found.lease).copied().flatten();
        rows.push(json!({
            "service": i.service,
            "id": i.id,
            "addr": i.addr,
            "version": i.version,
            "weight": weight,
            "registered_weight": i.weight,
            "weight_overridden": o.weight.is_some(),
            "drained": o.drained,
            "metadata": i.metadata,
            "lease": found.lease,
            "ttl_remaining_s": ttl,
            "key": found.key,
        }));
    }
    if cli.json {
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    println!(
        "{:<24} {:<22} {:<10} {:<7} {:<7} {:<17} {:<5} METADATA",
        "ID", "ADDR", "VERSION", "WEIGHT", "DRAINED", "LEASE", "TTL"
    );
    for found in &scan.instances {
        let o = scan.override_of(&found.key);
        let i = &found.instance;
        let weight = match o.weight {
            Some(w) => format!("{w}*"),
            None => i.weight.to_string(),
        };
        let lease = if found.lease == 0 {
            "-".to_owned()
        } else {
            format!("{:x}", found.lease)
        };
        let ttl = match ttls.get(&found.lease).copied().flatten() {
            Some(ttl) => format!("{ttl}s"),
            None => "-".to_owned(),
        };
        let metadata: Vec<String> = i.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{:<24} {:<22} {:<10} {:<7} {:<7} {:<17} {:<5} {}",
            i.id,
            i.addr,
            if i.version.is_empty() {
                "-"
            } else {
                &i.version
            },
            weight,
            if o.drained { "yes" } else { "no" },
            lease,
            ttl,
            metadata.join(",")
        );
    }
    if scan
        .instances
        .iter()
        .any(|f| scan.override_of(&f.key).weight.is_some())
    {
        println!("(* weight overridden)");
    }
    Ok(())
}
