//! What a failed attempt says about its request and its endpoint
//! ([`Failure`]). The balancer writes errors in its logs and messages with
//! the crate's one renderer, [`ErrorChain`](crate::ErrorChain).

use std::error::Error as StdError;

use tonic::ConnectError;

/// What a failed attempt says about its request and its endpoint. Decided by
/// the error's types down its source chain, never by its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// No connection could be made (tonic's [`ConnectError`]: refused, connect
    /// timeout, TLS): nothing was sent, and the endpoint is unreachable.
    Unreachable,
    /// The connection closed while the request waited for it (hyper's
    /// "canceled"): nothing was sent; the next request reconnects.
    NotSent,
    /// Anything else: the request may have reached the server.
    Other,
}

impl Failure {
    pub(super) fn of(error: &(dyn StdError + 'static)) -> Failure {
        let mut source = Some(error);
        while let Some(error) = source {
            if error.is::<ConnectError>() {
                return Failure::Unreachable;
            }
            // hyper's HTTP/2 client cancels only requests that it never handed
            // to the connection.
            if error
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_canceled)
            {
                return Failure::NotSent;
            }
            source = error.source();
        }
        Failure::Other
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::Status;

    use super::*;

    #[derive(Debug)]
    struct Outer(Box<dyn StdError + Send + Sync>);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("outer")
        }
    }

    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn failures_are_classified_down_the_chain() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let connect = Outer(Box::new(ConnectError(Box::new(refused))));
        assert_eq!(Failure::of(&connect), Failure::Unreachable);
        let reset = Outer(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(Failure::of(&reset), Failure::Other);
        assert_eq!(Failure::of(&Status::unavailable("down")), Failure::Other);
    }

    #[test]
    fn a_transparent_wrapper_is_written_once() {
        let refused = std::io::Error::other("connection refused");
        let error = Outer(Box::new(ConnectError(Box::new(refused))));
        assert_eq!(
            crate::ErrorChain(&error).to_string(),
            "outer: connection refused"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_reads_without_repeats() {
        use tower::ServiceExt;

        // Nothing listens on port 1 of the loopback address. A request on a
        // lazy channel fails as the balancer's requests do.
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1")
            .connect_timeout(Duration::from_secs(1))
            .connect_lazy();
        let request = http::Request::builder()
            .uri("http://127.0.0.1:1/helloworld.Greeter/SayHello")
            .body(tonic::body::Body::empty())
            .unwrap();
        let error = channel
            .oneshot(request)
            .await
            .expect_err("nothing listens there");
        assert_eq!(Failure::of(&error), Failure::Unreachable);
        let text = crate::ErrorChain(&error).to_string();
        let parts: Vec<&str> = text.split(": ").collect();
        let mut unique = parts.clone();
        unique.dedup();
        assert_eq!(parts, unique, "no part twice in a row: {text}");
        assert!(text.starts_with("transport error: "), "{text}");
    }
}
