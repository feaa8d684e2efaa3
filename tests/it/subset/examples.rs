//! The outside check of issue 16: ten `helloworld-client --subset 3` with
//! their default client ids (host name and pid) over ten servers each reach
//! exactly 3 servers, together all ten, none more than 5 clients.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::support::examples::{Cmd, Server};
use crate::support::{self, Etcd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_example_clients_with_subset_3_over_ten_servers() {
    support::init_tracing();
    let etcd = Etcd::start().await;
    let client = etcd.client().await;
    let endpoint = etcd.endpoint();
    let service = support::unique("tenclients");
    let mut servers: Vec<Server> = (0..10)
        .map(|_| Server::start(Cmd::server().args(["--etcd", &endpoint, "--service", &service])))
        .collect();
    for server in &mut servers {
        let key = format!("/services/{service}/{}", server.addr);
        server
            .wait_registered(&client, &key, Duration::from_secs(20))
            .await;
    }

    let clients: Vec<_> = (0..10)
        .map(|_| {
            Cmd::client()
                .args(["--etcd", &endpoint, "--service", &service])
                .args(["--subset", "3", "--requests", "30"])
                .spawn()
        })
        .collect();
    let mut reached: Vec<BTreeSet<String>> = Vec::new();
    for mut proc in clients {
        let status = proc.wait_exit(Duration::from_secs(60)).await;
        assert!(status.success(), "client failed\n{}", proc.output());
        let servers: BTreeSet<String> = proc
            .stdout()
            .lines()
            .filter_map(|line| line.rsplit(' ').next())
            .map(str::to_owned)
            .collect();
        assert_eq!(
            servers.len(),
            3,
            "each client reaches exactly 3\n{}",
            proc.output()
        );
        reached.push(servers);
    }
    let mut clients_of = BTreeMap::<String, usize>::new();
    for server in reached.iter().flatten() {
        *clients_of.entry(server.clone()).or_default() += 1;
    }
    eprintln!("clients per server: {clients_of:?}");
    assert_eq!(clients_of.len(), 10, "together they cover all ten");
    assert!(clients_of.values().all(|&n| n <= 5), "{clients_of:?}");
}
