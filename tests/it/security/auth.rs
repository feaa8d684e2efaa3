//! User/password authentication to etcd: a user whose role covers one
//! service's prefix registers and discovers there and gets a clear permission
//! error elsewhere; a wrong password is a clear error; no password or key
//! appears in logs, errors or `Debug` output.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support;
use crate::support::changes::wait_instances;
use crate::support::secure::chain;
use crate::support::secure::{ClientCerts, SecureEtcd};
use tonic_etcd::{Discovery, EtcdConfig, Instance, Registrar};

#[tokio::test]
async fn the_limited_user_registers_and_discovers_under_its_prefix() {
    support::init_tracing();
    let etcd = SecureEtcd::start(ClientCerts::Required).await;
    let service = support::unique("limited");
    let users = etcd.enable_auth(&format!("/services/{service}/")).await;
    let limited = etcd.config().user(&users.limited, &users.limited_password);

    let registration = Registrar::new(limited.connect().await.unwrap())
        .ttl(Duration::from_secs(2))
        .register(Instance::new(&service, "127.0.0.1:50051").unwrap())
        .await
        .unwrap();
    let discovered = Discovery::new(limited.connect().await.unwrap(), &service)
        .changes()
        .await
        .unwrap();
    let handle = discovered.view();
    assert_eq!(handle.snapshot().len(), 1);

    // The watch, as the limited user, sees what root writes in the prefix.
    let root = etcd.config().user("root", &users.root_password);
    let other = Registrar::new(root.connect().await.unwrap())
        .register(Instance::new(&service, "127.0.0.1:50052").unwrap())
        .await
        .unwrap();
    wait_instances(&handle, 2, Duration::from_secs(10)).await;
    registration.update(|i| i.weight = 5).await.unwrap();
    registration.deregister().await.unwrap();
    other.deregister().await.unwrap();
    wait_instances(&handle, 0, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn the_limited_user_gets_a_clear_permission_error_elsewhere() {
    support::init_tracing();
    let etcd = SecureEtcd::start(ClientCerts::None).await;
    let service = support::unique("mine");
    let users = etcd.enable_auth(&format!("/services/{service}/")).await;
    let client = etcd
        .config()
        .user(&users.limited, &users.limited_password)
        .connect()
        .await
        .unwrap();

    // `{service}x` shares the prefix as a string, not as a service.
    for elsewhere in ["someone-else".to_owned(), format!("{service}x")] {
        let error = Registrar::new(client.clone())
            .register(Instance::new(&elsewhere, "127.0.0.1:50051").unwrap())
            .await
            .expect_err("no write permission outside the prefix");
        let error = chain(&error);
        assert!(error.contains("permission denied"), "{error}");

        let error = Discovery::new(client.clone(), &elsewhere)
            .changes()
            .await
            .expect_err("no read permission outside the prefix");
        let error = chain(&error);
        assert!(error.contains("permission denied"), "{error}");
    }
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error() {
    support::init_tracing();
    let etcd = SecureEtcd::start(ClientCerts::None).await;
    let users = etcd.enable_auth("/services/any/").await;
    let wrong = support::unique("wrong-password");

    for (user, password) in [
        (users.limited.as_str(), wrong.as_str()),
        ("nobody", wrong.as_str()),
    ] {
        let error = etcd
            .config()
            .user(user, password)
            .connect()
            .await
            .err()
            .expect("authentication must fail");
        let text = chain(&error);
        eprintln!("{text}");
        assert!(
            matches!(&error, tonic_etcd::Error::Auth { user: u, .. } if u == user),
            "{error:?}"
        );
        assert!(text.contains("authentication failed"), "{text}");
        assert!(!text.contains(password), "the password leaked: {text}");
        assert!(!format!("{error:?}").contains(password));
    }

    // Without a user, auth-enabled etcd refuses the requests themselves.
    let client = etcd.config().connect().await.unwrap();
    let error = Discovery::new(client, "any")
        .changes()
        .await
        .expect_err("anonymous reads are refused");
    let error = chain(&error);
    assert!(error.contains("user name is empty"), "{error}");
}

/// Whether `text` holds 16 ASCII letters, a dot and a digit: an etcd simple
/// token.
fn looks_like_a_simple_token(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut letters = 0;
    for (i, b) in bytes.iter().enumerate() {
        if b.is_ascii_alphabetic() {
            letters += 1;
            continue;
        }
        if *b == b'.' && letters == 16 && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            let before = i.checked_sub(17).map(|j| bytes[j]);
            if !before.is_some_and(|c| c.is_ascii_alphanumeric()) {
                return true;
            }
        }
        letters = 0;
    }
    false
}

#[test]
fn the_token_pattern_is_recognised() {
    assert!(looks_like_a_simple_token("token=ZgEgJzUvBqWcErUo.12 x"));
    assert!(!looks_like_a_simple_token(
        "tonic_etcd::registration::keepalive.rs"
    ));
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_appear_in_no_log_error_or_debug_output() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // This thread only (the test runtime is single-threaded): the spawned
    // keepalive and watch tasks log here too.
    let _guard = tracing::subscriber::set_default(subscriber);

    let etcd = SecureEtcd::start(ClientCerts::Required).await;
    let service = support::unique("secret");
    let users = etcd.enable_auth(&format!("/services/{service}/")).await;
    let key_pem = std::fs::read_to_string(&etcd.pki().client.key).unwrap();
    let key_body: String = key_pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();

    let config = etcd.config().user(&users.limited, &users.limited_password);
    let inline = EtcdConfig::new([etcd.endpoint()])
        .ca_file(&etcd.pki().ca)
        .client_cert_pem(
            std::fs::read(&etcd.pki().client.cert).unwrap(),
            key_pem.clone(),
        )
        .user(&users.limited, &users.limited_password);
    let mut shown = vec![format!("{config:?}"), format!("{inline:?}")];

    let registrar = Registrar::new(inline.connect().await.unwrap()).ttl(Duration::from_secs(1));
    let registration = registrar
        .register(Instance::new(&service, "127.0.0.1:50051").unwrap())
        .await
        .unwrap();
    let discovery = Discovery::new(config.connect().await.unwrap(), &service);
    shown.push(format!("{registrar:?} {registration:?} {discovery:?}"));
    let discovered = discovery.changes().await.unwrap();
    // A few keepalive rounds, at trace level.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    shown.push(format!("{:?}", discovered.view().snapshot()));
    let wrong = etcd
        .config()
        .user(&users.limited, format!("{}-typo", users.limited_password))
        .connect()
        .await
        .err()
        .unwrap();
    shown.push(format!("{wrong:?} {}", chain(&wrong)));
    registration.deregister().await.unwrap();
    drop(discovered);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("registered"),
        "the capture works: {}",
        &logs[..logs.len().min(2000)]
    );
    // etcd's simple tokens look like `{16 letters}.{index}`.
    assert!(
        !looks_like_a_simple_token(&logs),
        "an auth token appears in the logs"
    );
    shown.push(logs);
    for text in &shown {
        for secret in [
            users.limited_password.as_str(),
            users.root_password.as_str(),
            key_body.as_str(),
            "PRIVATE KEY",
        ] {
            assert!(
                !text.contains(secret),
                "{secret:?} appears in:\n{}",
                &text[..text.len().min(4000)]
            );
        }
    }
}
