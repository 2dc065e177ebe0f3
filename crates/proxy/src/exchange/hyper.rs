//! Carrying a request with hyper's client ([`HyperExchange`]): any protocol (HTTP/1.1, h2c,
//! h2 over TLS), streamed bodies. For each try it builds a request from the head it holds
//! and a copy of the body, if a copy can be had: read ahead when small and announced
//! ([`Replay::Full`]), kept as it streams to an HTTP/2 service ([`Tee`]), else sent once.
//! How much may be kept is the shared rule's (`crate::pipeline::replay_limit`).
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use shoal_balance::Backend;
use tokio::time::{Instant, Sleep};

use crate::body::{BoxError, ProxyBody};
use crate::error::{ProxyError, SLOW_BODY};
use crate::tries::{Exchange, TryError, Upload, boxed_bytes, read_small_body};
use crate::upstream::{Conn, Upstreams};

pin_project_lite::pin_project! {
    /// A client's streamed request body, reporting to an [`Upload`]: its end, its errors
    /// (the client's fault), and pauses longer than `idle` (ended with an error).
    struct ClientBody {
        #[pin]
        inner: ProxyBody,
        upload: Arc<Upload>,
        idle: Duration,
        #[pin]
        timer: Sleep,
    }
}

impl ClientBody {
    fn new(inner: ProxyBody, upload: Arc<Upload>, idle: Duration) -> ClientBody {
        ClientBody {
            inner,
            upload,
            idle,
            timer: tokio::time::sleep(idle),
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let idle = *this.idle;
                this.timer.as_mut().reset(Instant::now() + idle);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.upload.fail(ProxyError::Rejected {
                    status: http::StatusCode::BAD_REQUEST,
                    why: format!("the request body is malformed: {e}").into(),
                });
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.upload.finish();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.timer.poll(cx).is_ready() {
                    this.upload.fail(ProxyError::client_too_slow(SLOW_BODY));
                    return Poll::Ready(Some(Err("the client stopped sending its body".into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.upload.finish();
        }
        end
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The request body, as far as sending it again goes.
enum Replay {
    /// Known in full (empty, or read ahead because it is small): every try gets a copy.
    Full(Bytes),
    /// Streamed: sent by one try only. It is here until a try takes it.
    Once(Option<ProxyBody>),
    /// Streamed, and kept as it goes while it fits the limit: a later try replays what was
    /// kept, then reads on (see [`Tee`]).
    Tee(Arc<Mutex<Kept>>),
}

/// A streamed request body, and what of it has been read so far.
pub(crate) struct Kept {
    /// The client's body; `None` until set, and once it has ended.
    source: Option<ProxyBody>,
    /// Its frames read so far, while they fit `limit`.
    frames: Vec<KeptFrame>,
    len: u64,
    limit: u64,
    /// Longer than `limit`: nothing is kept, no other try can have it.
    overflowed: bool,
    /// The try whose body reads it; bodies of earlier tries read nothing more.
    current: u64,
}

enum KeptFrame {
    Data(Bytes),
    Trailers(HeaderMap),
}

impl Kept {
    fn new(limit: u64) -> Kept {
        Kept {
            source: None,
            frames: Vec::new(),
            len: 0,
            limit,
            overflowed: false,
            current: 0,
        }
    }
}

fn lock(kept: &Mutex<Kept>) -> std::sync::MutexGuard<'_, Kept> {
    kept.lock().unwrap_or_else(|e| e.into_inner())
}

/// One try's copy of a [`Kept`] body: the frames kept so far, then the client's body as it
/// comes (kept in turn). Only the latest try's copy reads; a new one is made only once the
/// try before it has settled, so no two read at a time.
struct Tee {
    kept: Arc<Mutex<Kept>>,
    try_no: u64,
    /// Frames of `kept` already sent by this copy.
    at: usize,
}

impl Tee {
    /// A copy for the next try; `None` if the body was too long to keep.
    fn next(kept: &Arc<Mutex<Kept>>) -> Option<Tee> {
        let mut k = lock(kept);
        if k.overflowed {
            return None;
        }
        k.current += 1;
        Some(Tee {
            kept: Arc::clone(kept),
            try_no: k.current,
            at: 0,
        })
    }
}

impl Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut k = lock(&this.kept);
        if k.current != this.try_no {
            return Poll::Ready(Some(Err("the request went to another try".into())));
        }
        if let Some(frame) = k.frames.get(this.at) {
            this.at += 1;
            return Poll::Ready(Some(Ok(match frame {
                KeptFrame::Data(data) => http_body::Frame::data(data.clone()),
                KeptFrame::Trailers(t) => http_body::Frame::trailers(t.clone()),
            })));
        }
        let Some(source) = k.source.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match Pin::new(source).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(None) => {
                k.source = None;
                return Poll::Ready(None);
            }
            other => return other,
        };
        if !k.overflowed {
            let copy = match frame.data_ref() {
                Some(data) => KeptFrame::Data(data.clone()),
                None => KeptFrame::Trailers(frame.trailers_ref().cloned().unwrap_or_default()),
            };
            k.len += frame.data_ref().map_or(0, |d| d.len() as u64);
            if k.len > k.limit {
                k.overflowed = true;
                k.frames = Vec::new();
            } else {
                k.frames.push(copy);
                this.at = k.frames.len();
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        // As the client's body says: hyper then ends the stream with its last DATA frame
        // rather than an empty one (which servers count, and limit).
        let k = lock(&self.kept);
        k.current == self.try_no
            && self.at >= k.frames.len()
            && k.source.as_ref().is_none_or(|s| s.is_end_stream())
    }
}

/// A request carried by hyper's client: everything of it but its body and URI, to build
/// each try from, and the body.
pub(crate) struct HyperExchange {
    method: Method,
    version: Version,
    /// `None` once moved into the only try that will ever be sent.
    headers: Option<HeaderMap>,
    path_and_query: PathAndQuery,
    /// HTTP/2 to the replica (h2c, or h2 over TLS).
    h2: bool,
    /// Every try gets a copy, even of a request not sent again after a replica saw it: an
    /// HTTP/2 try the replica did not process is sent again whatever the method.
    keep_copies: bool,
    replay: Replay,
    /// How a streamed body is going (`None`: the body is in hand).
    upload: Option<Arc<Upload>>,
}

/// A response from hyper's client, with its HTTP/1.1 connection and the pool to give it
/// back to.
pub(crate) type HyperResponse = (
    Response<Incoming>,
    Option<(Arc<Upstreams>, http1::SendRequest<ProxyBody>)>,
);

impl HyperExchange {
    /// Hold the request for sending. With a `replay_limit` (the request may be sent again:
    /// an idempotent one, or any to an HTTP/2 service, see the module docs), a body
    /// announced as at most that many bytes is read ahead, so that every try can have a
    /// copy; others are streamed, with pauses of at most `body_idle`. HTTP/2 if `h2` (`h2c`
    /// and `h2` services), HTTP/1.1 otherwise.
    pub(crate) async fn new(
        method: Method,
        headers: HeaderMap,
        path_and_query: PathAndQuery,
        body: ProxyBody,
        h2: bool,
        replay_limit: Option<u64>,
        body_idle: Duration,
    ) -> Result<HyperExchange, ProxyError> {
        let mut upload = None;
        // The replay, and the body to stream if it is not all in hand.
        let (replay, streamed) = match replay_limit {
            _ if body.is_end_stream() => (Replay::Full(Bytes::new()), None),
            Some(limit) if body.size_hint().exact().is_some_and(|n| n <= limit) => {
                let bytes = read_small_body(body, limit, body_idle).await?;
                (Replay::Full(bytes), None)
            }
            // HTTP/2 without a length (gRPC's way): streamed as it comes, and kept up to
            // the limit. Reading it all first could stall a stream whose client waits for
            // an answer before it sends more.
            Some(limit) if h2 && body.size_hint().lower() <= limit => (
                Replay::Tee(Arc::new(Mutex::new(Kept::new(limit)))),
                Some(body),
            ),
            _ => (Replay::Once(None), Some(body)),
        };
        let replay = match streamed {
            Some(body) => {
                let tracked = Arc::new(Upload::default());
                let body = ClientBody::new(body, Arc::clone(&tracked), body_idle);
                upload = Some(tracked);
                let body = BodyExt::boxed_unsync(body);
                match replay {
                    Replay::Tee(kept) => {
                        lock(&kept).source = Some(body);
                        Replay::Tee(kept)
                    }
                    _ => Replay::Once(Some(body)),
                }
            }
            None => replay,
        };
        let version = if h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let keep_copies = h2 && replay_limit.is_some() && !matches!(replay, Replay::Once(_));
        Ok(HyperExchange {
            method,
            version,
            headers: Some(headers),
            path_and_query,
            h2,
            keep_copies,
            replay,
            upload,
        })
    }
}

impl Exchange for HyperExchange {
    type Request = Request<ProxyBody>;
    type Response = HyperResponse;

    fn next_request(&mut self, keep_copy: bool) -> Option<Request<ProxyBody>> {
        let body = match &mut self.replay {
            Replay::Full(bytes) => boxed_bytes(bytes.clone()),
            Replay::Once(body) => body.take()?,
            Replay::Tee(kept) => Tee::next(kept)?.boxed_unsync(),
        };
        let headers = if keep_copy || self.keep_copies {
            self.headers.clone()?
        } else {
            self.headers.take()?
        };
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.version_mut() = self.version;
        *req.uri_mut() = Uri::from(self.path_and_query.clone());
        *req.headers_mut() = headers;
        Some(req)
    }

    fn replayable(&self) -> bool {
        match &self.replay {
            Replay::Full(_) => true,
            // Kept so far; whether it all fits is known when a retry asks (`Tee::next`).
            Replay::Tee(kept) => !lock(kept).overflowed,
            Replay::Once(_) => false,
        }
    }

    fn hedgeable(&self) -> bool {
        matches!(self.replay, Replay::Full(_))
    }

    fn upload(&self) -> Option<&Arc<Upload>> {
        self.upload.as_ref()
    }

    fn status(response: &HyperResponse) -> u16 {
        response.0.status().as_u16()
    }

    fn send(
        &self,
        upstreams: Arc<Upstreams>,
        backend: Arc<Backend>,
        req: Request<ProxyBody>,
    ) -> impl Future<Output = Result<HyperResponse, TryError<Request<ProxyBody>>>> + Send + 'static
    {
        hyper_try(upstreams, backend, self.h2, req)
    }
}

/// One try with hyper's client on one backend.
pub(crate) async fn hyper_try(
    upstreams: Arc<Upstreams>,
    backend: Arc<Backend>,
    h2: bool,
    mut req: Request<ProxyBody>,
) -> Result<HyperResponse, TryError<Request<ProxyBody>>> {
    let conn = match upstreams.checkout(backend.addr(), h2).await {
        Ok(conn) => conn,
        Err(e) => return Err(TryError::Connect(e, req)),
    };
    if h2 {
        // HTTP/2 needs the scheme and authority as pseudo-headers: the absolute form.
        let pq = req.uri().path_and_query().cloned();
        let scheme = match upstreams.tls() {
            Some(_) => Scheme::HTTPS,
            None => Scheme::HTTP,
        };
        if let Ok(uri) = Uri::builder()
            .scheme(scheme)
            .authority(backend.addr())
            .path_and_query(pq.unwrap_or_else(|| PathAndQuery::from_static("/")))
            .build()
        {
            *req.uri_mut() = uri;
        }
    }
    match conn {
        Conn::H1(mut sender) => match sender.try_send_request(req).await {
            Ok(resp) => Ok((resp, Some((upstreams, sender)))),
            Err(mut e) => Err(match e.take_message() {
                Some(req) => TryError::Unsent(req),
                None => TryError::Sent(Box::new(e.into_error())),
            }),
        },
        Conn::H2(mut sender, wire) => {
            // Bytes written before the request is handed over: if the connection fails with
            // none written since, no part of the request reached the replica.
            let written = wire.written();
            match sender.try_send_request(req).await {
                Ok(resp) => Ok((resp, None)),
                Err(mut e) => {
                    if let Some(req) = e.take_message() {
                        // hyper's side of the connection was gone before it took the request.
                        upstreams.evict_h2(backend.addr(), &wire);
                        return Err(TryError::Unsent(req));
                    }
                    let e = e.into_error();
                    let unwritten = wire.is_closing() && wire.written() == written;
                    let unprocessed = h2_unprocessed(&e, unwritten);
                    if wire.is_closing() || unprocessed == Some(H2Unprocessed::GoneAway) {
                        upstreams.evict_h2(backend.addr(), &wire);
                    }
                    Err(match unprocessed {
                        None => TryError::Sent(Box::new(e)),
                        Some(why) => TryError::Unprocessed {
                            error: Box::new(e),
                            replica_failed: why != H2Unprocessed::GoneAway,
                        },
                    })
                }
            }
        }
    }
}

/// Why an HTTP/2 stream was not processed by the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum H2Unprocessed {
    /// Reset with `REFUSED_STREAM` (RFC 9113 §8.7).
    Refused,
    /// Its id is above the last stream id of the replica's GOAWAY, or the connection was
    /// going away when the stream was to be opened (RFC 9113 §6.8, §8.7).
    GoneAway,
    /// The connection failed before any byte of the request was written to it.
    Unwritten,
}

/// Whether the failure `e` of an HTTP/2 try proves that the replica did not process the
/// request; `unwritten`: the connection failed, having written nothing after the request
/// was handed over.
///
/// hyper carries h2's error as its source. h2 (0.4) reports a `GoAway` error initiated by
/// the remote to exactly the streams above the GOAWAY's last stream id, and to streams
/// opened after it arrived; a reset initiated by the remote carries the replica's reason.
/// Any other error of a stream whose request was written — a reset for another reason, a
/// broken connection — leaves open whether the replica acted on it.
fn h2_unprocessed(e: &hyper::Error, unwritten: bool) -> Option<H2Unprocessed> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if h2.is_remote() && h2.is_go_away() {
                return Some(H2Unprocessed::GoneAway);
            }
            if h2.is_remote() && h2.is_reset() && h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return Some(H2Unprocessed::Refused);
            }
            break;
        }
        source = err.source();
    }
    unwritten.then_some(H2Unprocessed::Unwritten)
}
