//! One request through the balancer: pick, send, and on a connection that
//! could not be made, eject the endpoint and send again elsewhere.
//!
//! The body is lent to each attempt through a shared slot (see `body`): the
//! attempt takes it out on its first read. When an attempt fails before
//! anything was sent (see `failure`) and the body is still in the slot, the
//! request's head (copied, see `head`) and the body make the same request
//! again: on another endpoint if no connection could be made (the endpoint is
//! ejected), on the same one first if its connection had just closed (the
//! channel opens a new one). Each connection of an endpoint gets at most one
//! attempt per request, plus that one reopening; an endpoint that comes back
//! from an ejection has a new one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::Extensions;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::transport::Channel;
use tonic::Status;
use tower::{Service, ServiceExt};
use tracing::{debug, debug_span, Instrument, Span};

use super::body::Slot;
use super::failure::Failure;
use super::head::Head;
use super::outcome::{Outcome, Pending};
use super::pick::{Flight, Pick};
use super::shared::Shared;
use super::target::Target;
use crate::error::ErrorChain;

/// The error of a balancer's requests.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

type Response = Result<http::Response<Body>, BoxError>;
type ChannelFuture = <Channel as Service<http::Request<Body>>>::Future;

/// One request through the balancer, from its first attempt to its response.
///
/// The first attempt runs inline, without boxing a future: that is the path of
/// nearly every request. A request that
/// must be sent again, or must wait for an endpoint, continues in a boxed
/// [`retry`] loop.
pub(super) struct Call {
    state: State,
}

// The first attempt is the large variant on purpose: boxing it would cost
// every request an allocation.
#[allow(clippy::large_enum_variant)]
enum State {
    /// The first attempt, on its way to the endpoint's channel or waiting for
    /// its response.
    First(First),
    /// Sent again, or waiting for an endpoint.
    Retrying(Pin<Box<dyn Future<Output = Response> + Send>>),
    /// Failed before any attempt.
    Failed(Option<BoxError>),
}

struct First {
    shared: Arc<Shared>,
    target: Arc<Target>,
    /// The request's head for another attempt.
    head: Head,
    slot: Slot,
    attempt: Attempt,
    /// The attempt's outcome, to be reported (see `outcome`).
    pending: Option<Pending>,
    /// The attempt in the balancer's count in flight, with `pending`.
    flight: Option<Flight>,
    /// What the picks of this request go by (its hashed key).
    pick: Pick,
    /// The request's span, naming its endpoint (debug level).
    span: Span,
    /// The attempt's metrics (see `observe`).
    observed: crate::observe::Attempt,
    /// Until when the request may wait for an endpoint, counted from its
    /// start; `None` without a wait.
    deadline: Option<Instant>,
}

// Waiting is the large variant on purpose, as in `State`.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    /// The request, until the channel has room for it.
    Waiting(Channel, http::Request<Body>),
    /// The channel's response, once it has the request.
    Sent(ChannelFuture),
    /// Between the two.
    Moving,
}

impl Call {
    /// Starts `request` towards an endpoint picked by the policy; see the
    /// module docs.
    pub(super) fn start(shared: Arc<Shared>, request: http::Request<Body>) -> Call {
        // Only a request that may wait for an endpoint reads the clock.
        let deadline = (!shared.wait().is_zero()).then(|| Instant::now() + shared.wait());
        let pick = shared.request_pick(&request);
        let Some(target) = shared.pick_with(pick, &[]) else {
            let state = if deadline.is_none() {
                State::Failed(Some(unavailable(&shared, None).into()))
            } else {
                let (mut parts, body) = request.into_parts();
                let extensions = std::mem::take(&mut parts.extensions);
                State::Retrying(Box::pin(retry(
                    shared,
                    Head::of(&parts),
                    extensions,
                    Slot::new(body),
                    Retry::default(),
                    deadline,
                    pick,
                )))
            };
            return Call { state };
        };
        let (parts, body) = request.into_parts();
        let head = Head::of(&parts);
        let slot = Slot::new(body);
        let request = http::Request::from_parts(parts, Body::new(slot.lend()));
        let channel = target.borrow_channel();
        // The attempt counts from its pick, as a retried one does.
        let pending = Some(Pending::start(&shared, &target));
        let flight = shared.flight();
        let span = debug_span!("request", endpoint = %target.key);
        let observed =
            crate::observe::Attempt::start(&target.metrics, shared.service(), target.addr());
        Call {
            state: State::First(First {
                shared,
                target,
                head,
                slot,
                attempt: Attempt::Waiting(channel, request),
                pending,
                flight,
                pick,
                span,
                observed,
                deadline,
            }),
        }
    }
}

impl Future for Call {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let this = self.get_mut();
        loop {
            let error = match &mut this.state {
                State::Retrying(future) => return future.as_mut().poll(cx),
                State::Failed(error) => {
                    return Poll::Ready(Err(error
                        .take()
                        .expect("balancer response future polled after completion")))
                }
                State::First(first) => match crate::observe::Attempt::finish(
                    ready!(first.poll(cx)),
                    &mut first.observed,
                    Body::new,
                ) {
                    Ok(response) => return Poll::Ready(Ok(response)),
                    Err(error) => error,
                },
            };
            let State::First(first) = std::mem::replace(&mut this.state, State::Failed(None))
            else {
                unreachable!("only the first attempt fails here");
            };
            let First {
                shared,
                target,
                head,
                slot,
                deadline,
                pick,
                ..
            } = first;
            let mut retry_state = Retry::default();
            match retry_state.failed(&shared, target, error, &slot) {
                Err(error) => return Poll::Ready(Err(error)),
                Ok(()) => {
                    this.state = State::Retrying(Box::pin(retry(
                        shared,
                        head,
                        Extensions::new(),
                        slot,
                        retry_state,
                        deadline,
                        pick,
                    )))
                }
            }
        }
    }
}

