//! etcd's NOSPACE alarm (a member with a tiny `--quota-backend-bytes`,
//! filled up): the registration error and the example server name the alarm
//! and its fix, and a registration with a startup wait keeps retrying and
//! succeeds once an operator has freed space and disarmed the alarm.

use std::time::{Duration, Instant};

use crate::support;
use crate::support::examples::Cmd;
use crate::support::{Etcd, Result};
use tonic_etcd::{Instance, Registrar};

/// Puts 64 KiB values under `filler/` until etcd refuses; returns how many
/// went in.
async fn fill(etcd: &Etcd) -> usize {
    let mut client = etcd.client().await;
    let value = vec![b'x'; 64 * 1024];
    for n in 0..400 {
        match client.put(format!("filler/{n}"), value.clone(), None).await {
            Ok(_) => continue,
            Err(error) => {
                let text = error.to_string();
                assert!(text.contains("space exceeded"), "{text}");
                return n;
            }
        }
    }
    panic!("etcd never ran out of space");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nospace_is_named_with_its_fix_and_registration_retries() -> Result {
    support::init_tracing();
    let etcd = Etcd::start_with(&["--quota-backend-bytes", "2097152"]).await;
    let filled = fill(&etcd).await;
    let service = support::unique("full");
    let instance = Instance::new(&service, "127.0.0.1:9300")?;
    let registrar = Registrar::new(etcd.client().await).ttl(Duration::from_secs(3));

    let error = registrar.register(instance.clone()).await.unwrap_err();
    let remedy = error.remedy().expect("NOSPACE has a remedy");
    assert!(remedy.contains("etcdctl alarm disarm"), "{remedy}");
    assert!(format!("{error:?}").contains("space exceeded"), "{error:?}");

    // The example server says the same, not "is etcd running?".
    let listen = format!("127.0.0.1:{}", support::free_port());
    let run = Cmd::server()
        .args(["--listen", &listen, "--etcd", &etcd.endpoint()])
        .args(["--service", &service, "--ttl", "3"])
        .run(Duration::from_secs(10))
        .await;
    assert!(!run.status.success());
    for part in ["NOSPACE", "defrag", "etcdctl alarm disarm"] {
        assert!(run.stderr.contains(part), "{part}: {}", run.stderr);
    }
    assert!(!run.stderr.contains("is etcd running"), "{}", run.stderr);

    // With a startup wait it keeps trying; the operator frees space.
    let waiting = registrar.clone().startup_timeout(Duration::from_secs(30));
    let pending = tokio::spawn(async move { waiting.register(instance).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!pending.is_finished(), "still retrying");
    let fixed = Instant::now();
    etcd.etcdctl(&["del", "--prefix", "filler/"]);
    let revision = etcd.compact().await;
    etcd.etcdctl(&["defrag"]);
    etcd.etcdctl(&["alarm", "disarm"]);
    let registration = tokio::time::timeout(Duration::from_secs(10), pending).await???;
    eprintln!(
        "NOSPACE after {filled} puts of 64 KiB (quota 2 MiB); registered {:?} after the fix \
         (compacted at {revision}, defragmented, disarmed)",
        fixed.elapsed()
    );
    registration.deregister().await?;
    Ok(())
}
