//! End-to-end tests of the gateway: a whole shoal started in-process on `127.0.0.1:0`, in
//! front of in-process backends, driven over real TCP. Routing, middlewares, errors,
//! forwarding hygiene, protocols (HTTP/2, WebSocket, keep-alive), retries and shutdown.
//! Balancing, reloads and streaming have their own files.
use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode, Version};
use shoal_test_support::{
    Backend, Backends, Client, Conn, DEADLINE, Recorder, Route, Service, StackBuilder, TestGateway,
    body, dead_url, eventually, tally,
};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// A gateway where each `(rule, name)` sends matching requests to its own backend called
/// `name`, and everything else (at priority 1) to a backend called `fallback`.
async fn one_backend_per_rule(rules: &[(&str, &str)]) -> (Backends, TestGateway) {
    let mut names: Vec<&str> = rules.iter().map(|(_, name)| *name).collect();
    names.push("fallback");
    let backends = Backends::named(&names).await;
    let mut stack = StackBuilder::new();
    for b in &backends {
        stack = stack.service(b.name(), b);
    }
    for (rule, name) in rules {
        stack = stack.route(rule, name);
    }
    let stack = stack.route_with(Route::new("PathPrefix(`/`)", "fallback").priority(1));
    (backends, stack.start().await)
}

// ---- 1. routing rules ----

#[tokio::test]
async fn host_rules_match_the_host_header() {
    let (_backends, gw) = one_backend_per_rule(&[
        ("Host(`api.example.com`)", "host"),
        ("HostRegexp(`^[a-z]+\\.wild\\.example$`)", "host-regexp"),
    ])
    .await;

    let via = |host: &'static str| {
        let gw = &gw;
        async move {
            gw.get_with("/", &[("host", host)])
                .await
                .served_by()
                .to_owned()
        }
    };
    assert_eq!(via("api.example.com").await, "host");
    assert_eq!(via("API.Example.COM").await, "host", "hosts ignore case");
    assert_eq!(
        via("api.example.com:8080").await,
        "host",
        "the port is not part of the host"
    );
    assert_eq!(via("foo.wild.example").await, "host-regexp");
    assert_eq!(via("foo.bar.wild.example").await, "fallback");
    assert_eq!(via("other.example.com").await, "fallback");
}

#[tokio::test]
async fn path_rules_match_exactly_by_prefix_and_by_regexp() {
    let (_backends, gw) = one_backend_per_rule(&[
        ("Path(`/exact`)", "path"),
        ("PathPrefix(`/pre`)", "path-prefix"),
        ("PathRegexp(`^/items/[0-9]+$`)", "path-regexp"),
    ])
    .await;

    for (path, expected) in [
        ("/exact", "path"),
        ("/exact/more", "fallback"),
        ("/pre", "path-prefix"),
        ("/prefix/x", "path-prefix"),
        ("/items/42", "path-regexp"),
        ("/items/abc", "fallback"),
        ("/other", "fallback"),
    ] {
        assert_eq!(gw.get(path).await.served_by(), expected, "GET {path}");
    }
}

#[tokio::test]
async fn method_header_and_query_rules() {
    let (_backends, gw) = one_backend_per_rule(&[
        ("Method(`DELETE`)", "method"),
        ("Header(`X-Env`, `staging`)", "header"),
        ("HeaderRegexp(`X-Version`, `^v[0-9]+$`)", "header-regexp"),
        ("Query(`debug`, `1`)", "query"),
        ("QueryRegexp(`id`, `^[0-9]+$`)", "query-regexp"),
    ])
    .await;
    let client = gw.client();

    let delete = Request::delete(gw.url("/")).body(body::empty()).unwrap();
    assert_eq!(client.request(delete).await.served_by(), "method");
    assert_eq!(gw.get("/").await.served_by(), "fallback");

    let with = |headers: &'static [(&'static str, &'static str)]| {
        let gw = &gw;
        async move { gw.get_with("/", headers).await.served_by().to_owned() }
    };
    assert_eq!(with(&[("x-env", "staging")]).await, "header");
    assert_eq!(with(&[("x-env", "production")]).await, "fallback");
    assert_eq!(with(&[("x-version", "v12")]).await, "header-regexp");
    assert_eq!(with(&[("x-version", "12")]).await, "fallback");

    for (path, expected) in [
        ("/?debug=1", "query"),
        ("/?a=b&debug=1", "query"),
        ("/?debug=0", "fallback"),
        ("/?id=123", "query-regexp"),
        ("/?id=12a", "fallback"),
    ] {
        assert_eq!(gw.get(path).await.served_by(), expected, "GET {path}");
    }
}

