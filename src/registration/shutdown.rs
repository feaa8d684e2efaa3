//! Graceful shutdown of a registered tonic server: [`shutdown_signal`] and
//! [`Registration::deregister_on`].

use std::future::Future;
use std::time::Duration;

use tracing::{error, info, warn};

use super::guard::{deregister, Registration};
use crate::error::ErrorChain;

/// Resolves when the process is asked to stop: on SIGTERM or SIGINT on Unix,
/// on Ctrl-C elsewhere. Made for
/// [`Registration::deregister_on`] and tonic's `serve_with_shutdown`.
///
/// The signal handlers are installed when the future is first polled; from
/// then on these signals no longer end the process by themselves. If they
/// cannot be installed (no tokio runtime with I/O enabled), this logs an
/// error and never resolves.
///
/// ```no_run
/// # async fn run() {
/// tonic_etcd::shutdown_signal().await;
/// println!("stopping");
/// # }
/// ```
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut terminate), Ok(mut interrupt)) => tokio::select! {
                _ = terminate.recv() => info!("SIGTERM received"),
                _ = interrupt.recv() => info!("SIGINT received"),
            },
            (Err(error), _) | (_, Err(error)) => {
                error!(%error, "cannot listen for SIGTERM and SIGINT; no graceful shutdown");
                std::future::pending::<()>().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        match tokio::signal::ctrl_c().await {
            Ok(()) => info!("Ctrl-C received"),
            Err(error) => {
                error!(%error, "cannot listen for Ctrl-C; no graceful shutdown");
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Registration {
    /// A shutdown future for tonic's `serve_with_shutdown` that loses no
    /// request, and leaves this guard usable while the server serves.
    ///
    /// It waits for `signal` (e.g. [`shutdown_signal`]), then:
    ///
    /// 1. deregisters, as [`deregister`](Registration::deregister) does: stops
    ///    the keepalive task, deletes the key if it is still ours, revokes the
    ///    lease; clients stop choosing this server;
    /// 2. logs how that went, and waits `drain` while still serving, long
    ///    enough for every client to see the removal (a watch event takes
    ///    milliseconds; allow for slow clients);
    /// 3. resolves, and tonic stops accepting connections and finishes the
    ///    requests in flight.
    ///
    /// Until the signal, [`update`](Registration::update) and
    /// [`state`](Registration::state) work as usual. Afterwards
    /// [`deregister`](Registration::deregister) has nothing left to do and
    /// returns `Ok`. The future does not keep the registration alive: if the
    /// guard is dropped first, the signal only starts the drain.
    ///
    /// ```no_run
    /// # async fn run(registration: tonic_etcd::Registration) -> tonic_etcd::Result<()> {
    /// use std::time::Duration;
    /// use tonic_etcd::shutdown_signal;
    ///
    /// let shutdown = registration.deregister_on(shutdown_signal(), Duration::from_secs(1));
    /// // Server::builder().add_service(..).serve_with_shutdown(addr, shutdown).await?;
    /// # shutdown.await;
    /// registration.deregister().await // Ok: done already
    /// # }
    /// ```
    pub fn deregister_on<F>(
        &self,
        signal: F,
        drain: Duration,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // Weak: the guard alone keeps the task running, so dropping it still
        // ends the registration while this future waits.
        let commands = self.commands.downgrade();
        let key = self.key.clone();
        async move {
            signal.await;
            match commands.upgrade() {
                Some(commands) => match deregister(&commands).await {
                    Ok(()) => info!(%key, ?drain, "deregistered on signal; draining"),
                    Err(error) => warn!(
                        %key,
                        error = %ErrorChain(&error),
                        ?drain,
                        "deregistration on signal incomplete, the key expires with its lease; draining"
                    ),
                },
                None => info!(%key, ?drain, "registration ended before the signal; draining"),
            }
            tokio::time::sleep(drain).await;
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::pin::pin;
    use std::task::Poll;

    use futures_util::poll;
    use nix::sys::signal::{raise, Signal};

    use super::*;

    #[tokio::test]
    async fn shutdown_signal_resolves_on_sigterm_and_on_sigint() {
        for signal in [Signal::SIGTERM, Signal::SIGINT] {
            let mut stop = pin!(shutdown_signal());
            // The first poll installs the handlers.
            assert_eq!(poll!(&mut stop), Poll::Pending);
            raise(signal).unwrap();
            tokio::time::timeout(Duration::from_secs(5), stop)
                .await
                .unwrap_or_else(|_| panic!("{signal} did not resolve shutdown_signal"));
        }
    }
}
