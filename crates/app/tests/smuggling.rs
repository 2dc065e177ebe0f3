//! Request smuggling and desynchronisation probes, end to end and byte for byte (issue 16).
//!
//! A raw TCP client sends exact bytes to the gateway; behind it a raw TCP replica records
//! every byte it receives, per connection, and answers each request it can parse (with
//! `200` and the request line as the body, or a scripted response chosen by path). Each test
//! checks both sides:
//!
//! * what reached the replica: the exact bytes, or the exact list of request heads and
//!   bodies — above all, that no request hidden in another one's bytes ever reaches it;
//! * what the client got: the status, the framing headers, and whether its connection was
//!   closed (a request whose framing cannot be trusted must not leave the connection open
//!   for whatever follows it).
//!
//! Refused requests are answered by the gateway before anything goes upstream, so the
//! replica must have nothing from them. Each such test ends with a positive control
//! ([`Replica::expect_only_control`]): one ordinary request, whose bytes must then be all the
//! replica ever received.
//!
//! | probe                                              | rule                                |
//! |----------------------------------------------------|-------------------------------------|
//! | B1 `Connection: content-length` on a request       | RFC 9110 §7.6.1, RFC 9112 §6.3      |
//! | B2 `Connection: content-length` on a response      | RFC 9110 §7.6.1, RFC 9112 §6.3      |
//! | B3 response with Content-Length and chunked        | RFC 9112 §6.3 rule 3                |
//! | B4 two Host headers, or none                       | RFC 9112 §3.2                       |
//! | repeated / conflicting Content-Length              | RFC 9110 §8.6, RFC 9112 §6.3 rule 5 |
//! | CL.TE, TE.CL                                       | RFC 9112 §6.3 rule 3, §6.1          |
//! | TE.TE: `chunked, identity`, `xchunked`, `Transfer-Encoding :` | RFC 9112 §6.1, §6.3 rule 4, §5.1 |
//! | TE with extra leading whitespace (read as chunked) | RFC 9110 §5.5 (OWS), RFC 9112 §6.1  |
//! | Content-Length `+5`, `0x5`, `5, 5`, `-1`           | RFC 9110 §8.6, RFC 9112 §6.3 rule 5 |
//! | NUL, bare CR, obs-fold in a head                   | RFC 9110 §5.5, RFC 9112 §2.2, §5.2  |
//! | malformed chunk sizes                              | RFC 9112 §7.1                       |
//! | head over `max_head_size` / `max_headers`          | RFC 6585 §5 (431)                   |
//! | absolute-form target                               | RFC 9112 §3.2.2                     |
//! | HTTP/1.0 keep-alive and HTTP/1.1 pipelining        | RFC 9112 §9.3, §9.3.2, §C.2.2       |
//! | `Connection: host`                                 | RFC 9110 §7.6.1, RFC 9112 §3.2      |
//! | slow head, paused body (slowloris), slow upload    | RFC 9110 §15.5.9 (408)              |
//! | `max_connections`                                  | (resource limit, docs/security.md)  |
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_test_support::{DEADLINE, Service, StackBuilder, TestGateway, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};

/// What the replica saw on one connection.
#[derive(Debug, Default, Clone)]
struct ConnLog {
    /// Every byte received, as received.
    bytes: Vec<u8>,
    /// The gateway closed it.
    closed: bool,
}

/// One request the replica parsed (and answered).
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    /// Which connection it came on (0 for the first accepted).
    conn: usize,
    /// Request line and header fields, without the blank line.
    head: String,
    /// The body, de-chunked when it was chunked.
    body: Vec<u8>,
}

#[derive(Debug, Default)]
struct Log {
    conns: Vec<ConnLog>,
    requests: Vec<Seen>,
}

/// A raw HTTP/1.1 replica that records everything it receives.
struct Replica {
    url: String,
    log: Arc<Mutex<Log>>,
}

/// Scripted answers by path: the writes to make, in separate segments.
type Script = HashMap<&'static str, Vec<&'static [u8]>>;

impl Replica {
    /// Answers every request with `200` and its request line as the body.
    async fn start() -> Replica {
        Replica::scripted(Script::new()).await
    }

