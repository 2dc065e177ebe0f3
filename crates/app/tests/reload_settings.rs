//! Every setting either applies on reload or the reload says it needs a restart (issue 24,
//! defect 5): the client-side timeouts and limits apply to new connections and to the
//! next request on open ones; listeners, worker threads and the admin API's address and
//! token are named, in the answer and in the `reloaded` event, with their values.
use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use shoal_core::EventKind;
use shoal_test_support::{Backend, DEADLINE, StackBuilder, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// One service `web` in front of `backend`, with `gateway` settings (one per line).
fn stack(backend: &Backend, gateway: &str) -> StackBuilder {
    gateway.lines().fold(
        StackBuilder::new()
            .service("web", backend)
            .route("PathPrefix(`/`)", "web"),
        StackBuilder::gateway,
    )
}

/// `GET /whoami` on an open HTTP/1.1 connection; the response head's status line.
async fn get(conn: &mut TcpStream, extra_headers: &str) -> String {
    let req = format!("GET /whoami HTTP/1.1\r\nHost: test\r\n{extra_headers}\r\n");
    conn.write_all(req.as_bytes()).await.expect("send");
    read_response(conn).await
}

/// Read one response with a `Content-Length` body; its status line.
async fn read_response(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let within = Instant::now() + DEADLINE;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return head.lines().next().unwrap_or_default().to_owned();
            }
        }
        let n = tokio::time::timeout_at(within, conn.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "closed before a whole response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// How long after now the gateway closes the idle connection `conn` (at most 10 s).
async fn closed_after(conn: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut byte))
        .await
        .expect("the gateway closed the idle connection within 10 s");
    assert!(matches!(read, Ok(0)), "{read:?}");
    start.elapsed()
}

/// Issue 24: "changing `gateway.timeouts.client_idle` and reloading prints 'reloaded' but
/// idle connections still close at the old 60 s."
#[tokio::test]
async fn a_reloaded_client_idle_closes_new_and_open_connections_at_the_new_time() {
    let backend = Backend::start("web").await;
    let gw = stack(&backend, "").start().await;
    // Opened before the reload: 60 s of idle allowed then.
    let mut open = TcpStream::connect(gw.addr()).await.expect("connect");
    assert_eq!(get(&mut open, "").await, "HTTP/1.1 200 OK");

    let answer = gw
        .reload(&stack(&backend, "timeouts: { client_idle: 300ms }"))
        .expect("the reload");
    assert!(!answer.contains("restart"), "applies without one: {answer}");

    // A new connection: closed about 300 ms after its response.
    let mut new = TcpStream::connect(gw.addr()).await.expect("connect");
    assert_eq!(get(&mut new, "").await, "HTTP/1.1 200 OK");
    let idle = closed_after(&mut new).await;
    assert!(
        (Duration::from_millis(250)..Duration::from_millis(2_000)).contains(&idle),
        "closed after {idle:?} idle"
    );
    // The connection from before: the new setting from its next request on.
    assert_eq!(get(&mut open, "").await, "HTTP/1.1 200 OK");
    let idle = closed_after(&mut open).await;
    assert!(
        (Duration::from_millis(250)..Duration::from_millis(2_000)).contains(&idle),
        "closed after {idle:?} idle"
    );

    // And back: 300 ms is no longer the limit.
    gw.reload(&stack(&backend, "timeouts: { client_idle: 60s }"))
        .expect("the reload");
    let mut conn = TcpStream::connect(gw.addr()).await.expect("connect");
    assert_eq!(get(&mut conn, "").await, "HTTP/1.1 200 OK");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_millis(1_000), conn.read(&mut byte)).await;
    assert!(read.is_err(), "still open after 1 s idle: {read:?}");
    assert_eq!(get(&mut conn, "").await, "HTTP/1.1 200 OK");
    gw.shutdown().await;
}

/// `limits.max_headers` and `limits.max_head_size` apply on reload, to open connections'
/// next request too, on the relay and on hyper's path (a connection handed over by an
/// HTTP/1.0 request).
#[tokio::test]
async fn reloaded_head_limits_apply_to_the_next_request() {
    let backend = Backend::start("web").await;
    let gw = stack(&backend, "").start().await;
    let mut open = TcpStream::connect(gw.addr()).await.expect("connect");
    let twelve: String = (0..12).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(get(&mut open, &twelve).await, "HTTP/1.1 200 OK");
    let big = format!("X-Big: {}\r\n", "b".repeat(12 * 1024));
    assert_eq!(get(&mut open, &big).await, "HTTP/1.1 200 OK");

    gw.reload(&stack(
        &backend,
        "limits: { max_headers: 10, max_head_size: 8KiB }",
    ))
    .expect("the reload");
    // The open connection's next request.
    let status = get(&mut open, &twelve).await;
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
    // New connections, the relay's and hyper's (HTTP/1.0 is handed to hyper).
    let mut conn = TcpStream::connect(gw.addr()).await.expect("connect");
    let status = get(&mut conn, &big).await;
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
    let mut conn = TcpStream::connect(gw.addr()).await.expect("connect");
    conn.write_all(b"GET /whoami HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")
        .await
        .expect("send");
    let status = read_response(&mut conn).await;
    assert!(status.ends_with(" 200 OK"), "{status}");
    let status = get(&mut conn, &twelve).await;
    // hyper answers in the version the connection began with.
    assert!(status.contains(" 431 "), "hyper's limit: {status}");
    let mut conn = TcpStream::connect(gw.addr()).await.expect("connect");
    assert_eq!(get(&mut conn, "X-One: 1\r\n").await, "HTTP/1.1 200 OK");
    gw.shutdown().await;
}

