//! The `compress` middleware: responses compressed with zstd, brotli or gzip, as the client's
//! `Accept-Encoding` prefers, streamed.
//!
//! Three decisions, in order:
//!
//! 1. **On the request** ([`choose`]), before its head moves on: the route must have a
//!    `compress` middleware, the request must not be `HEAD`, carry `Range` or ask for an
//!    upgrade, and its `Accept-Encoding` (RFC 9110 §12.5.3) must accept one of the offered
//!    codings. The highest q-value wins; ties go to the order the route lists its codings
//!    in. `q=0` refuses a coding; `*` stands for every coding the client did not name; an
//!    explicit `identity` with a higher q than the best coding means "rather not". No
//!    `Accept-Encoding` at all means no compression (as nginx, Traefik and Caddy do: such
//!    clients are usually tools that would not decode it). The relay copies response bytes
//!    verbatim, so it hands a request the middleware will compress to the full stack before
//!    anything is sent; requests it will not compress stay on the relay.
//! 2. **On the response head** ([`compress`]): not when it already has a `Content-Encoding`,
//!    has no content by its status (1xx, 204, 205, 304) or is a partial one (206), is
//!    shorter than `min_response_body_bytes` by its `Content-Length` (an unknown length is
//!    compressed), has an excluded media type (or is gRPC, which has its own compression),
//!    or says `Cache-Control: no-transform` (RFC 9111 §5.2.2.6). Otherwise: `Content-Encoding`
//!    is set, `Content-Length` goes (the body is sent chunked, or as DATA frames), `Vary`
//!    gains `Accept-Encoding`, a strong `ETag` is weakened (`"x"` → `W/"x"`: the bytes differ
//!    from the uncompressed representation's, as nginx does), and `Accept-Ranges` goes
//!    (ranges of the compressed bytes are not offered). A 304 gets the same `ETag` and
//!    `Vary` as the compressed 200 it revalidates.
//! 3. **On the body** ([`CompressBody`]): each frame is compressed as it arrives. When the
//!    replica has nothing more for now (its body is `Pending`), the encoder is flushed, so
//!    server-sent events and slow streams reach the client as they are produced rather than
//!    when the encoder's block fills. Trailers pass through. Memory per response is the
//!    encoder's state, bounded by its window (gzip 32 KiB, about 0.4 MiB in all; brotli
//!    256 KiB, under 3 MiB in all; zstd 1 MiB, 2.5 MiB in all; brotli's and zstd's smaller
//!    when `Content-Length` says the body is), never the body.
//!
//! Levels are fast ones: gzip 5, brotli 4, zstd 3 (zstd's own default; nginx's gzip default
//! is 1). A gateway compresses on the request path, so a level is worth raising only while
//! it costs little CPU per byte saved: on 100 KiB of JSON or HTML, one level higher saves
//! 1–11 % for 1.3–4× the CPU, and gzip 1 is 2–3× cheaper but 40–60 % larger (figures in
//! docs/middlewares.md).
use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use shoal_config::{Compress, Encoding, Middleware};

use crate::body::{BoxError, ProxyBody};

/// gzip level (0–9).
const GZIP_LEVEL: u32 = 5;
/// brotli quality (0–11).
const BROTLI_QUALITY: u32 = 4;
/// zstd level (1–19 for normal use).
const ZSTD_LEVEL: i32 = 3;
/// Largest brotli window, log2 bytes (256 KiB): brotli 4's state then peaks near 3 MiB on
/// a long stream (7.5 MiB at 1 MiB), and bodies of web pages and API answers fit in it.
const BROTLI_MAX_WINDOW_LOG: u32 = 18;
/// Largest zstd window, log2 bytes (1 MiB; its state is then 2.5 MiB). Browsers decode
/// windows up to 8 MiB (RFC 9659 §3).
const ZSTD_MAX_WINDOW_LOG: u32 = 20;
/// brotli's internal output buffer.
const BROTLI_BUFFER: usize = 4096;
/// Room reserved for compressed output before each write.
const OUT_CHUNK: usize = 8 * 1024;

/// A request whose response is to be compressed (if the response head allows): the coding
/// chosen and the route's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chosen<'c> {
    /// The coding the client prefers among the offered ones.
    pub(crate) encoding: Encoding,
    /// The route's `compress` settings.
    pub(crate) config: &'c Compress,
}

/// The coding to compress this request's response with, or None: the route does not
/// compress, the request is `HEAD`, has `Range` or asks for an upgrade, or its
/// `Accept-Encoding` accepts none of the offered codings. Allocates nothing.
pub(crate) fn choose<'c>(
    middlewares: &'c [Middleware],
    method: &Method,
    headers: &HeaderMap,
) -> Option<Chosen<'c>> {
    let config = middlewares.iter().find_map(|m| match m {
        Middleware::Compress(c) => Some(c),
        _ => None,
    })?;
    if method == Method::HEAD
        || headers.contains_key(header::RANGE)
        || headers.contains_key(header::UPGRADE)
    {
        return None;
    }
    let encoding = negotiate(headers, &config.encodings)?;
    Some(Chosen { encoding, config })
}

