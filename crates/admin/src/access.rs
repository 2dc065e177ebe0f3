//! Who may use the admin API: checked on every request, before any handler runs.
//!
//! The admin API can scale and stop services and reload the stack, and a browser on the same
//! machine can reach it. A bearer token alone does not keep a web page out: when no token is
//! configured (the default on loopback) anything that reaches the socket is trusted, and a
//! page on any site can make the browser send requests to `127.0.0.1`. Two attacks matter:
//!
//! - **Cross-site requests.** A page elsewhere can `POST` here without asking first (a CORS
//!   "simple" request, e.g. `Content-Type: text/plain`); it cannot read the answer, but the
//!   damage is done. So a request other than `GET`/`HEAD` is refused (403) when the browser
//!   says it comes from elsewhere: `Sec-Fetch-Site` present and not `same-origin` or `none`;
//!   or `Origin` present (including `null`) and its `host[:port]` not the request's `Host`,
//!   unless both are loopback names (`localhost`, `127.0.0.0/8`, `[::1]`) with the same port.
//!   It must also send `Content-Type: application/json` — which a page elsewhere cannot send
//!   without a CORS preflight, and this server answers none — or, from a client that is not a
//!   browser (no `Origin`, no `Sec-Fetch-*`: curl, the shoal CLI), no content type at all
//!   (415 otherwise). The dashboard sends JSON from its own origin.
//! - **DNS rebinding.** A page at `evil.example` whose name is then re-pointed at `127.0.0.1`
//!   is same-origin with itself, so the checks above pass, but the browser still sends
//!   `Host: evil.example`. So every request's `Host` must be one of this server's names:
//!   `localhost`, or an IP address literal (a rebinding attack needs a DNS name; the
//!   addresses the server is bound to are IP addresses). Any other name is refused (421)
//!   with a message saying which `Host` came and what to use instead. A request with no
//!   `Host` (HTTP/1.0) is served only to a loopback peer. With a token configured, any name
//!   is accepted: a rebinding page does not have the token, and a remote CLI may use a name.
//!
//! Then, when a token is configured, the request must carry it (401 otherwise; the
//! dashboard's own files excepted), compared in constant time: the time taken depends on the
//! token's length only, not on where a guess first differs or how long the guess is.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::dashboard;

/// Why a request was refused before reaching a handler.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    /// `Host` is a name this server does not answer to (DNS rebinding).
    #[error(
        "Host `{0}` is not a name of this admin API (refused against DNS rebinding): \
         address it as localhost or by IP address, e.g. http://127.0.0.1:PORT/"
    )]
    ForeignHost(String),
    /// No `Host`, from a peer beyond this machine.
    #[error("a request without a Host header is served only from this machine: send `Host`")]
    NoHost,
    /// The browser says the request comes from another site.
    #[error(
        "cross-site request refused: `Sec-Fetch-Site: {0}`; this endpoint changes state and \
         takes requests from the dashboard or from clients such as curl and the shoal CLI"
    )]
    CrossSite(String),
    /// `Origin` is not this server.
    #[error(
        "cross-origin request refused: `Origin: {origin}` is not this admin API (`Host: {host}`)"
    )]
    CrossOrigin {
        /// The `Origin` received.
        origin: String,
        /// The `Host` received.
        host: String,
    },
    /// A state-changing request with a content type other than JSON.
    #[error(
        "this endpoint changes state: send `Content-Type: application/json` \
         (or, outside a browser, no body at all), not {0}"
    )]
    ContentType(String),
    /// Missing or wrong token.
    #[error("missing or wrong token: send `Authorization: Bearer TOKEN`")]
    Token,
}

