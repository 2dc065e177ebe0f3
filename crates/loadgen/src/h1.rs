//! The HTTP/1.1 client connection of the hot path: a prepared request written with one
//! `write`, the answer parsed in place with `httparse` (the parser hyper uses) and its body
//! counted and dropped as it arrives.
//!
//! Why not hyper's `client::conn::http1` (which `shoal load` used first, and still uses for
//! HTTP/2): per request it hands the request to a connection task over a channel, answers
//! through a oneshot, streams the body through another channel and builds a `HeaderMap` —
//! about 2.6 µs of user CPU per request where wrk spends 0.6 µs and this module 0.8 µs,
//! which held one generator thread to 0.7× wrk's throughput (docs/benchmarks.md). A load
//! generator needs none of that: it sends the same request again and again and reads only
//! the status, one header and the body's length.
//!
//! What it handles: keep-alive, `Content-Length`, `Transfer-Encoding: chunked` (with
//! trailers), bodies delimited by the connection's close, no body for `HEAD`, 1xx, 204 and
//! 304, `Connection: close`, answers split over many reads, and a keep-alive connection the
//! server closed while idle (reported as [`SendError::Stale`], so the caller reconnects).
//!
//! Scenario steps (`--scenario`) that capture values also keep the body (up to
//! [`crate::scenario::MAX_KEPT_BODY`]) and the headers they name ([`Keep`]); plain runs keep
//! nothing.
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::client::{Answer, ErrorKind, Kept, SendError};
use crate::scenario::MAX_KEPT_BODY;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Most response headers accepted.
const MAX_HEADERS: usize = 64;
/// Read buffer size (grows for a larger head).
const BUF: usize = 16 * 1024;

/// One HTTP/1.1 connection.
#[derive(Debug)]
pub struct H1Conn<S> {
    io: S,
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Answers received on this connection.
    served: u64,
    /// The server closed it, or said it would.
    closed: bool,
    /// While an answer is read for a step that keeps its body: the body so far.
    sink: Option<Vec<u8>>,
}

/// What of an answer to keep, besides its status and the replica header.
#[derive(Debug, Clone, Default)]
pub struct Keep {
    /// The body (up to [`MAX_KEPT_BODY`] bytes).
    pub body: bool,
    /// These headers' values.
    pub headers: Vec<HeaderName>,
}

impl Keep {
    /// Nothing: the hot path of a plain run.
    pub const NOTHING: Keep = Keep {
        body: false,
        headers: Vec::new(),
    };

    fn anything(&self) -> bool {
        self.body || !self.headers.is_empty()
    }
}

/// How the body of an answer is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

impl<S: AsyncRead + AsyncWrite + Unpin> H1Conn<S> {
    /// A connection over `io`.
    pub fn new(io: S) -> H1Conn<S> {
        H1Conn {
            io,
            buf: vec![0; BUF],
            start: 0,
            end: 0,
            served: 0,
            closed: false,
            sink: None,
        }
    }

    /// Can it take another request?
    pub fn is_open(&self) -> bool {
        !self.closed
    }

    /// Send `request` (a whole serialized request) and read the answer to its end.
    /// `head` if it is a HEAD request (the answer has no body whatever its headers say);
    /// `replica` is the header whose value is returned.
    pub async fn send(
        &mut self,
        request: &[u8],
        head: bool,
        replica: &HeaderName,
    ) -> Result<Answer, SendError> {
        self.send_keeping(request, head, replica, &Keep::NOTHING)
            .await
    }

    /// [`H1Conn::send`], keeping what `keep` asks for in [`Answer::kept`].
    pub async fn send_keeping(
        &mut self,
        request: &[u8],
        head: bool,
        replica: &HeaderName,
        keep: &Keep,
    ) -> Result<Answer, SendError> {
        let reused = self.served > 0;
        // Leftovers of an earlier answer would be a protocol error; start clean.
        self.start = 0;
        self.end = 0;
        if let Err(e) = self.io.write_all(request).await {
            self.closed = true;
            return Err(if reused {
                SendError::Stale
            } else {
                SendError::Failed(io_kind(&e))
            });
        }
        let result = self.read_answer(head, replica, reused, keep).await;
        if result.is_err() {
            self.closed = true;
        } else {
            self.served += 1;
        }
        result
    }

