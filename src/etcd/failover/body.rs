//! Bodies that tell a member's [`Liveness`](super::liveness::Liveness) about
//! the traffic: [`Sent`] wraps what goes to the member, [`Heard`] what comes
//! back; [`Once`] is the one-message body of a probe.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use super::Member;

/// A request body: each message sent counts as sent to the member.
pub(super) struct Sent {
    pub(super) inner: tonic::body::Body,
    pub(super) member: Arc<Member>,
}

impl Body for Sent {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if frame.is_data() {
                self.member.sent(Instant::now());
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body: each frame counts as heard from the member; a stream
/// broken on its way, or trailers saying etcd is unavailable there ("no
/// leader"), as failed.
pub(super) struct Heard {
    pub(super) inner: tonic::body::Body,
    pub(super) member: Arc<Member>,
}

impl Body for Heard {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => match frame.trailers_ref() {
                Some(trailers) if unavailable(trailers) => self.member.failed(),
                _ => self.member.heard(),
            },
            Poll::Ready(Some(Err(_))) => self.member.failed(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether gRPC headers or trailers say UNAVAILABLE (14): etcd's "no
/// leader", "leader changed", a member stopping. The member answered, but
/// cannot serve: the next request goes elsewhere.
pub(super) fn unavailable(headers: &HeaderMap) -> bool {
    headers
        .get("grpc-status")
        .is_some_and(|status| status.as_bytes() == b"14")
}

/// A body of one chunk.
pub(super) struct Once(pub(super) Option<Bytes>);

impl Body for Once {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.take().map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_is_grpc_status_14() {
        let mut headers = HeaderMap::new();
        assert!(!unavailable(&headers));
        headers.insert("grpc-status", "0".parse().unwrap());
        assert!(!unavailable(&headers));
        headers.insert("grpc-status", "14".parse().unwrap());
        assert!(unavailable(&headers));
    }
}