    /// Answers the paths in `script` as scripted, others as [`Replica::start`] does.
    async fn scripted(script: Script) -> Replica {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Log::default()));
        let script = Arc::new(script);
        let accepted = log.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let id = {
                    let mut log = accepted.lock().unwrap();
                    log.conns.push(ConnLog::default());
                    log.conns.len() - 1
                };
                tokio::spawn(replica_connection(
                    stream,
                    id,
                    accepted.clone(),
                    script.clone(),
                ));
            }
        });
        Replica { url, log }
    }

    /// The requests parsed so far, in order of arrival.
    fn requests(&self) -> Vec<Seen> {
        self.log.lock().unwrap().requests.clone()
    }

    /// The bytes received so far, per connection (lossy UTF-8, for readable failures).
    fn wire(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .conns
            .iter()
            .map(|c| String::from_utf8_lossy(&c.bytes).into_owned())
            .collect()
    }

    fn conns(&self) -> Vec<ConnLog> {
        self.log.lock().unwrap().conns.clone()
    }

    /// Wait until every connection that was opened has been closed by the gateway.
    async fn wait_all_closed(&self) {
        eventually(DEADLINE, || async {
            let open = self.conns().iter().filter(|c| !c.closed).count();
            if open == 0 {
                Ok(())
            } else {
                Err(format!("{open} upstream connections still open"))
            }
        })
        .await;
    }

    /// The positive control after probes that must not reach the replica: an ordinary
    /// request on a new client connection is answered, and its bytes are all the replica
    /// ever received. (The probes were each answered and closed by the gateway before this
    /// runs, so nothing of theirs can still be on its way.)
    async fn expect_only_control(&self, gw: &TestGateway) {
        let mut client = RawClient::connect(gw).await;
        client
            .send(b"GET /control HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let r = client.response("GET").await;
        assert_eq!(
            (r.status(), r.body.as_str()),
            (200, "GET /control HTTP/1.1")
        );
        assert_eq!(
            self.wire(),
            [format!(
                "GET /control HTTP/1.1\r\nhost: x\r\n{}\r\n",
                fwd("x")
            )],
            "the replica received nothing but the control request"
        );
    }
}

/// The `X-Forwarded-*` fields the gateway adds for a client on 127.0.0.1, as the relay
/// writes them.
fn fwd(host: &str) -> String {
    format!("x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\nx-forwarded-host: {host}\r\n")
}

async fn replica_connection(
    mut stream: TcpStream,
    id: usize,
    log: Arc<Mutex<Log>>,
    script: Arc<Script>,
) {
    let mut buf = Vec::new();
    loop {
        while let Some((head, body, used)) = parse_request(&buf) {
            buf.drain(..used);
            let line = head.lines().next().unwrap_or("").to_owned();
            log.lock().unwrap().requests.push(Seen {
                conn: id,
                head,
                body,
            });
            let path = line.split(' ').nth(1).unwrap_or("");
            let writes: Vec<Vec<u8>> = match script.get(path) {
                Some(writes) => writes.iter().map(|w| w.to_vec()).collect(),
                None => vec![
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{line}",
                        line.len()
                    )
                    .into_bytes(),
                ],
            };
            for w in writes {
                if stream.write_all(&w).await.is_err() {
                    break;
                }
                // Separate segments: the gateway must not assume a message comes in one read.
                tokio::task::yield_now().await;
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => {
                log.lock().unwrap().conns[id]
                    .bytes
                    .extend_from_slice(&chunk[..n]);
                buf.extend_from_slice(&chunk[..n]);
            }
            _ => {
                log.lock().unwrap().conns[id].closed = true;
                return;
            }
        }
    }
}

/// One whole request at the start of `buf`: (head, de-chunked body, bytes used). `None`
/// until it is complete (or forever, if it is malformed: the recorded bytes show it).
fn parse_request(buf: &[u8]) -> Option<(String, Vec<u8>, usize)> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let rest = &buf[end + 4..];
    if header_of(&head, "transfer-encoding").is_some() {
        let (body, used) = parse_chunked(rest)?;
        return Some((head, body, end + 4 + used));
    }
    let len: usize = header_of(&head, "content-length").map_or(Some(0), |v| v.parse().ok())?;
    (rest.len() >= len).then(|| (head, rest[..len].to_vec(), end + 4 + len))
}

