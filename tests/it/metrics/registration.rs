//! A server's `tonic_etcd_registration_up`: 1 while registered, 0 while etcd
//! is down, 1 again once it is back, with the lost lease and the
//! re-registration counted.

use std::time::Duration;

use crate::support;
use crate::support::scrape::wait_samples;
use crate::support::Etcd;

use super::server;

const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_up_is_1_when_registered_and_0_while_etcd_is_down() {
    let mut etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let service = support::unique("metrics-up");
    let (mut server, metrics) = server(&endpoint, &service, &["--ttl", "2"]);
    let key = format!("/services/{service}/{}", server.addr);
    server
        .wait_registered(&etcd.client().await, &key, WITHIN)
        .await;
    let labels = [("service", service.as_str()), ("id", server.addr.as_str())];
    let up = |value: f64| {
        move |s: &support::scrape::Samples| {
            s.value("tonic_etcd_registration_up", &labels) == Some(value)
        }
    };
    let first = wait_samples(metrics, WITHIN, "up = 1", up(1.0)).await;
    assert_eq!(
        first.value("tonic_etcd_registration_reregistrations_total", &labels),
        Some(0.0),
        "the first registration is not a re-registration (its counters show as 0)"
    );
    assert_eq!(
        first.value("tonic_etcd_registration_keepalive_failures_total", &labels),
        Some(0.0)
    );

    etcd.stop().await;
    wait_samples(metrics, WITHIN, "up = 0 while etcd is down", up(0.0)).await;
    assert!(server.proc.running(), "{}", server.proc.output());

    etcd.restart().await;
    let back = wait_samples(metrics, WITHIN, "up = 1 after etcd is back", up(1.0)).await;
    assert_eq!(
        back.value("tonic_etcd_registration_reregistrations_total", &labels),
        Some(1.0)
    );
    assert_eq!(
        back.value("tonic_etcd_registration_keepalive_failures_total", &labels),
        Some(1.0)
    );
}