#[tokio::test]
async fn client_ip_rules_use_the_tcp_peer_not_forwarded_headers() {
    let (_backends, gw) = one_backend_per_rule(&[
        ("ClientIP(`10.0.0.0/8`)", "ten"),
        ("ClientIP(`127.0.0.0/8`) && Path(`/local`)", "local"),
    ])
    .await;

    assert_eq!(gw.get("/local").await.served_by(), "local");
    assert_eq!(gw.get("/").await.served_by(), "fallback");
    let spoofed = gw.get_with("/", &[("x-forwarded-for", "10.1.2.3")]).await;
    assert_eq!(spoofed.served_by(), "fallback");
}

#[tokio::test]
async fn and_or_not_and_parentheses_combine_rules() {
    let (_backends, gw) = one_backend_per_rule(&[
        ("Host(`a.example`) && (Path(`/x`) || Path(`/y`))", "and-or"),
        ("PathPrefix(`/neg`) && !Header(`X-Skip`, `1`)", "not"),
        // `&&` binds tighter than `||`: this is (Host && /p) || /q ...
        (
            "Host(`p.example`) && Path(`/p`) || Path(`/q`)",
            "unparenthesised",
        ),
        // ... and this is Host && (/r || /s).
        (
            "Host(`r.example`) && (Path(`/r`) || Path(`/s`))",
            "parenthesised",
        ),
    ])
    .await;

    let at = |host: &'static str, path: &'static str| {
        let gw = &gw;
        async move {
            gw.get_with(path, &[("host", host)])
                .await
                .served_by()
                .to_owned()
        }
    };
    assert_eq!(at("a.example", "/x").await, "and-or");
    assert_eq!(at("a.example", "/y").await, "and-or");
    assert_eq!(at("a.example", "/z").await, "fallback");
    assert_eq!(at("b.example", "/x").await, "fallback");

    assert_eq!(at("any", "/neg").await, "not");
    let skipped = gw.get_with("/neg", &[("x-skip", "1")]).await;
    assert_eq!(skipped.served_by(), "fallback");

    assert_eq!(at("p.example", "/p").await, "unparenthesised");
    assert_eq!(at("other", "/q").await, "unparenthesised");
    assert_eq!(at("r.example", "/s").await, "parenthesised");
    assert_eq!(at("other", "/s").await, "fallback");
}

#[tokio::test]
async fn the_longer_rule_wins_unless_a_priority_says_otherwise() {
    let backends = Backends::named(&["short", "long", "cart", "shop"]).await;
    let mut stack = StackBuilder::new();
    for b in &backends {
        stack = stack.service(b.name(), b);
    }
    // File order is deliberately shortest first: order must not matter, length must.
    let gw = stack
        .route("PathPrefix(`/api`)", "short")
        .route("PathPrefix(`/api/v2`)", "long")
        .route("PathPrefix(`/shop/cart`)", "cart")
        .route_with(Route::new("PathPrefix(`/shop`)", "shop").priority(100))
        .start()
        .await;

    assert_eq!(gw.get("/api/v2/users").await.served_by(), "long");
    assert_eq!(gw.get("/api/v1/users").await.served_by(), "short");
    assert_eq!(
        gw.get("/shop/cart/items").await.served_by(),
        "shop",
        "an explicit priority beats a longer rule"
    );
}

// ---- 2. middlewares ----

#[tokio::test]
async fn strip_prefix_removes_the_prefix_and_says_so_upstream() {
    let recorder = Recorder::start().await;
    let gw = TestGateway::builder()
        .service("users", &recorder)
        .route_with(Route::new("PathPrefix(`/api/users`)", "users").strip_prefix("/api/users"))
        .start()
        .await;

    let seen = gw
        .get_with(
            "/api/users/42?full=1",
            &[("x-forwarded-prefix", "/spoofed")],
        )
        .await
        .json();
    assert_eq!(seen["path"], "/42");
    assert_eq!(seen["query"], "full=1");
    assert_eq!(seen["headers"]["x-forwarded-prefix"], "/api/users");

    let seen = gw.get("/api/users").await.json();
    assert_eq!(seen["path"], "/", "the rewritten path always starts with /");
}

#[tokio::test]
async fn add_prefix_puts_a_prefix_in_front() {
    let recorder = Recorder::start().await;
    let gw = TestGateway::builder()
        .service("legacy", &recorder)
        .middleware("v1", "add_prefix: /v1")
        .route_with(
            Route::new("PathPrefix(`/legacy`)", "legacy")
                .strip_prefix("/legacy")
                .middleware("v1"),
        )
        .start()
        .await;

    let seen = gw.get("/legacy/orders/7").await.json();
    assert_eq!(seen["path"], "/v1/orders/7");
}

