//! `watch SERVICE --json` shows an example server coming and its SIGTERM.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::Running;
use crate::support::examples::{Cmd, Server, REGISTER_WITHIN};
use crate::support::{unique, Etcd};

#[tokio::test]
async fn watch_shows_a_server_added_and_its_sigterm() {
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let service = unique("cli-watch");
    let mut watch = Running::spawn(&etcd.endpoint(), &["watch", &service, "--json"]);
    watch.wait_stderr(Duration::from_secs(10), "watching").await;

    let mut server =
        Server::start(Cmd::server().args(["--etcd", &etcd.endpoint(), "--service", &service]));
    let key = format!("/services/{service}/{}", server.addr);
    server.wait_registered(&client, &key, REGISTER_WITHIN).await;
    let is = |event: &'static str, addr: String| {
        move |line: &str| {
            let v: serde_json::Value =
                serde_json::from_str(line).expect("one JSON object per line");
            v["event"] == event && v["addr"] == addr.as_str() && v["id"] == addr.as_str()
        }
    };
    watch
        .wait_line(
            Duration::from_secs(5),
            "added",
            is("added", server.addr.clone()),
        )
        .await;

    server.proc.signal(Signal::SIGTERM);
    watch
        .wait_line(
            Duration::from_secs(10),
            "removed",
            is("removed", server.addr.clone()),
        )
        .await;
    assert!(server
        .proc
        .wait_exit(Duration::from_secs(10))
        .await
        .success());

    // Interrupted, it exits 0.
    watch.signal(Signal::SIGINT);
    assert_eq!(watch.wait_exit(Duration::from_secs(5)).await, Some(0));
}
