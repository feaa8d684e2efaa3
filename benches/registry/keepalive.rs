//! Row 8: what idle registrations cost etcd and the process.

use std::time::{Duration, Instant};

use tonic_etcd::{Instance, Registrar};

use crate::common::{Met, Row};
use crate::instances::addr_of;
use crate::support;

async fn metric(etcd: &support::Etcd, name: &str, label: &str) -> f64 {
    let addr = etcd.endpoint().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Row 8: etcd requests per instance and the CPU of idle registrations.
pub(crate) async fn keepalive_cost(etcd: &support::Etcd, n: usize, window: Duration) -> Row {
    let client = etcd.client().await;
    let service = support::unique("idle");
    let ttl = Duration::from_secs(6);
    let registrar = Registrar::new(client).ttl(ttl);
    let mut registrations = Vec::with_capacity(n);
    for i in 0..n {
        registrations.push(
            registrar
                .register(Instance::new(service.as_str(), addr_of(i)).unwrap())
                .await
                .unwrap(),
        );
    }
    // Let the first keepalives settle, then measure a window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let label = "grpc_method=\"LeaseKeepAlive\"";
    let msgs_before = metric(etcd, "grpc_server_msg_received_total", label).await;
    let all_before = metric(etcd, "grpc_server_msg_received_total", "grpc_type").await;
    let cpu_before = cpu_time();
    let t = Instant::now();
    tokio::time::sleep(window).await;
    let wall = t.elapsed();
    let cpu = cpu_time() - cpu_before;
    let msgs = metric(etcd, "grpc_server_msg_received_total", label).await - msgs_before;
    let all = metric(etcd, "grpc_server_msg_received_total", "grpc_type").await - all_before;
    for r in registrations {
        r.deregister().await.unwrap();
    }
    let ttls = wall.as_secs_f64() / ttl.as_secs_f64();
    let per_ttl = all / n as f64 / ttls;
    let per_minute = all / n as f64 * 60.0 / wall.as_secs_f64();
    let core = cpu.as_secs_f64() / wall.as_secs_f64() * 100.0;
    Row {
        name: format!(
            "8. keepalive cost, {n} idle registrations, TTL 6 s, {:.0} s window",
            wall.as_secs_f64()
        ),
        ours: format!(
            "{per_ttl:.2} requests/instance/TTL ({per_minute:.1}/min); CPU {core:.2} % of a core"
        ),
        baseline: format!(
            "{:.0} keepalive messages of {:.0} gRPC messages received by etcd",
            msgs, all
        ),
        goal: "≤ 3 requests/instance/TTL, < 2 % of a core".into(),
        met: Met::from(per_ttl <= 3.0 + 0.05 && core < 2.0),
        reading: "one keepalive message per lease every TTL/3, and nothing else (the watch \
                  of each registration's own key is an idle stream); the keepalives of one \
                  process start on a shared 100 ms grid, so many leases share one wake-up and a \
                  few socket writes; the CPU is the whole harness process's"
            .into(),
    }
}