#[tokio::test]
async fn header_middlewares_set_and_remove_on_request_and_response() {
    let backend = Backend::start("web").await;
    let gw = TestGateway::builder()
        .service("web", &backend)
        .middleware(
            "edit",
            "headers:\n  \
               request: { set: { X-Added: yes }, remove: [X-Secret] }\n  \
               response: { set: { X-Served-Via: shoal }, remove: [X-Sample-Name] }",
        )
        .route_with(Route::new("PathPrefix(`/`)", "web").middleware("edit"))
        .start()
        .await;

    let answer = gw
        .get_with("/whoami", &[("x-secret", "hunter2"), ("x-added", "no")])
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.upstream_header("x-added").as_deref(), Some("yes"));
    assert_eq!(answer.upstream_header("x-secret"), None);
    assert_eq!(answer.header("x-served-via"), Some("shoal"));
    assert_eq!(answer.header("x-sample-name"), None);
}

// ---- 7. errors and forwarding hygiene ----

#[tokio::test]
async fn failures_become_short_404_502_503_and_504_answers() {
    let backend = Backend::start("web").await;
    let dead = dead_url();
    let gw = TestGateway::builder()
        .gateway("timeouts: { response_header: 300ms }")
        .service("web", &backend)
        .service("down", &vec![dead.clone()])
        .service_with("empty", Service::without_replicas())
        .route("Path(`/sleep`)", "web")
        .route("PathPrefix(`/down`)", "down")
        .route("PathPrefix(`/empty`)", "empty")
        .start()
        .await;

    let cases = [
        ("/nothing-routes-here", StatusCode::NOT_FOUND, "no-route"),
        ("/down", StatusCode::BAD_GATEWAY, "connect-failed"),
        (
            "/empty",
            StatusCode::SERVICE_UNAVAILABLE,
            "no-ready-replica",
        ),
        (
            "/sleep?ms=5000",
            StatusCode::GATEWAY_TIMEOUT,
            "upstream-timeout",
        ),
    ];
    for (path, status, reason) in cases {
        let started = Instant::now();
        let answer = gw.get(path).await;
        assert_eq!(answer.status, status, "GET {path}: {}", answer.text());
        assert_eq!(answer.header("x-shoal-error"), Some(reason), "GET {path}");
        let text = answer.text();
        assert!(text.len() < 200, "GET {path}: a short body, got {text:?}");
        assert!(text.starts_with(status.as_str()), "GET {path}: {text:?}");
        let port = dead.rsplit(':').next().unwrap();
        assert!(
            !text.contains(port),
            "GET {path}: no internal address in {text:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "GET {path} took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn forwarded_headers_tell_the_backend_what_the_gateway_saw() {
    let backend = Backend::start("web").await;
    let gw = TestGateway::in_front_of(&backend).await;

    let direct = gw.get("/whoami").await;
    assert_eq!(
        direct.upstream_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        direct.upstream_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    let gateway_host = gw.addr().to_string();
    assert_eq!(
        direct.upstream_header("x-forwarded-host"),
        Some(gateway_host),
        "the Host the client sent"
    );

    let proxied = gw
        .get_with(
            "/whoami",
            &[
                ("host", "shop.example"),
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "evil.example"),
            ],
        )
        .await;
    assert_eq!(
        proxied.upstream_header("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.1"),
        "the peer is appended"
    );
    assert_eq!(
        proxied.upstream_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        proxied.upstream_header("x-forwarded-host").as_deref(),
        Some("shop.example")
    );
    assert_eq!(
        proxied.upstream_header("host").as_deref(),
        Some("shop.example")
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let backend = Backend::start("web").await;
    let gw = TestGateway::in_front_of(&backend).await;

    let answer = gw
        .get_with(
            "/whoami",
            &[
                ("connection", "keep-alive, X-Conn-Scoped"),
                ("x-conn-scoped", "1"),
                ("keep-alive", "timeout=5"),
                ("proxy-connection", "keep-alive"),
                ("x-end-to-end", "kept"),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    for hop in [
        "x-conn-scoped",
        "keep-alive",
        "proxy-connection",
        "connection",
    ] {
        assert_eq!(
            answer.upstream_header(hop),
            None,
            "{hop} reached the backend"
        );
    }
    assert_eq!(
        answer.upstream_header("x-end-to-end").as_deref(),
        Some("kept")
    );
}

// ---- 4 (small). chunked bodies ----

#[tokio::test]
async fn chunked_request_bodies_pass_through() {
    let backend = Backend::start("web").await;
    let gw = TestGateway::in_front_of(&backend).await;

    let chunk = bytes::Bytes::from_static(b"0123456789abcdef");
    let req = Request::post(gw.url("/echo"))
        .header("content-type", "application/x-test")
        .body(body::repeat(chunk.clone(), 1000))
        .unwrap();
    let answer = gw.client().request(req).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), Some("application/x-test"));
    assert_eq!(answer.body.len(), 16_000);
    assert!(answer.body.chunks(16).all(|c| c == chunk));
}

// ---- 5, 6. WebSocket and HTTP/2 ----

#[tokio::test]
async fn websocket_echo_through_the_gateway() {
    let backend = Backend::start("web").await;
    let gw = TestGateway::in_front_of(&backend).await;

    let (mut ws, response) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr()))
        .await
        .expect("WebSocket handshake through the gateway");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()["x-shoal-replica"], backend.url());

    for i in 0..10 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("hello {i}"))
        );
    }
    let blob: Vec<u8> = (0..=255).cycle().take(100_000).collect();
    ws.send(Message::binary(blob.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(blob));
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn http2_clients_are_routed_and_answered() {
    let backends = Backends::named(&["api", "web"]).await;
    let gw = TestGateway::builder()
        .service("api", &backends[0])
        .service("web", &backends[1])
        .route("PathPrefix(`/api`)", "api")
        .route("PathPrefix(`/`)", "web")
        .start()
        .await;
    let h2 = Client::h2c();

    let answer = h2.get(&gw.url("/whoami")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.version, Version::HTTP_2);
    assert_eq!(answer.served_by(), "web");
    assert_eq!(answer.json()["path"], "/whoami");

    let api = h2.get(&gw.url("/api/x")).await;
    assert_eq!(api.version, Version::HTTP_2);
    assert_eq!(api.served_by(), "api");

    // Many streams at once on the one h2 connection.
    let urls: Vec<String> = (0..20)
        .map(|i| gw.url(&format!("/sleep?ms=50&i={i}")))
        .collect();
    let answers = futures_util::future::join_all(urls.iter().map(|u| h2.get(u))).await;
    assert!(
        answers
            .iter()
            .all(|a| a.status == StatusCode::OK && a.version == Version::HTTP_2)
    );
}

// ---- 11. keep-alive ----

#[tokio::test]
async fn keep_alive_on_both_sides() {
    let backend = Backend::start("web").await;
    let gw = TestGateway::in_front_of(&backend).await;

    let mut conn = Conn::open(gw.addr()).await;
    let mut upstream_ports = BTreeSet::new();
    for i in 0..100 {
        let answer = conn
            .get("/whoami")
            .await
            .unwrap_or_else(|e| panic!("request {i} on the kept-alive connection: {e}"));
        assert_eq!(answer.status, StatusCode::OK);
        upstream_ports.insert(answer.json()["remote"].as_str().unwrap().to_owned());
    }
    assert!(!conn.is_closed());
    assert!(
        upstream_ports.len() <= 2,
        "100 sequential requests used {} upstream connections: {upstream_ports:?}",
        upstream_ports.len()
    );
}

// ---- 8. retries ----

#[tokio::test]
async fn get_requests_are_retried_on_another_backend_when_connecting_fails() {
    let backends = Backends::start(2).await;
    let dead = dead_url();
    let servers = vec![
        backends[0].url().to_owned(),
        dead.clone(),
        backends[1].url().to_owned(),
    ];
    let gw = TestGateway::in_front_of(&servers).await;

    let mut served = Vec::new();
    for i in 0..60 {
        let answer = gw.get("/").await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "request {i}: {}",
            answer.text()
        );
        served.push(answer.replica().to_owned());
    }
    let counts = tally(served);
    assert!(!counts.contains_key(&dead), "{counts:?}");
    assert_eq!(counts.len(), 2, "both live backends served: {counts:?}");
}

// ---- 10. graceful shutdown ----

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_then_refuses_connections() {
    let backend = Backend::start("web").await;
    let gw = TestGateway::in_front_of(&backend).await;
    let addr = gw.addr();

    let client = Client::http1();
    let url = gw.url("/sleep?ms=500");
    let in_flight = tokio::spawn(async move { client.get(&url).await });
    eventually(DEADLINE, || async {
        match backend.in_flight() {
            1 => Ok(()),
            n => Err(format!("{n} requests in flight at the backend")),
        }
    })
    .await;

    gw.shutdown().await;
    let answer = in_flight.await.expect("the request task");
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["slept_ms"], 500);
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "connected to {addr} after shutdown");
}
