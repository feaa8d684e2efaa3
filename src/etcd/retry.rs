//! Quick retries of single etcd requests that failed on their way, or got
//! no answer in time.
//!
//! A request can reach a member that is down (it fails with a connection
//! error), electing a leader ("leader changed", "no leader"), or hung (no
//! answer at all). The crate's channel (`failover`) then moves new requests
//! to another member, so sending the request again at once usually reaches a
//! healthy one. Each attempt has its own deadline, [`ATTEMPT_TIMEOUT`],
//! longer than the channel's patience with a silent member, so that the
//! attempt sent after a timeout goes elsewhere.

use std::future::Future;
use std::time::Duration;

use tracing::debug;

use super::failover::PATIENCE;
use super::status::{classify, Fault};

/// The deadline of one attempt: 1.5 s, half again the channel's patience
/// with a silent member. It also bounds the round trip a registry works
/// over (see the README's slow-link limit).
pub(crate) const ATTEMPT_TIMEOUT: Duration =
    Duration::from_millis(PATIENCE.as_millis() as u64 * 3 / 2);

/// Pauses between the quick retries of one request: 20, 40, 80, 160 ms.
const QUICK_RETRIES: u32 = 4;
const QUICK_PAUSE: Duration = Duration::from_millis(20);

/// Sends `request` again while it fails with a [transient](Fault::Transient)
/// error or is not answered within [`ATTEMPT_TIMEOUT`], at most four more
/// times (pauses of 20 to 160 ms between them), then returns its last
/// result. A timed-out attempt ends as an I/O error ("timed out"), which is
/// transient. The caller bounds the whole.
///
/// Every request sent through this must be idempotent (or, like a lease grant,
/// harmless if repeated).
pub(crate) async fn retry_transient<T, F, Fut>(mut request: F) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let mut pause = QUICK_PAUSE;
    for _ in 0..QUICK_RETRIES {
        match attempt(request()).await {
            Err(error) if classify(&error) == Fault::Transient => {
                debug!(%error, ?pause, "transient etcd error; sending again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            result => return result,
        }
    }
    attempt(request()).await
}

/// One attempt, within [`ATTEMPT_TIMEOUT`].
async fn attempt<T>(
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, etcd_client::Error> {
    match tokio::time::timeout(ATTEMPT_TIMEOUT, request).await {
        Ok(result) => result,
        Err(_) => Err(etcd_client::Error::IoError(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer from etcd within {ATTEMPT_TIMEOUT:?}"),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_a_few_times() {
        use std::cell::Cell;
        let unavailable = || etcd_client::Error::GRpcStatus(tonic::Status::unavailable("down"));
        let calls = Cell::new(0);
        let result = retry_transient(|| {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(unavailable())
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);

        calls.set(0);
        let result: Result<(), _> = retry_transient(|| {
            calls.set(calls.get() + 1);
            async { Err(unavailable()) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.get(), 5, "one try and four retries");

        calls.set(0);
        let result: Result<(), _> = retry_transient(|| {
            calls.set(calls.get() + 1);
            async {
                Err(etcd_client::Error::GRpcStatus(tonic::Status::not_found(
                    "lease",
                )))
            }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.get(), 1, "a definite answer is not retried");
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_without_answer_is_sent_again() {
        use std::cell::Cell;
        let calls = Cell::new(0);
        let result = retry_transient(|| {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n == 1 {
                    std::future::pending::<()>().await;
                }
                Ok::<_, etcd_client::Error>(n)
            }
        })
        .await;
        assert_eq!(result.unwrap(), 2, "the hung attempt was given up");
        assert!(ATTEMPT_TIMEOUT > PATIENCE);
    }
}