impl First {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<http::Response<Body>, tonic::transport::Error>> {
        let _entered = self.span.enter();
        if let Attempt::Waiting(channel, _) = &mut self.attempt {
            ready!(channel.poll_ready(cx))?;
            let Attempt::Waiting(mut channel, request) =
                std::mem::replace(&mut self.attempt, Attempt::Moving)
            else {
                unreachable!("checked above");
            };
            self.attempt = Attempt::Sent(channel.call(request));
            self.target.return_channel(channel);
        }
        let Attempt::Sent(response) = &mut self.attempt else {
            unreachable!("the channel has the request");
        };
        let result = ready!(Pin::new(response).poll(cx));
        if let Some(pending) = self.pending.take() {
            pending.finish(outcome_of(&result));
        }
        self.flight = None;
        Poll::Ready(result)
    }
}

/// What the attempts so far left for the next ones.
#[derive(Default)]
struct Retry {
    /// Epochs of the targets that failed: an endpoint that comes back after
    /// an ejection is a new target, worth a new attempt.
    tried: Vec<u64>,
    /// A connection that closed under a request is reopened by the channel:
    /// the same endpoint gets one more attempt before the others.
    again: Option<Arc<Target>>,
    reopened: bool,
    last_error: Option<tonic::transport::Error>,
}

impl Retry {
    /// Takes in a failed attempt on `target`: `Ok` if the request can go
    /// again, else the error for the caller.
    fn failed(
        &mut self,
        shared: &Arc<Shared>,
        target: Arc<Target>,
        error: tonic::transport::Error,
        slot: &Slot,
    ) -> Result<(), BoxError> {
        if !self.tried.contains(&target.epoch) {
            self.tried.push(target.epoch);
        }
        let failure = Failure::of(&error);
        if failure == Failure::Unreachable {
            shared.eject(&target, &error);
        }
        if failure == Failure::Other || !slot.is_full() {
            debug!(key = %target.key, error = %ErrorChain(&error), "request failed; not retried");
            return Err(error.into());
        }
        debug!(key = %target.key, error = %ErrorChain(&error), "request not sent; retrying");
        if failure == Failure::NotSent && !self.reopened {
            self.reopened = true;
            self.again = Some(target);
        }
        self.last_error = Some(error);
        Ok(())
    }
}

/// Sends the request again, or for the first time once an endpoint is ready,
/// until an attempt gets a response or fails after sending, or no endpoint is
/// left to try.
///
/// The first attempt made here carries `extensions`; later ones go without.
async fn retry(
    shared: Arc<Shared>,
    head: Head,
    mut extensions: Extensions,
    slot: Slot,
    mut state: Retry,
    deadline: Option<Instant>,
    pick: Pick,
) -> Response {
    // Only a request that may wait for an endpoint follows the changes.
    let mut changes = deadline.map(|deadline| (deadline, shared.changes()));
    loop {
        let target = match state.again.take() {
            Some(target) => target,
            None => match shared.pick_with(pick, &state.tried) {
                Some(target) => target,
                None => {
                    if let Some((deadline, changes)) = &mut changes {
                        if tokio::time::timeout_at(*deadline, changes.changed())
                            .await
                            .is_ok_and(|changed| changed.is_ok())
                        {
                            continue;
                        }
                    }
                    return Err(unavailable(&shared, state.last_error.as_ref()).into());
                }
            },
        };
        let mut request = head.request(Body::new(slot.lend()));
        *request.extensions_mut() = std::mem::take(&mut extensions);
        let pending = Pending::start(&shared, &target);
        let flight = shared.flight();
        let mut observed =
            crate::observe::Attempt::start(&target.metrics, shared.service(), target.addr());
        let span = debug_span!("request", endpoint = %target.key, retry = true);
        let result = target
            .channel()
            .clone()
            .oneshot(request)
            .instrument(span)
            .await;
        pending.finish(outcome_of(&result));
        drop(flight);
        match crate::observe::Attempt::finish(result, &mut observed, Body::new) {
            Ok(response) => return Ok(response),
            Err(error) => state.failed(&shared, target, error, &slot)?,
        }
    }
}

fn outcome_of(result: &Result<http::Response<Body>, tonic::transport::Error>) -> Outcome {
    match result {
        Ok(response) => Outcome::of_response(response),
        Err(error) => Outcome::of_error(error),
    }
}

/// The error of a request that found no endpoint to go to.
fn unavailable(shared: &Shared, last_error: Option<&tonic::transport::Error>) -> Status {
    let (known, ejected) = shared.counts();
    let mut message = match shared.service() {
        "" => format!("no ready endpoint ({known} known, {ejected} ejected)"),
        service => {
            format!("no ready endpoint for service {service} ({known} known, {ejected} ejected)")
        }
    };
    if let Some(error) = last_error {
        message.push_str("; last error: ");
        message.push_str(&ErrorChain(error).to_string());
    }
    Status::unavailable(message)
}
