//! Differential checks of HTTP/1.1 framing: the relay's hand-written parsers against hyper's,
//! on the same bytes. A proxy and the next hop that disagree on where a message ends are what
//! request smuggling is made of, so any disagreement fails, except where the relay is
//! stricter on purpose, by a rule listed here with its RFC section.
//!
//! * [`framing_diff_request`]: a client's byte stream through [`wire::parse_request`] (one
//!   request after another, skipping each body) and through hyper's HTTP/1.1 server, set up as
//!   the gateway sets it up. Every request the relay accepts, hyper must accept with the same
//!   method, target and body; a request hyper accepts and the relay refuses must be refused by
//!   a rule of [`STRICTER_REQUEST`]. Once the relay hands the connection to the full stack
//!   ([`Parsed::Other`]) there is nothing left to compare: hyper serves it by construction.
//! * [`framing_diff_chunked`]: a chunked body through [`ChunkedEnd`] and through hyper's
//!   client (the relay forwards a replica's chunked body as it is, so what a client makes of
//!   it must be what the relay made of it). Both must end the body at the same byte, or both
//!   refuse it; hyper may accept what [`ChunkedEnd`] refuses only by a rule of
//!   [`STRICTER_CHUNKED`].
//!
//! Used by the `framing_diff` fuzz target and by the property tests below.
use std::cell::RefCell;
use std::error::Error as _;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

use crate::framing::ChunkedEnd;
use crate::relay::wire::{self, Parsed};

/// Request heads the relay refuses and hyper's server accepts, on purpose: the relay's reason
/// (`Reject::why`, exactly) and the rule that makes refusing right.
pub(crate) const STRICTER_REQUEST: [(&str, &str); 7] = [
    (
        "no Host header (RFC 9112 §3.2)",
        "RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host",
    ),
    (
        "more than one Host header (RFC 9112 §3.2)",
        "RFC 9112 §3.2: ... or with more than one Host field line",
    ),
    (
        "invalid Host header (RFC 9112 §3.2)",
        "RFC 9112 §3.2: ... or with an invalid Host value (RFC 9110 §7.2, RFC 3986 §3.2.2)",
    ),
    (
        "both Transfer-Encoding and Content-Length (RFC 9112 §6.3 rule 3)",
        BOTH_LENGTHS,
    ),
    (
        "transfer codings other than chunked are not supported (RFC 9112 §6.1)",
        "RFC 9112 §6.1: a coding the server does not understand SHOULD get 501 (hyper only \
         looks at the last coding)",
    ),
    (
        "chunked is not the final transfer coding (RFC 9112 §6.3 rule 4)",
        "RFC 9112 §6.1: chunked MUST NOT be applied more than once (`chunked, chunked`)",
    ),
    (
        "invalid Transfer-Encoding (RFC 9112 §6.1)",
        "RFC 9112 §6.1: transfer-coding = token *( OWS \";\" OWS transfer-parameter ); the relay \
         also refuses empty list elements (`, chunked`), which RFC 9110 §5.6.1.2 would ignore",
    ),
];

const BOTH_LENGTHS: &str =
    "RFC 9112 §6.3 rule 3: a server MAY reject such a request (hyper lets chunked win)";

/// Content-Length errors the relay reports in a request that also has Transfer-Encoding:
/// hyper ignores every Content-Length after a Transfer-Encoding, the relay refuses the pair
/// ([`BOTH_LENGTHS`]) and may notice the bad length first.
const LENGTH_WITH_TRANSFER_ENCODING: [&str; 2] = [
    "invalid Content-Length (RFC 9112 §6.3 rule 5)",
    "conflicting Content-Length values (RFC 9112 §6.3 rule 5)",
];

/// The byte [`ChunkedEnd`] stops at, for an entry of [`STRICTER_CHUNKED`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum At {
    /// This byte.
    Is(u8),
    /// A control byte (CTL, RFC 5234) other than HTAB, CR and LF.
    OtherControl,
}

impl At {
    fn matches(self, b: u8) -> bool {
        match self {
            At::Is(x) => b == x,
            At::OtherControl => (b < 0x20 || b == 0x7f) && !matches!(b, b'\t' | b'\r' | b'\n'),
        }
    }
}

