//! Route middlewares: path rewriting and header edits, applied in the order the route lists them.
//!
//! `strip_prefix` follows Traefik: the first listed prefix the path starts with is removed
//! (a plain string prefix, like `PathPrefix`), the result always starts with `/`, and the
//! removed prefix is sent upstream in `X-Forwarded-Prefix` so the app can build links.
//! `add_prefix` puts a prefix in front. `headers` sets or removes request headers here and
//! response headers in [`apply_response`].
use http::{HeaderMap, HeaderValue};
use shoal_config::Middleware;

use crate::forward::X_FORWARDED_PREFIX;

/// Rewrite `path` and edit `headers` for the request going upstream.
pub(crate) fn apply_request(
    middlewares: &[Middleware],
    path: &mut String,
    headers: &mut HeaderMap,
) {
    for m in middlewares {
        match m {
            Middleware::StripPrefix(prefixes) => {
                if let Some(p) = prefixes.iter().find(|p| path.starts_with(p.as_str())) {
                    let rest = &path[p.len()..];
                    *path = if rest.starts_with('/') {
                        rest.to_owned()
                    } else {
                        format!("/{rest}")
                    };
                    let forwarded = match headers
                        .get(&X_FORWARDED_PREFIX)
                        .and_then(|v| v.to_str().ok())
                    {
                        Some(earlier) => format!("{earlier}{p}"),
                        None => p.clone(),
                    };
                    if let Ok(v) = HeaderValue::try_from(forwarded) {
                        headers.insert(X_FORWARDED_PREFIX.clone(), v);
                    }
                }
            }
            Middleware::AddPrefix(prefix) => {
                path.insert_str(0, prefix);
            }
            Middleware::Headers(rules) => {
                for name in &rules.request_remove {
                    headers.remove(name);
                }
                for (name, value) in &rules.request_set {
                    headers.insert(name.clone(), value.clone());
                }
            }
            // TODO(issue 17): the edge middlewares.
            _ => {}
        }
    }
}

/// Edit the response headers going back to the client.
pub(crate) fn apply_response(middlewares: &[Middleware], headers: &mut HeaderMap) {
    for m in middlewares {
        if let Middleware::Headers(rules) = m {
            for name in &rules.response_remove {
                headers.remove(name);
            }
            for (name, value) in &rules.response_set {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(prefixes: &[&str], path: &str) -> (String, Option<String>) {
        let mut p = path.to_owned();
        let mut h = HeaderMap::new();
        let m = [Middleware::StripPrefix(
            prefixes.iter().map(|s| s.to_string()).collect(),
        )];
        apply_request(&m, &mut p, &mut h);
        (
            p,
            h.get("x-forwarded-prefix")
                .map(|v| v.to_str().unwrap().to_owned()),
        )
    }

    #[test]
    fn strip_prefix_keeps_a_leading_slash_and_sets_forwarded_prefix() {
        assert_eq!(
            strip(&["/api/users"], "/api/users/42"),
            ("/42".into(), Some("/api/users".into()))
        );
        assert_eq!(
            strip(&["/api/users"], "/api/users"),
            ("/".into(), Some("/api/users".into()))
        );
        assert_eq!(
            strip(&["/api"], "/apix"),
            ("/x".into(), Some("/api".into()))
        );
        assert_eq!(strip(&["/api"], "/other"), ("/other".into(), None));
    }

    #[test]
    fn add_prefix_and_chained_strip() {
        let mut p = "/api/users/1".to_owned();
        let mut h = HeaderMap::new();
        let m = [
            Middleware::StripPrefix(vec!["/api".into()]),
            Middleware::StripPrefix(vec!["/users".into()]),
            Middleware::AddPrefix("/v1".into()),
        ];
        apply_request(&m, &mut p, &mut h);
        assert_eq!(p, "/v1/1");
        assert_eq!(h["x-forwarded-prefix"], "/api/users");
    }
}
