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

use crate::{
    AdminConfig, AdminServer, Control, RolloutAction, RouteInfo, ScaleError, Scaled, router,
};

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

/// A control with one service (`api`, mid-rollout) and one split route (`web`: api, api-v2),
/// recording the rollouts and weights asked for.
struct Rolling {
    events: EventLog,
    asked: std::sync::Mutex<Vec<String>>,
}

impl Control for Rolling {
    fn services(&self) -> Vec<ServiceStatus> {
        let service = |name: &str, rollout| {
            serde_json::from_value::<ServiceStatus>(serde_json::json!({
                "name": name, "state": "progressing", "ready": 3, "desired": 3,
                "replicas": [], "rollout": rollout,
            }))
            .expect("a service")
        };
        vec![
            service(
                "api",
                serde_json::json!({
                    "version": "v2", "previous": "v1", "state": "progressing",
                    "updated": 1, "updated_ready": 0, "desired": 3, "message": null,
                    "started_ms": 1,
                }),
            ),
            service("db", serde_json::Value::Null),
        ]
    }
    fn scale(&self, _: &str, _: u32) -> Result<Scaled, ScaleError> {
        Err(ScaleError::Invalid("no".into()))
    }
    fn reload(&self) -> Result<String, String> {
        Err("no".into())
    }
    fn events(&self) -> &EventLog {
        &self.events
    }
    fn routes(&self) -> Vec<RouteInfo> {
        Vec::new()
    }
    fn rollout(&self, service: &str, action: RolloutAction) -> Result<String, ScaleError> {
        self.asked
            .lock()
            .unwrap()
            .push(format!("{service} {action:?}"));
        match service {
            "api" => Ok(format!("{action:?} of api started")),
            "static" => Err(ScaleError::Invalid("static servers".into())),
            _ => Err(ScaleError::UnknownService(service.into())),
        }
    }
    fn set_weights(
        &self,
        route: &str,
        weights: &[(String, u32)],
    ) -> Result<Vec<(String, u32)>, ScaleError> {
        self.asked
            .lock()
            .unwrap()
            .push(format!("{route} {weights:?}"));
        if route != "web" {
            return Err(ScaleError::UnknownRoute(route.into()));
        }
        let mut now = vec![("api".to_owned(), 90), ("api-v2".to_owned(), 10)];
        for (service, weight) in weights {
            let Some(slot) = now.iter_mut().find(|(s, _)| s == service) else {
                return Err(ScaleError::Invalid(format!(
                    "service `{service}` is not in route `web`'s split"
                )));
            };
            slot.1 = *weight;
        }
        Ok(now)
    }
}

async fn send_rolling(
    control: &Arc<Rolling>,
    method: Method,
    path: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let app = router(control.clone(), AdminConfig { token: None });
    let resp = app
        .oneshot(request(method, path, &[JSON], body))
        .await
        .expect("infallible");
    let status = resp.status();
    let body = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (status, serde_json::from_slice(&body).expect("JSON"))
}

fn rolling() -> Arc<Rolling> {
    Arc::new(Rolling {
        events: EventLog::new(10),
        asked: std::sync::Mutex::new(Vec::new()),
    })
}

#[tokio::test]
async fn rollout_status_is_the_services_rollout_or_null() {
    let c = rolling();
    let path = "/api/v1/services/api/rollout";
    let (status, body) = send_rolling(&c, Method::GET, path, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], "v2");
    assert_eq!(body["state"], "progressing");
    assert_eq!(body["updated"], 1);
    let path = "/api/v1/services/db/rollout";
    let (status, body) = send_rolling(&c, Method::GET, path, "").await;
    assert_eq!((status, body), (StatusCode::OK, serde_json::Value::Null));
    let path = "/api/v1/services/nope/rollout";
    let (status, body) = send_rolling(&c, Method::GET, path, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "no service named `nope`");
}

