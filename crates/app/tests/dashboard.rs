//! The web dashboard's server side: the page and its files, the snapshot stream it follows
//! (`GET /api/v1/stream`), the routes it lists, and the token rules for all three. The page
//! itself is driven in a real browser by `tests/browser/` (see scripts/test.sh).
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use shoal_admin::{AdminConfig, AdminServer, Control, RouteInfo, ScaleError, Scaled, Snapshot};
use shoal_core::{EventKind, EventLog, HealthState, ServiceState, ServiceStatus};
use shoal_test_support::{
    Backends, Client, Route, ServerList, Service, TestGateway, dead_url, get,
};
use tokio::time::{Instant, timeout};

/// One message of a server-sent event stream.
#[derive(Debug)]
struct Message {
    id: Option<String>,
    data: String,
}

/// Reads a `text/event-stream` body message by message.
struct EventStream {
    body: Incoming,
    buf: String,
}

impl EventStream {
    async fn open(addr: SocketAddr, path_and_query: &str, headers: &[(&str, &str)]) -> Self {
        let url = format!("http://{addr}{path_and_query}");
        let resp = Client::http1()
            .send(get(&url, headers))
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(resp.status(), StatusCode::OK, "GET {url}");
        assert_eq!(
            resp.headers()["content-type"],
            "text/event-stream",
            "GET {url}"
        );
        EventStream {
            body: resp.into_body(),
            buf: String::new(),
        }
    }

    /// The next message with data (comments such as keep-alives are skipped); None when the
    /// stream ends.
    async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut msg = Message {
                    id: None,
                    data: String::new(),
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        msg.id = Some(v.trim_start().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        msg.data.push_str(v.trim_start());
                    }
                }
                if !msg.data.is_empty() {
                    return Some(msg);
                }
                continue;
            }
            let frame = self.body.frame().await?.expect("stream body");
            if let Ok(data) = frame.into_data() {
                self.buf
                    .push_str(std::str::from_utf8(&data).expect("UTF-8"));
            }
        }
    }

    /// The next snapshot, within `within`.
    /// A new stream's first snapshot (within 2 s), and its event id.
    async fn first(
        addr: SocketAddr,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> (Option<String>, Snapshot) {
        EventStream::open(addr, path_and_query, headers)
            .await
            .snapshot(Duration::from_secs(2))
            .await
    }

    async fn snapshot(&mut self, within: Duration) -> (Option<String>, Snapshot) {
        let msg = timeout(within, self.next())
            .await
            .expect("a snapshot in time")
            .expect("the stream goes on");
        let snap = serde_json::from_str(&msg.data)
            .unwrap_or_else(|e| panic!("not a snapshot ({e}): {}", msg.data));
        (msg.id, snap)
    }
}

async fn admin_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String, String) {
    let a = Client::http1()
        .get_with(&format!("http://{addr}{path}"), headers)
        .await;
    let ct = a.header("content-type").unwrap_or("").to_owned();
    (a.status, ct, a.text())
}

#[tokio::test]
async fn stream_sends_a_snapshot_every_second_with_only_new_events() {
    let backends = Backends::start(2).await;
    let gw = TestGateway::builder()
        .service("web", &backends)
        .route("PathPrefix(`/`)", "web")
        .start()
        .await;
    let admin = gw.shoal().admin_addr();
    let mut stream = EventStream::open(admin, "/api/v1/stream", &[]).await;

    // Two snapshots within 4 s: one at once, the next a second later (slack for a busy
    // machine; a stream that waited for a change instead would take far longer).
    let start = Instant::now();
    let (_, first) = stream.snapshot(Duration::from_secs(4)).await;
    let (_, second) = stream.snapshot(Duration::from_secs(4)).await;
    let took = start.elapsed();
    assert!(took < Duration::from_secs(4), "two snapshots took {took:?}");
    assert!(
        took >= Duration::from_millis(700),
        "snapshots {took:?} apart: not paced"
    );
    assert!(second.at_ms > first.at_ms);

    // The services exactly as GET /api/v1/services shows them.
    let (status, _, body) = admin_get(admin, "/api/v1/services", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<ServiceStatus> = serde_json::from_str(&body).expect("services");
    let names = |s: &[ServiceStatus]| s.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&second.services), names(&listed));
    assert_eq!(second.services[0].replicas.len(), 2);
    assert!(
        second.services[0].traffic.is_some(),
        "traffic counters included"
    );

    // A new event comes once, in the next snapshot, and the message id is its sequence.
    gw.reload_text(&std::fs::read_to_string(gw.stack_path()).expect("stack file"))
        .expect("reload");
    let (id, with_event) = loop {
        let (id, snap) = stream.snapshot(Duration::from_millis(2500)).await;
        if !snap.events.is_empty() {
            break (id, snap);
        }
    };
    assert_eq!(with_event.events.len(), 1, "{:?}", with_event.events);
    let event = &with_event.events[0];
    assert_eq!(event.kind, EventKind::Reloaded);
    assert_eq!(id, Some(event.seq.to_string()));
    let (id, after) = stream.snapshot(Duration::from_millis(2500)).await;
    assert!(after.events.is_empty(), "sent again: {:?}", after.events);
    assert_eq!(
        id,
        Some(event.seq.to_string()),
        "the id stays at the last event"
    );
    drop(stream);
    gw.shutdown().await;
}