/// A chunked body at the start of `data`: (data, bytes used), `None` if incomplete.
fn parse_chunked(data: &[u8]) -> Option<(Vec<u8>, usize)> {
    let (mut at, mut out) = (0, Vec::new());
    loop {
        let line_end = at + find(&data[at..], b"\r\n")?;
        let line = std::str::from_utf8(&data[at..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // Trailer fields, up to the empty line.
            loop {
                let line_end = at + find(&data[at..], b"\r\n")?;
                let empty = line_end == at;
                at = line_end + 2;
                if empty {
                    return Some((out, at));
                }
            }
        }
        if data.len() < at + size + 2 {
            return None;
        }
        out.extend_from_slice(&data[at..at + size]);
        at += size + 2;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The first value of field `name` in `head`.
fn header_of<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    headers_of(head, name).into_iter().next()
}

/// Every value of field `name` in `head`, in order.
fn headers_of<'h>(head: &'h str, name: &str) -> Vec<&'h str> {
    head.lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .collect()
}

/// A response as a raw client sees it.
#[derive(Debug)]
struct Raw {
    head: String,
    /// The body, de-chunked.
    body: String,
    /// The body's bytes as they came (chunked framing included).
    wire: String,
}

impl Raw {
    fn status(&self) -> u16 {
        self.head[9..12].parse().unwrap()
    }

    fn status_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.head, name)
    }

    /// Every value of `name`: framing headers must come exactly once, or not at all.
    fn all(&self, name: &str) -> Vec<&str> {
        headers_of(&self.head, name)
    }
}

/// A raw client connection to the gateway.
struct RawClient {
    read: OwnedReadHalf,
    write: Option<OwnedWriteHalf>,
    buf: Vec<u8>,
}

impl RawClient {
    async fn connect(gw: &TestGateway) -> RawClient {
        let (read, write) = TcpStream::connect(gw.addr()).await.unwrap().into_split();
        RawClient {
            read,
            write: Some(write),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        let write = self.write.as_mut().expect("still writing");
        write.write_all(bytes).await.unwrap();
    }

    /// Send `bytes` from a task of their own, ignoring errors, while this side reads: for a
    /// head so large that the gateway answers (and closes) before taking all of it.
    fn send_in_background(&mut self, bytes: Vec<u8>) {
        let mut write = self.write.take().expect("still writing");
        tokio::spawn(async move {
            let _ = write.write_all(&bytes).await;
            // Hold the half open (dropping it would send FIN) until the gateway closes.
            let _ = write.flush().await;
            std::future::pending::<()>().await;
        });
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let n = timeout(DEADLINE, self.read.read(&mut chunk))
            .await
            .expect("the gateway answers within the deadline")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// Read one response to a request with method `method`.
    async fn response(&mut self, method: &str) -> Raw {
        let end = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end;
            }
            assert!(
                self.fill().await,
                "connection closed before a response head; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let status: u16 = head[9..12].parse().unwrap();
        let (body, wire) = if method == "HEAD" || status < 200 || status == 204 || status == 304 {
            (String::new(), String::new())
        } else if header_of(&head, "transfer-encoding").is_some() {
            let (body, used) = loop {
                if let Some(done) = parse_chunked(&self.buf) {
                    break done;
                }
                assert!(self.fill().await, "connection closed mid-body");
            };
            let wire: Vec<u8> = self.buf.drain(..used).collect();
            (
                String::from_utf8_lossy(&body).into_owned(),
                String::from_utf8_lossy(&wire).into_owned(),
            )
        } else if let Some(len) = header_of(&head, "content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                assert!(self.fill().await, "connection closed mid-body");
            }
            let body: Vec<u8> = self.buf.drain(..len).collect();
            let body = String::from_utf8_lossy(&body).into_owned();
            (body.clone(), body)
        } else {
            while self.fill().await {}
            let body = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
            (body.clone(), body)
        };
        Raw { head, body, wire }
    }

    /// Whether the gateway closed the connection with nothing more sent.
    async fn closed(&mut self) -> bool {
        !self.fill().await && self.buf.is_empty()
    }

    /// Whether the gateway ends the connection with a FIN (end of stream) rather than a reset,
    /// once what was read so far has been taken.
    async fn closed_cleanly(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let read = timeout(DEADLINE, self.read.read(&mut chunk))
                .await
                .expect("the gateway closes within the deadline");
            match read {
                Ok(0) => return self.buf.is_empty(),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return false,
            }
        }
    }

    /// Send `bytes` on a new connection; the gateway must refuse them with `status`, say it
    /// closes the connection, and close it.
    async fn refused(gw: &TestGateway, bytes: &[u8], status: u16) {
        let mut client = RawClient::connect(gw).await;
        client.send(bytes).await;
        let r = client.response("POST").await;
        let probe = String::from_utf8_lossy(bytes);
        assert_eq!(r.status(), status, "{probe:?} got {}", r.head);
        assert_eq!(
            r.header("connection"),
            Some("close"),
            "{probe:?}: {}",
            r.head
        );
        assert!(
            client.closed().await,
            "{probe:?}: the gateway closed the connection after refusing it"
        );
    }
}