#[tokio::test]
async fn rollout_undo_and_restart_reach_the_control() {
    let c = rolling();
    let path = "/api/v1/services/api/rollout";
    let (status, body) = send_rolling(&c, Method::POST, path, r#"{"action":"undo"}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"], "Undo of api started");
    assert_eq!(body["action"], "undo");
    let (status, _) = send_rolling(&c, Method::POST, path, r#"{"action":"restart"}"#).await;
    assert_eq!(status, StatusCode::OK);
    // Unknown service: 404; refused: 400 with the reason; a bad action: 400, not sent on.
    let path = "/api/v1/services/nope/rollout";
    let (status, body) = send_rolling(&c, Method::POST, path, r#"{"action":"undo"}"#).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let path = "/api/v1/services/static/rollout";
    let (status, body) = send_rolling(&c, Method::POST, path, r#"{"action":"undo"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "static servers");
    let path = "/api/v1/services/api/rollout";
    let (status, body) = send_rolling(&c, Method::POST, path, r#"{"action":"redo"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("restart"),
        "{body}"
    );
    assert_eq!(
        *c.asked.lock().unwrap(),
        ["api Undo", "api Restart", "nope Undo", "static Undo"]
    );
}

#[tokio::test]
async fn weights_are_set_and_every_target_answered() {
    let c = rolling();
    let path = "/api/v1/routes/web/weights";
    let (status, body) = send_rolling(
        &c,
        Method::POST,
        path,
        r#"{"weights":{"api":50,"api-v2":50}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"route": "web", "weights": [
            {"service": "api", "weight": 50}, {"service": "api-v2", "weight": 50}
        ]})
    );
    let (status, body) = send_rolling(&c, Method::POST, path, r#"{"weights":{"api-v3":5}}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"],
        "service `api-v3` is not in route `web`'s split"
    );
    let (status, body) = send_rolling(
        &c,
        Method::POST,
        "/api/v1/routes/nope/weights",
        r#"{"weights":{"api":1}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "no route named `nope`");
    // Not weights: refused before the control sees them.
    for bad in [
        r#"{"weights":{}}"#,
        r#"{"weights":{"api":-1}}"#,
        r#"{"api":5}"#,
    ] {
        let (status, body) = send_rolling(&c, Method::POST, path, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    assert_eq!(c.asked.lock().unwrap().len(), 3);
}

/// A control with one service, `web`, whose replica output is `history` (then nothing new,
/// forever, when followed); records the queries and shutdowns asked for.
struct Logging {
    events: EventLog,
    queries: std::sync::Mutex<Vec<crate::LogQuery>>,
    shutdowns: AtomicUsize,
}

impl Control for Logging {
    fn services(&self) -> Vec<ServiceStatus> {
        Vec::new()
    }
    fn scale(&self, _: &str, _: u32) -> Result<Scaled, ScaleError> {
        Err(ScaleError::Invalid("no".into()))
    }
    fn reload(&self) -> Result<String, String> {
        Err("no".into())
    }
    fn events(&self) -> &EventLog {
        &self.events
    }
    fn routes(&self) -> Vec<RouteInfo> {
        Vec::new()
    }
    fn logs(&self, service: &str, query: &crate::LogQuery) -> Result<crate::LogStream, ScaleError> {
        use futures_util::StreamExt;
        self.queries.lock().unwrap().push(query.clone());
        if service != "web" {
            return Err(ScaleError::UnknownService(service.into()));
        }
        if query.replica == Some(7) {
            return Err(ScaleError::NotFound("no logs of replica 7 of `web`".into()));
        }
        let line = |replica, line: &str| crate::LogLine {
            replica,
            line: line.into(),
        };
        let history = vec![line(0, "a"), line(1, "b \u{1b}[31mred\u{1b}[0m")];
        let head = futures_util::stream::iter([history, Vec::new()]);
        Ok(if query.follow {
            head.chain(futures_util::stream::pending()).boxed()
        } else {
            head.boxed()
        })
    }
    fn shutdown(&self) -> Result<String, ScaleError> {
        self.shutdowns.fetch_add(1, Ordering::SeqCst);
        Ok("stopping".into())
    }
}

fn logging() -> Arc<Logging> {
    Arc::new(Logging {
        events: EventLog::new(10),
        queries: std::sync::Mutex::new(Vec::new()),
        shutdowns: AtomicUsize::new(0),
    })
}

async fn send_logging(control: &Arc<Logging>, req: Request<Body>) -> (StatusCode, String) {
    let resp = router(control.clone(), AdminConfig { token: None })
        .oneshot(req)
        .await
        .expect("infallible");
    let status = resp.status();
    let body = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn logs_are_ndjson_lines_as_the_query_asks() {
    let c = logging();
    let get = |path: &str| request(Method::GET, path, &[], "");
    let (status, body) = send_logging(&c, get("/api/v1/services/web/logs")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        "{\"replica\":0,\"line\":\"a\"}\n{\"replica\":1,\"line\":\"b \\u001b[31mred\\u001b[0m\"}\n"
    );
    let (status, _) = send_logging(
        &c,
        get("/api/v1/services/web/logs?replica=1&tail=5000000&follow=false"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let asked = c.queries.lock().unwrap().clone();
    assert_eq!(
        asked,
        [
            crate::LogQuery {
                replica: None,
                tail: 100,
                follow: false
            },
            crate::LogQuery {
                replica: Some(1),
                tail: crate::MAX_TAIL,
                follow: false
            },
        ]
    );
    for (path, want, says) in [
        ("/api/v1/services/nope/logs", 404, "no service named `nope`"),
        (
            "/api/v1/services/web/logs?replica=7",
            404,
            "no logs of replica 7",
        ),
        (
            "/api/v1/services/web/logs?tail=-1",
            400,
            "?replica=N&tail=N",
        ),
        (
            "/api/v1/services/web/logs?follow=maybe",
            400,
            "follow=true|false",
        ),
    ] {
        let (status, body) = send_logging(&c, get(path)).await;
        assert_eq!(status.as_u16(), want, "{path}: {body}");
        assert!(body.contains(says), "{path}: {body}");
    }
}

#[tokio::test]
async fn a_log_follower_is_cut_off_when_the_server_stops() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server =
        AdminServer::start(listener, logging(), AdminConfig { token: None }).expect("admin server");
    let mut conn = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    conn.write_all(
        b"GET /api/v1/services/web/logs?follow=true HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await
    .expect("write");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("red") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("the history in time")
            .expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let stopping = tokio::spawn(server.shutdown());
    // The rest of the answer ends (chunked: `0\r\n\r\n`), well before shutdown's 2 s bound.
    let rest = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        let mut rest = Vec::new();
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return rest,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
            }
            if rest.ends_with(b"0\r\n\r\n") {
                return rest;
            }
        }
    })
    .await
    .expect("the follower cut off when the server stops");
    assert!(
        rest.ends_with(b"0\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    stopping.await.expect("shutdown");
}

#[tokio::test]
async fn shutdown_is_a_post_from_the_cli_not_from_another_site() {
    let c = logging();
    let (status, body) = send_logging(&c, request(Method::POST, "/api/v1/shutdown", &[], "")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body.contains("\"stopping\":true"), "{body}");
    assert_eq!(c.shutdowns.load(Ordering::SeqCst), 1);
    let (status, _) = send_logging(
        &c,
        request(
            Method::POST,
            "/api/v1/shutdown",
            &[("origin", "http://evil.example")],
            "",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = send_logging(&c, request(Method::GET, "/api/v1/shutdown", &[], "")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(c.shutdowns.load(Ordering::SeqCst), 1, "only the CLI's POST");
}
