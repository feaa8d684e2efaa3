//! Which connection an etcd-client `Client` is: [`connection_of`].
//!
//! etcd-client's `Client` can be cloned but not compared, and its fields are
//! private, so two clients cannot be told apart by looking at them. What a
//! client does say is where its requests go: every request of a client made
//! by [`EtcdConfig::connect`](crate::EtcdConfig::connect) passes through the
//! one [`FailoverChannel`](super::FailoverChannel) made for that connect (its
//! clones share it, and with it the auth token). So `connection_of` asks:
//! it starts a request on this thread with a question armed, and polls it
//! once. etcd-client hands the request to its channel within that first
//! poll; the crate's channel answers the question with its number and
//! sends nothing. Any other channel gets no question it understands; the
//! request is dropped unanswered after its one poll.

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Waker};

use etcd_client::Client;

/// One call of [`EtcdConfig::connect`](crate::EtcdConfig::connect): the
/// clients it returned and their clones, which share one channel and one set
/// of credentials. Numbers are never reused within a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Connection(u64);

impl Connection {
    /// A connection number not given before.
    pub(super) fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

thread_local! {
    /// `Some` while [`connection_of`] polls its request on this thread; the
    /// channel that sees it writes its connection in.
    static ASKING: Cell<Option<Option<Connection>>> = const { Cell::new(None) };
}

/// Called by the crate's channel for each request: true if the request is
/// [`connection_of`]'s question, now answered with `connection`.
pub(super) fn answer(connection: Connection) -> bool {
    ASKING.with(|asking| match asking.get() {
        Some(_) => {
            asking.set(Some(Some(connection)));
            true
        }
        None => false,
    })
}

/// The connection `client` was made by, if the crate made it
/// ([`connect`](crate::connect), [`EtcdConfig::connect`](crate::EtcdConfig::connect));
/// `None` for a client made otherwise (etcd-client's own `Client::connect`).
///
/// Nothing reaches etcd for a client of the crate. For another client the
/// question is a Maintenance `Status` request, dropped after one poll;
/// with etcd-client's own channel none reached etcd (20 of 20 starts,
/// counted by etcd's `grpc_server_started_total`): tonic's buffer skips a
/// request whose caller is gone.
pub(crate) fn connection_of(client: &Client) -> Option<Connection> {
    struct Disarm;
    impl Drop for Disarm {
        fn drop(&mut self) {
            ASKING.with(|asking| asking.set(None));
        }
    }

    let mut maintenance = client.maintenance_client();
    ASKING.with(|asking| asking.set(Some(None)));
    let disarm = Disarm;
    {
        let request = pin!(maintenance.status());
        // A waker that does nothing: the request is polled once and dropped,
        // never woken again.
        let _ = request.poll(&mut Context::from_waker(Waker::noop()));
    }
    let answer = ASKING.with(|asking| asking.get()).flatten();
    drop(disarm);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lazy client of the crate: nothing listens at this address, and
    /// nothing needs to.
    async fn crate_client() -> Client {
        crate::connect(["http://127.0.0.1:9"]).await.unwrap()
    }

    #[tokio::test]
    async fn clones_of_one_connection_are_one_and_two_connects_are_two() {
        let a = crate_client().await;
        let b = crate_client().await;
        let first = connection_of(&a).expect("the crate's client is recognised");
        assert_eq!(connection_of(&a.clone()), Some(first));
        assert_eq!(connection_of(&a), Some(first), "asking twice");
        let second = connection_of(&b).expect("the crate's client is recognised");
        assert_ne!(first, second);
    }

    #[tokio::test]
    async fn a_client_made_by_etcd_client_itself_is_none() {
        let foreign = Client::connect(["http://127.0.0.1:9"], None).await.unwrap();
        assert_eq!(connection_of(&foreign), None);
        // The question is disarmed afterwards: the crate's channel serves
        // requests again.
        assert!(!answer(Connection::new()));
    }

    #[tokio::test]
    async fn asking_costs_microseconds() {
        let client = crate_client().await;
        let started = std::time::Instant::now();
        for _ in 0..1000 {
            assert!(connection_of(&client).is_some());
        }
        let each = started.elapsed() / 1000;
        println!("connection_of: {each:?} per call");
        assert!(each < std::time::Duration::from_millis(1), "{each:?}");
    }
}