/// A gateway with `settings` in its `gateway:` section, sending everything to `replicas`
/// (round robin, no active health checks: the replicas' logs hold only client traffic).
async fn gateway(settings: &[&str], replicas: &[&Replica]) -> TestGateway {
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    settings
        .iter()
        .fold(StackBuilder::new(), |stack, s| stack.gateway(s))
        .service_with("raw", Service::servers(&urls).with("health: false"))
        .route("PathPrefix(`/`)", "raw")
        .start()
        .await
}

/// A request that would be a second, hidden request if a hop framed the body differently.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn b1_connection_naming_content_length_cannot_unframe_a_request_body() {
    let replica = Replica::start().await;
    let gw = gateway(&[], &[&replica]).await;
    let mut client = RawClient::connect(&gw).await;
    assert_eq!(SMUGGLED.len(), 35);
    client
        .send(
            format!(
                "POST / HTTP/1.1\r\nHost: x\r\nConnection: content-length\r\nContent-Length: 35\r\n\r\n{SMUGGLED}"
            )
            .as_bytes(),
        )
        .await;
    let r = client.response("POST").await;
    assert_eq!((r.status(), r.body.as_str()), (200, "POST / HTTP/1.1"));
    assert_eq!(r.header("connection"), None, "kept alive: {}", r.head);
    // The connection is in step: the next request is answered as itself.
    client.send(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(client.response("GET").await.body, "GET /next HTTP/1.1");
    assert_eq!(
        replica.wire(),
        [format!(
            "POST / HTTP/1.1\r\nhost: x\r\n{}content-length: 35\r\n\r\n{SMUGGLED}GET /next HTTP/1.1\r\nhost: x\r\n{}\r\n",
            fwd("x"),
            fwd("x")
        )]
    );
    let seen = replica.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].body, SMUGGLED.as_bytes(), "the 35 bytes are a body");
    assert!(seen[1].head.starts_with("GET /next "), "{seen:?}");
}