/// Chunked bodies [`ChunkedEnd`] refuses and hyper's client accepts, on purpose: the error,
/// the byte it is reported at, and the rule (RFC 9112 §7.1).
pub(crate) const STRICTER_CHUNKED: [(&str, At, &str); 4] = [
    (
        "invalid byte after chunk size",
        At::Is(b'\r'),
        "RFC 9112 §7.1.1: whitespace (BWS) after chunk-size only before `;` (`5 \\r\\n`)",
    ),
    (
        "control byte in chunk extension",
        At::OtherControl,
        "RFC 9112 §7.1.1: chunk-ext-name = token, chunk-ext-val = token / quoted-string",
    ),
    (
        "control byte in trailer field",
        At::Is(b'\n'),
        "RFC 9112 §7.1.2: trailer-section = *( field-line CRLF ); bare LF is only a MAY \
         (RFC 9112 §2.2)",
    ),
    (
        "invalid trailer field",
        At::Is(b'\n'),
        "RFC 9112 §7.1.2: the same, a bare LF where a trailer line or the final CRLF starts",
    ),
];

/// Longest request stream compared. Longer heads meet the size limits (32 KiB), which the
/// relay applies exactly and hyper only to its read buffer: a limit, not framing.
const MAX_REQUESTS: usize = 16 * 1024;
/// Longest chunked body compared (past the 16 KiB limits on extensions and trailers).
const MAX_CHUNKED: usize = 64 * 1024;

/// How long one exchange with hyper may take (in memory, it takes microseconds).
const DEADLINE: Duration = Duration::from_secs(10);

thread_local! {
    static RUNTIME: Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
}

/// A request as a parser framed it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Framed {
    method: String,
    target: String,
    body: Bytes,
}

/// Why the relay stopped reading a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Every byte was read.
    End,
    /// A head or body is not complete.
    Incomplete,
    /// `Connection: close`: the relay reads nothing more.
    Close,
    /// Handed to the full stack.
    Other,
    /// Refused.
    Reject(&'static str),
}

/// The relay's view of `data`: the requests it carries, and why it stops.
fn relay_requests(data: &[u8]) -> (Vec<Framed>, Stop, BytesMut) {
    let mut buf = BytesMut::from(data);
    let mut seen = Vec::new();
    loop {
        if buf.is_empty() {
            return (seen, Stop::End, buf);
        }
        let r = match wire::parse_request(&mut buf, &wire::DEFAULT_LIMITS) {
            Parsed::Request(r) => r,
            Parsed::Partial => return (seen, Stop::Incomplete, buf),
            Parsed::Other => return (seen, Stop::Other, buf),
            Parsed::Reject(r) => return (seen, Stop::Reject(r.why), buf),
        };
        if buf.len() < r.body_len {
            return (seen, Stop::Incomplete, buf);
        }
        seen.push(Framed {
            method: r.parts.method.to_string(),
            target: r
                .parts
                .uri
                .path_and_query()
                .map_or("", |p| p.as_str())
                .into(),
            body: buf.split_to(r.body_len).freeze(),
        });
        if r.close {
            return (seen, Stop::Close, buf);
        }
    }
}

