//! Jittered exponential backoff for the retry loops, and quick retries of
//! single etcd requests.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tonic::Code;
use tracing::debug;

/// Delays that double from `base` up to `max`, each drawn uniformly from
/// 50 %..150 % of its nominal value so that many clients do not retry in step.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    attempts: u32,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempts: 0,
        }
    }

    /// How many delays were handed out since the last reset.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    pub(crate) fn reset(&mut self) {
        self.attempts = 0;
    }

    /// The next delay; counts one attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let nominal = self
            .base
            .saturating_mul(1u32 << self.attempts.min(16))
            .min(self.max);
        self.attempts = self.attempts.saturating_add(1);
        nominal.mul_f64(rand::rng().random_range(0.5..1.5))
    }
}

/// Pauses between the quick retries of one request: 20, 40, 80, 160 ms.
const QUICK_RETRIES: u32 = 4;
const QUICK_PAUSE: Duration = Duration::from_millis(20);

/// Whether an etcd request failed without reaching a healthy member, so that
/// sending it again at once is likely to work.
///
/// etcd-client balances requests at random over every endpoint it was given,
/// and keeps routing some of them to a member that is down (each fails with a
/// connection error) or that is electing a leader ("leader changed", "no
/// leader"): with one member of three down, about a third of all requests
/// fail this way.
pub(crate) fn is_transient(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            matches!(status.code(), Code::Unavailable | Code::Unknown)
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// Sends `request` again while it fails with a [transient](is_transient) error,
/// at most four more times within 300 ms, then returns its last result.
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
            Err(error) if is_transient(&error) => {
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

    #[test]
    fn doubles_within_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for nominal in [100u64, 200, 400, 800, 1000, 1000, 1000] {
            let d = b.next_delay();
            let n = Duration::from_millis(nominal);
            assert!(d >= n.mul_f64(0.5) && d <= n.mul_f64(1.5), "{d:?} vs {n:?}");
        }
        assert_eq!(b.attempts(), 7);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(150));
    }

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
