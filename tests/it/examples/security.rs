//! The examples' security flags, driven through the binaries: etcd over TLS
//! with client certificates (`--etcd-ca`, `--etcd-cert`, `--etcd-key`), etcd
//! with users (`--etcd-user` and `$ETCD_PASSWORD`), and TLS between the
//! greeters (`--tls-cert`/`--tls-key`, `--tls-ca`). What works serves 5
//! requests; what is missing or wrong fails fast, with a clear message and a
//! non-zero exit, and no password shows in the output.

use std::time::Duration;

use crate::support;
use crate::support::examples::{
    assert_live_lease, Cmd, Run, Server, CLIENT_WITHIN, REGISTER_WITHIN,
};
use crate::support::secure::{ClientCerts, Pki, SecureEtcd};
use crate::support::Etcd;

/// What "fails fast" means for a process that cannot work.
const FAST: Duration = Duration::from_secs(5);

/// Panics unless `run` failed (non-zero exit) within [`FAST`] and said why:
/// its stderr contains `why`, in plain text (no terminal escape codes, since
/// it is not a terminal).
fn assert_fails_fast(what: &str, run: &Run, why: &str) {
    run.assert_failed();
    assert!(
        run.elapsed < FAST,
        "{what}: took {:?}, not under {FAST:?}\n{run}",
        run.elapsed
    );
    assert!(
        run.stderr.contains(why),
        "{what}: stderr does not say {why:?}\n{run}"
    );
    assert!(
        !run.stderr.contains('\x1b'),
        "{what}: terminal escape codes in redirected stderr\n{run}"
    );
    let error = run.stderr.lines().find(|line| line.contains(why));
    eprintln!(
        "{what}: {} after {:?}: {}",
        run.status,
        run.elapsed,
        error.unwrap_or_default()
    );
}

/// Panics if `secret` shows anywhere in what the process printed.
fn assert_no_secret(what: &str, stdout: &str, stderr: &str, secret: &str) {
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "{what}: the password shows in the output\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}"
    );
}

/// etcd over TLS requiring client certificates: with `--etcd-ca`,
/// `--etcd-cert` and `--etcd-key` the server registers and the client is
/// served; without the certificate both fail fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_to_etcd() {
    let etcd = SecureEtcd::start(ClientCerts::Required).await;
    let pki = etcd.pki();
    let endpoint = etcd.endpoint();
    let client = etcd.client(None).await;
    let service = support::unique("mtls");
    let with_ca = || {
        Cmd::server()
            .args(["--etcd", &endpoint])
            .path("--etcd-ca", &pki.ca)
    };
    let with_cert = |cmd: Cmd| {
        cmd.path("--etcd-cert", &pki.client.cert)
            .path("--etcd-key", &pki.client.key)
    };

    let mut server = Server::start(with_cert(with_ca()).args(["--service", &service]));
    let key = format!("/services/{service}/{}", server.addr);
    let (_, lease) = server.wait_registered(&client, &key, REGISTER_WITHIN).await;
    assert_live_lease(&client, &key, lease).await;

    let run = with_cert(
        Cmd::client()
            .args(["--etcd", &endpoint])
            .path("--etcd-ca", &pki.ca),
    )
    .args(["--service", &service, "--requests", "5"])
    .run(CLIENT_WITHIN)
    .await;
    run.assert_all_ok(5);

    // No client certificate: etcd refuses the handshake.
    let why =
        &format!("error: TLS with etcd at {endpoint} failed: etcd requires a client certificate");
    let listen = format!("127.0.0.1:{}", support::free_port());
    let run = with_ca()
        .args(["--listen", &listen, "--service", &support::unique("nocert")])
        .run(CLIENT_WITHIN)
        .await;
    assert_fails_fast("server without --etcd-cert", &run, why);
    let run = Cmd::client()
        .args(["--etcd", &endpoint])
        .path("--etcd-ca", &pki.ca)
        .args(["--service", &service, "--requests", "2"])
        .run(CLIENT_WITHIN)
        .await;
    assert_fails_fast("client without --etcd-cert", &run, why);
    run.assert_all_failed(2);

    server.stop_gracefully(&client, &key).await;
}

