//! HTTP/1.1 on the wire, as far as the relay needs it: parse a client's request head, write
//! the upstream request, parse the replica's response head, write the client's response
//! head, and find where a chunked body ends without decoding it.
//!
//! Anything unusual is not handled here but recognised and handed to the full HTTP stack
//! ([`Parsed::Other`]): HTTP/1.0, the HTTP/2 preface, upgrades, `Expect`, chunked or large
//! request bodies, absolute-form targets, and heads that do not parse.
use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Uri, Version};
use shoal_config::Middleware;

/// Longest request or response head accepted (larger ones go to the full stack, or are a
/// replica failure).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one head.
const MAX_HEADERS: usize = 100;

/// What the start of a client's buffer holds.
// Returned by value and taken apart at once: boxing the request would cost an allocation
// per request for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// Something the relay leaves to the full HTTP stack.
    Other,
    /// Not HTTP: answered 400 and closed.
    Malformed,
    /// A request the relay carries; its head has been taken off the buffer.
    Request(ClientRequest),
}

/// A client's request head, parsed.
#[derive(Debug)]
pub(crate) struct ClientRequest {
    /// Method, URI (origin form), version and headers.
    pub(crate) parts: http::request::Parts,
    /// The head's bytes as received, to hand the request over to the full stack after all.
    pub(crate) raw: Bytes,
    /// Body length (`Content-Length`; 0 without one).
    pub(crate) body_len: usize,
    /// The client asked to close the connection after this exchange.
    pub(crate) close: bool,
}

/// Parse a request head at the start of `buf`. On success the head is split off `buf`;
/// the body, if any, follows in it. Bodies over `max_body` bytes are left to the full stack.
pub(crate) fn parse_request(buf: &mut BytesMut, max_body: usize) -> Parsed {
    // Uninitialised slots: filling 100 empty headers first costs more than parsing.
    let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Parsed::Partial,
        // The full stack answers 431 for a head too large, and speaks HTTP/2.
        Ok(httparse::Status::Partial) => return Parsed::Other,
        Err(_) if h2_preface(buf) => return Parsed::Other,
        Err(_) => return Parsed::Malformed,
    };
    if req.version != Some(1) {
        return Parsed::Other;
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Parsed::Other;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Other;
    };
    if !target.starts_with('/') || method == Method::CONNECT {
        return Parsed::Other;
    }
    let offset = |s: &[u8]| span_in(buf, s);
    let target = offset(target.as_bytes());
    // Where each field's name and value are, to build the header map from the shared bytes
    // once the head is split off (on the stack: no allocation).
    let mut spans = [Span::default(); MAX_HEADERS];
    let count = req.headers.len();
    let mut body_len: Option<usize> = None;
    let mut close = false;
    for (field, span) in req.headers.iter().zip(spans.iter_mut()) {
        let name = field.name.as_bytes();
        if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
        {
            return Parsed::Other;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            match (parse_length(field.value), body_len) {
                (Some(n), None) => body_len = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => return Parsed::Other,
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in tokens(field.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Parsed::Other;
                }
            }
        }
        *span = Span::of(offset(name), offset(field.value));
    }
    let body_len = body_len.unwrap_or(0);
    if body_len > max_body {
        return Parsed::Other;
    }
    let raw = buf.split_to(len).freeze();
    let Ok(uri) = PathAndQuery::from_maybe_shared(raw.slice(target)).map(Uri::from) else {
        // Put the head back for the full stack to answer.
        return other_after_split(buf, raw);
    };
    // Room for the forwarded headers the gateway adds.
    let mut headers = HeaderMap::with_capacity(count + 4);
    for span in &spans[..count] {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&raw[span.name()]),
            HeaderValue::from_maybe_shared(raw.slice(span.value())),
        ) else {
            return other_after_split(buf, raw);
        };
        headers.append(name, value);
    }
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.headers = headers;
    Parsed::Request(ClientRequest {
        parts,
        raw,
        body_len,
        close,
    })
}

/// Where `part` (a slice the parser returned) lies in `buf`; empty if it is not in it (an
/// absent reason phrase comes back as a constant `""`).
fn span_in(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    if start <= buf.len() && part.len() <= buf.len() - start {
        start..start + part.len()
    } else {
        0..0
    }
}