#[tokio::test]
async fn b2_a_replica_naming_its_framing_in_connection_keeps_the_client_in_step() {
    let replica = Replica::scripted(Script::from([
        (
            "/length-named",
            vec![
                &b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 23\r\n\r\n"[..],
                b"twenty-three bytes long",
            ],
        ),
        (
            "/chunked-named",
            vec![
                &b"HTTP/1.1 200 OK\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
                b"5\r\nhello\r\n0\r\n\r\n",
            ],
        ),
    ]))
    .await;
    let gw = gateway(&[], &[&replica]).await;
    let mut client = RawClient::connect(&gw).await;
    // Each probe pipelined with an ordinary request: if the client lost the framing, the
    // second answer would be read as part of the first.
    client
        .send(b"GET /length-named HTTP/1.1\r\nHost: x\r\n\r\nGET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let r = client.response("GET").await;
    assert_eq!(r.status_line(), "HTTP/1.1 200 OK");
    assert_eq!(r.all("content-length"), ["23"], "{}", r.head);
    assert_eq!(r.all("transfer-encoding"), [] as [&str; 0], "{}", r.head);
    assert_eq!(r.all("connection"), [] as [&str; 0], "{}", r.head);
    assert_eq!(r.body, "twenty-three bytes long");
    assert_eq!(client.response("GET").await.body, "GET /one HTTP/1.1");

    client
        .send(b"GET /chunked-named HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let r = client.response("GET").await;
    assert_eq!(r.all("transfer-encoding"), ["chunked"], "{}", r.head);
    assert_eq!(r.all("content-length"), [] as [&str; 0], "{}", r.head);
    assert_eq!(r.all("connection"), [] as [&str; 0], "{}", r.head);
    assert_eq!(r.wire, "5\r\nhello\r\n0\r\n\r\n");
    assert_eq!(client.response("GET").await.body, "GET /two HTTP/1.1");

    let lines: Vec<String> = replica
        .requests()
        .iter()
        .map(|s| s.head.lines().next().unwrap().to_owned())
        .collect();
    assert_eq!(
        lines,
        [
            "GET /length-named HTTP/1.1",
            "GET /one HTTP/1.1",
            "GET /chunked-named HTTP/1.1",
            "GET /two HTTP/1.1"
        ]
    );
}

#[tokio::test]
async fn b3_a_response_with_both_lengths_is_relayed_chunked_and_its_connection_dropped() {
    let replica = Replica::scripted(Script::from([(
        "/both",
        vec![
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"6\r\nhello!\r\n0\r\n\r\n",
        ],
    )]))
    .await;
    let gw = gateway(&[], &[&replica]).await;
    let mut client = RawClient::connect(&gw).await;
    client.send(b"GET /both HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let r = client.response("GET").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.all("transfer-encoding"), ["chunked"], "{}", r.head);
    assert_eq!(r.all("content-length"), [] as [&str; 0], "{}", r.head);
    assert_eq!(
        (r.wire.as_str(), r.body.as_str()),
        ("6\r\nhello!\r\n0\r\n\r\n", "hello!")
    );
    client.send(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(client.response("GET").await.body, "GET /after HTTP/1.1");
    // RFC 9112 §6.3 rule 3: the connection that carried both is not trusted again.
    let seen = replica.requests();
    let at: Vec<(usize, &str)> = seen
        .iter()
        .map(|s| (s.conn, s.head.lines().next().unwrap()))
        .collect();
    assert_eq!(
        at,
        [(0, "GET /both HTTP/1.1"), (1, "GET /after HTTP/1.1")],
        "the second request came on a new upstream connection"
    );
    eventually(DEADLINE, || async {
        if replica.conns()[0].closed {
            Ok(())
        } else {
            Err("the first upstream connection is still open")
        }
    })
    .await;
}

#[tokio::test]
async fn b4_a_request_with_two_hosts_or_none_is_refused_before_any_replica() {
    let replica = Replica::start().await;
    let gw = gateway(&[], &[&replica]).await;
    RawClient::refused(
        &gw,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
        400,
    )
    .await;
    RawClient::refused(&gw, b"GET / HTTP/1.1\r\n\r\n", 400).await;
    replica.expect_only_control(&gw).await;
}

#[tokio::test]
async fn identical_repeated_content_lengths_are_sent_on_as_one() {
    let replica = Replica::start().await;
    let gw = gateway(&[], &[&replica]).await;
    let mut client = RawClient::connect(&gw).await;
    client
        .send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    let r = client.response("POST").await;
    assert_eq!((r.status(), r.body.as_str()), (200, "POST / HTTP/1.1"));
    assert_eq!(
        replica.wire(),
        [format!(
            "POST / HTTP/1.1\r\nhost: x\r\n{}content-length: 5\r\n\r\nhello",
            fwd("x")
        )]
    );
}

#[tokio::test]
async fn conflicting_content_lengths_are_refused() {
    let replica = Replica::start().await;
    let gw = gateway(&[], &[&replica]).await;
    RawClient::refused(
        &gw,
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 35\r\n\r\nhello{SMUGGLED}"
        )
        .as_bytes(),
        400,
    )
    .await;
    replica.expect_only_control(&gw).await;
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused_in_either_order() {
    let replica = Replica::start().await;
    let gw = gateway(&[], &[&replica]).await;
    // CL.TE: a hop reading the length sends the whole rest as a body; one reading chunks
    // stops at `0` and takes `GET /smuggled` as the next request.
    let cl_te = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    RawClient::refused(&gw, cl_te.as_bytes(), 400).await;
    // TE.CL: the other way round.
    let te_cl = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n23\r\n{SMUGGLED}\r\n0\r\n\r\n"
    );
    RawClient::refused(&gw, te_cl.as_bytes(), 400).await;
    replica.expect_only_control(&gw).await;
}

#[tokio::test]
async fn obfuscated_transfer_encodings_are_refused() {
    let replica = Replica::start().await;
    let gw = gateway(&[], &[&replica]).await;
    let body = format!("0\r\n\r\n{SMUGGLED}");
    for (te, status) in [
        ("Transfer-Encoding: chunked, identity", 400),
        ("Transfer-Encoding: xchunked", 501),
        ("Transfer-Encoding : chunked", 400),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
            400,
        ),
    ] {
        let probe = format!("POST / HTTP/1.1\r\nHost: x\r\n{te}\r\n\r\n{body}");
        RawClient::refused(&gw, probe.as_bytes(), status).await;
    }
    replica.expect_only_control(&gw).await;
}

#[tokio::test]
async fn a_transfer_encoding_with_extra_whitespace_is_plain_chunked() {
    // httparse trims the value's leading whitespace: ` chunked` is `chunked`, and the request
    // goes through the full stack (the relay hands chunked bodies to it).
    let replica = Replica::start().await;
    let gw = gateway(&[], &[&replica]).await;
    for te in ["Transfer-Encoding:  chunked", "Transfer-Encoding:\tchunked"] {
        let mut client = RawClient::connect(&gw).await;
        client
            .send(
                format!("POST /te HTTP/1.1\r\nHost: x\r\n{te}\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        let r = client.response("POST").await;
        assert_eq!((r.status(), r.body.as_str()), (200, "POST /te HTTP/1.1"));
        client.send(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(client.response("GET").await.body, "GET /after HTTP/1.1");
    }
    // hyper frames the body it forwards itself: chunked (as now) or by length, but once.
    let seen = replica.requests();
    let bodies: Vec<(&str, &[u8])> = seen
        .iter()
        .map(|s| (s.head.lines().next().unwrap(), &s.body[..]))
        .collect();
    let one: [(&str, &[u8]); 2] = [
        ("POST /te HTTP/1.1", b"hello"),
        ("GET /after HTTP/1.1", b""),
    ];
    assert_eq!(bodies, [one, one].concat(), "{:?}", replica.wire());
    for post in [&seen[0], &seen[2]] {
        let framing = (
            headers_of(&post.head, "transfer-encoding"),
            headers_of(&post.head, "content-length"),
        );
        assert!(
            framing == (vec!["chunked"], vec![]) || framing == (vec![], vec!["5"]),
            "{framing:?} in {}",
            post.head
        );
    }
}

#[tokio::test]
async fn content_lengths_that_are_not_plain_digits_are_refused() {
    let replica = Replica::start().await;
    let gw = gateway(&[], &[&replica]).await;
    for value in ["+5", "0x5", "5, 5", "-1"] {
        let probe = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {value}\r\n\r\nhello");
        RawClient::refused(&gw, probe.as_bytes(), 400).await;
    }
    replica.expect_only_control(&gw).await;
}

#[tokio::test]
async fn control_bytes_and_folded_lines_in_a_head_are_refused() {
    let replica = Replica::start().await;
    let gw = gateway(&[], &[&replica]).await;
    for probe in [
        &b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
    ] {
        RawClient::refused(&gw, probe, 400).await;
    }
    replica.expect_only_control(&gw).await;
}

#[tokio::test]
async fn malformed_chunk_sizes_are_the_client_fault_and_cost_no_replica() {
    // Chunked uploads go through the full stack; the 400 comes from its upload tracking.
    // PUT is idempotent, so a gateway that blamed the replica would try the other one.
    let (a, b) = (Replica::start().await, Replica::start().await);
    let gw = gateway(&[], &[&a, &b]).await;
    let probes = [
        &b"5 junk\r\nhello\r\n0\r\n\r\n"[..],
        b"FFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
    ];
    // Twice each: six failures, three per replica, as many as eject one if they counted.
    for body in probes.iter().chain(probes.iter()) {
        let mut client = RawClient::connect(&gw).await;
        let mut bytes =
            b"PUT /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        bytes.extend_from_slice(body);
        client.send(&bytes).await;
        let r = client.response("PUT").await;
        let probe = String::from_utf8_lossy(body);
        assert_eq!(r.status(), 400, "{probe:?}: {}", r.head);
        assert_eq!(
            r.header("connection"),
            Some("close"),
            "{probe:?}: {}",
            r.head
        );
        assert!(client.closed().await, "{probe:?}: connection closed");
    }
    a.wait_all_closed().await;
    b.wait_all_closed().await;
    // At most the request head went out, once per probe, and never a chunk of its body.
    let head = format!(
        "PUT /upload HTTP/1.1\r\nhost: x\r\n{}transfer-encoding: chunked\r\n\r\n",
        fwd("x")
    );
    let sent: Vec<String> = [a.wire(), b.wire()].concat();
    assert!(
        sent.len() == probes.len() * 2 && sent.iter().all(|w| w.is_empty() || *w == head),
        "one try per probe, never a body byte: {sent:#?}"
    );
    assert_eq!(a.requests().len() + b.requests().len(), 0);
    let (traffic, replicas) = gw.shoal().gateway().traffic("raw").unwrap();
    assert_eq!(
        (traffic.retries_total, traffic.ejections_total),
        (0, 0),
        "{traffic:?}"
    );
    for (name, r) in &replicas {
        assert_eq!(r.ejections_total, 0, "{name}: {r:?}");
    }
    // Both replicas still serve.
    let mut client = RawClient::connect(&gw).await;
    for _ in 0..4 {
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(client.response("GET").await.status(), 200);
    }
    let served = (a.requests().len(), b.requests().len());
    assert!(served.0 >= 1 && served.1 >= 1, "served {served:?}");
}

#[tokio::test]
async fn a_head_over_max_head_size_gets_431() {
    let replica = Replica::start().await;
    let gw = gateway(&[], &[&replica]).await;
    let mut probe = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    probe.extend(std::iter::repeat_n(b'a', 100 * 1024));
    probe.extend_from_slice(b"\r\n\r\n");
    let mut client = RawClient::connect(&gw).await;
    client.send_in_background(probe);
    let r = client.response("GET").await;
    assert_eq!(r.status(), 431, "{}", r.head);
    assert_eq!(r.header("connection"), Some("close"));
    // Lingering close: the rest of the head is read and dropped, so the client sees the
    // end of the stream, not a reset that could destroy the 431 before it is read.
    assert!(client.closed_cleanly().await, "closed with a reset");
    replica.expect_only_control(&gw).await;
}

#[tokio::test]
async fn a_head_over_max_headers_gets_431() {
    let replica = Replica::start().await;
    let gw = gateway(&[], &[&replica]).await;
    let mut probe = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        probe.push_str(&format!("X-{i}: 1\r\n"));
    }
    probe.push_str("\r\n");
    RawClient::refused(&gw, probe.as_bytes(), 431).await;
    replica.expect_only_control(&gw).await;
}

#[tokio::test]
async fn an_absolute_form_target_is_routed_by_its_authority_not_host() {
    let (a, b) = (Replica::start().await, Replica::start().await);
    let gw = StackBuilder::new()
        .service_with("a", Service::servers(a.url.as_str()).with("health: false"))
        .service_with("b", Service::servers(b.url.as_str()).with("health: false"))
        .route("Host(`other.test`)", "a")
        .route("Host(`x`)", "b")
        .start()
        .await;
    let mut client = RawClient::connect(&gw).await;
    client
        .send(b"GET http://other.test/path HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let r = client.response("GET").await;
    assert_eq!((r.status(), r.body.as_str()), (200, "GET /path HTTP/1.1"));
    assert_eq!(
        a.wire(),
        [format!(
            "GET /path HTTP/1.1\r\nhost: other.test\r\n{}\r\n",
            fwd("other.test")
        )]
    );
    assert_eq!(
        b.wire(),
        [] as [String; 0],
        "nothing went by the Host header"
    );
}

/// What the replica reads for pipelined `GET /a` and `GET /b` to host `x`: each once, in
/// order, on one connection, as HTTP/1.1.
fn a_then_b() -> [String; 1] {
    [format!(
        "GET /a HTTP/1.1\r\nhost: x\r\n{}\r\nGET /b HTTP/1.1\r\nhost: x\r\n{}\r\n",
        fwd("x"),
        fwd("x")
    )]
}

#[tokio::test]
async fn pipelined_http_1_0_keep_alive_requests_are_answered_in_order() {
    let replica = Replica::start().await;
    let gw = gateway(&[], &[&replica]).await;
    let mut client = RawClient::connect(&gw).await;
    client
        .send(b"GET /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
        .await;
    for path in ["/a", "/b"] {
        let r = client.response("GET").await;
        assert_eq!(r.status_line(), "HTTP/1.0 200 OK", "{}", r.head);
        assert_eq!(r.header("connection"), Some("keep-alive"), "{}", r.head);
        assert_eq!(r.body, format!("GET {path} HTTP/1.1"));
    }
    assert_eq!(replica.wire(), a_then_b());
}

#[tokio::test]
async fn pipelined_http_1_1_requests_reach_the_replica_once_each_in_order() {
    let replica = Replica::start().await;
    let gw = gateway(&[], &[&replica]).await;
    let mut client = RawClient::connect(&gw).await;
    client
        .send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert_eq!(client.response("GET").await.body, "GET /a HTTP/1.1");
    assert_eq!(client.response("GET").await.body, "GET /b HTTP/1.1");
    assert_eq!(replica.wire(), a_then_b());
}

#[tokio::test]
async fn connection_naming_host_does_not_remove_it() {
    let replica = Replica::start().await;
    let gw = gateway(&[], &[&replica]).await;
    let mut client = RawClient::connect(&gw).await;
    client
        .send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: host\r\n\r\n")
        .await;
    assert_eq!(client.response("GET").await.status(), 200);
    assert_eq!(
        replica.wire(),
        [format!("GET / HTTP/1.1\r\nhost: x\r\n{}\r\n", fwd("x"))]
    );
}

#[tokio::test]
async fn a_head_sent_too_slowly_gets_408_and_close() {
    let replica = Replica::start().await;
    let gw = gateway(&["timeouts: { header_read: 300ms }"], &[&replica]).await;
    let started = Instant::now();
    let mut client = RawClient::connect(&gw).await;
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
    let r = client.response("GET").await;
    let waited = started.elapsed();
    assert_eq!(r.status(), 408, "{}", r.head);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(client.closed().await);
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "408 after {waited:?}, header_read is 300 ms"
    );
    replica.expect_only_control(&gw).await;
}

#[tokio::test]
async fn a_body_that_pauses_too_long_gets_408_and_close() {
    let replica = Replica::start().await;
    let gw = gateway(&["timeouts: { body_idle: 300ms }"], &[&replica]).await;
    let mut client = RawClient::connect(&gw).await;
    let started = Instant::now();
    client
        .send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
        .await;
    let r = client.response("POST").await;
    let waited = started.elapsed();
    assert_eq!(r.status(), 408, "{}", r.head);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(client.closed().await);
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "408 after {waited:?}, body_idle is 300 ms"
    );
    replica.expect_only_control(&gw).await;
}

#[tokio::test]
async fn a_slow_chunked_upload_is_not_a_slow_replica() {
    // The response-header timeout counts from the end of the upload: ten chunks 100 ms apart
    // take a second, more than three times the timeout.
    let replica = Replica::start().await;
    let gw = gateway(&["timeouts: { response_header: 300ms }"], &[&replica]).await;
    let mut client = RawClient::connect(&gw).await;
    client
        .send(b"POST /slow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await;
    let mut chunks = String::new();
    for i in 0..10 {
        // Load shaping, not synchronisation: the point is a body that takes its time.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let chunk = format!("6\r\npart{i};\r\n");
        client.send(chunk.as_bytes()).await;
        chunks.push_str(&chunk);
    }
    client.send(b"0\r\n\r\n").await;
    let r = client.response("POST").await;
    assert_eq!(
        (r.status(), r.body.as_str()),
        (200, "POST /slow HTTP/1.1"),
        "{}",
        r.head
    );
    assert_eq!(
        replica.wire(),
        [format!(
            "POST /slow HTTP/1.1\r\nhost: x\r\n{}transfer-encoding: chunked\r\n\r\n{chunks}0\r\n\r\n",
            fwd("x")
        )],
        "the upload, as it came, on one connection"
    );
}

#[tokio::test]
async fn connections_past_max_connections_wait_until_one_closes() {
    let replica = Replica::start().await;
    let gw = gateway(&["limits: { max_connections: 2 }"], &[&replica]).await;
    let mut open = Vec::new();
    for path in ["/one", "/two"] {
        let mut client = RawClient::connect(&gw).await;
        client
            .send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await;
        assert_eq!(client.response("GET").await.status(), 200);
        open.push(client);
    }
    // The kernel completes the handshake (the listen backlog), but the gateway does not
    // accept it: its request gets no answer. Proving that something does not happen takes
    // a wait; 300 ms is many times what an answer takes here.
    let mut third = RawClient::connect(&gw).await;
    third.send(b"GET /three HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut byte = [0u8; 1];
    assert!(
        timeout(Duration::from_millis(300), third.read.read(&mut byte))
            .await
            .is_err(),
        "the third connection is not served while two are open"
    );
    assert_eq!(replica.requests().len(), 2, "{:?}", replica.wire());
    drop(open.remove(0));
    let r = third.response("GET").await;
    assert_eq!((r.status(), r.body.as_str()), (200, "GET /three HTTP/1.1"));
    let lines: Vec<String> = replica
        .requests()
        .iter()
        .map(|s| s.head.lines().next().unwrap().to_owned())
        .collect();
    assert_eq!(
        lines,
        [
            "GET /one HTTP/1.1",
            "GET /two HTTP/1.1",
            "GET /three HTTP/1.1"
        ]
    );
}