/// Compress `resp` with the chosen coding, unless its head says not to (see the module
/// doc). The head is edited and the body wrapped in a [`CompressBody`].
pub(crate) fn compress(chosen: Chosen<'_>, resp: Response<ProxyBody>) -> Response<ProxyBody> {
    if resp.status() == StatusCode::NOT_MODIFIED {
        // A 304 carries the validators and `Vary` the 200 would have (RFC 9110 §15.4.5), and
        // a cache updates its stored (compressed) response with them.
        let (mut parts, body) = resp.into_parts();
        if revalidates_compressed(&parts.headers) {
            add_vary_accept_encoding(&mut parts.headers);
            weaken_etag(&mut parts.headers);
        }
        return Response::from_parts(parts, body);
    }
    let Some(length) = eligible(resp.status(), resp.headers(), chosen.config) else {
        return resp;
    };
    let encoder = match Encoder::new(chosen.encoding, length) {
        Ok(e) => e,
        Err(e) => {
            // Encoders only fail to start on bad parameters, which are constants here.
            tracing::warn!(error = %e, "could not start the {} encoder", chosen.encoding.token());
            return resp;
        }
    };
    let (mut parts, body) = resp.into_parts();
    let headers = &mut parts.headers;
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(chosen.encoding.token()),
    );
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::ACCEPT_RANGES);
    add_vary_accept_encoding(headers);
    weaken_etag(headers);
    Response::from_parts(parts, crate::body::boxed(CompressBody::new(body, encoder)))
}

/// Whether a 304 may stand for a response that was compressed: not one the replica encoded
/// itself, nor one it forbade transforming. (Its type and size are not known; weakening an
/// `ETag` and adding to `Vary` are safe either way.)
fn revalidates_compressed(headers: &HeaderMap) -> bool {
    !headers.contains_key(header::CONTENT_ENCODING)
        && !headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .any(|v| has_directive(v.as_bytes(), b"no-transform"))
}

/// Whether a response with this status and head may be compressed: `Some(known length)`
/// if so.
fn eligible(status: StatusCode, headers: &HeaderMap, config: &Compress) -> Option<Option<u64>> {
    // No content by their status (RFC 9110 §15.2, §15.3.5, §15.3.6, §15.4.5), or a part of
    // one (§15.3.7: ranges are of the identity bytes).
    if status.is_informational()
        || matches!(
            status,
            StatusCode::NO_CONTENT
                | StatusCode::RESET_CONTENT
                | StatusCode::PARTIAL_CONTENT
                | StatusCode::NOT_MODIFIED
        )
    {
        return None;
    }
    // Already encoded (even as `identity`: we do not stack codings).
    if headers.contains_key(header::CONTENT_ENCODING) {
        return None;
    }
    let length = match headers.get(header::CONTENT_LENGTH) {
        None => None,
        // hyper has checked the replica's framing; a value it passed that is not a number
        // is treated as unknown.
        Some(v) => std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok()),
    };
    if length.is_some_and(|n| n == 0 || n < config.min_response_body_bytes) {
        return None;
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE)
        && excluded_type(ct.as_bytes(), &config.excluded_content_types)
    {
        return None;
    }
    if headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .any(|v| has_directive(v.as_bytes(), b"no-transform"))
    {
        return None;
    }
    Some(length)
}

// ---- Accept-Encoding (RFC 9110 §12.5.3) ----

/// q-values (in thousandths) the client gave: per coding we can produce, for `*`, and for
/// `identity`.
#[derive(Debug, Default)]
struct Weights {
    zstd: Option<u16>,
    br: Option<u16>,
    gzip: Option<u16>,
    star: Option<u16>,
    identity: Option<u16>,
}

impl Weights {
    fn slot(&mut self, coding: &[u8]) -> Option<&mut Option<u16>> {
        let eq = |name: &str| coding.eq_ignore_ascii_case(name.as_bytes());
        if eq("gzip") || eq("x-gzip") {
            // RFC 9110 §8.4.1.3: "x-gzip" is to be taken as "gzip".
            Some(&mut self.gzip)
        } else if eq("br") {
            Some(&mut self.br)
        } else if eq("zstd") {
            Some(&mut self.zstd)
        } else if eq("identity") {
            Some(&mut self.identity)
        } else if coding == b"*" {
            Some(&mut self.star)
        } else {
            None
        }
    }

    fn of(&self, e: Encoding) -> Option<u16> {
        match e {
            Encoding::Zstd => self.zstd,
            Encoding::Brotli => self.br,
            Encoding::Gzip => self.gzip,
        }
    }
}

/// The offered coding the client's `Accept-Encoding` prefers, if it accepts any.
///
/// `Accept-Encoding = #( codings [ weight ] )`, `codings = content-coding / "identity" /
/// "*"`, `weight = OWS ";" OWS "q=" qvalue` (RFC 9110 §12.5.3, §12.4.2). Several field lines
/// form one list (§5.3). An element that does not parse is ignored, not the whole field.
/// A coding named twice counts with its lowest weight (a refusal is never overridden).
fn negotiate(headers: &HeaderMap, offered: &[Encoding]) -> Option<Encoding> {
    let mut lines = headers.get_all(header::ACCEPT_ENCODING).iter().peekable();
    // No Accept-Encoding: no compression (see the module doc).
    lines.peek()?;
    let mut w = Weights::default();
    for line in lines {
        for element in list_elements(line.as_bytes(), false) {
            let Some((coding, q)) = parse_coding(element) else {
                continue;
            };
            if let Some(slot) = w.slot(coding) {
                *slot = Some(slot.map_or(q, |earlier| earlier.min(q)));
            }
        }
    }
    // "*" matches any coding not named (§12.5.3); ties go to the first offered.
    let mut best: Option<(Encoding, u16)> = None;
    for &e in offered {
        let q = w.of(e).or(w.star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((e, q));
        }
    }
    let (e, q) = best?;
    // The client named `identity` and prefers it to any coding we could use.
    if w.identity.is_some_and(|i| i > q) {
        return None;
    }
    Some(e)
}

