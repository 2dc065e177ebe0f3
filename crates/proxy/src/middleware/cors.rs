//! `cors`: the CORS protocol (the Fetch standard, §3.2) at the gateway.
//!
//! A preflight — `OPTIONS` with `Origin` and `Access-Control-Request-Method` — is answered
//! here and never forwarded: 204 with `Access-Control-Allow-Origin`, `-Methods`,
//! `-Headers`, `-Max-Age` and `-Credentials` when the origin, the method and every requested
//! header are allowed; otherwise 204 *without* them, which is how the Fetch standard's CORS
//! check fails a preflight in the browser (a 403 would say the same less usefully, and
//! would be cached by nothing). Other requests go upstream, and the response gets
//! `Access-Control-Allow-Origin` (and `-Credentials`, `-Expose-Headers`) when their origin
//! is allowed. `Vary: Origin` is added whenever the answer depends on the origin (all but a
//! `*` policy without credentials), so caches keep the answers apart.
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode};
use shoal_config::Cors;

use super::Early;

/// A compiled `cors` middleware.
#[derive(Debug)]
pub(crate) struct CorsPolicy {
    any_origin: bool,
    origins: Vec<String>,
    methods: Vec<Method>,
    methods_value: Option<HeaderValue>,
    any_header: bool,
    headers: Vec<String>,
    headers_value: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
}

/// What the policy makes of a request.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A preflight, answered here.
    Preflight(Early),
    /// Forward it; add these headers to the response.
    Forward(Vec<(HeaderName, HeaderValue)>),
}

fn joined<T: AsRef<str>>(items: &[T]) -> Option<HeaderValue> {
    if items.is_empty() {
        return None;
    }
    let text = items
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ");
    HeaderValue::try_from(text).ok()
}

const REQUEST_METHOD: HeaderName = header::ACCESS_CONTROL_REQUEST_METHOD;
const REQUEST_HEADERS: HeaderName = header::ACCESS_CONTROL_REQUEST_HEADERS;

impl CorsPolicy {
    pub(crate) fn new(def: &Cors) -> CorsPolicy {
        let any_origin = def.allow_origins.iter().any(|o| o == "*");
        let any_header = def.allow_headers.iter().any(|h| h == "*");
        let headers: Vec<String> = def
            .allow_headers
            .iter()
            .filter(|h| *h != "*")
            .map(|h| h.to_ascii_lowercase())
            .collect();
        CorsPolicy {
            any_origin,
            origins: def
                .allow_origins
                .iter()
                .filter(|o| *o != "*")
                .map(|o| o.to_ascii_lowercase())
                .collect(),
            methods_value: joined(
                &def.allow_methods
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>(),
            ),
            methods: def.allow_methods.clone(),
            any_header,
            headers_value: joined(&headers),
            headers,
            expose: joined(&def.expose_headers),
            credentials: def.allow_credentials,
            max_age: def.max_age.map(|d| HeaderValue::from(d.as_secs())),
        }
    }

    /// Whether the answer depends on the request's origin.
    fn varies(&self) -> bool {
        !self.any_origin || self.credentials
    }

