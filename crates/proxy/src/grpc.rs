//! gRPC calls through the gateway: their deadlines, and the answers the gateway itself gives
//! them.
//!
//! A request is a gRPC call when it comes over HTTP/2 with `content-type: application/grpc`
//! (or `application/grpc+proto`, `application/grpc;…`): gRPC's "PROTOCOL-HTTP2" document.
//! The same content type over HTTP/1.1 is not gRPC (gRPC needs HTTP/2) and is treated as
//! any other request.
//!
//! # Deadlines
//!
//! A client's deadline travels as `grpc-timeout: TimeoutValue TimeoutUnit` ([`parse_timeout`]):
//! at most 8 ASCII digits, then one of `H M S m u n`. The gateway waits for the response
//! headers `min(grpc-timeout, max(route timeout, gateway.timeouts.grpc_max))`
//! ([`call_wait`]): a deadline can always shorten the route's wait, and lengthen it up to
//! `grpc_max`. The time left is sent upstream in `grpc-timeout` ([`format_timeout`]), as
//! Envoy does, so the replica stops working on a call nobody waits for any more. A
//! malformed `grpc-timeout` is ignored as Envoy ignores it (grpc-go's server would fail the
//! call with INTERNAL instead): the route's timeout applies, and the header is not sent on.
//!
//! When the client's deadline is what runs out, the replica is not blamed (no passive-health
//! failure, no circuit-breaker failure): a client cannot eject healthy replicas by sending
//! short deadlines.
//!
//! # Errors
//!
//! What the gateway answers a gRPC call itself (no route, no replica, a timeout, a
//! middleware's refusal) is a *trailers-only* response ([`trailers_only`]): HTTP 200,
//! `content-type: application/grpc`, `grpc-status` and a percent-encoded `grpc-message`, in
//! one HEADERS frame that ends the stream, as Envoy answers. The code is chosen by cause
//! ([`ProxyError::grpc_code`], [`code_for_status`]). In such a response every header is
//! trailing metadata, so only these are sent, with `x-shoal-error` (the gateway's reason, as
//! HTTP clients get it) and `grpc-retry-pushback-ms` (gRFC A6, from `Retry-After`); neither
//! the replica header nor `date` is added to a trailers-only response, the gateway's own
//! or a replica's.
use std::fmt::Write;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode, Version};

use crate::body::{ProxyBody, empty};
use crate::error::ProxyError;
use crate::middleware::Early;

/// The header carrying a call's timeout.
pub(crate) const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// The trailer carrying a call's status code.
pub(crate) const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const GRPC_PUSHBACK: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

/// Whether a request is a gRPC call: HTTP/2, and a `content-type` of `application/grpc`,
/// alone or followed by `+` (a message format) or `;` (parameters). Media types are
/// case-insensitive (RFC 9110 §8.3.1); `application/grpc-web` is another protocol.
pub(crate) fn is_grpc(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_2
        && headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| is_grpc_type(v.as_bytes()))
}

fn is_grpc_type(value: &[u8]) -> bool {
    const BASE: &[u8] = b"application/grpc";
    value.len() >= BASE.len()
        && value[..BASE.len()].eq_ignore_ascii_case(BASE)
        && matches!(value.get(BASE.len()), None | Some(b'+' | b';'))
}

/// Why a `grpc-timeout` value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TimeoutError {
    /// No digits before the unit (or an empty value).
    #[error("no digits")]
    NoDigits,
    /// More than the 8 digits `TimeoutValue` allows.
    #[error("more than 8 digits")]
    TooLong,
    /// A byte that is not an ASCII digit where the value is (a sign, a point, a space).
    #[error("not a digit in the value")]
    NotDigit,
    /// The last byte is not one of `H M S m u n`.
    #[error("no unit (one of H M S m u n)")]
    Unit,
    /// The header was sent more than once.
    #[error("sent more than once")]
    Repeated,
}

