//! Against real tonic servers in this process: `tonic-health`'s reporter and
//! service, or a server without the health service.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic_health::server::{health_reporter, HealthReporter};
use tonic_health::ServingStatus;

use super::watch;

/// A server on its own thread and runtime, so that stopping it closes the
/// listener and every connection at once (as a killed process does).
struct TestServer {
    addr: SocketAddr,
    stop: Option<(
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    )>,
}

impl TestServer {
    /// Serves `grpc.health.v1` from a fresh reporter (on `addr`, port 0 for a
    /// free one), or nothing at all when `with_health` is false.
    fn start(addr: SocketAddr, with_health: bool) -> (TestServer, HealthReporter) {
        let (reporter, health) = health_reporter();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                let listener = loop {
                    match tokio::net::TcpListener::bind(addr).await {
                        Ok(listener) => break listener,
                        Err(error) if std::time::Instant::now() < deadline => {
                            eprintln!("bind {addr}: {error}; retrying");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(error) => panic!("bind {addr}: {error}"),
                    }
                };
                bound_tx.send(listener.local_addr().unwrap()).unwrap();
                let incoming = TcpIncoming::from(listener);
                let mut routes = Routes::default();
                if with_health {
                    routes = routes.add_service(health);
                }
                let serve = Server::builder()
                    .add_routes(routes)
                    .serve_with_incoming(incoming);
                tokio::select! {
                    _ = stop_rx => {}
                    result = serve => result.unwrap(),
                }
            });
        });
        let addr = bound_rx.recv().expect("server bound");
        let server = TestServer {
            addr,
            stop: Some((stop_tx, thread)),
        };
        (server, reporter)
    }

    fn stop(&mut self) {
        if let Some((stop, thread)) = self.stop.take() {
            let _ = stop.send(());
            thread.join().expect("server thread");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Starts `watch` for `service` on `addr`; its reports arrive on the receiver.
fn watching(
    addr: SocketAddr,
    service: &str,
) -> (tokio::task::JoinHandle<()>, mpsc::UnboundedReceiver<bool>) {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .connect_lazy();
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(watch(channel, service.to_owned(), move |healthy| {
        let _ = tx.send(healthy);
    }));
    (task, rx)
}

/// The next report, 10 s at most.
async fn next(reports: &mut mpsc::UnboundedReceiver<bool>) -> bool {
    tokio::time::timeout(Duration::from_secs(10), reports.recv())
        .await
        .expect("a report within 10 s")
        .expect("the watch is running")
}

#[tokio::test]
async fn serving_is_healthy_and_not_serving_is_not() {
    let (server, reporter) = TestServer::start(any_port(), true);
    reporter
        .set_service_status("svc.A", ServingStatus::Serving)
        .await;
    let (task, mut reports) = watching(server.addr, "svc.A");
    assert!(next(&mut reports).await, "SERVING reports healthy");

    reporter
        .set_service_status("svc.A", ServingStatus::NotServing)
        .await;
    assert!(!next(&mut reports).await, "NOT_SERVING reports unhealthy");

    reporter
        .set_service_status("svc.A", ServingStatus::Serving)
        .await;
    assert!(next(&mut reports).await, "SERVING again reports healthy");
    task.abort();
}

#[tokio::test]
async fn repeats_are_not_reported() {
    let (server, reporter) = TestServer::start(any_port(), true);
    let (task, mut reports) = watching(server.addr, "");
    assert!(next(&mut reports).await);
    // The same status again (tonic-health streams every send), then a change:
    // the change is the next report.
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    assert!(!next(&mut reports).await, "the repeat was not reported");
    task.abort();
}

#[tokio::test]
async fn an_unknown_service_is_unhealthy_until_it_serves() {
    let (server, reporter) = TestServer::start(any_port(), true);
    let (task, mut reports) = watching(server.addr, "svc.Unknown");
    assert!(!next(&mut reports).await, "an unknown service is unhealthy");
    // Registered later: the retry finds it.
    reporter
        .set_service_status("svc.Unknown", ServingStatus::Serving)
        .await;
    assert!(next(&mut reports).await, "found once it is registered");
    task.abort();
}

#[tokio::test]
async fn a_server_without_health_service_counts_as_healthy_once() {
    let (server, _reporter) = TestServer::start(any_port(), false);
    let (task, mut reports) = watching(server.addr, "");
    assert!(next(&mut reports).await, "UNIMPLEMENTED counts as healthy");
    // Re-checked only every UNIMPLEMENTED_RECHECK: nothing more in the meantime.
    let more = tokio::time::timeout(Duration::from_millis(500), reports.recv()).await;
    assert!(more.is_err(), "one report only, got {more:?}");
    task.abort();
}

#[tokio::test]
async fn a_restarted_server_is_watched_again_without_a_report_in_between() {
    let (mut server, _reporter) = TestServer::start(any_port(), true);
    let addr = server.addr;
    let (task, mut reports) = watching(addr, "");
    assert!(next(&mut reports).await);

    server.stop();
    // Back on the same port, now NOT_SERVING: the retried stream sees it, and
    // the outage in between was not reported (the next report is this one).
    let (_server, reporter) = TestServer::start(addr, true);
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    assert!(
        !next(&mut reports).await,
        "the retried stream reports NOT_SERVING"
    );
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    assert!(next(&mut reports).await);
    task.abort();
}
