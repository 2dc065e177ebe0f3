//! `redirect_scheme` and `redirect_regex`: answer with a redirect instead of forwarding.
//!
//! Both keep the method and body (308 Permanent Redirect or 307 Temporary Redirect, RFC 9110
//! §15.4.9 and §15.4.8), unlike Traefik's 301/302 for GET.
use http::{HeaderValue, StatusCode};
use shoal_config::{RedirectRegex, RedirectScheme};

/// The status of a redirect.
pub(crate) fn status(permanent: bool) -> StatusCode {
    if permanent {
        StatusCode::PERMANENT_REDIRECT
    } else {
        StatusCode::TEMPORARY_REDIRECT
    }
}

/// The scheme of a request on a TLS connection or not.
pub(crate) fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// `host` without its port (an IPv6 literal keeps its brackets).
pub(crate) fn host_only(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Where `redirect_scheme` sends a request, or None when it already has the scheme:
/// `SCHEME://HOST[:PORT]/path?query`, the port left out when it is the scheme's default.
/// `host` is the request's `Host` (or `:authority`).
pub(crate) fn scheme_location(
    def: &RedirectScheme,
    tls: bool,
    host: &str,
    path_and_query: &str,
) -> Option<String> {
    let target = def.scheme.to_ascii_lowercase();
    if target == scheme(tls) {
        return None;
    }
    let host = host_only(host);
    Some(match def.port {
        Some(port) if Some(port) != default_port(&target) => {
            format!("{target}://{host}:{port}{path_and_query}")
        }
        _ => format!("{target}://{host}{path_and_query}"),
    })
}

/// Where `redirect_regex` sends a request, or None when its URL does not match: Traefik's
/// rule, every match in `SCHEME://HOST/path?query` replaced by the replacement with
/// `$1`/`${name}` expanded (with the usual anchored `^…(.*)` patterns, the whole URL).
pub(crate) fn regex_location(def: &RedirectRegex, url: &str) -> Option<HeaderValue> {
    let regex = &def.regex.regex;
    if !regex.is_match(url) {
        return None;
    }
    let location = regex.replace_all(url, def.replacement.as_str());
    match HeaderValue::try_from(location.as_ref()) {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::warn!(
                regex = %def.regex.source,
                "redirect_regex: the replacement is not a valid Location; not redirecting"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_config::Pattern;

    fn scheme_def(scheme: &str, port: Option<u16>) -> RedirectScheme {
        RedirectScheme {
            scheme: scheme.into(),
            port,
            permanent: true,
        }
    }

    #[test]
    fn scheme_redirects_keep_host_path_and_query() {
        let https = scheme_def("https", None);
        assert_eq!(
            scheme_location(&https, false, "example.com:8000", "/a/b?x=1").as_deref(),
            Some("https://example.com/a/b?x=1")
        );
        assert_eq!(scheme_location(&https, true, "example.com", "/"), None);
        let on_8443 = scheme_def("https", Some(8443));
        assert_eq!(
            scheme_location(&on_8443, false, "[::1]:8000", "/p").as_deref(),
            Some("https://[::1]:8443/p")
        );
        let on_443 = scheme_def("https", Some(443));
        assert_eq!(
            scheme_location(&on_443, false, "h.test", "/").as_deref(),
            Some("https://h.test/")
        );
        let http = scheme_def("http", Some(8000));
        assert_eq!(
            scheme_location(&http, true, "h.test:8443", "/").as_deref(),
            Some("http://h.test:8000/")
        );
        assert_eq!(scheme_location(&http, false, "h.test", "/"), None);
    }

    #[test]
    fn regex_redirects_expand_captures() {
        let def = RedirectRegex {
            regex: Pattern {
                source: "^http://old\\.test/(.*)".into(),
                regex: regex::Regex::new("^http://old\\.test/(.*)").unwrap(),
            },
            replacement: "https://new.test/${1}".into(),
            permanent: false,
        };
        assert_eq!(
            regex_location(&def, "http://old.test/a?b=c").unwrap(),
            "https://new.test/a?b=c"
        );
        assert_eq!(regex_location(&def, "http://other.test/a"), None);
        assert_eq!(status(def.permanent), StatusCode::TEMPORARY_REDIRECT);
    }

    #[test]
    fn hosts_lose_their_port_only() {
        assert_eq!(host_only("a.test:80"), "a.test");
        assert_eq!(host_only("a.test"), "a.test");
        assert_eq!(host_only("[::1]:80"), "[::1]");
        assert_eq!(host_only("[::1]"), "[::1]");
    }
}