/// One `codings [ weight ]` element: the coding and its weight in thousandths (1000 without
/// a weight). None if it does not follow the grammar.
fn parse_coding(element: &[u8]) -> Option<(&[u8], u16)> {
    let (coding, weight) = match element.iter().position(|&b| b == b';') {
        Some(i) => (trim_ows(&element[..i]), Some(trim_ows(&element[i + 1..]))),
        None => (element, None),
    };
    if coding.is_empty() || !coding.iter().all(|&b| is_tchar(b)) {
        return None;
    }
    let q = match weight {
        None => 1000,
        // Parameter names are case-insensitive (§5.6.6); only `q` is defined here, and
        // nothing may follow its value.
        Some(w) => match w {
            [b'q' | b'Q', b'=', value @ ..] => parse_qvalue(value)?,
            _ => return None,
        },
    };
    Some((coding, q))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` (RFC 9110 §12.4.2), in
/// thousandths.
fn parse_qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v {
        [i] => (*i, &[][..]),
        [i, b'.', frac @ ..] if frac.len() <= 3 => (*i, frac),
        _ => return None,
    };
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0_u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b'0' => Some(thousandths),
        b'1' if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// `tchar` (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Optional whitespace (SP / HTAB) off both ends.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The non-empty elements of a `#rule` list (RFC 9110 §5.6.1), whitespace trimmed. With
/// `quoting` (lists whose grammar has quoted strings, §5.6.4), commas inside them do not
/// split.
fn list_elements(value: &[u8], quoting: bool) -> impl Iterator<Item = &[u8]> {
    let mut rest = value;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            let mut quoted = false;
            let mut escaped = false;
            let mut end = rest.len();
            for (i, &b) in rest.iter().enumerate() {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' if quoted => escaped = true,
                    b'"' if quoting => quoted = !quoted,
                    b',' if !quoted => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            let element = trim_ows(&rest[..end]);
            rest = rest.get(end + 1..).unwrap_or_default();
            if !element.is_empty() {
                return Some(element);
            }
        }
    })
}

// ---- Response head checks and edits ----

/// Whether a `Cache-Control` value has `directive` (`token [ "=" ( token / quoted-string )
/// ]`, names case-insensitive: RFC 9111 §5.2).
fn has_directive(value: &[u8], directive: &[u8]) -> bool {
    list_elements(value, true).any(|d| {
        let name = d.split(|&b| b == b'=').next().unwrap_or_default();
        trim_ows(name).eq_ignore_ascii_case(directive)
    })
}

/// Whether a `Content-Type` is excluded: its media type (parameters dropped, any case) is
/// one of `excluded` (each `type/subtype` or `type/*`), or gRPC (`application/grpc` and its
/// `+proto`/`+json` forms), whose messages carry their own compression.
fn excluded_type(content_type: &[u8], excluded: &[String]) -> bool {
    let media = trim_ows(
        content_type
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default(),
    );
    let Some(slash) = media.iter().position(|&b| b == b'/') else {
        return false;
    };
    let (ty, subtype) = (&media[..slash], &media[slash + 1..]);
    if ty.eq_ignore_ascii_case(b"application")
        && (subtype.eq_ignore_ascii_case(b"grpc")
            || subtype
                .get(..5)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"grpc+")))
    {
        return true;
    }
    excluded.iter().any(|pattern| {
        let pattern = trim_ows(
            pattern
                .as_bytes()
                .split(|&b| b == b';')
                .next()
                .unwrap_or_default(),
        );
        match pattern.iter().position(|&b| b == b'/') {
            Some(i) => {
                let (pty, psub) = (&pattern[..i], &pattern[i + 1..]);
                (pty == b"*" || pty.eq_ignore_ascii_case(ty))
                    && (psub == b"*" || psub.eq_ignore_ascii_case(subtype))
            }
            None => false,
        }
    })
}

