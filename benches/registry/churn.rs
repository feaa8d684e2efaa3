//! Row 7: register/deregister churn seen by a watching client.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use etcd_client::GetOptions;
use futures_util::StreamExt;
use tonic_etcd::{Discovery, Instance, Registrar};
use tower::discover::Change;

use crate::common::{ms, quantile, Met, Row};
use crate::instances::addr_of;
use crate::support;

/// Row 7: register/deregister churn with a watching client: event lag and an
/// exact final set.
pub(crate) async fn churn(etcd: &support::Etcd, ops: usize, over: Duration) -> Row {
    let client = etcd.client().await;
    let service = support::unique("churn");
    let mut discovered = Discovery::new(client.clone(), service.as_str())
        .changes()
        .await
        .unwrap();
    let registrar = Registrar::new(client.clone()).ttl(Duration::from_secs(10));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, bool, Instant)>();
    let collector = tokio::spawn(async move {
        let mut pending: HashMap<(String, bool), Instant> = HashMap::new();
        let mut lags = Vec::new();
        let mut seen: Vec<(String, bool, Instant)> = Vec::new();
        loop {
            tokio::select! {
                op = rx.recv() => match op {
                    Some((key, insert, at)) => { pending.insert((key, insert), at); }
                    None => break,
                },
                change = discovered.next() => {
                    let now = Instant::now();
                    let (key, insert) = match change.unwrap() {
                        Change::Insert(k, _) => (k, true),
                        Change::Remove(k) => (k, false),
                    };
                    seen.push((key, insert, now));
                }
            }
            seen.retain(|(key, insert, at)| {
                if let Some(start) = pending.remove(&(key.clone(), *insert)) {
                    lags.push(at.saturating_duration_since(start));
                    false
                } else {
                    true
                }
            });
        }
        // Drain the rest for a short while.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !pending.is_empty() && Instant::now() < deadline {
            if let Ok(Some(change)) =
                tokio::time::timeout(Duration::from_millis(100), discovered.next()).await
            {
                let now = Instant::now();
                let (key, insert) = match change {
                    Change::Insert(k, _) => (k, true),
                    Change::Remove(k) => (k, false),
                };
                if let Some(start) = pending.remove(&(key, insert)) {
                    lags.push(now.saturating_duration_since(start));
                }
            }
        }
        (lags, discovered.snapshot())
    });

    let gap = over / ops as u32;
    let mut live: BTreeMap<usize, tonic_etcd::Registration> = BTreeMap::new();
    let mut next = 0usize;
    let start = Instant::now();
    for op in 0..ops {
        let target = start + gap * op as u32;
        tokio::time::sleep_until(target.into()).await;
        // Alternate: register two, deregister one, so the set grows and shrinks.
        if op % 3 == 2 && !live.is_empty() {
            let (&id, _) = live.iter().next().unwrap();
            let registration = live.remove(&id).unwrap();
            let key = registration.key().to_owned();
            tx.send((key, false, Instant::now())).unwrap();
            registration.deregister().await.unwrap();
        } else {
            let instance = Instance::new(service.as_str(), addr_of(next)).unwrap();
            next += 1;
            let key = registrar.key_of(&instance).unwrap();
            tx.send((key, true, Instant::now())).unwrap();
            live.insert(next, registrar.register(instance).await.unwrap());
        }
    }
    let elapsed = start.elapsed();
    drop(tx);
    let (mut lags, snapshot) = collector.await.unwrap();
    let mut kv = client.clone();
    let etcd_state = kv
        .get(
            format!("/services/{service}/"),
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .unwrap()
        .kvs()
        .len();
    let exact = snapshot.len() == etcd_state && etcd_state == live.len();
    for (_, r) in live {
        r.deregister().await.unwrap();
    }
    let (p50, p99) = (quantile(&mut lags, 0.5), quantile(&mut lags, 0.99));
    Row {
        name: format!(
            "7. churn, {ops} register/deregister in {:.1} s",
            elapsed.as_secs_f64()
        ),
        ours: format!(
            "lag p50 {} / p99 {}; final set {}",
            ms(p50),
            ms(p99),
            if exact { "exact" } else { "WRONG" }
        ),
        baseline: format!("etcd holds {etcd_state} keys, discovery {}", snapshot.len()),
        goal: "p99 ≤ 20 ms, exact final set".into(),
        met: Met::from(exact && p99 <= Duration::from_millis(20)),
        reading:
            "lag from the operation's start to the Change; registration is a lease grant + put"
                .into(),
    }
}