impl Refused {
    fn status(&self) -> StatusCode {
        match self {
            Refused::ForeignHost(_) => StatusCode::MISDIRECTED_REQUEST,
            Refused::NoHost | Refused::CrossSite(_) | Refused::CrossOrigin { .. } => {
                StatusCode::FORBIDDEN
            }
            Refused::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refused::Token => StatusCode::UNAUTHORIZED,
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        crate::error(self.status(), self.to_string())
    }
}

/// Every rule of the module doc, in order: host, then (for a request that can change state)
/// origin and content type, then the token.
pub(crate) fn check(req: &Request, token: Option<&str>) -> Result<(), Refused> {
    // With a token, a browser page cannot act (it does not have the token), so any name
    // may be used: a remote `shoal status --admin http://name:PORT` needs one.
    let host = check_host(req, token.is_none())?;
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        check_origin(req.headers(), host.as_deref())?;
        check_content_type(req.headers())?;
    }
    if let Some(token) = token
        && !dashboard::is_public(req.uri().path())
    {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned)
            // An EventSource cannot send headers: the stream alone takes `?token=`.
            .or_else(|| dashboard::query_token(req));
        if !given.is_some_and(|given| same_token(given.as_bytes(), token.as_bytes())) {
            return Err(Refused::Token);
        }
    }
    Ok(())
}

/// The request's `Host` (or its URI's authority), if it is one of this server's names
/// (any name when not `own_names_only`).
fn check_host(req: &Request, own_names_only: bool) -> Result<Option<String>, Refused> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(h), None) => Some(
            h.to_str()
                .map_err(|_| Refused::ForeignHost(String::from_utf8_lossy(h.as_bytes()).into()))?
                .to_owned(),
        ),
        (Some(_), Some(_)) => return Err(Refused::ForeignHost("(several Host headers)".into())),
        (None, _) => None,
    };
    // An absolute-form target (`GET http://name/ HTTP/1.1`) names the host too.
    let target = req.uri().authority().map(|a| a.as_str().to_owned());
    for name in host.iter().chain(&target).filter(|_| own_names_only) {
        let own = split_authority(name).is_some_and(|(h, _)| is_own_name(&h));
        if !own {
            return Err(Refused::ForeignHost(name.clone()));
        }
    }
    if host.is_none() && target.is_none() {
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>();
        if peer.is_some_and(|ConnectInfo(peer)| !peer.ip().to_canonical().is_loopback()) {
            return Err(Refused::NoHost);
        }
    }
    Ok(host.or(target))
}

/// Refuses a request the browser marks as coming from another site or origin.
fn check_origin(headers: &HeaderMap, host: Option<&str>) -> Result<(), Refused> {
    for site in headers.get_all(SEC_FETCH_SITE) {
        let site = String::from_utf8_lossy(site.as_bytes());
        if !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none")) {
            return Err(Refused::CrossSite(site.into_owned()));
        }
    }
    for origin in headers.get_all(header::ORIGIN) {
        let origin = String::from_utf8_lossy(origin.as_bytes());
        if !origin_is_host(&origin, host) {
            return Err(Refused::CrossOrigin {
                origin: origin.into_owned(),
                host: host.unwrap_or("(none)").to_owned(),
            });
        }
    }
    Ok(())
}

/// Whether `origin` (`scheme://host[:port]`) is the server named by `host`.
fn origin_is_host(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let Ok(origin) = origin.parse::<Uri>() else {
        return false; // including `null`
    };
    let (Some(scheme), Some(authority)) = (origin.scheme_str(), origin.authority()) else {
        return false;
    };
    if authority.as_str().eq_ignore_ascii_case(host) {
        return true;
    }
    // Another loopback name for the same socket: `localhost:8080` and `127.0.0.1:8080`.
    let default_port = match scheme {
        "https" => 443,
        _ => 80,
    };
    let (Some((o_host, o_port)), Some((h_host, h_port))) =
        (split_authority(authority.as_str()), split_authority(host))
    else {
        return false;
    };
    is_loopback_name(&o_host)
        && is_loopback_name(&h_host)
        && o_port.unwrap_or(default_port) == h_port.unwrap_or(80)
}

