//! The body of a request, lent to each attempt in turn: [`Slot`] holds it
//! until an attempt reads it, [`Lent`] is the body as one attempt sees it.
//!
//! An `http::Request` cannot be cloned, and tonic's channel drops the request
//! when it cannot connect. An attempt that gave up before reading its body
//! leaves it in the slot for the next one.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use http_body::{Frame, SizeHint};
use tonic::body::Body;
use tonic::codegen::Bytes;
use tonic::Status;

/// The body of a request, waiting for the attempt that reads it.
///
/// A body nobody has read does not change, so its end-of-stream flag and
/// size hint are taken once, here, and each attempt answers from them until
/// it takes the body: one lock per request rather than one per question.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    body: Arc<Mutex<Option<Body>>>,
    end_stream: bool,
    size_hint: SizeHint,
}

impl Slot {
    pub(super) fn new(body: Body) -> Self {
        Self {
            end_stream: http_body::Body::is_end_stream(&body),
            size_hint: http_body::Body::size_hint(&body),
            body: Arc::new(Mutex::new(Some(body))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Body>> {
        self.body.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether no attempt has read the body yet.
    pub(super) fn is_full(&self) -> bool {
        self.lock().is_some()
    }

    pub(super) fn lend(&self) -> Lent {
        Lent {
            slot: self.clone(),
            body: None,
        }
    }
}

/// The body as one attempt sees it: taken from the [`Slot`] on the first read.
#[derive(Debug)]
pub(super) struct Lent {
    slot: Slot,
    body: Option<Body>,
}

impl http_body::Body for Lent {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.body.is_none() {
            this.body = this.slot.lock().take();
        }
        match &mut this.body {
            Some(body) => Pin::new(body).poll_frame(cx),
            // Read by an earlier attempt, which cannot be: each attempt only
            // starts once the previous one has given up without reading.
            None => Poll::Ready(Some(Err(Status::internal(
                "request body already taken by another attempt",
            )))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            Some(body) => body.is_end_stream(),
            None => self.slot.end_stream,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.body {
            Some(body) => body.size_hint(),
            None => self.slot.size_hint,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use http_body::Body as _;

    use super::*;

    fn body(text: &'static str) -> Body {
        Body::new(http_body_full(text))
    }

    /// A one-frame body, built from a stream of one chunk.
    fn http_body_full(text: &'static str) -> impl http_body::Body<Data = Bytes, Error = Status> {
        struct Once(Option<Bytes>);
        impl http_body::Body for Once {
            type Data = Bytes;
            type Error = Status;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
                Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
            }
            fn is_end_stream(&self) -> bool {
                self.0.is_none()
            }
            fn size_hint(&self) -> SizeHint {
                SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
        Once(Some(Bytes::from_static(text.as_bytes())))
    }

    async fn read(mut lent: Lent) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(frame) = poll_fn(|cx| Pin::new(&mut lent).poll_frame(cx)).await {
            out.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        out
    }

    #[tokio::test]
    async fn an_unread_body_stays_for_the_next_attempt() {
        let slot = Slot::new(body("hello"));
        let first = slot.lend();
        assert!(!first.is_end_stream());
        assert_eq!(first.size_hint().exact(), Some(5));
        drop(first);
        assert!(slot.is_full(), "dropping an unread attempt keeps the body");
        assert_eq!(read(slot.lend()).await, b"hello");
        assert!(!slot.is_full(), "a read body is gone");
        // A later attempt cannot read what an earlier one took.
        let mut late = slot.lend();
        let frame = poll_fn(|cx| Pin::new(&mut late).poll_frame(cx)).await;
        assert!(matches!(frame, Some(Err(_))));
    }
}