/// Parse a `grpc-timeout` value (gRPC PROTOCOL-HTTP2, "Requests"):
/// `TimeoutValue TimeoutUnit`, the value at most 8 ASCII digits, the unit one of `H`
/// (hours), `M` (minutes), `S` (seconds), `m` (milliseconds), `u` (microseconds) and `n`
/// (nanoseconds). Nothing else: no sign, space, point or lowercase `s`. The grammar says
/// "positive", but `0` is accepted as a deadline that has already passed, as grpc-go and
/// grpc-java servers read it (their clients may send `0n`).
pub(crate) fn parse_timeout(value: &[u8]) -> Result<Duration, TimeoutError> {
    let Some((&unit, digits)) = value.split_last() else {
        return Err(TimeoutError::NoDigits);
    };
    let per_unit = match unit {
        b'H' => Duration::from_secs(3600),
        b'M' => Duration::from_secs(60),
        b'S' => Duration::from_secs(1),
        b'm' => Duration::from_millis(1),
        b'u' => Duration::from_micros(1),
        b'n' => Duration::from_nanos(1),
        _ => return Err(TimeoutError::Unit),
    };
    if digits.is_empty() {
        return Err(TimeoutError::NoDigits);
    }
    if digits.len() > 8 {
        return Err(TimeoutError::TooLong);
    }
    let mut n: u32 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(TimeoutError::NotDigit);
        }
        // At most 99 999 999: no overflow.
        n = n * 10 + u32::from(d - b'0');
    }
    // At most 99 999 999 hours: far inside `Duration`.
    Ok(per_unit * n)
}

/// The client's timeout in `headers`: `None` without one, `Err` when it is malformed or
/// repeated.
pub(crate) fn client_timeout(headers: &HeaderMap) -> Option<Result<Duration, TimeoutError>> {
    let mut all = headers.get_all(GRPC_TIMEOUT).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return Some(Err(TimeoutError::Repeated));
    }
    Some(parse_timeout(first.as_bytes()))
}

/// `d` as a `grpc-timeout` value: the finest unit whose count fits in 8 digits, rounded up
/// (as grpc-go writes it), so that a replica never sees less time than there is.
pub(crate) fn format_timeout(d: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = d.as_nanos();
    let mut out = String::with_capacity(9);
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let (count, unit) = units
        .iter()
        .map(|&(per, unit)| (nanos.div_ceil(per), unit))
        .find(|&(count, _)| count <= MAX)
        // Past 99 999 999 hours (11 000 years): as long as can be said.
        .unwrap_or((MAX, 'H'));
    let _ = write!(out, "{count}{unit}");
    HeaderValue::try_from(out).expect("digits and a letter")
}

/// How long a gRPC call whose client sent `client` waits for response headers on a route
/// that waits `route`: the client's deadline if shorter, else at most
/// `max(route, grpc_max)`. The flag says whether the client's deadline is the limit (the
/// replica is then not blamed for running out of it).
pub(crate) fn call_wait(route: Duration, grpc_max: Duration, client: Duration) -> (Duration, bool) {
    if client < route {
        return (client, true);
    }
    let bound = route.max(grpc_max);
    if client <= bound {
        (client, true)
    } else {
        (bound, false)
    }
}

/// gRPC status codes (gRPC's `doc/statuscodes.md`), those the gateway sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// 2: none of the others.
    Unknown = 2,
    /// 4: the deadline passed before an answer came.
    DeadlineExceeded = 4,
    /// 7: the caller may not do this.
    PermissionDenied = 7,
    /// 8: a quota or a size limit (rate limits, in-flight limits, a body too large).
    ResourceExhausted = 8,
    /// 12: nobody serves this method (no route).
    Unimplemented = 12,
    /// 13: a broken request.
    Internal = 13,
    /// 14: the service cannot be reached now; trying again may work.
    Unavailable = 14,
    /// 16: no valid credentials.
    Unauthenticated = 16,
}

impl Code {
    fn header_value(self) -> HeaderValue {
        HeaderValue::from(self as u16)
    }
}

