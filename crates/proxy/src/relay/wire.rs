//! HTTP/1.1 on the wire, as far as the relay needs it: parse a client's request head, write
//! the upstream request, parse the replica's response head, write the client's response
//! head, and find where a chunked body ends without decoding it.
//!
//! Anything unusual is not handled here but recognised and handed to the full HTTP stack
//! ([`Parsed::Other`]): HTTP/1.0, the HTTP/2 preface, upgrades, `Expect`, chunked or large
//! request bodies, absolute-form targets, and heads that do not parse.
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
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Parsed::Partial,
        _ => return Parsed::Other,
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
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| (s.as_ptr() as usize - base)..(s.as_ptr() as usize - base + s.len());
    let target = offset(target.as_bytes());
    let mut names = Vec::with_capacity(req.headers.len());
    let mut body_len: Option<usize> = None;
    let mut close = false;
    for field in req.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(field.name.as_bytes()) else {
            return Parsed::Other;
        };
        if name == header::TRANSFER_ENCODING || name == header::EXPECT || name == header::UPGRADE {
            return Parsed::Other;
        }
        if name == header::CONTENT_LENGTH {
            match (parse_length(field.value), body_len) {
                (Some(n), None) => body_len = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => return Parsed::Other,
            }
        } else if name == header::CONNECTION {
            for token in tokens(field.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Parsed::Other;
                }
            }
        }
        names.push((name, offset(field.value)));
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
    let mut headers = HeaderMap::with_capacity(names.len());
    for (name, value) in names {
        let Ok(value) = HeaderValue::from_maybe_shared(raw.slice(value)) else {
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
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut fields);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        Ok(httparse::Status::Partial) => return Err("response head too large"),
        Err(_) => return Err("malformed response head"),
    };
    let status = resp.code.ok_or("malformed response head")?;
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| (s.as_ptr() as usize - base)..(s.as_ptr() as usize - base + s.len());
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
