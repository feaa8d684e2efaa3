//! `tonic-etcd doctor [SERVICE]`: etcd's members, the permission to read the
//! prefix, and the registry: values that do not decode, keys without a
//! lease, duplicate addresses, addresses refusing TCP, overrides naming no
//! instance. One line per problem, naming the key; exit 1 if any.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tonic_etcd::etcd_client::{Client, GetOptions};

use crate::args::Cli;
use crate::registry::{chain, scan, services};
use crate::{Failure, Outcome};

/// How long a member may take to answer its status.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an instance's address may take to accept a TCP connection.
const TCP_TIMEOUT: Duration = Duration::from_millis(500);

/// One problem: the key (or member) it is about, its kind, and what is wrong.
struct Problem {
    key: String,
    kind: &'static str,
    message: String,
}

pub(crate) async fn run(cli: &Cli, service: Option<String>) -> Outcome {
    let client = cli.connect().await?;
    let codec = cli.codec();
    let mut problems = Vec::new();
    let mut members = Vec::new();
    if !check_members(cli, &client, &mut members, &mut problems).await {
        // Nothing else can be checked: the problem is the failure.
        let problem = problems.pop().expect("the member problem");
        return Err(Failure::Failed(format!(
            "{}: {}",
            problem.key, problem.message
        )));
    }

    // May the user read the prefix?
    let namespace = cli.namespace()?;
    let prefix = match &service {
        Some(service) => codec.service_prefix(&namespace, service),
        None if namespace.is_empty() => String::new(),
        None => format!("{namespace}/"),
    };
    let readable = {
        let mut kv = client.kv_client();
        let options = if prefix.is_empty() {
            GetOptions::new()
                .with_all_keys()
                .with_keys_only()
                .with_limit(1)
        } else {
            GetOptions::new()
                .with_prefix()
                .with_keys_only()
                .with_limit(1)
        };
        let from = if prefix.is_empty() {
            "\0"
        } else {
            prefix.as_str()
        };
        kv.get(from, Some(options)).await
    };
    if let Err(error) = readable {
        problems.push(Problem {
            key: prefix.clone(),
            kind: "unreadable",
            message: format!("cannot read the prefix: {}", chain(error)),
        });
    } else {
        let services: Vec<String> = match &service {
            Some(service) => vec![service.clone()],
            None => services(cli, &client, codec.as_ref())
                .await?
                .into_keys()
                .collect(),
        };
        for service in services {
            check_service(cli, &client, &service, &mut problems).await?;
        }
    }
    report(cli, &prefix, &members, &problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::Problems)
    }
}

/// Each member's health, version and leadership; false if etcd cannot be
/// reached at all (the member list fails).
async fn check_members(
    cli: &Cli,
    client: &Client,
    members: &mut Vec<serde_json::Value>,
    problems: &mut Vec<Problem>,
) -> bool {
    let mut cluster = client.clone();
    let list = match timeout(MEMBER_TIMEOUT, cluster.member_list()).await {
        Ok(Ok(list)) => list,
        Ok(Err(error)) => {
            problems.push(Problem {
                key: cli.endpoints.join(","),
                kind: "member",
                message: format!("cannot list the members: {}", chain(error)),
            });
            return false;
        }
        Err(_) => {
            problems.push(Problem {
                key: cli.endpoints.join(","),
                kind: "member",
                message: format!("member list not answered within {MEMBER_TIMEOUT:?}"),
            });
            return false;
        }
    };
    for member in list.members() {
        let name = member.name().to_owned();
        let id = member.id();
        let urls: Vec<String> = member.client_urls().to_vec();
        let status = async {
            let config = cli.config(&urls).map_err(|e| e.to_string())?;
            let mut member_client = config
                .connect()
                .await
                .map_err(|e| tonic_etcd::ErrorChain(&e).to_string())?;
            member_client.status().await.map_err(chain)
        };
        match timeout(MEMBER_TIMEOUT, status).await {
            Ok(Ok(status)) => members.push(json!({
                "name": name,
                "id": format!("{id:x}"),
                "urls": urls,
                "healthy": true,
                "version": status.version(),
                "leader": status.leader() == id,
            })),
            outcome => {
                let error = match outcome {
                    Ok(Err(error)) => error,
                    _ => format!("no status within {MEMBER_TIMEOUT:?}"),
                };
                members.push(json!({
                    "name": name,
                    "id": format!("{id:x}"),
                    "urls": urls,
                    "healthy": false,
                    "error": error,
                }));
                problems.push(Problem {
                    key: format!("member {name} ({id:x}) at {}", urls.join(",")),
                    kind: "member",
                    message: format!("unhealthy: {error}"),
                });
            }
        }
    }
    true
}

