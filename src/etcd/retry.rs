//! Quick retries of single etcd requests that failed on their way.
//!
//! etcd-client balances requests at random over every endpoint it was given,
//! and keeps routing some of them to a member that is down (each fails with a
//! connection error) or that is electing a leader ("leader changed", "no
//! leader"): with one member of three down, about a third of all requests
//! fail this way. Sending such a request again at once usually reaches a
//! healthy member.

use std::future::Future;
use std::time::Duration;

use tracing::debug;

use super::status::{classify, Fault};

/// Pauses between the quick retries of one request: 20, 40, 80, 160 ms.
const QUICK_RETRIES: u32 = 4;
const QUICK_PAUSE: Duration = Duration::from_millis(20);

/// Sends `request` again while it fails with a [transient](Fault::Transient)
/// error, at most four more times within 300 ms, then returns its last result.
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
        match request().await {
            Err(error) if classify(&error) == Fault::Transient => {
                debug!(%error, ?pause, "transient etcd error; sending again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            result => return result,
        }
    }
    request().await
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
}