/// `limits.max_connections` applies on reload: lowered to 1, a second connection waits
/// until the first closes; raised again, it is served at once.
#[tokio::test]
async fn a_reloaded_max_connections_resizes_the_limit() {
    let backend = Backend::start("web").await;
    let gw = stack(&backend, "").start().await;
    gw.reload(&stack(&backend, "limits: { max_connections: 1 }"))
        .expect("the reload");
    let mut first = TcpStream::connect(gw.addr()).await.expect("connect");
    assert_eq!(get(&mut first, "").await, "HTTP/1.1 200 OK");
    let mut second = TcpStream::connect(gw.addr())
        .await
        .expect("connect (backlog)");
    second
        .write_all(b"GET /whoami HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("send");
    let mut byte = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(500), second.peek(&mut byte)).await;
    assert!(waited.is_err(), "served past max_connections: {waited:?}");
    drop(first);
    assert_eq!(read_response(&mut second).await, "HTTP/1.1 200 OK");

    gw.reload(&stack(&backend, "limits: { max_connections: 100 }"))
        .expect("the reload");
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut conn = TcpStream::connect(gw.addr()).await.expect("connect");
        assert_eq!(get(&mut conn, "").await, "HTTP/1.1 200 OK");
        held.push(conn);
    }
    gw.shutdown().await;
}

/// A reload that changes what only a restart applies says so, naming each setting with
/// its running and new value, in its answer and its event; the rest of the file applies,
/// and the gateway keeps serving where it listens. A second reload still says so.
#[tokio::test]
async fn a_reload_names_the_settings_that_need_a_restart() {
    let backend = Backend::start("web").await;
    let other = Backend::start("other").await;
    let gw = stack(&backend, "").start().await;
    let yaml = stack(&other, "workers: 2\ntimeouts: { client_idle: 5s }")
        .yaml()
        .replacen("listen: 127.0.0.1:0", "listen: 127.0.0.2:0", 1)
        .replace(
            "admin:\n  listen: 127.0.0.1:0\n",
            "admin:\n  listen: 127.0.0.2:0\n  token: sEcReT-token-1234\n",
        );
    assert!(yaml.contains("127.0.0.2:0\n  replica_header"), "{yaml}");
    let answer = gw.reload_text(&yaml).expect("the reload");
    let expected = "not applied, restart shoal to apply: gateway.listen (127.0.0.1:0 → \
                    127.0.0.2:0), gateway.workers (0 → 2), admin.listen (127.0.0.1:0 → \
                    127.0.0.2:0), admin.token (the old token is still the one required) \
                    (the running values stay)";
    assert!(answer.contains(expected), "{answer}");
    assert!(
        !answer.contains("sEcReT"),
        "the token is not shown: {answer}"
    );
    assert!(!answer.contains("client_idle"), "{answer}");
    let event = gw
        .shoal()
        .events()
        .since(0)
        .into_iter()
        .rfind(|e| e.kind == EventKind::Reloaded)
        .expect("a reloaded event");
    assert_eq!(event.message, answer);

    // The rest applied: the service moved; the old address still serves.
    eventually(DEADLINE, || async {
        match gw.get("/whoami").await.served_by() {
            "other" => Ok(()),
            who => Err(who.to_owned()),
        }
    })
    .await;
    let admin: SocketAddr = gw.shoal().admin_addr();
    let status = shoal_test_support::Client::http1()
        .get(&format!("http://{admin}/api/v1/services/web"))
        .await
        .status;
    assert_eq!(status, StatusCode::OK, "the old admin API, without a token");

    // Reloaded again unchanged: still not applied, still said.
    let again = gw.reload_text(&yaml).expect("the reload");
    assert!(again.contains(expected), "{again}");
    // Back to what runs: nothing to say.
    let back = gw.reload(&stack(&other, "")).expect("the reload");
    assert!(!back.contains("restart"), "{back}");
    gw.shutdown().await;
}