/// etcd with authentication: the user's password in `$ETCD_PASSWORD` lets
/// the server register and the client discover; a wrong or missing password
/// fails fast; the password never shows in the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_authentication_to_etcd() {
    let etcd = SecureEtcd::start(ClientCerts::None).await;
    let pki = etcd.pki();
    let endpoint = etcd.endpoint();
    let service = support::unique("auth");
    let users = etcd.enable_auth(&format!("/services/{service}/")).await;
    let root = etcd.client(Some(&users.root_password)).await;
    // As the user, with debug logs: nothing may print the password.
    let as_user = |cmd: Cmd, password: &str| {
        cmd.args(["--etcd", &endpoint])
            .path("--etcd-ca", &pki.ca)
            .args(["--etcd-user", &users.limited, "--service", &service])
            .env("ETCD_PASSWORD", password)
            .env("RUST_LOG", "debug")
    };

    let mut server = Server::start(as_user(Cmd::server(), &users.limited_password));
    let key = format!("/services/{service}/{}", server.addr);
    let (_, lease) = server.wait_registered(&root, &key, REGISTER_WITHIN).await;
    assert_live_lease(&root, &key, lease).await;

    let run = as_user(Cmd::client(), &users.limited_password)
        .args(["--requests", "5"])
        .run(CLIENT_WITHIN)
        .await;
    run.assert_all_ok(5);
    assert_no_secret("client", &run.stdout, &run.stderr, &users.limited_password);

    // A wrong password: a clear error, at once, and neither password printed.
    let wrong = support::unique("wrong-secret");
    let why = &format!(
        "error: etcd refused to authenticate user {:?}",
        users.limited
    );
    for cmd in [
        Cmd::server().args(["--listen", &format!("127.0.0.1:{}", support::free_port())]),
        Cmd::client().args(["--requests", "2"]),
    ] {
        let run = as_user(cmd, &wrong).run(CLIENT_WITHIN).await;
        assert_fails_fast("wrong password", &run, why);
        assert_no_secret("wrong password", &run.stdout, &run.stderr, &wrong);
        assert_no_secret(
            "wrong password",
            &run.stdout,
            &run.stderr,
            &users.limited_password,
        );
    }

    // No password at all: the examples say where it should be.
    let run = Cmd::client()
        .args(["--etcd", &endpoint])
        .path("--etcd-ca", &pki.ca)
        .args(["--etcd-user", &users.limited, "--service", &service])
        .args(["--requests", "1"])
        .run(CLIENT_WITHIN)
        .await;
    assert_fails_fast(
        "no $ETCD_PASSWORD",
        &run,
        "error: invalid configuration: --etcd-user limited needs the password in $ETCD_PASSWORD",
    );

    server.stop_gracefully(&root, &key).await;
    assert_no_secret(
        "server",
        &server.proc.stdout(),
        &server.proc.stderr(),
        &users.limited_password,
    );
}

/// TLS between the greeters: a server with `--tls-cert`/`--tls-key` serves a
/// client that trusts its CA (`--tls-ca`); a client without `--tls-ca`, or
/// trusting another CA, fails fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_greeters() {
    let etcd = Etcd::start().await;
    let endpoint = etcd.endpoint();
    let client = etcd.client().await;
    let pki = Pki::new();
    let leaf = pki.issue("greeter", &["127.0.0.1"]);
    let service = support::unique("svc-tls");

    let mut server = Server::start(
        Cmd::server()
            .args(["--etcd", &endpoint, "--service", &service])
            .path("--tls-cert", &leaf.cert)
            .path("--tls-key", &leaf.key),
    );
    let key = format!("/services/{service}/{}", server.addr);
    server.wait_registered(&client, &key, REGISTER_WITHIN).await;

    let greeter = || Cmd::client().args(["--etcd", &endpoint, "--service", &service]);
    let run = greeter()
        .path("--tls-ca", &pki.ca)
        .args(["--requests", "5"])
        .run(CLIENT_WITHIN)
        .await;
    run.assert_all_ok(5);
    run.assert_all_from(&server.addr);

    let run = greeter().args(["--requests", "5"]).run(CLIENT_WITHIN).await;
    assert_fails_fast("client without --tls-ca", &run, "request 1: failed");
    run.assert_all_failed(5);

    let other = Pki::new();
    let run = greeter()
        .path("--tls-ca", &other.ca)
        .args(["--requests", "5"])
        .run(CLIENT_WITHIN)
        .await;
    assert_fails_fast(
        "client trusting another CA",
        &run,
        "invalid peer certificate",
    );
    run.assert_all_failed(5);

    server.stop_gracefully(&client, &key).await;
}