    /// The `Access-Control-Allow-Origin` for `origin`, if it is allowed. With credentials
    /// the origin is echoed (`*` is not honoured then), but never `null`: a sandboxed or
    /// `file:` page must not get credentialed access from a wildcard.
    fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        let text = origin.to_str().ok()?;
        if self.any_origin {
            if !self.credentials {
                return Some(HeaderValue::from_static("*"));
            }
            return (text != "null").then(|| origin.clone());
        }
        self.origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(text))
            .then(|| origin.clone())
    }

    /// The request's one `Origin`, if it has exactly one.
    fn origin(parts: &Parts) -> Option<&HeaderValue> {
        let mut all = parts.headers.get_all(header::ORIGIN).iter();
        let first = all.next()?;
        all.next().is_none().then_some(first)
    }

    pub(crate) fn handle(&self, parts: &Parts) -> Outcome {
        let origin = Self::origin(parts);
        let preflight = parts.method == Method::OPTIONS
            && parts.headers.contains_key(header::ORIGIN)
            && parts.headers.contains_key(REQUEST_METHOD);
        let mut out = Vec::new();
        let allowed = origin.and_then(|o| self.allow_origin(o));
        if preflight {
            if let Some(acao) = allowed.and_then(|acao| self.preflight_allowed(parts, acao)) {
                out = acao;
            }
            let vary = if self.varies() {
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
            } else {
                "Access-Control-Request-Method, Access-Control-Request-Headers"
            };
            out.push((header::VARY, HeaderValue::from_static(vary)));
            return Outcome::Preflight(Early::empty(StatusCode::NO_CONTENT, out));
        }
        if let Some(acao) = allowed {
            out.push((header::ACCESS_CONTROL_ALLOW_ORIGIN, acao));
            if self.credentials {
                out.push((
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                ));
            }
            if let Some(expose) = &self.expose {
                out.push((header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone()));
            }
        }
        if self.varies() {
            out.push((header::VARY, HeaderValue::from_static("Origin")));
        }
        Outcome::Forward(out)
    }

    /// The allow headers of a preflight whose origin is allowed (`acao`), if its method and
    /// headers are too.
    fn preflight_allowed(
        &self,
        parts: &Parts,
        acao: HeaderValue,
    ) -> Option<Vec<(HeaderName, HeaderValue)>> {
        let method = parts.headers.get(REQUEST_METHOD)?;
        let method = Method::from_bytes(method.as_bytes()).ok()?;
        // Fetch §4.8 (CORS-preflight fetch): a method not listed fails unless it is
        // CORS-safelisted (GET, HEAD, POST).
        let safelisted = matches!(method, Method::GET | Method::HEAD | Method::POST);
        if !safelisted && !self.methods.contains(&method) {
            return None;
        }
        // Every requested header must be allowed (the browser leaves the safelisted ones
        // out of the list).
        let requested: Vec<&str> = parts
            .headers
            .get_all(REQUEST_HEADERS)
            .iter()
            .map(|v| v.to_str())
            .collect::<Result<Vec<_>, _>>()
            .ok()?
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(|h| h.trim_matches([' ', '\t']))
            .filter(|h| !h.is_empty())
            .collect();
        let allow_headers = if self.any_header {
            if self.credentials {
                // `*` is literal with credentials (Fetch §3.2.3): name them.
                joined(&requested)
            } else {
                Some(HeaderValue::from_static("*"))
            }
        } else {
            let all_listed = requested
                .iter()
                .all(|r| self.headers.iter().any(|h| h.eq_ignore_ascii_case(r)));
            if !all_listed {
                return None;
            }
            self.headers_value.clone()
        };
        let mut out = vec![(header::ACCESS_CONTROL_ALLOW_ORIGIN, acao)];
        if self.credentials {
            out.push((
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        if let Some(m) = &self.methods_value {
            out.push((header::ACCESS_CONTROL_ALLOW_METHODS, m.clone()));
        }
        if let Some(h) = allow_headers {
            out.push((header::ACCESS_CONTROL_ALLOW_HEADERS, h));
        }
        if let Some(age) = &self.max_age {
            out.push((header::ACCESS_CONTROL_MAX_AGE, age.clone()));
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy(origins: &[&str], credentials: bool) -> CorsPolicy {
        CorsPolicy::new(&Cors {
            allow_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            allow_methods: vec![Method::GET, Method::PUT],
            allow_headers: vec!["X-Token".into(), "Content-Type".into()],
            expose_headers: vec!["X-Total".into()],
            allow_credentials: credentials,
            max_age: Some(Duration::from_secs(600)),
        })
    }

    fn request(method: Method, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().method(method).uri("/x");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn get<'a>(headers: &'a [(HeaderName, HeaderValue)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().unwrap())
    }

    #[test]
    fn an_allowed_preflight_is_answered_with_every_allow_header() {
        let p = policy(&["https://app.test"], true);
        let req = request(
            Method::OPTIONS,
            &[
                ("origin", "https://app.test"),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "x-token, content-type"),
            ],
        );
        let Outcome::Preflight(early) = p.handle(&req) else {
            panic!("a preflight")
        };
        assert_eq!(early.status, StatusCode::NO_CONTENT);
        let h = &early.headers;
        assert_eq!(
            get(h, "access-control-allow-origin"),
            Some("https://app.test")
        );
        assert_eq!(get(h, "access-control-allow-methods"), Some("GET, PUT"));
        assert_eq!(
            get(h, "access-control-allow-headers"),
            Some("x-token, content-type")
        );
        assert_eq!(get(h, "access-control-max-age"), Some("600"));
        assert_eq!(get(h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(
            get(h, "vary"),
            Some("Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
        );
    }

    #[test]
    fn a_refused_preflight_gets_no_allow_headers() {
        let p = policy(&["https://app.test"], false);
        for headers in [
            // Origin not listed.
            vec![
                ("origin", "https://evil.test"),
                ("access-control-request-method", "PUT"),
            ],
            // Method not listed, and not safelisted.
            vec![
                ("origin", "https://app.test"),
                ("access-control-request-method", "DELETE"),
            ],
            // A header not listed.
            vec![
                ("origin", "https://app.test"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x-other"),
            ],
        ] {
            let Outcome::Preflight(early) = p.handle(&request(Method::OPTIONS, &headers)) else {
                panic!("a preflight")
            };
            assert_eq!(early.status, StatusCode::NO_CONTENT);
            assert_eq!(early.headers.len(), 1, "{headers:?}: {:?}", early.headers);
            assert_eq!(early.headers[0].0, header::VARY);
        }
    }

    #[test]
    fn actual_requests_get_the_origin_and_vary() {
        let p = policy(&["https://app.test"], false);
        let Outcome::Forward(h) =
            p.handle(&request(Method::GET, &[("origin", "https://app.test")]))
        else {
            panic!()
        };
        assert_eq!(
            get(&h, "access-control-allow-origin"),
            Some("https://app.test")
        );
        assert_eq!(get(&h, "access-control-expose-headers"), Some("X-Total"));
        assert_eq!(get(&h, "access-control-allow-credentials"), None);
        assert_eq!(get(&h, "vary"), Some("Origin"));
        let Outcome::Forward(h) =
            p.handle(&request(Method::GET, &[("origin", "https://evil.test")]))
        else {
            panic!()
        };
        assert_eq!(h, vec![(header::VARY, HeaderValue::from_static("Origin"))]);
        // OPTIONS without Access-Control-Request-Method is not a preflight.
        assert!(matches!(
            p.handle(&request(Method::OPTIONS, &[("origin", "https://app.test")])),
            Outcome::Forward(_)
        ));
    }

    #[test]
    fn a_wildcard_is_star_without_credentials_and_the_origin_with() {
        let p = policy(&["*"], false);
        let Outcome::Forward(h) = p.handle(&request(Method::GET, &[("origin", "https://a.test")]))
        else {
            panic!()
        };
        assert_eq!(get(&h, "access-control-allow-origin"), Some("*"));
        assert_eq!(get(&h, "vary"), None);
        let p = policy(&["*"], true);
        let Outcome::Forward(h) = p.handle(&request(Method::GET, &[("origin", "https://a.test")]))
        else {
            panic!()
        };
        assert_eq!(
            get(&h, "access-control-allow-origin"),
            Some("https://a.test")
        );
        assert_eq!(get(&h, "vary"), Some("Origin"));
        let Outcome::Forward(h) = p.handle(&request(Method::GET, &[("origin", "null")])) else {
            panic!()
        };
        assert_eq!(get(&h, "access-control-allow-origin"), None);
    }
}