/// Whether `buf` starts like the HTTP/2 connection preface (`PRI * HTTP/2.0`…).
fn h2_preface(buf: &[u8]) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let n = buf.len().min(PREFACE.len());
    buf[..n] == PREFACE[..n]
}

/// Where one header field's name and value are in a request head (heads are at most a
/// few hundred KiB: `u32` offsets, half the stack of `Range<usize>`).
#[derive(Debug, Default, Clone, Copy)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

impl Span {
    fn of(name: Range<usize>, value: Range<usize>) -> Span {
        let pair = |r: Range<usize>| (r.start as u32, r.end as u32);
        Span {
            name: pair(name),
            value: pair(value),
        }
    }

    fn name(&self) -> Range<usize> {
        self.name.0 as usize..self.name.1 as usize
    }

    fn value(&self) -> Range<usize> {
        self.value.0 as usize..self.value.1 as usize
    }
}

fn other_after_split(buf: &mut BytesMut, head: Bytes) -> Parsed {
    let mut whole = BytesMut::with_capacity(head.len() + buf.len());
    whole.extend_from_slice(&head);
    whole.extend_from_slice(buf);
    *buf = whole;
    Parsed::Other
}

fn parse_length(value: &[u8]) -> Option<usize> {
    let v = value.trim_ascii();
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// Write the request going upstream: request line, `headers`, blank line, `body`.
pub(crate) fn write_request(
    out: &mut BytesMut,
    method: &Method,
    path_and_query: &PathAndQuery,
    headers: &HeaderMap,
    body: &[u8],
) {
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(path_and_query.as_str().as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
}

fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked: ends with the zero-size chunk and the trailers.
    Chunked,
    /// Until the replica closes the connection.
    UntilClose,
}

/// A replica's response head, parsed; ranges index the buffer it was parsed from.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    /// Length of the head in the buffer.
    pub(crate) len: usize,
    /// Status code.
    pub(crate) status: u16,
    reason: Range<usize>,
    fields: Vec<(Range<usize>, Range<usize>)>,
    /// How the body is delimited.
    pub(crate) framing: Framing,
    /// The connection can carry another request once the body is read.
    pub(crate) reusable: bool,
}

/// Parse a response head at the start of `buf` (`Ok(None)`: not complete yet). `head_request`:
/// the request was HEAD, so there is no body whatever the headers say.
pub(crate) fn parse_response(
    buf: &[u8],
    head_request: bool,
) -> Result<Option<ResponseHead>, &'static str> {
    let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        Ok(httparse::Status::Partial) => return Err("response head too large"),
        Err(_) => return Err("malformed response head"),
    };
    let status = resp.code.ok_or("malformed response head")?;
    let offset = |s: &[u8]| span_in(buf, s);
    let reason = offset(resp.reason.unwrap_or("").as_bytes());
    let mut length = None;
    let mut chunked = None;
    let mut keep_alive = resp.version == Some(1);
    let mut fields = Vec::with_capacity(resp.headers.len());
    for field in resp.headers.iter() {
        let name = field.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_length(field.value).ok_or("invalid Content-Length")? as u64;
            if length.is_some_and(|m| m != n) {
                return Err("conflicting Content-Length");
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = Some(
                tokens(field.value)
                    .last()
                    .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")),
            );
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in tokens(field.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && resp.version == Some(0) {
                    keep_alive = true;
                }
            }
        }
        fields.push((offset(name), offset(field.value)));
    }
    let framing = if head_request || status < 200 || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    Ok(Some(ResponseHead {
        len,
        status,
        reason,
        fields,
        framing,
        reusable: keep_alive && framing != Framing::UntilClose,
    }))
}

/// Response headers that describe one connection only (RFC 9110 §7.6.1). `Transfer-Encoding`
/// is not here: the relay passes chunked bodies through as they are, so it stays true.
const HOP_BY_HOP: [&[u8]; 6] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"upgrade",
    b"proxy-authenticate",
];