/// Issue 23, defect 10: a fresh page seeds its charts from the server's recent samples,
/// which count a replica as ready only when it is in rotation (an ejected one is not).
#[tokio::test]
async fn a_new_stream_starts_with_recent_samples_counting_only_replicas_in_rotation() {
    let backends = Backends::start(2).await;
    let mut servers = backends.urls();
    servers.push(dead_url());
    let gw = TestGateway::builder()
        .service_with(
            "web",
            Service::servers(&servers)
                .with("health: false")
                .with("passive: { base_ejection: 60s, max_ejection: 60s }"),
        )
        .route("PathPrefix(`/`)", "web")
        .start()
        .await;
    let admin = gw.shoal().admin_addr();
    // Traffic: the dead server refuses a connection and is ejected at once.
    for _ in 0..20 {
        assert_eq!(gw.get("/whoami").await.status, StatusCode::OK);
    }

    // Within a few seconds a new stream's first message has samples of that traffic,
    // oldest first, with the ejected server not counted as ready.
    let deadline = Instant::now() + Duration::from_secs(6);
    let (history, first_at) = loop {
        let mut stream = EventStream::open(admin, "/api/v1/stream", &[]).await;
        let (_, first) = stream.snapshot(Duration::from_millis(2500)).await;
        let seeded = first.history.len() >= 2
            && first.history.last().is_some_and(|s| {
                s.services[0].requests_total >= Some(20) && s.services[0].ready == 2
            });
        if seeded {
            // Only the first message carries them.
            let (_, second) = stream.snapshot(Duration::from_millis(2500)).await;
            assert!(second.history.is_empty(), "{:?}", second.history);
            break (first.history, first.at_ms);
        }
        assert!(
            Instant::now() < deadline,
            "no usable history after 6 s: {:?}",
            first.history
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(history.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
    assert!(history.last().unwrap().at_ms <= first_at);
    let web = &history.last().unwrap().services[0];
    assert_eq!(web.name, "web");
    assert_eq!(web.server_errors_total, Some(0));
    // The service itself still says 3 in the balancer; the page and the samples say 2.
    let listed: Vec<ServiceStatus> =
        serde_json::from_str(&admin_get(admin, "/api/v1/services", &[]).await.2).unwrap();
    let ejected = listed[0]
        .replicas
        .iter()
        .filter(|r| {
            r.traffic
                .as_ref()
                .is_some_and(|t| t.health == HealthState::Ejected)
        })
        .count();
    assert_eq!(ejected, 1, "{:?}", listed[0].replicas);
    gw.shutdown().await;
}

#[tokio::test]
async fn dashboard_page_and_files_are_served_from_the_binary() {
    let backends = Backends::start(1).await;
    let gw = TestGateway::in_front_of(&backends).await;
    let admin = gw.shoal().admin_addr();

    let (status, ct, html) = admin_get(admin, "/dashboard/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "text/html; charset=utf-8");
    assert!(html.contains("<canvas"), "{html}");
    assert!(html.contains("src=\"app.js\""), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere"
    );

    let (status, ct, js) = admin_get(admin, "/dashboard/app.js", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "text/javascript; charset=utf-8");
    assert!(js.contains("EventSource"));
    let (status, ct, _) = admin_get(admin, "/dashboard/style.css", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "text/css; charset=utf-8");

    let a = gw
        .client()
        .get(&format!("http://{admin}/dashboard?token=a%20b"))
        .await;
    assert_eq!(a.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(a.header("location"), Some("/dashboard/?token=a%20b"));
    let (status, _, _) = admin_get(admin, "/dashboard/nothing.js", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    gw.shutdown().await;
}

#[tokio::test]
async fn routes_are_listed_in_the_order_they_are_tried() {
    let backends = Backends::start(1).await;
    let gw = TestGateway::builder()
        .service("web", &backends)
        .service("api", &backends)
        .route("PathPrefix(`/`)", "web")
        .route_with(Route::new("PathPrefix(`/api`)", "api").strip_prefix("/api"))
        .start()
        .await;
    let (status, ct, body) = admin_get(gw.shoal().admin_addr(), "/api/v1/routes", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "application/json");
    let routes: Vec<RouteInfo> = serde_json::from_str(&body).expect("routes");
    let summary: Vec<_> = routes
        .iter()
        .map(|r| (r.rule.as_str(), r.service.as_str(), r.priority))
        .collect();
    assert_eq!(
        summary,
        [
            ("PathPrefix(`/api`)", "api", 18),
            ("PathPrefix(`/`)", "web", 15)
        ]
    );
    assert_eq!(routes[0].middlewares, ["strip_prefix /api"]);
    assert_eq!(routes[0].entrypoints, None);
    gw.shutdown().await;
}

/// A shoal with no services, for the admin server alone.
struct Quiet {
    events: EventLog,
}

impl Control for Quiet {
    fn services(&self) -> Vec<ServiceStatus> {
        vec![ServiceStatus {
            name: "web".into(),
            desired: 0,
            ready: 0,
            state: ServiceState::Stopped,
            replicas: Vec::new(),
            traffic: None,
            autoscale: None,
            worker: false,
            rollout: None,
        }]
    }
    fn scale(&self, service: &str, _: u32) -> Result<Scaled, ScaleError> {
        Err(ScaleError::UnknownService(service.into()))
    }
    fn reload(&self) -> Result<String, String> {
        Err("no file".into())
    }
    fn events(&self) -> &EventLog {
        &self.events
    }
    fn routes(&self) -> Vec<RouteInfo> {
        Vec::new()
    }
}

async fn admin_server(token: Option<&str>) -> (AdminServer, Arc<Quiet>) {
    let control = Arc::new(Quiet {
        events: EventLog::new(1000),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = AdminServer::start(
        listener,
        control.clone(),
        AdminConfig {
            token: token.map(Into::into),
        },
    )
    .expect("admin server");
    (server, control)
}

#[tokio::test]
async fn with_a_token_the_page_is_public_and_only_the_stream_takes_it_in_the_query() {
    let (server, _) = admin_server(Some("s3cret/+")).await;
    let addr = server.local_addr();

    // The page's files hold no state: no token needed.
    for path in ["/dashboard/", "/dashboard/app.js", "/dashboard/style.css"] {
        let (status, _, _) = admin_get(addr, path, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    // The stream needs it: as a bearer token or, for EventSource, as `?token=`.
    for (path, headers, want) in [
        ("/api/v1/stream", &[][..], StatusCode::UNAUTHORIZED),
        ("/api/v1/stream?token=wrong", &[], StatusCode::UNAUTHORIZED),
        ("/api/v1/stream?token=s3cret/%2B", &[], StatusCode::OK),
        (
            "/api/v1/stream",
            &[("authorization", "Bearer s3cret/+")],
            StatusCode::OK,
        ),
        // Only the page's own paths are public.
        ("/dashboard/../api/v1/services", &[], StatusCode::NOT_FOUND),
        // Every other endpoint takes it in the header only.
        (
            "/api/v1/services?token=s3cret/%2B",
            &[],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/api/v1/routes?token=s3cret/%2B",
            &[],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/api/v1/routes",
            &[("authorization", "Bearer s3cret/+")],
            StatusCode::OK,
        ),
    ] {
        let url = format!("http://{addr}{path}");
        let resp = Client::http1().send(get(&url, headers)).await.expect(path);
        assert_eq!(resp.status(), want, "{path} {headers:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_reconnecting_stream_resumes_after_the_last_event_it_saw() {
    let (server, control) = admin_server(None).await;
    let addr = server.local_addr();
    for i in 0..3 {
        control
            .events
            .emit("web", Some(i), EventKind::Started, format!("event {i}"));
    }
    let seqs = |s: &Snapshot| s.events.iter().map(|e| e.seq).collect::<Vec<_>>();

    let (id, snap) = EventStream::first(addr, "/api/v1/stream", &[]).await;
    assert_eq!(
        seqs(&snap),
        [1, 2, 3],
        "a new stream starts with the backlog"
    );
    assert_eq!(id.as_deref(), Some("3"));
    assert_eq!(snap.services[0].name, "web");

    let (_, snap) = EventStream::first(addr, "/api/v1/stream", &[("last-event-id", "2")]).await;
    assert_eq!(seqs(&snap), [3], "resumes after Last-Event-ID");
    let (_, snap) = EventStream::first(addr, "/api/v1/stream?since=1", &[]).await;
    assert_eq!(seqs(&snap), [2, 3], "or after ?since=");
    let (_, snap) = EventStream::first(addr, "/api/v1/stream", &[("last-event-id", "99")]).await;
    assert_eq!(
        seqs(&snap),
        [1, 2, 3],
        "an id from before a restart: the backlog"
    );

    // The backlog is bounded.
    for i in 0..200 {
        control
            .events
            .emit("web", None, EventKind::Scaled, format!("{i}"));
    }
    let (_, snap) = EventStream::first(addr, "/api/v1/stream", &[]).await;
    assert_eq!(snap.events.len(), shoal_admin::BACKLOG);
    assert_eq!(snap.events.last().map(|e| e.seq), Some(203));
    server.shutdown().await;
}

#[tokio::test]
async fn stopping_the_server_ends_open_streams() {
    let (server, _) = admin_server(None).await;
    let mut stream = EventStream::open(server.local_addr(), "/api/v1/stream", &[]).await;
    stream.snapshot(Duration::from_secs(2)).await;
    let start = Instant::now();
    server.shutdown().await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "shutdown waited {:?} for the stream",
        start.elapsed()
    );
    let end = timeout(Duration::from_secs(2), async {
        while stream.next().await.is_some() {}
    })
    .await;
    assert!(end.is_ok(), "the stream did not end");
}
