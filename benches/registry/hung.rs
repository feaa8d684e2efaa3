//! Row 9: the share of time every key is present while one of three
//! endpoints is black-holed for 3 × TTL.

use std::time::{Duration, Instant};

use etcd_client::Client;
use tonic_etcd::{Instance, Registrar};

use crate::common::{Met, Row};
use crate::instances::addr_of;
use crate::support;
use crate::support::proxy::Proxy;

const TTL: Duration = Duration::from_secs(3);

/// Registers `n` instances through clients made by `connect` (each given
/// the three proxies in a rotated order), black-holes the first proxy for
/// 3 × TTL, and samples every 20 ms whether every key is in etcd. Returns
/// (samples with every key, samples).
async fn share<F, Fut>(etcd: &support::Etcd, n: usize, connect: F) -> (u64, u64)
where
    F: Fn(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Client>,
{
    let proxies = [
        Proxy::start(etcd.addr()).await,
        Proxy::start(etcd.addr()).await,
        Proxy::start(etcd.addr()).await,
    ];
    let service = support::unique("hungbench");
    let mut registrations = Vec::with_capacity(n);
    for i in 0..n {
        let mut endpoints: Vec<String> = proxies.iter().map(Proxy::endpoint).collect();
        endpoints.rotate_left(i % 3);
        let registrar = Registrar::new(connect(endpoints).await).ttl(TTL);
        let instance = Instance::new(service.as_str(), addr_of(i)).unwrap();
        registrations.push(registrar.register(instance).await.unwrap());
    }
    let keys: Vec<String> = registrations.iter().map(|r| r.key().to_owned()).collect();
    let mut direct = etcd.client().await;
    let prefix = format!("/services/{service}/");
    let options = etcd_client::GetOptions::new()
        .with_prefix()
        .with_keys_only();
    proxies[0].blackhole();
    let start = Instant::now();
    let (mut all, mut samples) = (0, 0);
    while start.elapsed() < TTL * 3 {
        if let Ok(found) = direct.get(prefix.as_str(), Some(options.clone())).await {
            samples += 1;
            let present = found.kvs().len();
            if present == keys.len() {
                all += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxies[0].pass();
    for r in registrations {
        let _ = r.deregister().await;
    }
    (all, samples)
}

/// Row 9: with the crate's channel (`tonic_etcd::connect`) and, as the
/// baseline, etcd-client's own balanced channel with the same options.
pub(crate) async fn hung_endpoint(etcd: &support::Etcd, n: usize) -> Row {
    let (ours, ours_samples) = share(etcd, n, |endpoints| async move {
        tonic_etcd::connect(endpoints).await.unwrap()
    })
    .await;
    let (base, base_samples) = share(etcd, n, |endpoints| async move {
        Client::connect(endpoints, Some(tonic_etcd::connect_options()))
            .await
            .unwrap()
    })
    .await;
    let pct = |a: u64, b: u64| a as f64 * 100.0 / b.max(1) as f64;
    Row {
        name: format!(
            "9. every key present, {n} registrations (TTL 3 s) over 3 endpoints, one black-holed for 9 s"
        ),
        ours: format!(
            "{:.1} % of {ours_samples} samples",
            pct(ours, ours_samples)
        ),
        baseline: format!(
            "etcd-client's balanced channel (same options, same task): {:.1} % of {base_samples} samples",
            pct(base, base_samples)
        ),
        goal: "100 %".into(),
        met: Met::from(ours == ours_samples && ours_samples > 0),
        reading: "the three endpoints are proxies to one etcd; each registration's client lists \
                  them in a rotated order, so a third pin the black-holed one first. The crate's \
                  channel moves requests off a member silent for 1 s, and a keepalive unanswered \
                  for TTL/2 reopens the streams on the same lease elsewhere"
            .into(),
    }
}