/// Write the client's response head from the replica's (`head`, parsed from `buf`):
/// hop-by-hop headers and those the route's middlewares remove or set are left out, the
/// middlewares' values and `extras` are added, and `connection: close` when `close`.
pub(crate) fn write_response_head(
    out: &mut BytesMut,
    buf: &[u8],
    head: &ResponseHead,
    middlewares: &[Middleware],
    extras: &[(HeaderName, HeaderValue)],
    close: bool,
) {
    out.put_slice(b"HTTP/1.1 ");
    let code = head.status;
    out.put_slice(&[
        b'0' + (code / 100 % 10) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
        b' ',
    ]);
    out.put_slice(&buf[head.reason.clone()]);
    out.put_slice(b"\r\n");
    // Headers the replica's Connection header names are hop-by-hop too.
    let named: Vec<&[u8]> = head
        .fields
        .iter()
        .filter(|(n, _)| buf[n.clone()].eq_ignore_ascii_case(b"connection"))
        .flat_map(|(_, v)| tokens(&buf[v.clone()]))
        .collect();
    let replaced = |name: &[u8]| {
        HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
            || named.iter().any(|h| name.eq_ignore_ascii_case(h))
            || extras
                .iter()
                .any(|(n, _)| *n != header::SET_COOKIE && name.eq_ignore_ascii_case(n.as_ref()))
            || middlewares.iter().any(|m| match m {
                Middleware::Headers(rules) => {
                    rules
                        .response_remove
                        .iter()
                        .any(|n| name.eq_ignore_ascii_case(n.as_ref()))
                        || rules
                            .response_set
                            .iter()
                            .any(|(n, _)| name.eq_ignore_ascii_case(n.as_ref()))
                }
                _ => false,
            })
    };
    for (name, value) in &head.fields {
        let name = &buf[name.clone()];
        if !replaced(name) {
            put_field(out, name, &buf[value.clone()]);
        }
    }
    for m in middlewares {
        if let Middleware::Headers(rules) = m {
            for (name, value) in &rules.response_set {
                put_field(out, name.as_ref(), value.as_bytes());
            }
        }
    }
    for (name, value) in extras {
        put_field(out, name.as_ref(), value.as_bytes());
    }
    if close {
        out.put_slice(b"connection: close\r\n");
    }
    out.put_slice(b"\r\n");
}

/// Finds the end of a chunked body in the bytes that pass, without decoding it.
#[derive(Debug, Default)]
pub(crate) struct ChunkedEnd {
    state: Chunk,
    size: u64,
    digits: u8,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    #[default]
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    FinalLf,
}

impl ChunkedEnd {
    /// Feed the next bytes of the body. `Ok(Some(n))`: the body ends after `data[..n]`.
    pub(crate) fn scan(&mut self, data: &[u8]) -> Result<Option<usize>, &'static str> {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            match self.state {
                Chunk::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.digits += 1;
                        if self.digits > 15 {
                            return Err("chunk size too large");
                        }
                        self.size = self.size * 16 + d;
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => self.state = Chunk::Extension,
                    b'\r' if self.digits > 0 => self.state = Chunk::SizeLf,
                    _ => return Err("invalid chunk size"),
                },
                Chunk::Extension => match b {
                    b'\r' => self.state = Chunk::SizeLf,
                    b'\n' => return Err("invalid chunk extension"),
                    _ => {}
                },
                Chunk::SizeLf => {
                    if b != b'\n' {
                        return Err("invalid chunk size line");
                    }
                    self.state = if self.size == 0 {
                        Chunk::TrailerStart
                    } else {
                        Chunk::Data
                    };
                }
                Chunk::Data => {
                    let take = self.size.min((data.len() - i) as u64);
                    self.size -= take;
                    i += take as usize;
                    if self.size == 0 {
                        self.state = Chunk::DataCr;
                    }
                    continue;
                }
                Chunk::DataCr if b == b'\r' => self.state = Chunk::DataLf,
                Chunk::DataLf if b == b'\n' => {
                    self.state = Chunk::Size;
                    self.digits = 0;
                }
                Chunk::DataCr | Chunk::DataLf => return Err("chunk data not followed by CRLF"),
                Chunk::TrailerStart if b == b'\r' => self.state = Chunk::FinalLf,
                Chunk::TrailerStart => self.state = Chunk::TrailerLine,
                Chunk::TrailerLine => {
                    if b == b'\n' {
                        self.state = Chunk::TrailerStart;
                    }
                }
                Chunk::FinalLf if b == b'\n' => return Ok(Some(i + 1)),
                Chunk::FinalLf => return Err("invalid end of chunked body"),
            }
            i += 1;
        }
        Ok(None)
    }
}

