//! `buffering.max_request_body_bytes`: request bodies bounded without holding them.
//!
//! A request whose `Content-Length` is over the limit is answered 413 before any of its
//! body is read (see `Edge::admit`). One whose length is not known in advance (chunked, or
//! HTTP/2 without `content-length`) is counted as it streams upstream: the frame that
//! crosses the limit ends the body with an error and marks the request, which the gateway
//! then answers 413 instead of the failure it would otherwise report — as long as the
//! replica has not begun its response. Nothing past the limit is ever read into memory.
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::body::{BoxError, ProxyBody};

use super::in_flight::InFlightGuard;

/// A request body that fails once more than `limit` bytes have come.
#[derive(Debug)]
pub(crate) struct LimitedBody {
    inner: ProxyBody,
    seen: u64,
    limit: u64,
    crossed: Arc<AtomicBool>,
}

impl LimitedBody {
    /// `inner` bounded to `limit` bytes; `crossed` is set when it goes over.
    pub(crate) fn new(inner: ProxyBody, limit: u64, crossed: Arc<AtomicBool>) -> LimitedBody {
        LimitedBody {
            inner,
            seen: 0,
            limit,
            crossed,
        }
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.seen = self.seen.saturating_add(data.len() as u64);
            if self.seen > self.limit {
                self.crossed.store(true, Ordering::Release);
                return Poll::Ready(Some(Err(format!(
                    "the request body is larger than {} bytes",
                    self.limit
                )
                .into())));
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

/// A response body that keeps the request's in-flight places until it is finished or
/// dropped.
#[derive(Debug)]
pub(crate) struct HeldBody {
    inner: ProxyBody,
    guards: Vec<InFlightGuard>,
}

impl HeldBody {
    pub(crate) fn new(inner: ProxyBody, guards: Vec<InFlightGuard>) -> HeldBody {
        HeldBody { inner, guards }
    }
}

impl Body for HeldBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            // Done: free the places now, not when hyper gets round to dropping the body.
            self.guards.clear();
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test]
    async fn fails_on_the_frame_that_crosses_the_limit() {
        let frames = ["aaaa", "bbbb", "cccc"]
            .map(|s| Ok::<_, BoxError>(Frame::data(Bytes::from_static(s.as_bytes()))));
        let inner = StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
        let crossed = Arc::new(AtomicBool::new(false));
        let mut body = LimitedBody::new(inner, 8, Arc::clone(&crossed));
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.frame().await.unwrap().is_ok());
        assert!(!crossed.load(Ordering::Acquire));
        assert!(body.frame().await.unwrap().is_err());
        assert!(crossed.load(Ordering::Acquire));
    }
}
