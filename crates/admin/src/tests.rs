//! The access rules (see the crate doc), through the router in process.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, to_bytes};
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use shoal_core::{EventLog, ServiceStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use crate::{AdminConfig, AdminServer, Control, RouteInfo, ScaleError, Scaled, router};

/// Counts the calls that change state.
struct Counting {
    events: EventLog,
    reloads: AtomicUsize,
    scales: AtomicUsize,
}

impl Control for Counting {
    fn services(&self) -> Vec<ServiceStatus> {
        Vec::new()
    }
    fn scale(&self, _: &str, replicas: u32) -> Result<Scaled, ScaleError> {
        self.scales.fetch_add(1, Ordering::SeqCst);
        Ok(Scaled {
            replicas,
            note: None,
        })
    }
    fn reload(&self) -> Result<String, String> {
        self.reloads.fetch_add(1, Ordering::SeqCst);
        Ok("reloaded".into())
    }
    fn events(&self) -> &EventLog {
        &self.events
    }
    fn routes(&self) -> Vec<RouteInfo> {
        Vec::new()
    }
}

fn control() -> Arc<Counting> {
    Arc::new(Counting {
        events: EventLog::new(10),
        reloads: AtomicUsize::new(0),
        scales: AtomicUsize::new(0),
    })
}

/// Sends one request to a fresh router; answers the status and the body as text.
async fn send(
    control: &Arc<Counting>,
    token: Option<&str>,
    req: Request<Body>,
) -> (StatusCode, String) {
    let app = router(
        control.clone(),
        AdminConfig {
            token: token.map(Into::into),
        },
    );
    let resp = app.oneshot(req).await.expect("infallible");
    let status = resp.status();
    let body = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A request with these headers (`Host: 127.0.0.1:8080` unless one is given).
fn request(method: Method, path: &str, headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header("host", "127.0.0.1:8080");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Body::from(body.to_owned())).expect("request")
}

const SCALE: &str = "/api/v1/services/web/scale";
const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn a_cross_origin_text_plain_post_is_refused() {
    let c = control();
    // What a page on another site can send without a preflight.
    let (status, body) = send(
        &c,
        None,
        request(
            Method::POST,
            "/api/v1/reload",
            &[
                ("origin", "http://evil.example"),
                ("content-type", "text/plain"),
            ],
            "x",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("Origin: http://evil.example"), "{body}");
    // The same from a browser that sends no Origin: the content type alone refuses it.
    let (status, body) = send(
        &c,
        None,
        request(
            Method::POST,
            "/api/v1/reload",
            &[("content-type", "text/plain;charset=UTF-8")],
            "x",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert!(body.contains("application/json"), "{body}");
    assert_eq!(c.reloads.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_cross_origin_json_post_is_refused_too() {
    let c = control();
    for origin in ["http://evil.example", "null", "http://localhost:3000"] {
        let headers = [("origin", origin), ("host", "localhost:8080"), JSON];
        let req = request(Method::POST, SCALE, &headers, r#"{"replicas":0}"#);
        let (status, body) = send(&c, None, req).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}: {body}");
    }
    assert_eq!(c.scales.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_dashboard_posts_from_its_own_origin() {
    let c = control();
    for (origin, host) in [
        ("http://127.0.0.1:8080", "127.0.0.1:8080"),
        ("http://localhost:8080", "localhost:8080"),
        ("http://localhost:8080", "127.0.0.1:8080"),
    ] {
        // What the dashboard's `fetch` sends.
        let headers = [
            ("host", host),
            ("origin", origin),
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-mode", "cors"),
            ("content-type", "application/json"),
            ("authorization", "Bearer t0k"),
        ];
        let req = request(Method::POST, SCALE, &headers, r#"{"replicas":2}"#);
        let (status, body) = send(&c, Some("t0k"), req).await;
        assert_eq!(status, StatusCode::OK, "{origin} {host}: {body}");
        assert!(body.contains(r#""replicas":2"#), "{body}");
    }
    assert_eq!(c.scales.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn sec_fetch_site_other_than_same_origin_is_refused() {
    let c = control();
    for site in ["cross-site", "same-site"] {
        let headers = [("sec-fetch-site", site), JSON];
        let req = request(Method::POST, "/api/v1/reload", &headers, "{}");
        let (status, body) = send(&c, None, req).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{site}: {body}");
        assert!(body.contains(&format!("Sec-Fetch-Site: {site}")), "{body}");
    }
    assert_eq!(c.reloads.load(Ordering::SeqCst), 0);
    // Typed into the address bar, or same-origin: fine.
    for site in ["none", "same-origin"] {
        let headers = [("sec-fetch-site", site), JSON];
        let req = request(Method::POST, "/api/v1/reload", &headers, "{}");
        assert_eq!(send(&c, None, req).await.0, StatusCode::OK, "{site}");
    }
}

#[tokio::test]
async fn the_cli_still_reloads_and_scales() {
    let c = control();
    // `shoal reload`: POST, no body, no content type; `shoal scale`: JSON.
    let req = request(Method::POST, "/api/v1/reload", &[], "");
    assert_eq!(send(&c, None, req).await.0, StatusCode::OK);
    let req = request(Method::POST, SCALE, &[JSON], r#"{"replicas":3}"#);
    assert_eq!(send(&c, None, req).await.0, StatusCode::OK);
    assert_eq!(c.reloads.load(Ordering::SeqCst), 1);
    assert_eq!(c.scales.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_foreign_host_is_refused_on_get_and_post() {
    let c = control();
    for (method, path, body) in [
        (Method::GET, "/api/v1/services", ""),
        (Method::GET, "/dashboard/", ""),
        (Method::POST, "/api/v1/reload", ""),
        (Method::POST, SCALE, r#"{"replicas":1}"#),
    ] {
        for host in [
            "evil.example:1234",
            "127.0.0.1.nip.io:8080",
            "localhost.evil.example",
        ] {
            let req = request(method.clone(), path, &[("host", host), JSON], body);
            let (status, text) = send(&c, None, req).await;
            assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{host} {path}");
            assert!(text.contains(&format!("Host `{host}`")), "{text}");
            assert!(text.contains("127.0.0.1"), "says what to use: {text}");
        }
    }
    assert_eq!(c.reloads.load(Ordering::SeqCst), 0);
    assert_eq!(c.scales.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn with_a_token_any_host_name_may_be_used() {
    // A rebinding page cannot send the token; a remote CLI addresses the API by name.
    let c = control();
    let req = request(
        Method::GET,
        "/api/v1/services",
        &[
            ("host", "admin.example:8080"),
            ("authorization", "Bearer s3cret"),
        ],
        "",
    );
    let (status, text) = send(&c, Some("s3cret"), req).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let req = request(
        Method::GET,
        "/api/v1/services",
        &[("host", "admin.example:8080")],
        "",
    );
    let (status, _) = send(&c, Some("s3cret"), req).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the token is still required"
    );
}

#[tokio::test]
async fn localhost_and_ip_hosts_are_accepted() {
    let c = control();
    for host in [
        "localhost:8080",
        "LocalHost",
        "127.0.0.1:8080",
        "[::1]:8080",
        "10.0.0.5:8080",
        "192.168.1.20",
    ] {
        let req = request(Method::GET, "/api/v1/health", &[("host", host)], "");
        assert_eq!(send(&c, None, req).await.0, StatusCode::OK, "{host}");
    }
}

#[tokio::test]
async fn without_host_only_loopback_peers_are_served() {
    let c = control();
    let bare = |peer: Option<&str>| {
        let mut req = Request::builder()
            .uri("/api/v1/health")
            .body(Body::empty())
            .expect("request");
        if let Some(peer) = peer {
            let peer: SocketAddr = peer.parse().expect("addr");
            req.extensions_mut().insert(ConnectInfo(peer));
        }
        req
    };
    for peer in ["127.0.0.1:5000", "[::1]:5000", "[::ffff:127.0.0.1]:5000"] {
        assert_eq!(send(&c, None, bare(Some(peer))).await.0, StatusCode::OK);
    }
    let (status, body) = send(&c, None, bare(Some("203.0.113.9:5000"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Peer unknown (the router alone): served.
    assert_eq!(send(&c, None, bare(None)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_token_must_match_exactly() {
    let c = control();
    let get = |auth: Option<&str>| {
        let mut headers = Vec::new();
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        request(Method::GET, "/api/v1/services", &headers, "")
    };
    let token = Some("s3cret/+");
    assert_eq!(
        send(&c, token, get(Some("Bearer s3cret/+"))).await.0,
        StatusCode::OK
    );
    for wrong in [
        None,
        Some("Bearer s3cret/-"),  // same length
        Some("Bearer s3cret"),    // a prefix
        Some("Bearer s3cret/+x"), // longer
        Some("Bearer "),
        Some("s3cret/+"),
    ] {
        assert_eq!(
            send(&c, token, get(wrong)).await.0,
            StatusCode::UNAUTHORIZED,
            "{wrong:?}"
        );
    }
    // The stream's query token goes through the same comparison.
    for (query, want) in [
        ("?token=s3cret%2F%2B", StatusCode::OK),
        ("?token=s3cret%2F-", StatusCode::UNAUTHORIZED),
        ("?token=s3", StatusCode::UNAUTHORIZED),
    ] {
        let uri = format!("/api/v1/stream{query}");
        let app = router(
            c.clone(),
            AdminConfig {
                token: token.map(Into::into),
            },
        );
        let req = request(Method::GET, &uri, &[], "");
        let status = app.oneshot(req).await.expect("infallible").status();
        assert_eq!(status, want, "{query}");
    }
}

/// The real server knows the peer: HTTP/1.0 without `Host` from loopback is served, and a
/// foreign `Host` is refused.
#[tokio::test]
async fn the_server_checks_host_over_tcp() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server =
        AdminServer::start(listener, control(), AdminConfig { token: None }).expect("admin server");
    let addr = server.local_addr();
    let raw = |request: &'static str| async move {
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(request.as_bytes()).await.expect("write");
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.expect("read");
        answer
    };
    let answer = raw("GET /api/v1/health HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let answer =
        raw("GET /api/v1/health HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 421"), "{answer}");
    server.shutdown().await;
}