/// Add `Accept-Encoding` to `Vary`, unless it is there already or `Vary` is `*`.
fn add_vary_accept_encoding(headers: &mut HeaderMap) {
    let mut existing = headers.get_all(header::VARY).iter();
    let listed = headers.get_all(header::VARY).iter().any(|v| {
        list_elements(v.as_bytes(), false)
            .any(|f| f == b"*" || f.eq_ignore_ascii_case(b"accept-encoding"))
    });
    if listed {
        return;
    }
    match (existing.next(), existing.next()) {
        (None, _) => {
            headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        // One line: extend it, so the response keeps a single Vary.
        (Some(one), None) => {
            let mut merged = BytesMut::with_capacity(one.len() + 17);
            merged.extend_from_slice(one.as_bytes());
            merged.extend_from_slice(b", Accept-Encoding");
            if let Ok(v) = HeaderValue::from_maybe_shared(merged.freeze()) {
                headers.insert(header::VARY, v);
            }
        }
        // Several lines already form one list (RFC 9110 §5.3): one more.
        (Some(_), Some(_)) => {
            headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
    }
}

/// A strong `ETag` (`"x"`) becomes weak (`W/"x"`): the compressed bytes are not the ones it
/// named, but the representation is semantically the same (RFC 9110 §8.8.1). Weak ones and
/// malformed values are left as they are.
fn weaken_etag(headers: &mut HeaderMap) {
    let Some(etag) = headers.get(header::ETAG) else {
        return;
    };
    if etag.as_bytes().first() != Some(&b'"') {
        return;
    }
    let mut weak = BytesMut::with_capacity(etag.len() + 2);
    weak.extend_from_slice(b"W/");
    weak.extend_from_slice(etag.as_bytes());
    if let Ok(v) = HeaderValue::from_maybe_shared(weak.freeze()) {
        headers.insert(header::ETAG, v);
    }
}

// ---- The streamed body ----

/// Where encoders write: a buffer whose filled part is split off as each frame.
type Sink = bytes::buf::Writer<BytesMut>;

/// One response's encoder.
enum Encoder {
    Gzip(flate2::write::GzEncoder<Sink>),
    Brotli(Box<brotli::CompressorWriter<Sink>>),
    Zstd(zstd::stream::write::Encoder<'static, Sink>),
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoder::Gzip(_) => "Encoder::Gzip",
            Encoder::Brotli(_) => "Encoder::Brotli",
            Encoder::Zstd(_) => "Encoder::Zstd",
        })
    }
}

impl Encoder {
    /// An encoder for `encoding`; `length`, when known, sizes brotli's and zstd's windows
    /// down for small bodies.
    fn new(encoding: Encoding, length: Option<u64>) -> io::Result<Encoder> {
        let sink = BytesMut::new().writer();
        // log2 of the window: the body's size rounded up to a power of two, within the
        // coding's limits and ours.
        let window = |min: u32, max: u32| {
            length.map_or(max, |n| {
                (u64::BITS - n.saturating_sub(1).leading_zeros()).clamp(min, max)
            })
        };
        Ok(match encoding {
            Encoding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                sink,
                flate2::Compression::new(GZIP_LEVEL),
            )),
            Encoding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                sink,
                BROTLI_BUFFER,
                BROTLI_QUALITY,
                window(10, BROTLI_MAX_WINDOW_LOG),
            ))),
            Encoding::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(sink, ZSTD_LEVEL)?;
                e.window_log(window(10, ZSTD_MAX_WINDOW_LOG))?;
                // A known size also sizes zstd's tables down (1 MiB instead of 2.5 for
                // 100 KiB), and is written in the frame header. hyper has checked the
                // replica's body against it.
                e.set_pledged_src_size(length)?;
                Encoder::Zstd(e)
            }
        })
    }

    fn out(&mut self) -> &mut BytesMut {
        match self {
            Encoder::Gzip(e) => e.get_mut().get_mut(),
            Encoder::Brotli(e) => e.get_mut().get_mut(),
            Encoder::Zstd(e) => e.get_mut().get_mut(),
        }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let out = self.out();
        if out.capacity() - out.len() < OUT_CHUNK / 2 {
            out.reserve(OUT_CHUNK);
        }
        match self {
            Encoder::Gzip(e) => e.write_all(data),
            Encoder::Brotli(e) => e.write_all(data),
            Encoder::Zstd(e) => e.write_all(data),
        }
    }

    /// Emit everything written so far in a form the client can decode now (gzip's sync
    /// flush, brotli's flush metablock, the end of a zstd block).
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Brotli(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }

    /// End the stream.
    fn finish(self) -> io::Result<Bytes> {
        let sink = match self {
            Encoder::Gzip(e) => e.finish()?,
            Encoder::Brotli(e) => e.into_inner(),
            Encoder::Zstd(e) => e.finish()?,
        };
        Ok(sink.into_inner().freeze())
    }

    /// The compressed bytes produced so far and not yet taken.
    fn take(&mut self) -> Bytes {
        self.out().split().freeze()
    }
}

/// A response body compressed frame by frame as it streams (see the module doc).
#[derive(Debug)]
pub(crate) struct CompressBody {
    inner: ProxyBody,
    /// None once the stream is finished (or failed).
    encoder: Option<Encoder>,
    /// Data written since the last flush.
    unflushed: bool,
    /// The replica's trailers, sent after the last compressed bytes.
    trailers: Option<HeaderMap>,
}

impl CompressBody {
    fn new(inner: ProxyBody, encoder: Encoder) -> CompressBody {
        CompressBody {
            inner,
            encoder: Some(encoder),
            unflushed: false,
            trailers: None,
        }
    }

    /// The replica's body has ended: the encoder's last bytes, then the trailers, if any.
    fn finish(&mut self) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(encoder) = self.encoder.take() else {
            return Poll::Ready(None);
        };
        match encoder.finish() {
            Ok(last) if !last.is_empty() => Poll::Ready(Some(Ok(Frame::data(last)))),
            Ok(_) => Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t)))),
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }
}

