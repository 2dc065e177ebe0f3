//! Response bodies, and the in-flight counter they hold until they are fully sent.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body, Frame, SizeHint};

/// Error type of every body the app sends (the echo body can fail with the request body).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A handler's body before it is tied to the in-flight counter.
pub(crate) type HandlerBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body of fixed bytes.
pub(crate) fn full(bytes: impl Into<Bytes>) -> HandlerBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Counts requests from the moment they are received until their response body has been
/// sent (or dropped), so a streamed `/echo` counts as in flight while it streams.
#[derive(Debug, Default)]
pub(crate) struct InFlight(AtomicUsize);

impl InFlight {
    pub(crate) fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(Arc::clone(self))
    }

    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// One request in flight; dropping it ends the request.
#[derive(Debug)]
pub(crate) struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The body type the server sends: a handler's body plus the request's in-flight guard.
pub(crate) struct ResponseBody {
    inner: HandlerBody,
    _guard: InFlightGuard,
}

impl ResponseBody {
    pub(crate) fn new(inner: HandlerBody, guard: InFlightGuard) -> Self {
        ResponseBody {
            inner,
            _guard: guard,
        }
    }
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