/// The problems of one service's keys.
async fn check_service(
    cli: &Cli,
    client: &Client,
    service: &str,
    problems: &mut Vec<Problem>,
) -> Outcome {
    let codec = cli.codec();
    let scan = scan(cli, client, codec.as_ref(), service).await?;
    for bad in &scan.bad {
        problems.push(Problem {
            key: bad.key.clone(),
            kind: "undecodable",
            message: format!("value does not decode as {}: {}", codec.name(), bad.reason),
        });
    }
    let mut by_addr: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for found in &scan.instances {
        if found.lease == 0 {
            problems.push(Problem {
                key: found.key.clone(),
                kind: "no-lease",
                message: "no lease: the key outlives its server".into(),
            });
        }
        by_addr
            .entry(found.instance.addr.as_str())
            .or_default()
            .push(found.key.as_str());
    }
    for (addr, keys) in &by_addr {
        if keys.len() > 1 {
            for key in keys {
                problems.push(Problem {
                    key: (*key).to_owned(),
                    kind: "duplicate-addr",
                    message: format!(
                        "address {addr} registered by {} keys: {}",
                        keys.len(),
                        keys.join(" ")
                    ),
                });
            }
        }
    }
    // Probe every address at once.
    let probes = by_addr.iter().map(|(addr, keys)| async move {
        let outcome = timeout(TCP_TIMEOUT, TcpStream::connect(*addr)).await;
        let error = match outcome {
            Ok(Ok(_)) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some(format!("no answer within {TCP_TIMEOUT:?}")),
        };
        (*addr, keys, error)
    });
    for (addr, keys, error) in futures_util::future::join_all(probes).await {
        if let Some(error) = error {
            for key in keys {
                problems.push(Problem {
                    key: (*key).to_owned(),
                    kind: "unreachable",
                    message: format!("address {addr} refuses TCP connections: {error}"),
                });
            }
        }
    }
    for o in &scan.overrides {
        match &o.value {
            Err(reason) => problems.push(Problem {
                key: o.key.clone(),
                kind: "undecodable",
                message: format!("override does not decode: {reason}"),
            }),
            Ok(_) if !scan.instances.iter().any(|f| f.key == o.target) => problems.push(Problem {
                key: o.key.clone(),
                kind: "orphan-override",
                message: format!(
                    "override names no registered instance ({} is absent)",
                    o.target
                ),
            }),
            Ok(_) => {}
        }
    }
    Ok(())
}

fn report(cli: &Cli, prefix: &str, members: &[serde_json::Value], problems: &[Problem]) {
    if cli.json {
        let problems: Vec<_> = problems
            .iter()
            .map(|p| json!({ "key": p.key, "kind": p.kind, "message": p.message }))
            .collect();
        println!(
            "{}",
            json!({ "prefix": prefix, "members": members, "problems": problems })
        );
        return;
    }
    for member in members {
        let name = member["name"].as_str().unwrap_or_default();
        let id = member["id"].as_str().unwrap_or_default();
        if member["healthy"] == true {
            let leader = if member["leader"] == true {
                ", leader"
            } else {
                ""
            };
            println!(
                "member {name} ({id}): healthy, etcd {}{leader}",
                member["version"].as_str().unwrap_or_default()
            );
        } else {
            println!("member {name} ({id}): unhealthy");
        }
    }
    for p in problems {
        println!("problem: {}: {} [{}]", p.key, p.message, p.kind);
    }
    if problems.is_empty() {
        println!("ok: no problem under {prefix:?}");
    } else {
        println!("{} problem(s) under {prefix:?}", problems.len());
    }
}