impl Body for CompressBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            };
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => {
                    // Nothing more for now: let the client have what there is. The inner
                    // body has registered the waker, so returning a frame instead is safe.
                    if !this.unflushed {
                        return Poll::Pending;
                    }
                    this.unflushed = false;
                    if let Err(e) = encoder.flush() {
                        this.encoder = None;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                    let out = encoder.take();
                    return if out.is_empty() {
                        Poll::Pending
                    } else {
                        Poll::Ready(Some(Ok(Frame::data(out))))
                    };
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        if data.is_empty() {
                            continue;
                        }
                        if let Err(e) = encoder.write(&data) {
                            this.encoder = None;
                            return Poll::Ready(Some(Err(e.into())));
                        }
                        this.unflushed = true;
                        let out = encoder.take();
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    // Trailers end the body.
                    Err(frame) => {
                        this.trailers = frame.into_trailers().ok();
                        return this.finish();
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    this.encoder = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => return this.finish(),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use http_body_util::BodyExt;

    use super::*;

    fn config() -> Compress {
        Compress {
            encodings: vec![Encoding::Zstd, Encoding::Brotli, Encoding::Gzip],
            min_response_body_bytes: 1024,
            excluded_content_types: vec![
                "image/*".into(),
                "application/zip".into(),
                "Font/WOFF2".into(),
            ],
        }
    }

    fn accept(values: &[&str], offered: &[Encoding]) -> Option<Encoding> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        negotiate(&h, offered)
    }

    const ALL: &[Encoding] = &[Encoding::Zstd, Encoding::Brotli, Encoding::Gzip];
    use Encoding::{Brotli, Gzip, Zstd};

    #[test]
    fn without_accept_encoding_nothing_is_compressed() {
        assert_eq!(accept(&[], ALL), None);
        // An empty field value: no coding wanted (RFC 9110 §12.5.3).
        assert_eq!(accept(&[""], ALL), None);
        assert_eq!(accept(&[" , ,"], ALL), None);
    }

    #[test]
    fn ties_go_to_the_configured_order() {
        assert_eq!(accept(&["gzip, deflate, br, zstd"], ALL), Some(Zstd));
        assert_eq!(accept(&["gzip, br"], ALL), Some(Brotli));
        assert_eq!(accept(&["gzip, br"], &[Gzip, Brotli]), Some(Gzip));
        assert_eq!(accept(&["gzip"], ALL), Some(Gzip));
        assert_eq!(accept(&["deflate, compress"], ALL), None);
    }

    #[test]
    fn the_highest_q_wins() {
        assert_eq!(accept(&["zstd;q=0.5, br;q=0.8, gzip"], ALL), Some(Gzip));
        assert_eq!(accept(&["zstd;q=0.5, br;q=0.8"], ALL), Some(Brotli));
        assert_eq!(accept(&["gzip;q=0.001"], ALL), Some(Gzip));
        // Equal after normalising: the configured order.
        assert_eq!(accept(&["gzip;q=1.0, zstd;q=1"], ALL), Some(Zstd));
        assert_eq!(accept(&["gzip;q=0.5, zstd;q=0.500"], ALL), Some(Zstd));
    }

    #[test]
    fn q_zero_refuses_a_coding() {
        assert_eq!(accept(&["zstd;q=0, gzip"], ALL), Some(Gzip));
        assert_eq!(accept(&["gzip;q=0"], ALL), None);
        assert_eq!(accept(&["gzip;q=0.000"], ALL), None);
        // Named twice: the refusal stands.
        assert_eq!(accept(&["gzip, gzip;q=0"], &[Gzip]), None);
        assert_eq!(accept(&["gzip;q=0", "gzip"], &[Gzip]), None);
    }

    #[test]
    fn star_matches_codings_not_named() {
        assert_eq!(accept(&["*"], ALL), Some(Zstd));
        assert_eq!(accept(&["zstd;q=0, *"], ALL), Some(Brotli));
        assert_eq!(accept(&["*;q=0.1, gzip;q=0.5"], ALL), Some(Gzip));
        assert_eq!(accept(&["*;q=0.9, gzip;q=0.5"], ALL), Some(Zstd));
        assert_eq!(accept(&["*;q=0"], ALL), None);
        assert_eq!(accept(&["*;q=0, br"], ALL), Some(Brotli));
    }

    #[test]
    fn identity_preferred_over_every_coding_means_none() {
        assert_eq!(accept(&["gzip;q=0.5, identity"], ALL), None);
        assert_eq!(accept(&["gzip;q=0.5, identity;q=0.5"], ALL), Some(Gzip));
        assert_eq!(accept(&["gzip, identity;q=0"], ALL), Some(Gzip));
        assert_eq!(accept(&["identity"], ALL), None);
    }

    #[test]
    fn tokens_and_the_q_name_are_case_insensitive_and_x_gzip_is_gzip() {
        assert_eq!(accept(&["GZIP"], ALL), Some(Gzip));
        assert_eq!(accept(&["Br;Q=0.5, gzip;q=0.4"], ALL), Some(Brotli));
        assert_eq!(accept(&["ZStd"], ALL), Some(Zstd));
        assert_eq!(accept(&["x-gzip"], ALL), Some(Gzip));
    }

    #[test]
    fn whitespace_and_several_lines_form_one_list() {
        assert_eq!(
            accept(&["  gzip ;\tq=0.5 ,\tbr ; q=0.6 "], ALL),
            Some(Brotli)
        );
        assert_eq!(accept(&["gzip;q=0.2", "br;q=0.3"], ALL), Some(Brotli));
        assert_eq!(accept(&[",gzip,,"], ALL), Some(Gzip));
    }

    #[test]
    fn invalid_elements_are_ignored_alone() {
        // qvalues out of the grammar: the element is dropped, the rest still counts.
        for bad in [
            "zstd;q=1.5",
            "zstd;q=2",
            "zstd;q=1.001",
            "zstd;q=0.1234",
            "zstd;q=.5",
            "zstd;q=0.",
            "zstd;q=-1",
            "zstd;q=",
            "zstd;q=0.5x",
            "zstd;q = 0.5",
            "zstd;level=1",
            "zstd;q=0.5;x=1",
            "zstd;",
            "zs td",
            "zstd\"",
            "zstd/1",
        ] {
            assert_eq!(
                accept(&[&format!("{bad}, gzip;q=0.1")], ALL),
                Some(Gzip),
                "{bad}"
            );
        }
        // `1.` and `0.` with up to three digits are valid.
        assert_eq!(accept(&["zstd;q=1., gzip;q=0.9"], ALL), Some(Zstd));
        assert_eq!(accept(&["zstd;q=1.000, gzip"], ALL), Some(Zstd));
        assert_eq!(parse_qvalue(b"0.5"), Some(500));
        assert_eq!(parse_qvalue(b"0.05"), Some(50));
        assert_eq!(parse_qvalue(b"0.005"), Some(5));
        assert_eq!(parse_qvalue(b"1"), Some(1000));
        assert_eq!(parse_qvalue(b"1.0000"), None);
    }

    #[test]
    fn head_range_upgrade_and_routes_without_compress_are_not_compressed() {
        let m = vec![Middleware::Compress(config())];
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(choose(&m, &Method::GET, &h).map(|c| c.encoding), Some(Gzip));
        assert!(choose(&[], &Method::GET, &h).is_none());
        assert!(choose(&m, &Method::HEAD, &h).is_none());
        let mut ranged = h.clone();
        ranged.insert(header::RANGE, HeaderValue::from_static("bytes=0-10"));
        assert!(choose(&m, &Method::GET, &ranged).is_none());
        let mut upgrade = h.clone();
        upgrade.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(choose(&m, &Method::GET, &upgrade).is_none());
    }

    fn head(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn ok(pairs: &[(&str, &str)]) -> bool {
        eligible(StatusCode::OK, &head(pairs), &config()).is_some()
    }

    #[test]
    fn statuses_without_content_or_partial_are_not_compressed() {
        let c = config();
        for code in [100, 101, 103, 204, 205, 206, 304] {
            let s = StatusCode::from_u16(code).unwrap();
            assert!(eligible(s, &HeaderMap::new(), &c).is_none(), "{code}");
        }
        for code in [200, 201, 404, 500] {
            let s = StatusCode::from_u16(code).unwrap();
            assert!(eligible(s, &HeaderMap::new(), &c).is_some(), "{code}");
        }
    }

    #[test]
    fn already_encoded_short_excluded_or_no_transform_are_not_compressed() {
        assert!(!ok(&[("content-encoding", "gzip")]));
        assert!(!ok(&[("content-encoding", "identity")]));
        assert!(!ok(&[("content-length", "1023")]));
        assert!(!ok(&[("content-length", "0")]));
        assert!(ok(&[("content-length", "1024")]));
        assert_eq!(
            eligible(
                StatusCode::OK,
                &head(&[("content-length", "5000")]),
                &config()
            ),
            Some(Some(5000))
        );
        // Unknown length: compressed.
        assert!(ok(&[]));
        assert!(!ok(&[("cache-control", "no-transform")]));
        assert!(!ok(&[(
            "cache-control",
            "public, No-Transform, max-age=60"
        )]));
        assert!(!ok(&[
            ("cache-control", "max-age=60"),
            ("cache-control", "no-transform")
        ]));
        // Inside a quoted argument it is not a directive.
        assert!(ok(&[("cache-control", "private=\"x, no-transform\"")]));
        assert!(ok(&[("cache-control", "no-transformer")]));
    }

    #[test]
    fn content_types_match_by_media_type_with_wildcards() {
        let ex = config().excluded_content_types;
        assert!(excluded_type(b"image/png", &ex));
        assert!(excluded_type(b"IMAGE/PNG; charset=x", &ex));
        assert!(excluded_type(b"application/zip", &ex));
        assert!(excluded_type(b"font/woff2", &ex));
        assert!(excluded_type(b" application/ZIP ;q=1", &ex));
        assert!(!excluded_type(b"application/zipx", &ex));
        assert!(!excluded_type(b"text/html; charset=utf-8", &ex));
        assert!(!excluded_type(b"application/json", &ex));
        assert!(!excluded_type(b"imagepng", &ex));
        assert!(!excluded_type(b"", &ex));
        // gRPC is never compressed by the gateway.
        assert!(excluded_type(b"application/grpc", &[]));
        assert!(excluded_type(b"application/grpc+proto", &[]));
        assert!(!excluded_type(b"application/grpc-web-text", &[]));
        assert!(excluded_type(b"text/plain", &["*/*".into()]));
        assert!(!ok(&[("content-type", "image/jpeg")]));
        assert!(ok(&[("content-type", "text/html")]));
    }

    #[test]
    fn vary_is_merged_once() {
        let vary = |pairs: &[(&str, &str)]| {
            let mut h = head(pairs);
            add_vary_accept_encoding(&mut h);
            h.get_all(header::VARY)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(vary(&[]), ["Accept-Encoding"]);
        assert_eq!(vary(&[("vary", "Origin")]), ["Origin, Accept-Encoding"]);
        assert_eq!(
            vary(&[("vary", "origin, accept-encoding")]),
            ["origin, accept-encoding"]
        );
        assert_eq!(vary(&[("vary", "*")]), ["*"]);
        assert_eq!(
            vary(&[("vary", "Origin"), ("vary", "Cookie")]),
            ["Origin", "Cookie", "Accept-Encoding"]
        );
    }

    #[test]
    fn strong_etags_are_weakened() {
        let etag = |v: &str| {
            let mut h = head(&[("etag", v)]);
            weaken_etag(&mut h);
            h[header::ETAG].to_str().unwrap().to_owned()
        };
        assert_eq!(etag("\"abc\""), "W/\"abc\"");
        assert_eq!(etag("W/\"abc\""), "W/\"abc\"");
        assert_eq!(etag("abc"), "abc");
    }

    #[test]
    fn a_304_gets_the_validators_a_compressed_200_would_have() {
        let config = config();
        let chosen = Chosen {
            encoding: Gzip,
            config: &config,
        };
        let not_modified = |pairs: &[(&str, &str)]| {
            let mut resp = Response::new(crate::body::empty());
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            *resp.headers_mut() = head(pairs);
            compress(chosen, resp).into_parts().0
        };
        let p = not_modified(&[("etag", "\"v1\""), ("vary", "Origin")]);
        assert_eq!(p.status, StatusCode::NOT_MODIFIED);
        assert_eq!(p.headers[header::ETAG], "W/\"v1\"");
        assert_eq!(p.headers[header::VARY], "Origin, Accept-Encoding");
        assert!(!p.headers.contains_key(header::CONTENT_ENCODING));
        let p = not_modified(&[("etag", "\"v1\""), ("cache-control", "no-transform")]);
        assert_eq!(p.headers[header::ETAG], "\"v1\"");
        assert!(!p.headers.contains_key(header::VARY));
    }

    fn decode(encoding: Encoding, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match encoding {
            Gzip => flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .unwrap(),
            Brotli => brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .unwrap(),
            Zstd => zstd::stream::read::Decoder::new(bytes)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap(),
        };
        out
    }

    /// A response with `chunks` as its body frames and `trailers` after them.
    fn response(chunks: Vec<Bytes>, trailers: Option<HeaderMap>) -> Response<ProxyBody> {
        let frames = chunks
            .into_iter()
            .map(|c| Ok::<_, BoxError>(Frame::data(c)))
            .chain(trailers.map(|t| Ok(Frame::trailers(t))));
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let mut resp = Response::new(crate::body::boxed(body));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp.headers_mut()
            .insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        resp.headers_mut()
            .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        resp
    }

    #[tokio::test]
    async fn each_coding_round_trips_with_its_trailers() {
        let config = config();
        let text: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("{{\"id\":{i},\"name\":\"user {i}\"}},").into_bytes())
            .collect();
        for encoding in [Gzip, Brotli, Zstd] {
            let chunks: Vec<Bytes> = text.chunks(7_000).map(Bytes::copy_from_slice).collect();
            let mut trailers = HeaderMap::new();
            trailers.insert("x-checksum", HeaderValue::from_static("42"));
            let resp = compress(
                Chosen {
                    encoding,
                    config: &config,
                },
                response(chunks, Some(trailers)),
            );
            let h = resp.headers();
            assert_eq!(h[header::CONTENT_ENCODING], encoding.token());
            assert_eq!(h[header::VARY], "Accept-Encoding");
            assert_eq!(h[header::ETAG], "W/\"v1\"");
            assert!(!h.contains_key(header::ACCEPT_RANGES));
            assert!(!h.contains_key(header::CONTENT_LENGTH));
            let collected = resp.into_body().collect().await.unwrap();
            assert_eq!(collected.trailers().unwrap()["x-checksum"], "42");
            let bytes = collected.to_bytes();
            assert!(
                bytes.len() < text.len() / 4,
                "{encoding:?}: {}",
                bytes.len()
            );
            assert_eq!(decode(encoding, &bytes), text, "{encoding:?}");
        }
    }

    #[tokio::test]
    async fn an_empty_stream_of_unknown_length_is_a_valid_empty_encoding() {
        let config = config();
        for encoding in [Gzip, Brotli, Zstd] {
            let resp = compress(
                Chosen {
                    encoding,
                    config: &config,
                },
                response(vec![], None),
            );
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(decode(encoding, &bytes), b"", "{encoding:?}");
        }
    }

    #[tokio::test]
    async fn what_arrived_is_flushed_when_the_replica_pauses() {
        // A body whose second chunk waits for a signal: the first must come out, decodable,
        // before the signal.
        let config = config();
        for encoding in [Gzip, Brotli, Zstd] {
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, BoxError>(Frame::data(b)), rx))
            });
            let resp = compress(
                Chosen {
                    encoding,
                    config: &config,
                },
                Response::new(crate::body::boxed(http_body_util::StreamBody::new(stream))),
            );
            let mut body = resp.into_body();
            tx.send(Bytes::from_static(b"data: first event\n\n"))
                .await
                .unwrap();
            let mut got = Vec::new();
            // Frames until the replica's pause shows: the flush.
            loop {
                let frame = body.frame().await.unwrap().unwrap();
                got.extend_from_slice(frame.data_ref().unwrap());
                if partial_decode(encoding, &got).ends_with(b"data: first event\n\n") {
                    break;
                }
            }
            tx.send(Bytes::from_static(b"data: second\n\n"))
                .await
                .unwrap();
            drop(tx);
            while let Some(frame) = body.frame().await {
                got.extend_from_slice(frame.unwrap().data_ref().unwrap());
            }
            assert_eq!(
                decode(encoding, &got),
                b"data: first event\n\ndata: second\n\n"
            );
        }
    }

    /// Figures for the docs, not a check: compression ratio and speed at the levels chosen
    /// and at neighbouring ones, on ~100 KiB of JSON (generated) and on the files listed in
    /// `SHOAL_COMPRESS_SAMPLES` (`:`-separated). Run with
    /// `cargo test --release -p shoal-proxy --lib compress::tests::measure -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement for the docs, not a check"]
    fn measure() {
        let mut rng = fastrand::Rng::with_seed(17);
        let words = [
            "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
        ];
        let mut records = Vec::new();
        let mut size = 0;
        while size < 100 * 1024 {
            let r = serde_json::json!({
                "id": records.len(),
                "name": format!("{} {}", words[rng.usize(..8)], words[rng.usize(..8)]),
                "email": format!("{}{}@example.com", words[rng.usize(..8)], rng.u32(..10_000)),
                "score": rng.f64() * 100.0,
                "active": rng.bool(),
                "tags": [words[rng.usize(..8)], words[rng.usize(..8)]],
            });
            size += r.to_string().len() + 1;
            records.push(r);
        }
        let mut samples = vec![(
            "100 KiB JSON".to_owned(),
            serde_json::to_vec(&records).unwrap(),
        )];
        if let Ok(paths) = std::env::var("SHOAL_COMPRESS_SAMPLES") {
            for p in paths.split(':') {
                samples.push((p.to_owned(), std::fs::read(p).unwrap()));
            }
        }
        let stream = |encoding: Encoding, data: &[u8]| {
            let mut e = Encoder::new(encoding, None).unwrap();
            let mut out = 0;
            for chunk in data.chunks(16 * 1024) {
                e.write(chunk).unwrap();
                out += e.take().len();
            }
            out + e.finish().unwrap().len()
        };
        type Codec = Box<dyn Fn(&[u8]) -> usize>;
        let codecs: Vec<(&str, Codec)> = vec![
            ("gzip 5 (chosen)", Box::new(move |d| stream(Gzip, d))),
            ("br 4 (chosen)", Box::new(move |d| stream(Brotli, d))),
            ("zstd 3 (chosen)", Box::new(move |d| stream(Zstd, d))),
            ("gzip 1", Box::new(|d| gz_level(d, 1))),
            ("gzip 6", Box::new(|d| gz_level(d, 6))),
            ("br 5", Box::new(|d| br_level(d, 5))),
            ("br 6", Box::new(|d| br_level(d, 6))),
            (
                "zstd 1",
                Box::new(|d| zstd::bulk::compress(d, 1).unwrap().len()),
            ),
            (
                "zstd 6",
                Box::new(|d| zstd::bulk::compress(d, 6).unwrap().len()),
            ),
        ];
        for (name, data) in &samples {
            println!("{name}: {} bytes", data.len());
            for (codec, f) in &codecs {
                let rounds = 50;
                let start = tokio::time::Instant::now();
                let mut out = 0;
                for _ in 0..rounds {
                    out = f(data);
                }
                let secs = start.elapsed().as_secs_f64();
                println!(
                    "  {codec:16} {out:7} bytes  ratio {:5.2}  {:6.0} MB/s  {:6.0} µs/body",
                    data.len() as f64 / out as f64,
                    (data.len() * rounds) as f64 / secs / 1e6,
                    secs / rounds as f64 * 1e6
                );
            }
        }
    }

    fn gz_level(d: &[u8], level: u32) -> usize {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        e.write_all(d).unwrap();
        e.finish().unwrap().len()
    }

    fn br_level(d: &[u8], quality: u32) -> usize {
        let mut e = brotli::CompressorWriter::new(Vec::new(), 4096, quality, 20);
        e.write_all(d).unwrap();
        e.into_inner().len()
    }

    /// Decode what can be decoded of an unfinished stream.
    fn partial_decode(encoding: Encoding, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0_u8; 1024];
        let mut reader: Box<dyn Read + '_> = match encoding {
            Gzip => Box::new(flate2::read::GzDecoder::new(bytes)),
            Brotli => Box::new(brotli::Decompressor::new(bytes, 4096)),
            Zstd => Box::new(zstd::stream::read::Decoder::new(bytes).unwrap()),
        };
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }
}