    async fn read_answer(
        &mut self,
        head: bool,
        replica: &HeaderName,
        reused: bool,
        keep: &Keep,
    ) -> Result<Answer, SendError> {
        let failed = SendError::Failed;
        let mut kept_headers = Vec::new();
        loop {
            let (status, framing, close, value, len) = loop {
                if let Some(parsed) = self.parse_head(head, replica, keep, &mut kept_headers)? {
                    break parsed;
                }
                let read = self.fill().await;
                if matches!(read, Ok(n) if n > 0) {
                    continue;
                }
                // A clean close before any byte of the answer, on a connection that served
                // before: the server had closed it while it was idle (a reset, by contrast,
                // is counted: the server may have taken the request).
                if reused && self.end == 0 && matches!(read, Ok(0)) {
                    return Err(SendError::Stale);
                }
                return Err(failed(match read {
                    Ok(_) => ErrorKind::Closed,
                    Err(e) => io_kind(&e),
                }));
            };
            self.start += len;
            // 1xx answers (other than 101) come before the real one.
            if (100..200).contains(&status) && status != 101 {
                kept_headers.clear();
                continue;
            }
            self.sink = keep.body.then(Vec::new);
            let bytes = match framing {
                Framing::None => 0,
                Framing::Length(n) => self.skip(n).await.map_err(failed)?,
                Framing::Chunked => self.chunked().await.map_err(failed)?,
                Framing::Close => {
                    self.closed = true;
                    self.until_close().await.map_err(failed)?
                }
            };
            if close || status == 101 {
                self.closed = true;
            }
            let body = self.sink.take().map(Bytes::from).unwrap_or_default();
            return Ok(Answer {
                status,
                bytes,
                replica: value,
                kept: keep.anything().then(|| {
                    Box::new(Kept {
                        body,
                        headers: kept_headers,
                    })
                }),
            });
        }
    }

    /// Parse a head from the buffer; `None` if it is not complete yet. Returns the status,
    /// framing, `Connection: close`, the replica header's value and the head's length.
    #[allow(clippy::type_complexity)]
    fn parse_head(
        &mut self,
        head: bool,
        replica: &HeaderName,
        keep: &Keep,
        kept: &mut Vec<(HeaderName, HeaderValue)>,
    ) -> Result<Option<(u16, Framing, bool, Option<HeaderValue>, usize)>, SendError> {
        let protocol = SendError::Failed(ErrorKind::Protocol);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(&self.buf[self.start..self.end]) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if self.end - self.start < MAX_HEAD => return Ok(None),
            _ => return Err(protocol),
        };
        let status = resp.code.ok_or(protocol)?;
        let mut length = None;
        let mut chunked = false;
        let mut close = resp.version == Some(0);
        let mut value = None;
        for h in resp.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or(protocol)?;
                if length.is_some_and(|l| l != n) {
                    return Err(protocol);
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = h
                    .value
                    .split(|b| *b == b',')
                    .next_back()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                close = h
                    .value
                    .split(|b| *b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
            }
            if name.eq_ignore_ascii_case(replica.as_str()) {
                value = HeaderValue::from_bytes(h.value).ok();
            }
            if let Some(k) = keep
                .headers
                .iter()
                .find(|k| name.eq_ignore_ascii_case(k.as_str()))
                && let Ok(v) = HeaderValue::from_bytes(h.value)
            {
                kept.push((k.clone(), v));
            }
        }
        let framing = if head || status == 204 || status == 304 || (100..200).contains(&status) {
            Framing::None
        } else if chunked {
            Framing::Chunked
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::Close
        };
        Ok(Some((status, framing, close, value, len)))
    }

    /// Read more into the buffer (moving unread bytes to its front, or growing it for a
    /// head that does not fit); the count read, 0 at end of stream.
    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize((self.buf.len() * 2).min(MAX_HEAD * 2), 0);
        }
        let n = self.io.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Consume `n` body bytes; returns `n`.
    async fn skip(&mut self, n: u64) -> Result<u64, ErrorKind> {
        let mut left = n;
        loop {
            let have = (self.end - self.start) as u64;
            let take = have.min(left);
            self.keep_body(self.start, self.start + take as usize);
            self.start += take as usize;
            left -= take;
            if left == 0 {
                return Ok(n);
            }
            self.start = 0;
            self.end = 0;
            match self.fill().await {
                Ok(0) => return Err(ErrorKind::Closed),
                Ok(_) => {}
                Err(e) => return Err(io_kind(&e)),
            }
        }
    }

    /// A line ending in CRLF from the buffer (without it), reading more as needed.
    async fn line(&mut self) -> Result<Vec<u8>, ErrorKind> {
        loop {
            if let Some(i) = self.buf[self.start..self.end]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let line = self.buf[self.start..self.start + i].to_vec();
                self.start += i + 2;
                return Ok(line);
            }
            if self.end - self.start > MAX_HEAD {
                return Err(ErrorKind::Protocol);
            }
            match self.fill().await {
                Ok(0) => return Err(ErrorKind::Closed),
                Ok(_) => {}
                Err(e) => return Err(io_kind(&e)),
            }
        }
    }

    /// A chunked body, trailers included; returns the data bytes.
    async fn chunked(&mut self) -> Result<u64, ErrorKind> {
        let mut total = 0;
        loop {
            let line = self.line().await?;
            let size = line.split(|b| *b == b';').next().unwrap_or_default();
            let size = std::str::from_utf8(size)
                .ok()
                .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                .ok_or(ErrorKind::Protocol)?;
            if size == 0 {
                // Trailers, up to an empty line.
                while !self.line().await?.is_empty() {}
                return Ok(total);
            }
            total += self.skip(size).await?;
            if !self.line().await?.is_empty() {
                return Err(ErrorKind::Protocol);
            }
        }
    }

    /// A body that ends when the server closes the connection.
    async fn until_close(&mut self) -> Result<u64, ErrorKind> {
        let mut total = (self.end - self.start) as u64;
        self.keep_body(self.start, self.end);
        loop {
            self.start = 0;
            self.end = 0;
            match self.fill().await {
                Ok(0) => return Ok(total),
                Ok(n) => {
                    total += n as u64;
                    self.keep_body(0, n);
                }
                Err(e) => return Err(io_kind(&e)),
            }
        }
    }
}