/// hyper's server's view of `data`, configured as the gateway configures it: the requests
/// it hands to the service, in order.
async fn hyper_requests(data: &[u8]) -> Vec<Framed> {
    let (client, server) = tokio::io::duplex(data.len() + 64 * 1024);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let record = seen.clone();
    let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let record = record.clone();
        async move {
            let (parts, body) = req.into_parts();
            // A body that does not arrive whole is not a request the service sees.
            let body = body.collect().await?.to_bytes();
            record.borrow_mut().push(Framed {
                method: parts.method.to_string(),
                target: parts.uri.path_and_query().map_or("", |p| p.as_str()).into(),
                body,
            });
            Ok::<_, hyper::Error>(http::Response::new(Empty::<Bytes>::new()))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        .max_headers(wire::MAX_HEADERS)
        .max_buf_size(wire::DEFAULT_LIMITS.max_size)
        // The client's EOF comes right after its last request; without half-close, hyper
        // would drop that request's service future on seeing it. Parsing is the same.
        .half_close(true);
    let conn = builder.serve_connection(TokioIo::new(server), service);
    let (mut from_server, mut to_server) = tokio::io::split(client);
    let serve = async move {
        let _ = conn.await;
    };
    let send = async move {
        let _ = to_server.write_all(data).await;
        let _ = to_server.shutdown().await;
    };
    let drain = async move {
        let mut sink = Vec::new();
        let _ = from_server.read_to_end(&mut sink).await;
    };
    tokio::time::timeout(DEADLINE, async { tokio::join!(serve, send, drain) })
        .await
        .expect("hyper's server did not finish with the connection");
    seen.take()
}

/// Whether a request head (at the start of `head`) has a Transfer-Encoding field.
fn has_transfer_encoding(head: &[u8]) -> bool {
    let mut fields = [httparse::EMPTY_HEADER; wire::MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    req.parse(head).is_ok()
        && req
            .headers
            .iter()
            .any(|f| f.name.eq_ignore_ascii_case("transfer-encoding"))
}

/// The rule by which the relay may refuse a request hyper accepts, if there is one.
fn stricter_request(why: &str, head: &[u8]) -> Option<&'static str> {
    STRICTER_REQUEST
        .iter()
        .find(|(w, _)| *w == why)
        .map(|(_, rule)| *rule)
        .or_else(|| {
            (LENGTH_WITH_TRANSFER_ENCODING.contains(&why) && has_transfer_encoding(head))
                .then_some(BOTH_LENGTHS)
        })
}

/// Feed `data` as a client's byte stream to the relay's request parser and to hyper's
/// server. Panics when they disagree on a request's method, target or body (where it ends),
/// or on whether it is accepted, beyond [`STRICTER_REQUEST`].
pub fn framing_diff_request(data: &[u8]) {
    if data.len() > MAX_REQUESTS {
        return;
    }
    let (ours, stop, rest) = relay_requests(data);
    let theirs = RUNTIME.with(|rt| rt.block_on(hyper_requests(data)));
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    for (i, o) in ours.iter().enumerate() {
        match theirs.get(i) {
            Some(t) => assert_eq!(
                o,
                t,
                "request {i} framed differently (relay, hyper) in {:?}",
                show(data)
            ),
            None => panic!(
                "the relay accepts request {i} ({o:?}), hyper does not: {:?}",
                show(data)
            ),
        }
    }
    let extra = theirs.get(ours.len());
    match (stop, extra) {
        (_, None) | (Stop::Other | Stop::Close, _) => {}
        (Stop::End | Stop::Incomplete, Some(t)) => panic!(
            "hyper accepts request {} ({t:?}) where the relay sees {stop:?}: {:?}",
            ours.len(),
            show(data)
        ),
        (Stop::Reject(why), Some(t)) => assert!(
            stricter_request(why, &rest).is_some(),
            "the relay refuses request {} ({why}), hyper accepts it ({t:?}): {:?}",
            ours.len(),
            show(data)
        ),
    }
}

/// How hyper's client read a chunked response body followed by the end of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hyper {
    /// The body ended at the last byte.
    Exact,
    /// The body ended before the last byte (the rest was taken for another message).
    Early,
    /// The connection ended inside the body.
    Incomplete,
    /// The body was refused.
    Invalid(String),
}

const RESPONSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";

/// One request on a hyper client connection; the replica answers 200 with a chunked `body`
/// and closes its side.
async fn hyper_chunked(body: &[u8]) -> Hyper {
    let (client, replica) = tokio::io::duplex(body.len() + 64 * 1024);
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(client))
            .await
            .expect("an in-memory handshake");
    let answer = async move {
        let (mut from_client, mut to_client) = tokio::io::split(replica);
        let mut head = Vec::new();
        let mut chunk = [0u8; 512];
        // The response must not come before the request: hyper refuses bytes on an idle
        // connection.
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match from_client.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = to_client.write_all(RESPONSE_HEAD).await;
        let _ = to_client.write_all(body).await;
        let _ = to_client.shutdown().await;
        let _ = from_client.read_to_end(&mut head).await;
    };
    let ask = async move {
        let request = http::Request::get("/")
            .body(Empty::new())
            .expect("a valid request");
        let response = sender.send_request(request).await?;
        response.into_body().collect().await.map(drop)
        // `sender` is dropped here: the connection ends once it is idle.
    };
    let (conn, (), body) =
        tokio::time::timeout(DEADLINE, async { tokio::join!(conn, answer, ask) })
            .await
            .expect("hyper's client did not finish with the connection");
    match (body, conn) {
        (Ok(()), Ok(())) => Hyper::Exact,
        // Bytes left over on an idle connection: "unexpected message".
        (Ok(()), Err(_)) => Hyper::Early,
        (Err(e), _) if ends_early(&e) => Hyper::Incomplete,
        (Err(e), _) => Hyper::Invalid(format!("{e}: {:?}", e.source())),
    }
}

