//! `tonic-etcd watch SERVICE`: the crate's own discovery, one line per change.

use std::collections::HashMap;

use futures_util::StreamExt;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tonic_etcd::{Change, Discovery, Instance};

use crate::args::Cli;
use crate::{Failure, Outcome};

pub(crate) async fn run(cli: &Cli, service: String) -> Outcome {
    let client = cli.connect().await?;
    let mut discovery = Discovery::new(client, service.as_str()).codec_arc(cli.codec());
    if cli.namespace.is_some() {
        discovery = discovery.namespace(cli.namespace()?);
    }
    let mut changes = discovery.changes().await.map_err(|e| match e {
        e @ (tonic_etcd::Error::InvalidServiceName { .. }
        | tonic_etcd::Error::InvalidNamespace { .. }) => Failure::Usage(e.to_string()),
        e => Failure::from(e),
    })?;
    let view = changes.view();
    // The identities of the stream are keys; keep what each one was.
    let mut by_identity: HashMap<String, Instance> = HashMap::new();
    eprintln!(
        "watching {} ({} instances); Ctrl-C to stop",
        view.prefix(),
        view.snapshot().len()
    );
    let shutdown = tonic_etcd::shutdown_signal();
    tokio::pin!(shutdown);
    // The stream starts with the current set: learn it without printing.
    let mut initial = view.snapshot().len();
    loop {
        let change = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            change = changes.next() => match change {
                Some(change) => change,
                None => return Err(Failure::Failed("discovery ended".into())),
            },
        };
        let (event, instance) = match change {
            Change::Insert(identity, instance) => {
                let event = if by_identity.contains_key(&identity) {
                    "changed"
                } else {
                    "added"
                };
                by_identity.insert(identity, instance.clone());
                if initial > 0 {
                    initial -= 1;
                    continue;
                }
                (event, instance)
            }
            Change::Remove(identity) => {
                let Some(instance) = by_identity.remove(&identity) else {
                    continue;
                };
                ("removed", instance)
            }
        };
        let drained = event == "removed"
            && view
                .registered()
                .iter()
                .any(|r| r.drained && r.instance.id == instance.id);
        let now = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        if cli.json {
            println!(
                "{}",
                json!({
                    "time": now,
                    "event": event,
                    "service": instance.service,
                    "id": instance.id,
                    "addr": instance.addr,
                    "version": instance.version,
                    "weight": instance.weight,
                    "drained": drained,
                })
            );
        } else {
            let note = if drained { " (drained)" } else { "" };
            println!("{now} {event:<7} {} {}{note}", instance.id, instance.addr);
        }
    }
}