/// A state-changing request carries JSON, or nothing from a client that is not a browser.
fn check_content_type(headers: &HeaderMap) -> Result<(), Refused> {
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    match (types.next(), types.next()) {
        (None, _) => {
            let browser = headers.contains_key(header::ORIGIN)
                || headers.keys().any(|k| k.as_str().starts_with("sec-fetch-"));
            if browser {
                Err(Refused::ContentType(
                    "no content type from a browser".into(),
                ))
            } else {
                Ok(())
            }
        }
        (Some(t), None) => {
            let t = String::from_utf8_lossy(t.as_bytes());
            let essence = t.split(';').next().unwrap_or_default().trim();
            if essence.eq_ignore_ascii_case("application/json") {
                Ok(())
            } else {
                Err(Refused::ContentType(format!("`{t}`")))
            }
        }
        (Some(_), Some(_)) => Err(Refused::ContentType("several content types".into())),
    }
}

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// `host[:port]` → lowercased host (IPv6 in brackets) and port; None if not an authority
/// (or if it has user info).
fn split_authority(s: &str) -> Option<(String, Option<u16>)> {
    let a: Authority = s.parse().ok()?;
    if a.as_str().contains('@') {
        return None;
    }
    Some((a.host().to_ascii_lowercase(), a.port_u16()))
}

/// `localhost` or an IP address literal: names a DNS rebinding attack cannot use.
fn is_own_name(host: &str) -> bool {
    is_localhost(host) || ip_literal(host).is_some()
}

/// `localhost`, `127.0.0.0/8`, `[::1]` (or an IPv4-mapped loopback).
fn is_loopback_name(host: &str) -> bool {
    is_localhost(host) || ip_literal(host).is_some_and(|ip| ip.to_canonical().is_loopback())
}

fn is_localhost(host: &str) -> bool {
    host.strip_suffix('.')
        .unwrap_or(host)
        .eq_ignore_ascii_case("localhost")
}

/// `127.0.0.1` or `[::1]` (brackets required, as in a `Host`).
fn ip_literal(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// Whether `given` equals `token`, in a time that depends on `token.len()` only.
fn same_token(given: &[u8], token: &[u8]) -> bool {
    let mut same = given.len().ct_eq(&token.len());
    for (i, t) in token.iter().enumerate() {
        // Past the end of a shorter guess, compare with a byte that differs: the loop's
        // length and work stay the token's.
        let g = given.get(i).copied().unwrap_or(!*t);
        same &= g.ct_eq(t);
    }
    same.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(same_token(b"s3cret/+", b"s3cret/+"));
        assert!(
            !same_token(b"s3cret/-", b"s3cret/+"),
            "same length, last byte differs"
        );
        assert!(
            !same_token(b"x3cret/+", b"s3cret/+"),
            "same length, first byte differs"
        );
        assert!(!same_token(b"s3cret", b"s3cret/+"), "a prefix");
        assert!(!same_token(b"s3cret/+/", b"s3cret/+"), "longer");
        assert!(!same_token(b"", b"s3cret/+"));
    }

    #[test]
    fn own_names_are_localhost_and_ip_literals() {
        for h in [
            "localhost",
            "LOCALHOST.",
            "127.0.0.1",
            "10.1.2.3",
            "[::1]",
            "[fe80::1]",
        ] {
            assert!(is_own_name(h), "{h}");
        }
        for h in [
            "evil.example",
            "127.0.0.1.nip.io",
            "localhost.evil.example",
            "::1",
            "0x7f.1",
        ] {
            assert!(!is_own_name(h), "{h}");
        }
    }

    #[test]
    fn an_origin_matches_its_host_or_another_loopback_name_on_the_same_port() {
        let yes = [
            ("http://127.0.0.1:8080", "127.0.0.1:8080"),
            ("http://LocalHost:8080", "localhost:8080"),
            ("http://localhost:8080", "127.0.0.1:8080"),
            ("http://[::1]:8080", "localhost:8080"),
            ("http://localhost", "127.0.0.1:80"),
            ("https://10.0.0.5", "10.0.0.5"),
        ];
        for (origin, host) in yes {
            assert!(origin_is_host(origin, Some(host)), "{origin} {host}");
        }
        let no = [
            ("http://evil.example", "127.0.0.1:8080"),
            ("http://localhost:3000", "localhost:8080"),
            ("http://127.0.0.1:8080", "10.0.0.5:8080"),
            ("null", "127.0.0.1:8080"),
            ("http://127.0.0.1:8080", ""),
        ];
        for (origin, host) in no {
            assert!(!origin_is_host(origin, Some(host)), "{origin} {host}");
        }
        assert!(!origin_is_host("http://127.0.0.1:8080", None));
    }
}