/// Whether hyper's error says the connection ended before the message did.
fn ends_early(e: &hyper::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(c) = cause {
        if c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::UnexpectedEof)
        {
            return true;
        }
        cause = c.source();
    }
    e.is_incomplete_message()
}

/// What [`ChunkedEnd`] makes of `body`, fed a byte at a time: `Ok(Some(n))` the body ends
/// after `n` bytes, `Ok(None)` it needs more, `Err((i, why))` refused at byte `i`.
fn chunked_end(body: &[u8]) -> Result<Option<usize>, (usize, &'static str)> {
    let mut end = ChunkedEnd::default();
    for (i, b) in body.iter().enumerate() {
        match end.scan(std::slice::from_ref(b)) {
            Ok(None) => {}
            Ok(Some(_)) => return Ok(Some(i + 1)),
            Err(why) => return Err((i, why)),
        }
    }
    Ok(None)
}

/// Feed `body` as a replica's chunked response body to [`ChunkedEnd`] and to hyper's client.
/// Panics when they disagree on where it ends, or on whether it is accepted, beyond
/// [`STRICTER_CHUNKED`].
pub fn framing_diff_chunked(body: &[u8]) {
    if body.len() > MAX_CHUNKED {
        return;
    }
    let ours = chunked_end(body);
    let whole = ChunkedEnd::default().scan(body);
    assert_eq!(
        whole.map_err(Some),
        ours.map_err(|(_, why)| Some(why)),
        "ChunkedEnd fed whole and a byte at a time"
    );
    let hyper = |bytes: &[u8]| RUNTIME.with(|rt| rt.block_on(hyper_chunked(bytes)));
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match ours {
        Ok(Some(n)) => {
            // hyper must end exactly there: neither before, nor wanting more.
            let theirs = hyper(&body[..n]);
            assert_eq!(
                theirs,
                Hyper::Exact,
                "ChunkedEnd ends the body after {n} bytes, hyper does not: {:?}",
                show(&body[..n])
            );
        }
        Ok(None) => {
            let theirs = hyper(body);
            assert_eq!(
                theirs,
                Hyper::Incomplete,
                "ChunkedEnd wants more bytes, hyper does not: {:?}",
                show(body)
            );
        }
        Err((at, why)) => {
            // Up to the refused byte, hyper must agree that the body goes on.
            let before = hyper(&body[..at]);
            assert_eq!(
                before,
                Hyper::Incomplete,
                "ChunkedEnd reads {at} bytes without an end or an error, hyper does not: {:?}",
                show(&body[..at])
            );
            // hyper checks trailers only once they are complete: reading on is no verdict,
            // ending the body is.
            let theirs = hyper(body);
            if matches!(theirs, Hyper::Exact | Hyper::Early) {
                let allowed = STRICTER_CHUNKED
                    .iter()
                    .any(|(w, byte, _)| *w == why && byte.matches(body[at]));
                assert!(
                    allowed,
                    "ChunkedEnd refuses byte {at} ({why}), hyper accepts ({theirs:?}): {:?}",
                    show(body)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed, TestRunner};

    use super::*;

    fn with_hyper_chunked(body: &[u8]) -> Hyper {
        RUNTIME.with(|rt| rt.block_on(hyper_chunked(body)))
    }

    #[test]
    fn the_harness_sees_what_hyper_sees() {
        let framed = |data: &[u8]| RUNTIME.with(|rt| rt.block_on(hyper_requests(data)));
        let two = framed(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /b?c HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(two.len(), 2, "{two:?}");
        assert_eq!(two[0].body, "abc");
        assert_eq!(two[1].target, "/b?c");
        assert!(framed(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab").is_empty());
        assert_eq!(with_hyper_chunked(b"0\r\n\r\n"), Hyper::Exact);
        assert_eq!(with_hyper_chunked(b"0\r\n\r\nHTTP"), Hyper::Early);
        assert_eq!(with_hyper_chunked(b"5\r\nhel"), Hyper::Incomplete);
        assert!(matches!(
            with_hyper_chunked(b"5\r\nhelloXX"),
            Hyper::Invalid(_)
        ));
    }

    #[test]
    fn each_stricter_chunked_rule_is_one_hyper_does_not_apply() {
        // One body per entry of STRICTER_CHUNKED that hyper accepts and ChunkedEnd refuses
        // with that error: the list holds nothing that is not a real divergence.
        let samples: [&[u8]; 4] = [
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5;a\x01b\r\nhello\r\n0\r\n\r\n",
            b"0\r\nX: 1\n\r\n\r\n",
            b"0\r\n\nX: 1\r\n\r\n",
        ];
        for ((why, byte, _), body) in STRICTER_CHUNKED.iter().zip(samples) {
            let Err((at, e)) = chunked_end(body) else {
                panic!("{body:?} accepted")
            };
            assert_eq!((e, byte.matches(body[at])), (*why, true));
            assert_eq!(with_hyper_chunked(body), Hyper::Exact, "{why}");
            framing_diff_chunked(body);
        }
        // And ones that look alike but hyper refuses too, so they need no entry.
        for body in [
            &b"0\r\n X: folded\r\n\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
            b"0\r\nX: a\x7fb\r\n\r\n",
            // A bare LF that makes a field more than hyper counted lines.
            b"0\r\nX: 1\nY: 2\r\n\r\n",
        ] {
            assert!(chunked_end(body).is_err());
            assert!(matches!(with_hyper_chunked(body), Hyper::Invalid(_)));
            framing_diff_chunked(body);
        }
    }

    #[test]
    fn each_stricter_request_rule_is_one_hyper_does_not_apply() {
        let samples: [&[u8]; 7] = [
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x y, chunked\r\n\r\n0\r\n\r\n",
        ];
        for ((why, _), data) in STRICTER_REQUEST.iter().zip(samples) {
            let (ours, stop, _) = relay_requests(data);
            assert!(ours.is_empty());
            assert_eq!(stop, Stop::Reject(why));
            let theirs = RUNTIME.with(|rt| rt.block_on(hyper_requests(data)));
            assert_eq!(theirs.len(), 1, "hyper accepts {why:?}");
            framing_diff_request(data);
        }
        // A bad Content-Length after Transfer-Encoding: hyper never reads it.
        framing_diff_request(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: +1\r\n\r\n0\r\n\r\n",
        );
    }

    #[test]
    fn limits_on_extensions_and_trailers_agree_to_the_byte() {
        // hyper refuses 16 KiB of chunk extensions in a body.
        for n in [16_382, 16_383, 16_384, 16_385] {
            let mut body = b"1;".to_vec();
            body.extend(std::iter::repeat_n(b'x', n));
            body.extend_from_slice(b"\r\nd\r\n0\r\n\r\n");
            framing_diff_chunked(&body);
        }
        // ... 16 KiB of trailer section, CRLFs included ...
        for n in [16_376, 16_377, 16_381, 16_382] {
            let mut body = b"0\r\nx: ".to_vec();
            body.extend(std::iter::repeat_n(b'v', n));
            body.extend_from_slice(b"\r\n\r\n");
            framing_diff_chunked(&body);
        }
        // ... and more than 100 trailer fields.
        for n in [99, 100, 101] {
            let mut body = b"0\r\n".to_vec();
            body.extend(b"t: 1\r\n".repeat(n));
            body.extend_from_slice(b"\r\n");
            framing_diff_chunked(&body);
        }
    }

    #[test]
    fn the_fuzz_seeds_agree() {
        // `fuzz/seeds/framing_diff/`, as the fuzz target reads them: past findings included.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/framing_diff");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("the seeds") {
            let data = std::fs::read(entry.expect("a seed").path()).expect("a seed");
            match data.split_first() {
                Some((pick, rest)) if pick % 2 == 0 => framing_diff_request(rest),
                Some((_, rest)) => framing_diff_chunked(rest),
                None => {}
            }
            seen += 1;
        }
        assert!(seen >= 12, "{seen} seeds");
    }

    // Structured but hostile requests.

    const METHODS: &[&str] = &[
        "GET", "POST", "PUT", "HEAD", "DELETE", "get", "CONNECT", "G\tET",
    ];
    const TARGETS: &[&str] = &[
        "/",
        "/a?b=c",
        "/%2e%2e/x",
        "*",
        "http://x.test/",
        "//x",
        "/a b",
        "/\x7f",
        "/?",
    ];
    const VERSIONS: &[&str] = &[
        "HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "http/1.1",
    ];
    const FIELDS: &[(&str, &str)] = &[
        ("Host", "a.test"),
        ("Host", "a.test"),
        ("host", "b.test:8080"),
        ("Host", ""),
        ("Host", "a b"),
        ("Host", "user@a.test"),
        ("Host", "[::1]:80"),
        ("Content-Length", "0"),
        ("Content-Length", "5"),
        ("Content-Length", "5"),
        ("content-length", "05"),
        ("Content-Length", "0000000000000000000005"),
        ("Content-Length", "+5"),
        ("Content-Length", "-5"),
        ("Content-Length", "0x5"),
        ("Content-Length", "5, 5"),
        ("Content-Length", "5,6"),
        ("Content-Length", " 5 "),
        ("Content-Length", "18446744073709551615"),
        ("Content-Length", "18446744073709551616"),
        ("Content-Length", ""),
        ("Transfer-Encoding", "chunked"),
        ("transfer-encoding", "Chunked"),
        ("Transfer-Encoding", "chunked, identity"),
        ("Transfer-Encoding", "identity, chunked"),
        ("Transfer-Encoding", "gzip, chunked"),
        ("Transfer-Encoding", "xchunked"),
        ("Transfer-Encoding", " chunked"),
        ("Transfer-Encoding", "chunked "),
        ("Transfer-Encoding", ", chunked"),
        ("Transfer-Encoding", "chunked,"),
        ("Transfer-Encoding", "chunked;q=1"),
        ("Transfer-Encoding", "chunked, chunked"),
        ("Transfer-Encoding", ""),
        ("Transfer-Encoding\t", "chunked"),
        ("Transfer-Encoding ", "chunked"),
        ("Transfer_Encoding", "chunked"),
        ("Connection", "close"),
        ("Connection", "keep-alive"),
        ("Connection", "keep-alive, close"),
        ("Connection", "Upgrade"),
        ("Connection", "close\u{80}"),
        ("Connection", "content-length"),
        ("Upgrade", "websocket"),
        ("Expect", "100-continue"),
        ("X-Nul", "a\0b"),
        ("X-Cr", "a\rb"),
        ("X-Lf", "a\nb"),
        ("X-Fold", "a\r\n b"),
        ("X-Obs", "\u{80}\u{ff}"),
        ("Bad Name", "x"),
        ("X-Sp ", "x"),
        ("", "x"),
        ("X-Empty", ""),
    ];
    const BODIES: &[&str] = &[
        "",
        "hello",
        "hell",
        "hello!",
        "0\r\n\r\n",
        "5\r\nhello\r\n0\r\n\r\n",
        "GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n",
        "\r\n",
    ];

    fn request() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::sample::select(METHODS),
            prop::sample::select(TARGETS),
            prop::sample::select(VERSIONS),
            prop::collection::vec(prop::sample::select(FIELDS), 0..6),
            prop::bool::weighted(0.9),
            prop::sample::select(BODIES),
        )
            .prop_map(|(method, target, version, fields, crlf, body)| {
                let eol = if crlf { "\r\n" } else { "\n" };
                let mut out = format!("{method} {target} {version}{eol}");
                for (name, value) in fields {
                    out.push_str(&format!("{name}: {value}{eol}"));
                }
                out.push_str(eol);
                out.push_str(body);
                // Characters above U+007F stand for single bytes (obs-text).
                out.chars().map(|c| c as u32 as u8).collect()
            })
    }

    /// Flip, insert or cut a few bytes.
    fn mutate(data: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
        let len = data.len();
        prop::collection::vec(
            (
                0..=len,
                0u8..4,
                prop::sample::select(&b"\r\n\0 \t:,;0x\x80"[..]),
            ),
            0..3,
        )
        .prop_map(move |edits| {
            let mut data = data.clone();
            for (at, op, byte) in edits {
                let at = at.min(data.len());
                match op {
                    0 if at < data.len() => data[at] = byte,
                    1 => data.insert(at, byte),
                    2 if at < data.len() => {
                        data.remove(at);
                    }
                    3 => data.truncate(at),
                    _ => {}
                }
            }
            data
        })
    }

    fn requests() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(request(), 1..4)
            .prop_map(|r| r.concat())
            .prop_flat_map(|data| prop_oneof![1 => Just(data.clone()), 1 => mutate(data)])
    }

    const EXTENSIONS: &[&str] = &[
        "",
        "",
        ";a=b",
        ";a=\"q;\\\"\"",
        " ;x",
        "\t;x",
        ";",
        " ",
        ";\0",
        ";a\x7f",
        ";\u{80}",
        ";a\rb",
    ];
    const TRAILERS: &[&str] = &[
        "X: 1",
        "X:",
        "X-Y: a b",
        " folded",
        "\tfolded",
        "no-colon",
        "X Y: 1",
        ":x",
        "X :1",
        "X: \u{80}",
        "X: a\x7fb",
        "X\t: 1",
        "X: a\0b",
        "X: 1\nY: 2",
        "",
    ];

    fn chunk() -> impl Strategy<Value = Vec<u8>> {
        (
            0usize..20,
            0u8..5,
            prop::sample::select(EXTENSIONS),
            -1i8..=1,
        )
            .prop_map(|(size, form, ext, off)| {
                let size_text = match form {
                    0 => format!("{size:x}"),
                    1 => format!("{size:X}"),
                    2 => format!("000{size:x}"),
                    3 => format!("0x{size:x}"),
                    _ => format!("{size}"),
                };
                let data_len = if off == 0 || size == 0 {
                    size
                } else {
                    (size as isize + off as isize) as usize
                };
                let mut out = format!("{size_text}{ext}\r\n").into_bytes();
                out.extend(std::iter::repeat_n(b'd', data_len));
                out.extend_from_slice(b"\r\n");
                out
            })
    }

    fn chunked() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::collection::vec(chunk(), 0..4),
            prop::sample::select(EXTENSIONS),
            prop::collection::vec(prop::sample::select(TRAILERS), 0..3),
            prop::sample::select(&["\r\n", "\r\n", "\n", ""][..]),
            prop::sample::select(
                &[
                    "",
                    "",
                    "HTTP/1.1 204 No Content\r\n\r\n",
                    "\r\n",
                    "0\r\n\r\n",
                ][..],
            ),
        )
            .prop_map(|(chunks, ext, trailers, last, after)| {
                let mut out = chunks.concat();
                out.extend_from_slice(format!("0{ext}\r\n").as_bytes());
                for t in trailers {
                    out.extend(t.chars().map(|c| c as u32 as u8));
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(last.as_bytes());
                out.extend_from_slice(after.as_bytes());
                out
            })
            .prop_flat_map(|data| prop_oneof![1 => Just(data.clone()), 1 => mutate(data)])
    }

    fn runner(cases: u32) -> TestRunner {
        TestRunner::new(Config {
            cases,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(0x5_0a1),
            ..Config::default()
        })
    }

    #[test]
    fn relay_and_hyper_frame_hostile_requests_alike() {
        runner(5_000)
            .run(&requests(), |data| {
                framing_diff_request(&data);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn chunked_end_and_hyper_end_hostile_bodies_alike() {
        runner(5_000)
            .run(&chunked(), |data| {
                framing_diff_chunked(&data);
                Ok(())
            })
            .unwrap();
    }
}
