//! A response body that stamps the send moments of its request's trace.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};

use super::request_trace::{Activity, RequestTrace};

/// Wraps a frontend's response body: the send starts when the connection
/// first asks for the body, and ends when it has taken the last frame; the
/// trace is let go then (or when the body is dropped unsent).
pub struct TracedBody<B> {
    inner: B,
    trace: Option<Arc<RequestTrace>>,
    send_start: Activity,
    send_end: Activity,
    started: bool,
}

impl<B> TracedBody<B> {
    /// `inner`, stamping `send_start` and `send_end` on `trace`.
    pub fn new(inner: B, trace: Arc<RequestTrace>, send_start: Activity, send_end: Activity) -> Self {
        Self { inner, trace: Some(trace), send_start, send_end, started: false }
    }
}

impl<B: Body + Unpin> Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if !this.started {
            this.started = true;
            if let Some(trace) = &this.trace {
                trace.stamp(this.send_start);
            }
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let finished = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(frame))) => frame.is_trailers() || this.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if finished && let Some(trace) = this.trace.take() {
            trace.stamp(this.send_end);
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