/// Checks for the fuzz target `relay_wire`: arbitrary bytes as a request stream, a
/// response head and a chunked body. Nothing may panic, and each parser must agree with
/// itself: a request split off the buffer leaves exactly the rest; anything else leaves the
/// buffer as it was; a chunked body fed in pieces ends where it ends fed whole.
pub fn check_parsers(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    match parse_request(&mut buf, 64 * 1024) {
        Parsed::Request(r) => {
            assert_eq!([&r.raw[..], &buf[..]].concat(), data);
            assert!(r.body_len <= 64 * 1024);
        }
        Parsed::Partial | Parsed::Other | Parsed::Malformed => assert_eq!(&buf[..], data),
    }
    if let Ok(Some(head)) = parse_response(data, false) {
        assert!(head.len <= data.len());
        let mut out = BytesMut::new();
        write_response_head(&mut out, data, &head, &[], &[], true);
        assert!(out.ends_with(b"\r\n\r\n"));
    }
    let whole = ChunkedEnd::default().scan(data);
    let mut pieces = ChunkedEnd::default();
    let mut at = 0;
    let split = loop {
        let step = (data.len() - at).min(7);
        match pieces.scan(&data[at..at + step]) {
            Ok(Some(n)) => break Ok(Some(at + n)),
            Ok(None) if at + step == data.len() => break Ok(None),
            Ok(None) => at += step,
            Err(e) => break Err(e),
        }
    };
    assert_eq!(whole.is_err(), split.is_err(), "{whole:?} vs {split:?}");
    if let (Ok(w), Ok(s)) = (whole, split) {
        assert_eq!(w, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> (Parsed, BytesMut) {
        let mut buf = BytesMut::from(text);
        (parse_request(&mut buf, 64 * 1024), buf)
    }

    #[test]
    fn plain_requests_are_parsed_and_split_off() {
        let (parsed, rest) = parse(
            b"POST /a/b?x=1 HTTP/1.1\r\nHost: h.test\r\nContent-Length: 3\r\nX-Many: 1\r\nx-many: 2\r\n\r\nabcGET",
        );
        let Parsed::Request(r) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(r.parts.method, Method::POST);
        assert_eq!(r.parts.uri.path(), "/a/b");
        assert_eq!(r.parts.uri.query(), Some("x=1"));
        assert_eq!(r.parts.headers["host"], "h.test");
        assert_eq!(r.parts.headers.get_all("x-many").iter().count(), 2);
        assert_eq!(r.body_len, 3);
        assert!(!r.close);
        assert_eq!(
            &rest[..],
            b"abcGET",
            "body and what follows stay in the buffer"
        );
    }

    #[test]
    fn unusual_requests_are_left_to_the_full_stack() {
        for text in [
            &b"GET / HTTP/1.0\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"PUT / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n",
            b"PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET http://other.test/ HTTP/1.1\r\n\r\n",
            b"CONNECT other.test:443 HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"PRI * HTTP/2.0\r\n",
        ] {
            let (parsed, rest) = parse(text);
            assert!(
                matches!(parsed, Parsed::Other),
                "{:?}: {parsed:?}",
                String::from_utf8_lossy(text)
            );
            assert_eq!(&rest[..], text, "nothing consumed");
        }
    }

    #[test]
    fn partial_and_malformed_heads() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: a").0,
            Parsed::Partial
        ));
        assert!(matches!(
            parse(b"NOT HTTP AT ALL\r\n\r\n").0,
            Parsed::Malformed
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").0,
            Parsed::Malformed
        ));
        let (close, _) = parse(b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n");
        assert!(matches!(close, Parsed::Request(r) if r.close));
    }

    #[test]
    fn requests_are_written_with_their_headers_and_body() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("h.test"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let mut out = BytesMut::new();
        write_request(
            &mut out,
            &Method::PUT,
            &PathAndQuery::from_static("/p?q"),
            &headers,
            b"body",
        );
        assert_eq!(
            &out[..],
            b"PUT /p?q HTTP/1.1\r\nhost: h.test\r\nx-a: 1\r\nx-a: 2\r\n\r\nbody"
        );
    }

    #[test]
    fn response_framing() {
        let framing = |text: &[u8], head: bool| {
            parse_response(text, head)
                .unwrap()
                .map(|h| (h.framing, h.reusable))
        };
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(framing(ok, false), Some((Framing::Length(5), true)));
        assert_eq!(framing(ok, true), Some((Framing::Empty, true)), "HEAD");
        assert_eq!(
            framing(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                false
            ),
            Some((Framing::Chunked, true))
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\n\r\n", false),
            Some((Framing::UntilClose, false))
        );
        assert_eq!(
            framing(b"HTTP/1.1 204 No Content\r\n\r\n", false),
            Some((Framing::Empty, true))
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                false
            ),
            Some((Framing::Length(0), false))
        );
        assert_eq!(
            framing(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false),
            Some((Framing::Length(0), false)),
            "HTTP/1.0 closes unless it says keep-alive"
        );
        assert_eq!(
            framing(
                b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n",
                false
            ),
            Some((Framing::Length(0), true))
        );
        assert_eq!(framing(b"HTTP/1.1 200 OK\r\nContent-Le", false), None);
        assert!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            )
            .is_err()
        );
        assert!(parse_response(b"SMTP ready\r\n\r\n", false).is_err());
    }

    #[test]
    fn response_heads_are_rewritten_for_the_client() {
        let text = b"HTTP/1.1 201 Made It\r\nConnection: x-private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\nX-Shoal-Replica: spoofed\r\nServer: app\r\nX-Drop: 1\r\nContent-Length: 0\r\n\r\n";
        let head = parse_response(text, false).unwrap().unwrap();
        let rules = shoal_config::HeaderRules {
            response_remove: vec![HeaderName::from_static("x-drop")],
            response_set: vec![(
                HeaderName::from_static("server"),
                HeaderValue::from_static("shoal"),
            )],
            ..Default::default()
        };
        let extras = [
            (
                HeaderName::from_static("x-shoal-replica"),
                HeaderValue::from_static("web/1"),
            ),
            (header::SET_COOKIE, HeaderValue::from_static("sid=1")),
        ];
        let mut out = BytesMut::new();
        write_response_head(
            &mut out,
            text,
            &head,
            &[Middleware::Headers(rules)],
            &extras,
            true,
        );
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "HTTP/1.1 201 Made It\r\ncontent-length: 0\r\nserver: shoal\r\nx-shoal-replica: web/1\r\nset-cookie: sid=1\r\nconnection: close\r\n\r\n"
                .replace("content-length", "Content-Length")
        );
    }

    /// A chunked body with `sizes`, extensions and trailers.
    fn chunked(sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            if i % 2 == 0 {
                out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            } else {
                out.extend_from_slice(format!("{n:X};ext=\"v\"\r\n").as_bytes());
            }
            out.extend(std::iter::repeat_n(b'd', n));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\nX-Trailer: a\r\nX-More: b\r\n\r\n");
        out
    }

    #[test]
    fn the_end_of_a_chunked_body_is_found_however_it_is_split() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..300 {
            let sizes: Vec<usize> = (0..rng.usize(0..6)).map(|_| rng.usize(1..300)).collect();
            let body = chunked(&sizes);
            let mut wire = body.clone();
            wire.extend_from_slice(b"HTTP/1.1 next");
            let mut end = ChunkedEnd::default();
            let mut at = 0;
            let found = loop {
                let step = rng.usize(1..40).min(wire.len() - at);
                if let Some(n) = end.scan(&wire[at..at + step]).unwrap() {
                    break at + n;
                }
                at += step;
                assert!(at < wire.len(), "end not found in {sizes:?}");
            };
            assert_eq!(found, body.len(), "sizes {sizes:?}");
        }
    }

    #[test]
    fn broken_chunked_bodies_are_errors() {
        for bad in [&b"zz\r\n"[..], b"\r\n", b"5\r\nhelloXX", b"0\r\n\r\r"] {
            let mut end = ChunkedEnd::default();
            assert!(end.scan(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_parsers_survive_mutated_input() {
        // A stable-toolchain stand-in for the `relay_wire` fuzz target: seeds with random
        // bytes flipped, inserted and cut, through the same self-checks.
        let seeds: [&[u8]; 4] = [
            b"GET /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: x-a\r\nX-A: 1\r\n\r\n",
            b"5;e=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.0 204 No Content\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n",
        ];
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..100_000 {
            let mut data = seeds[rng.usize(..seeds.len())].to_vec();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..=data.len());
                match rng.u8(..3) {
                    0 if at < data.len() => data[at] = rng.u8(..),
                    1 => data.insert(at, *b"\r\n0;:, \t".get(rng.usize(..9)).unwrap_or(&b'x')),
                    _ => data.truncate(at),
                }
            }
            check_parsers(&data);
        }
    }
}