/// The gRPC code for a gateway's answer with HTTP `status`: gRPC's "HTTP to gRPC Status
/// Code Mapping" (400 → INTERNAL, 401 → UNAUTHENTICATED, 403 → PERMISSION_DENIED, 404 →
/// UNIMPLEMENTED, 502 and 503 → UNAVAILABLE, others → UNKNOWN), except where the gateway
/// knows the cause better than the table, which is written for answers from HTTP-only
/// intermediaries: 429 and 413 are limits (RESOURCE_EXHAUSTED, as gRPC itself answers a
/// message over its size limit and as Envoy's rate limiter answers with
/// `rate_limited_as_resource_exhausted`), 504 and 408 are timeouts (DEADLINE_EXCEEDED), 431
/// is a malformed request like 400 (INTERNAL), and 501 a method not implemented.
pub(crate) fn code_for_status(status: StatusCode) -> Code {
    match status.as_u16() {
        400 | 431 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 | 501 => Code::Unimplemented,
        413 | 429 => Code::ResourceExhausted,
        408 | 504 => Code::DeadlineExceeded,
        502 | 503 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// The HTTP status a gRPC answer stands for, kept on it for the metrics and the access log
/// (which count gateway failures the same for gRPC and HTTP clients).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StandsFor(pub(crate) StatusCode);

/// The status to count for `resp`: the one a gRPC answer stands for, else its own.
pub(crate) fn counted_status(resp: &Response<ProxyBody>) -> StatusCode {
    resp.extensions()
        .get::<StandsFor>()
        .map_or(resp.status(), |s| s.0)
}

/// A trailers-only gRPC answer: 200, `content-type: application/grpc`, `grpc-status: code`,
/// `grpc-message` (percent-encoded), `x-shoal-error: reason` and `grpc-retry-pushback-ms`
/// when given; an empty body, so that the HEADERS frame ends the stream. `stands_for`: the
/// HTTP status an HTTP client would have had.
pub(crate) fn trailers_only(
    code: Code,
    message: &str,
    reason: Option<HeaderValue>,
    pushback_ms: Option<u64>,
    stands_for: StatusCode,
) -> Response<ProxyBody> {
    let mut resp = Response::new(empty());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(GRPC_STATUS, code.header_value());
    if !message.is_empty() {
        h.insert(GRPC_MESSAGE, percent_encode(message));
    }
    if let Some(reason) = reason {
        h.insert(HeaderName::from_static("x-shoal-error"), reason);
    }
    if let Some(ms) = pushback_ms {
        h.insert(GRPC_PUSHBACK, HeaderValue::from(ms));
    }
    resp.extensions_mut().insert(StandsFor(stands_for));
    resp
}

/// A middleware's answer (401, 403, 413, 429…) as a gRPC status. Answers that are not
/// refusals (a 204 preflight, a redirect) are left as they are: they are not errors, and a
/// gRPC client maps them itself.
pub(crate) fn from_early(early: Early, version: Version) -> Response<ProxyBody> {
    if !(early.status.is_client_error() || early.status.is_server_error()) {
        return early.into_response(version);
    }
    let header = |name: &HeaderName| {
        early
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let reason = header(&HeaderName::from_static("x-shoal-error"));
    let pushback = header(&header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .map(|secs| secs.saturating_mul(1000));
    // The body reads "429 Too Many Requests: why"; the message is the why.
    let text = early.body.trim_end();
    let message = text.split_once(": ").map_or(text, |(_, why)| why);
    trailers_only(
        code_for_status(early.status),
        message,
        reason,
        pushback,
        early.status,
    )
}

/// The gateway's own HTTP refusal `resp` (413 from a `buffering` limit crossed while the
/// body streamed) as a gRPC status.
pub(crate) fn from_refusal(resp: Response<ProxyBody>) -> Response<ProxyBody> {
    let status = resp.status();
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is larger than the route allows",
        _ => status.canonical_reason().unwrap_or(""),
    };
    let reason = resp.headers().get("x-shoal-error").cloned();
    trailers_only(code_for_status(status), message, reason, None, status)
}

/// Whether a replica's response is trailers-only (gRPC PROTOCOL-HTTP2: `grpc-status` in the
/// response's one HEADERS frame): the gateway then adds none of its own response headers,
/// which the client would read as trailing metadata.
pub(crate) fn is_trailers_only(headers: &HeaderMap) -> bool {
    headers.contains_key(GRPC_STATUS)
}

/// `grpc-message`'s encoding (gRPC PROTOCOL-HTTP2, "Responses"): bytes outside
/// `%x20-%x7E`, and `%` itself, as `%XX` (uppercase hex) of their UTF-8 encoding.
fn percent_encode(message: &str) -> HeaderValue {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    HeaderValue::try_from(out).expect("visible ASCII only")
}

impl ProxyError {
    /// The gRPC status for this failure, chosen by its cause: no route is UNIMPLEMENTED (no
    /// one serves the method), a service without a usable replica and a replica that
    /// failed are UNAVAILABLE, a timeout is DEADLINE_EXCEEDED; a refused request as its
    /// status says ([`code_for_status`]).
    pub(crate) fn grpc_code(&self) -> Code {
        match self {
            ProxyError::NoRoute => Code::Unimplemented,
            ProxyError::NoEndpoint(_)
            | ProxyError::NoHealthy(_)
            | ProxyError::NotStarted { .. }
            | ProxyError::CircuitOpen { .. }
            | ProxyError::Connect { .. }
            | ProxyError::UpstreamTls { .. }
            | ProxyError::Upstream { .. } => Code::Unavailable,
            ProxyError::Timeout(_) | ProxyError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            ProxyError::BadRequest(_) => Code::Internal,
            ProxyError::Rejected { status, .. } => code_for_status(*status),
        }
    }

    /// The answer a gRPC client gets: trailers-only, with this failure's code and words.
    pub(crate) fn into_grpc_response(self) -> Response<ProxyBody> {
        let pushback = self.retry_after().map(|secs| secs.saturating_mul(1000));
        trailers_only(
            self.grpc_code(),
            &self.to_string(),
            Some(HeaderValue::from_static(self.reason())),
            pushback,
            self.status(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn each_unit_has_its_length() {
        assert_eq!(parse_timeout(b"2H"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_timeout(b"3M"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_timeout(b"60S"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_timeout(b"250m"), Ok(ms(250)));
        assert_eq!(parse_timeout(b"1500u"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_timeout(b"999n"), Ok(Duration::from_nanos(999)));
    }

    #[test]
    fn the_value_is_one_to_eight_digits() {
        assert_eq!(
            parse_timeout(b"99999999S"),
            Ok(Duration::from_secs(99_999_999))
        );
        assert_eq!(
            parse_timeout(b"00000001m"),
            Ok(ms(1)),
            "leading zeros are digits"
        );
        assert_eq!(parse_timeout(b"100000000n"), Err(TimeoutError::TooLong));
        assert_eq!(parse_timeout(b"S"), Err(TimeoutError::NoDigits));
        assert_eq!(parse_timeout(b""), Err(TimeoutError::NoDigits));
        // The largest value in the largest unit fits.
        assert_eq!(
            parse_timeout(b"99999999H"),
            Ok(Duration::from_secs(99_999_999 * 3600))
        );
    }

    #[test]
    fn only_digits_before_the_unit() {
        for bad in [
            &b"+5S"[..],
            b"-5S",
            b"1.5S",
            b" 5S",
            b"5 S",
            b"0x5S",
            b"\xd9\xa3S", // an Arabic-Indic digit is not an ASCII digit
        ] {
            assert_eq!(parse_timeout(bad), Err(TimeoutError::NotDigit), "{bad:?}");
        }
    }

    #[test]
    fn the_unit_is_one_of_six_letters() {
        for bad in [&b"5"[..], b"5s", b"5h", b"5ms", b"5x", b"5S ", b"5\n"] {
            assert_eq!(parse_timeout(bad), Err(TimeoutError::Unit), "{bad:?}");
        }
    }

    #[test]
    fn zero_is_a_deadline_already_passed() {
        assert_eq!(parse_timeout(b"0n"), Ok(Duration::ZERO));
        assert_eq!(parse_timeout(b"0S"), Ok(Duration::ZERO));
    }

    #[test]
    fn a_repeated_header_is_refused() {
        let mut h = HeaderMap::new();
        assert_eq!(client_timeout(&h), None);
        h.append(GRPC_TIMEOUT, HeaderValue::from_static("1S"));
        assert_eq!(client_timeout(&h), Some(Ok(Duration::from_secs(1))));
        h.append(GRPC_TIMEOUT, HeaderValue::from_static("1S"));
        assert_eq!(client_timeout(&h), Some(Err(TimeoutError::Repeated)));
    }

    #[test]
    fn formats_in_the_finest_unit_that_fits_rounding_up() {
        let f = |d: Duration| format_timeout(d).to_str().unwrap().to_owned();
        assert_eq!(f(Duration::from_nanos(5)), "5n");
        assert_eq!(f(ms(99)), "99000000n");
        assert_eq!(f(ms(300)), "300000u");
        assert_eq!(
            f(Duration::from_nanos(300_000_001)),
            "300001u",
            "rounded up"
        );
        assert_eq!(f(Duration::from_secs(35)), "35000000u");
        assert_eq!(f(Duration::from_secs(150)), "150000m");
        assert_eq!(f(Duration::from_secs(200_000)), "200000S");
        assert_eq!(f(Duration::from_secs(100_000_000)), "1666667M");
        assert_eq!(f(Duration::ZERO), "0n");
        // Every value formatted parses back to at least itself, and barely more: a unit is
        // only coarser when the count in the finer one is past 8 digits.
        for d in [
            ms(1),
            ms(59_999),
            Duration::from_secs(3 * 3600),
            ms(123_456_789),
        ] {
            let back = parse_timeout(format_timeout(d).as_bytes()).unwrap();
            assert!(back >= d && back - d <= d / 100_000, "{d:?} → {back:?}");
        }
    }

    #[test]
    fn a_deadline_shortens_the_wait_and_lengthens_it_up_to_grpc_max() {
        let (route, max) = (Duration::from_secs(30), Duration::from_secs(300));
        assert_eq!(call_wait(route, max, ms(200)), (ms(200), true));
        assert_eq!(
            call_wait(route, max, Duration::from_secs(60)),
            (Duration::from_secs(60), true)
        );
        assert_eq!(
            call_wait(route, max, Duration::from_secs(900)),
            (Duration::from_secs(300), false)
        );
        // A route that waits longer than grpc_max keeps its own bound.
        let long = Duration::from_secs(600);
        assert_eq!(
            call_wait(long, max, Duration::from_secs(900)),
            (long, false)
        );
        // grpc_max below the route's timeout: deadlines can only shorten it.
        assert_eq!(
            call_wait(route, ms(1), Duration::from_secs(60)),
            (route, false)
        );
    }

    #[test]
    fn recognises_grpc_content_types() {
        let h = |ct: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            h
        };
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc+json",
            "application/grpc; charset=utf-8",
            "Application/GRPC",
        ] {
            assert!(is_grpc(Version::HTTP_2, &h(yes)), "{yes}");
        }
        for no in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpcx",
            "application/json",
            "application/grp",
        ] {
            assert!(!is_grpc(Version::HTTP_2, &h(no)), "{no}");
        }
        assert!(!is_grpc(Version::HTTP_11, &h("application/grpc")));
        assert!(!is_grpc(Version::HTTP_2, &HeaderMap::new()));
    }

    #[test]
    fn maps_statuses_to_codes() {
        let code = |s: u16| code_for_status(StatusCode::from_u16(s).unwrap()) as u8;
        // gRPC's table.
        assert_eq!(code(400), 13);
        assert_eq!(code(401), 16);
        assert_eq!(code(403), 7);
        assert_eq!(code(404), 12);
        assert_eq!(code(502), 14);
        assert_eq!(code(503), 14);
        assert_eq!(code(418), 2);
        assert_eq!(code(500), 2);
        // Where the gateway knows the cause.
        assert_eq!(code(429), 8);
        assert_eq!(code(413), 8);
        assert_eq!(code(504), 4);
        assert_eq!(code(408), 4);
        assert_eq!(code(431), 13);
        assert_eq!(code(501), 12);
    }

    #[test]
    fn maps_failures_to_codes_by_cause() {
        let code = |e: ProxyError| e.grpc_code() as u8;
        assert_eq!(code(ProxyError::NoRoute), 12);
        assert_eq!(code(ProxyError::NoEndpoint("s".into())), 14);
        assert_eq!(code(ProxyError::NoHealthy("s".into())), 14);
        let why = "held too long".to_owned();
        assert_eq!(
            code(ProxyError::NotStarted {
                service: "s".into(),
                why
            }),
            14
        );
        let open = ProxyError::CircuitOpen {
            service: "s".into(),
            retry_after_secs: 3,
        };
        assert_eq!(code(open), 14);
        let source = "refused".into();
        assert_eq!(
            code(ProxyError::Connect {
                service: "s".into(),
                source
            }),
            14
        );
        let source = "reset".into();
        assert_eq!(
            code(ProxyError::Upstream {
                service: "s".into(),
                source
            }),
            14
        );
        assert_eq!(code(ProxyError::Timeout("s".into())), 4);
        assert_eq!(code(ProxyError::DeadlineExceeded("s".into())), 4);
        assert_eq!(code(ProxyError::BadRequest("path".into())), 13);
    }

    #[test]
    fn an_error_becomes_a_trailers_only_answer() {
        let open = ProxyError::CircuitOpen {
            service: "api".into(),
            retry_after_secs: 3,
        };
        let resp = open.into_grpc_response();
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp.headers();
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["grpc-status"], "14");
        assert_eq!(
            h["grpc-message"],
            "service `api` is failing; its circuit breaker is open"
        );
        assert_eq!(h["x-shoal-error"], "circuit-open");
        assert_eq!(h["grpc-retry-pushback-ms"], "3000");
        assert_eq!(h.len(), 5, "{h:?}");
        assert!(http_body::Body::is_end_stream(resp.body()));
        assert_eq!(counted_status(&resp), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(percent_encode("plain text ~!"), "plain text ~!");
        assert_eq!(percent_encode("100%"), "100%25");
        assert_eq!(percent_encode("a\nb\tc"), "a%0Ab%09c");
        assert_eq!(percent_encode("café"), "caf%C3%A9");
    }

    #[test]
    fn refusals_of_middlewares_become_statuses_and_others_stay() {
        let early = Early {
            status: StatusCode::TOO_MANY_REQUESTS,
            headers: vec![
                (
                    HeaderName::from_static("x-shoal-error"),
                    HeaderValue::from_static("rate-limited"),
                ),
                (header::RETRY_AFTER, HeaderValue::from(2u64)),
                (
                    HeaderName::from_static("ratelimit-limit"),
                    HeaderValue::from(5u64),
                ),
            ],
            body: "429 Too Many Requests: rate limit exceeded\n".into(),
            close: false,
        };
        let resp = from_early(early, Version::HTTP_2);
        let h = resp.headers();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(h["grpc-status"], "8");
        assert_eq!(h["grpc-message"], "rate limit exceeded");
        assert_eq!(h["x-shoal-error"], "rate-limited");
        assert_eq!(h["grpc-retry-pushback-ms"], "2000");
        assert!(!h.contains_key("ratelimit-limit"));
        assert_eq!(counted_status(&resp), StatusCode::TOO_MANY_REQUESTS);

        let preflight = Early::empty(StatusCode::NO_CONTENT, vec![]);
        let resp = from_early(preflight, Version::HTTP_2);
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert!(!resp.headers().contains_key("grpc-status"));
    }
}
