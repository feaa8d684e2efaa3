//! The TLS, mutual-TLS and user flags (`--etcd-ca`, `--etcd-cert`,
//! `--etcd-key`, `--etcd-user` with `$ETCD_PASSWORD`), and `doctor` naming a
//! prefix the user may not read.

use super::{run, run_with};
use crate::support::balancer::{register, Greeter};
use crate::support::secure::{ClientCerts, SecureEtcd};
use crate::support::unique;

#[tokio::test]
async fn a_limited_user_over_mutual_tls_lists_its_prefix_and_doctor_names_the_one_it_cannot_read() {
    let etcd = SecureEtcd::start(ClientCerts::Required).await;
    let service = unique("cli-secure");
    let users = etcd.enable_auth(&format!("/services/{service}/")).await;
    let root = etcd.client(Some(&users.root_password)).await;
    let greeter = Greeter::start();
    let _registration = register(&root, &service, &greeter, 1).await;

    let pki = etcd.pki();
    let path = |p: &std::path::Path| p.to_str().expect("UTF-8 path").to_owned();
    let (ca, cert, key) = (path(&pki.ca), path(&pki.client.cert), path(&pki.client.key));
    let flags = [
        "--etcd-ca",
        ca.as_str(),
        "--etcd-cert",
        cert.as_str(),
        "--etcd-key",
        key.as_str(),
        "--etcd-user",
        users.limited.as_str(),
    ];
    let env = [("ETCD_PASSWORD", users.limited_password.as_str())];
    let endpoint = etcd.endpoint();
    let with = |args: &[&'static str], extra: &[&str]| -> Vec<String> {
        flags
            .iter()
            .map(|s| s.to_string())
            .chain(args.iter().map(|s| s.to_string()))
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };

    let args = with(&["ls", "--json"], &[&service]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = run_with(&endpoint, &args, &env).await;
    ran.assert_ok();
    let rows = ran.json();
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{ran:?}");
    assert_eq!(rows[0]["addr"], greeter.addr.to_string());

    let args = with(&["doctor"], &[&service]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_with(&endpoint, &args, &env).await.assert_ok();

    // Another service's prefix: not readable by this user.
    let other = unique("cli-secure-other");
    let args = with(&["doctor", "--json"], &[&other]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = run_with(&endpoint, &args, &env).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    let report = ran.json();
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["kind"] == "unreadable" && p["key"] == format!("/services/{other}/")),
        "{report}"
    );

    // --etcd-user without $ETCD_PASSWORD: a usage error.
    let args = with(&["ls"], &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = run(&endpoint, &args).await;
    assert_eq!(ran.code, Some(2), "{ran:?}");
    assert!(ran.stderr.contains("ETCD_PASSWORD"), "{ran:?}");
}
