//! The answer of an entrypoint with `redirect_to`: every request is sent to the same host,
//! path and query over HTTPS on another entrypoint, with 308 Permanent Redirect (RFC 9110
//! §15.4.9: the method and body are kept, unlike 301).
//!
//! The host comes from the request's authority (HTTP/2's `:authority`, or an absolute-form
//! target, which wins over `Host` per RFC 9112 §3.2.2), else its one `Host` field. Since it
//! goes into a `Location` the client follows, it is checked strictly: RFC 9110 §7.2 `Host =
//! uri-host [ ":" port ]`, where uri-host is an IP-literal (`[` IPv6 `]`, RFC 3986 §3.2.2)
//! or a name of letters, digits, `-`, `.`, `_` and `~` (RFC 3986's unreserved characters;
//! percent-encoding and sub-delims are valid there but never part of a DNS name, so they are
//! refused), and port = *DIGIT (RFC 3986 §3.2.3). A request without a host, with two `Host`
//! fields, or with an invalid one, gets 400 (RFC 9112 §3.2).
use http::{HeaderValue, Request, Response, StatusCode, header};

use crate::body::{ProxyBody, empty, full};

/// Where an entrypoint redirects to.
#[derive(Debug, Clone)]
pub(crate) struct RedirectTarget {
    /// The port in the `Location` (the target entrypoint's bound port); None for 443.
    pub(crate) port: Option<u16>,
}

impl RedirectTarget {
    pub(crate) fn new(port: u16) -> RedirectTarget {
        RedirectTarget {
            port: (port != 443).then_some(port),
        }
    }

    /// The 308 for `req`, or 400 if it names no valid host.
    pub(crate) fn answer<B>(&self, req: &Request<B>) -> Response<ProxyBody> {
        match self.location(req) {
            Ok(location) => Response::builder()
                .status(StatusCode::PERMANENT_REDIRECT)
                .header(header::LOCATION, location)
                .header(header::CONTENT_LENGTH, "0")
                .body(empty())
                .unwrap_or_default(),
            Err(why) => Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .header(header::CONNECTION, "close")
                .body(full(format!("{why}\n")))
                .unwrap_or_default(),
        }
    }

    fn location<B>(&self, req: &Request<B>) -> Result<HeaderValue, &'static str> {
        let authority = match req.uri().authority() {
            Some(a) => a.as_str(),
            None => {
                let mut hosts = req.headers().get_all(header::HOST).iter();
                let host = hosts.next().ok_or("the request has no Host")?;
                if hosts.next().is_some() {
                    return Err("the request has more than one Host field");
                }
                host.to_str().map_err(|_| "the Host field is not valid")?
            }
        };
        let host = host_of(authority).ok_or("the Host field is not valid")?;
        // Asterisk-form (`OPTIONS *`) and authority-form (`CONNECT`) have no path.
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| p.starts_with('/'))
            .unwrap_or("/");
        let location = match self.port {
            Some(port) => format!("https://{host}:{port}{path}"),
            None => format!("https://{host}{path}"),
        };
        HeaderValue::try_from(location).map_err(|_| "the request target is not valid")
    }
}

/// The host of `uri-host [ ":" port ]`, without the port, if it is valid.
fn host_of(authority: &str) -> Option<&str> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        let port = match rest {
            "" => None,
            _ => Some(rest.strip_prefix(':')?),
        };
        // IPvFuture (`[v1.x]`) is valid URI syntax but no address we can serve.
        host[1..end].parse::<std::net::Ipv6Addr>().ok()?;
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if port.is_some_and(|p| !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let name_ok = host.starts_with('[')
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')));
    name_ok.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(target: &RedirectTarget, req: Request<()>) -> (u16, Option<String>) {
        let resp = target.answer(&req);
        (
            resp.status().as_u16(),
            resp.headers()
                .get(header::LOCATION)
                .map(|v| v.to_str().unwrap().to_owned()),
        )
    }

    fn get(uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::get(uri);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn keeps_host_path_and_query_and_uses_the_target_port() {
        let t = RedirectTarget::new(8443);
        let (status, loc) = location(&t, get("/a/b?x=1&y=%20", &["example.com:8000"]));
        assert_eq!(status, 308);
        assert_eq!(
            loc.as_deref(),
            Some("https://example.com:8443/a/b?x=1&y=%20")
        );
        let resp = t.answer(&get("/", &["example.com"]));
        assert_eq!(resp.headers()[header::CONTENT_LENGTH], "0");
    }

    #[test]
    fn port_443_is_left_out() {
        let t = RedirectTarget::new(443);
        let (_, loc) = location(&t, get("/p?q", &["example.com:80"]));
        assert_eq!(loc.as_deref(), Some("https://example.com/p?q"));
    }

    #[test]
    fn the_authority_of_an_absolute_target_wins_over_host() {
        // RFC 9112 §3.2.2.
        let t = RedirectTarget::new(443);
        let (_, loc) = location(&t, get("http://a.test:80/x", &["b.test"]));
        assert_eq!(loc.as_deref(), Some("https://a.test/x"));
    }

    #[test]
    fn ipv6_literals_keep_their_brackets() {
        let t = RedirectTarget::new(8443);
        let (_, loc) = location(&t, get("/", &["[::1]:8000"]));
        assert_eq!(loc.as_deref(), Some("https://[::1]:8443/"));
        let (_, loc) = location(&t, get("/", &["[::1]"]));
        assert_eq!(loc.as_deref(), Some("https://[::1]:8443/"));
    }

    #[test]
    fn asterisk_form_redirects_to_the_root() {
        let t = RedirectTarget::new(8443);
        let req = Request::options("*")
            .header(header::HOST, "a.test")
            .body(())
            .unwrap();
        assert_eq!(location(&t, req).1.as_deref(), Some("https://a.test:8443/"));
    }

    #[test]
    fn a_missing_repeated_or_invalid_host_is_400() {
        // RFC 9112 §3.2: no Host, or more than one.
        let t = RedirectTarget::new(8443);
        assert_eq!(location(&t, get("/", &[])), (400, None));
        assert_eq!(location(&t, get("/", &["a.test", "b.test"])), (400, None));
        // RFC 9110 §7.2 / RFC 3986 §3.2.2-3: userinfo, paths, empty hosts, bad ports, bad
        // IP literals, characters no DNS name has.
        for bad in [
            "user@a.test",
            "a.test/evil",
            "",
            ":8000",
            "a.test:80x",
            "a.test:-1",
            "[::1",
            "[::1]x",
            "[v1.fe]",
            "[not-an-address]",
            "a%2etest",
            "a,b.test",
            "a b.test",
        ] {
            assert_eq!(location(&t, get("/", &[bad])), (400, None), "{bad:?}");
        }
        // RFC 3986 §3.2.3: port = *DIGIT, so an empty port is valid (and replaced).
        let (_, loc) = location(&t, get("/", &["a.test:"]));
        assert_eq!(loc.as_deref(), Some("https://a.test:8443/"));
    }
}