impl<S> H1Conn<S> {
    /// Body bytes `buf[from..to]` go to the sink, if a step keeps the body.
    fn keep_body(&mut self, from: usize, to: usize) {
        if let Some(sink) = &mut self.sink {
            let room = MAX_KEPT_BODY.saturating_sub(sink.len());
            let to = to.min(from + room);
            sink.extend_from_slice(&self.buf[from..to]);
        }
    }
}

fn io_kind(e: &std::io::Error) -> ErrorKind {
    match ErrorKind::of_io(e) {
        ErrorKind::Other => ErrorKind::Closed,
        k => k,
    }
}

/// A whole HTTP/1.1 request, serialized once and sent as is for every request.
pub fn serialize(
    method: &http::Method,
    path: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Bytes {
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let expects_body = !matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::DELETE | http::Method::OPTIONS
    );
    if (!body.is_empty() || expects_body) && !headers.contains_key(http::header::CONTENT_LENGTH) {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    fn replica() -> HeaderName {
        HeaderName::from_static("x-shoal-replica")
    }

    /// A client connection and the server's end; the server answers each request it reads
    /// with the next of `answers`, written in pieces of `split` bytes.
    fn pair(answers: Vec<&'static [u8]>, split: usize) -> H1Conn<DuplexStream> {
        let (client, mut server) = duplex(1 << 20);
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            for a in answers {
                let mut req = Vec::new();
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = server.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                for piece in a.chunks(split) {
                    server.write_all(piece).await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
            // Then close, as a server whose keep-alive timeout ran out.
        });
        H1Conn::new(client)
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

    #[tokio::test]
    async fn keep_alive_with_content_length_in_small_pieces() {
        let ok: &[u8] =
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Shoal-Replica: web/1\r\n\r\nhello";
        let mut c = pair(vec![ok, ok], 3);
        for _ in 0..2 {
            let a = c.send(GET, false, &replica()).await.unwrap();
            assert_eq!((a.status, a.bytes), (200, 5));
            assert_eq!(a.replica.unwrap(), "web/1");
            assert!(c.is_open());
        }
        // The server has closed: a reused connection is stale, not a failed request.
        assert_eq!(
            c.send(GET, false, &replica()).await.unwrap_err(),
            SendError::Stale
        );
        assert!(!c.is_open());
    }

    #[tokio::test]
    async fn chunked_with_trailers_and_a_1xx_first() {
        let a: &[u8] = b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nTrailer: t\r\n\r\n";
        let b: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let mut c = pair(vec![a, b], 7);
        let r = c.send(GET, false, &replica()).await.unwrap();
        assert_eq!((r.status, r.bytes), (201, 9));
        assert!(r.replica.is_none());
        let r = c.send(GET, false, &replica()).await.unwrap();
        assert_eq!(
            (r.status, r.bytes),
            (200, 2),
            "the chunked body was consumed exactly"
        );
    }

    fn keep(headers: &[&'static str]) -> Keep {
        Keep {
            body: true,
            headers: headers.iter().map(|h| HeaderName::from_static(h)).collect(),
        }
    }

    #[tokio::test]
    async fn a_step_keeps_the_body_in_every_framing_and_the_headers_it_names() {
        let hints: &[u8] = b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\nETag: early\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nEtag: \"v1\"\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        let length: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\r\n{\"b\":2}";
        let plain: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nEtag: x\r\n\r\nok";
        let close: &[u8] = b"HTTP/1.1 200 OK\r\n\r\nuntil the end";
        let mut c = pair(vec![hints, length, plain, close], 5);
        let k = keep(&["etag", "set-cookie"]);
        // Chunked: the data without the framing; a 1xx answer's headers are not the answer's.
        let a = c.send_keeping(GET, false, &replica(), &k).await.unwrap();
        let kept = a.kept.unwrap();
        assert_eq!(kept.body, "{\"a\":1}");
        assert_eq!(kept.headers.len(), 1);
        assert_eq!(kept.headers[0].1, "\"v1\"");
        // Content-Length; every value of a repeated header, in order.
        let a = c.send_keeping(GET, false, &replica(), &k).await.unwrap();
        let kept = a.kept.unwrap();
        assert_eq!(kept.body, "{\"b\":2}");
        let cookies: Vec<_> = kept.headers.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        // A plain send keeps nothing.
        let a = c.send(GET, false, &replica()).await.unwrap();
        assert!(a.kept.is_none());
        // Delimited by the close.
        let a = c.send_keeping(GET, false, &replica(), &k).await.unwrap();
        assert_eq!(a.kept.unwrap().body, "until the end");
    }

    #[tokio::test]
    async fn a_kept_body_stops_at_the_limit_but_is_read_to_its_end() {
        let big = MAX_KEPT_BODY + 1000;
        let mut answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {big}\r\n\r\n").into_bytes();
        answer.extend(std::iter::repeat_n(b'x', big));
        let next: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";
        let mut c = pair(vec![answer.leak(), next], 64 * 1024);
        let a = c
            .send_keeping(GET, false, &replica(), &keep(&[]))
            .await
            .unwrap();
        assert_eq!(a.bytes, big as u64);
        assert_eq!(a.kept.unwrap().body.len(), MAX_KEPT_BODY);
        let a = c.send(GET, false, &replica()).await.unwrap();
        assert_eq!(a.status, 204, "the rest of the big body was consumed");
    }

    #[tokio::test]
    async fn no_body_for_head_204_and_304() {
        let head: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
        let none: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";
        let nm: &[u8] = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n";
        let mut c = pair(vec![head, none, nm], 1000);
        assert_eq!(c.send(GET, true, &replica()).await.unwrap().bytes, 0);
        assert_eq!(c.send(GET, false, &replica()).await.unwrap().status, 204);
        assert_eq!(c.send(GET, false, &replica()).await.unwrap().status, 304);
        assert!(c.is_open());
    }

    #[tokio::test]
    async fn close_delimited_and_connection_close() {
        let a: &[u8] = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc";
        let mut c = pair(vec![a], 2);
        assert_eq!(c.send(GET, false, &replica()).await.unwrap().bytes, 3);
        assert!(!c.is_open());
        let a: &[u8] = b"HTTP/1.0 200 OK\r\n\r\nuntil the end";
        let mut c = pair(vec![a], 4);
        assert_eq!(c.send(GET, false, &replica()).await.unwrap().bytes, 13);
        assert!(!c.is_open());
    }

    #[tokio::test]
    async fn truncated_or_garbled_answers_fail() {
        let short: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        let mut c = pair(vec![short], 100);
        let e = c.send(GET, false, &replica()).await.unwrap_err();
        assert_eq!(e, SendError::Failed(ErrorKind::Closed));
        let junk: &[u8] = b"SMTP ready\r\n\r\n";
        let mut c = pair(vec![junk], 100);
        let e = c.send(GET, false, &replica()).await.unwrap_err();
        assert_eq!(e, SendError::Failed(ErrorKind::Protocol));
        // A first request that gets nothing back is a failure, not a stale connection.
        let mut c = pair(vec![], 1);
        let e = c.send(GET, false, &replica()).await.unwrap_err();
        assert_eq!(e, SendError::Failed(ErrorKind::Closed));
    }

    #[test]
    fn requests_are_serialized_once() {
        let mut h = http::HeaderMap::new();
        h.insert("host", HeaderValue::from_static("a:1"));
        h.insert("x-k", HeaderValue::from_static("v"));
        let get = serialize(&http::Method::GET, "/p?q=1", &h, b"");
        assert_eq!(
            &get[..],
            b"GET /p?q=1 HTTP/1.1\r\nhost: a:1\r\nx-k: v\r\n\r\n"
        );
        let post = serialize(&http::Method::POST, "/", &h, b"{}");
        assert!(post.ends_with(b"content-length: 2\r\n\r\n{}"));
        let empty_post = serialize(&http::Method::POST, "/", &h, b"");
        assert!(empty_post.ends_with(b"content-length: 0\r\n\r\n"));
    }
}
