//! HTTP/2 failover at the root (issue 24, defect 1): a stream an HTTP/2 replica provably
//! did not process is sent to another replica whatever its method — POSTs, as gRPC calls
//! are — and one it may have processed is not.
//!
//! Each story puts a gateway (h2c service of two replicas on `127.0.0.1:0`) in front of
//! replicas that count what they process (by an id in each request's body), and loads it
//! with POSTs from 8 workers over one HTTP/2 connection, as a gRPC channel would:
//!
//! - a replica sends GOAWAY with a last stream id below streams in flight (raw frames, so
//!   the id is exactly chosen): 0 failures, each request processed once, retries counted;
//! - a replica resets streams with `REFUSED_STREAM`: the same;
//! - a replica is killed (listener and connections dropped) with its connection pooled:
//!   the same;
//! - a replica resets with `INTERNAL_ERROR` after reading the request: 502, not retried;
//! - with no retry budget left, or a body too long to keep, a refused stream is not retried;
//! - a burst of streams to a replica with no connection yet opens one connection, not one
//!   per stream.
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::Reason;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use shoal_core::ServiceTraffic;
use shoal_proxy::{Gateway, Serving};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Long enough for anything that should happen soon on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(10);
/// Concurrent requests (over one HTTP/2 connection to the gateway).
const WORKERS: u64 = 8;

// ---------------------------------------------------------------------------------------
// Replicas.

/// What a replica does with a request, by its order of arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// Read it, answer 200 with its id.
    Answer,
    /// Reset the stream with `REFUSED_STREAM` before reading anything.
    Refuse,
    /// Read it in full (it is processed), then reset the stream with `INTERNAL_ERROR`.
    ResetAfterRead,
}

/// What a replica saw.
#[derive(Default)]
struct Record {
    /// Ids of the requests it processed, in order.
    processed: Mutex<Vec<u64>>,
    /// Streams it refused or left unprocessed (above its GOAWAY's last stream id).
    unprocessed: AtomicU64,
    /// Requests that arrived.
    arrived: AtomicU64,
    /// Connections accepted.
    connections: AtomicU64,
}

impl Record {
    fn processed(&self) -> Vec<u64> {
        self.processed.lock().unwrap().clone()
    }
}

/// An HTTP/2 replica (the h2 crate's server) doing `act(n)` with its n-th request.
struct Replica {
    addr: SocketAddr,
    record: Arc<Record>,
    /// Its accept loop and connections, for a kill.
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Replica {
    async fn start(act: fn(u64) -> Action) -> Replica {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let record = Arc::new(Record::default());
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let (rec, t) = (record.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                rec.connections.fetch_add(1, Ordering::SeqCst);
                let rec = rec.clone();
                let conn = tokio::spawn(serve_h2(stream, rec, act));
                t.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(accept);
        Replica {
            addr,
            record,
            tasks,
        }
    }

    /// Stop it as a killed process would be: no more listener, every connection dropped.
    async fn kill(&self) {
        let tasks: Vec<_> = self.tasks.lock().unwrap().drain(..).collect();
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await; // dropped with everything it held: listener, sockets
        }
    }
}

async fn serve_h2(stream: TcpStream, record: Arc<Record>, act: fn(u64) -> Action) {
    let Ok(mut conn) = h2::server::handshake(stream).await else {
        return;
    };
    // Handlers run inside the connection's task, so that a kill stops them too.
    let mut handlers = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((req, respond))) => {
                    let n = record.arrived.fetch_add(1, Ordering::SeqCst);
                    handlers.spawn(handle(req, respond, record.clone(), act(n)));
                }
                _ => break,
            },
            Some(_) = handlers.join_next(), if !handlers.is_empty() => {}
        }
    }
    while handlers.join_next().await.is_some() {}
}

async fn handle(
    req: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    record: Arc<Record>,
    action: Action,
) {
    if action == Action::Refuse {
        record.unprocessed.fetch_add(1, Ordering::SeqCst);
        respond.send_reset(Reason::REFUSED_STREAM);
        return;
    }
    let mut body = req.into_body();
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { return };
        let _ = body.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
    }
    let id = parse_id(&buf);
    record.processed.lock().unwrap().push(id);
    if action == Action::ResetAfterRead {
        respond.send_reset(Reason::INTERNAL_ERROR);
        return;
    }
    let resp = Response::builder().status(200).body(()).unwrap();
    if let Ok(mut send) = respond.send_response(resp, false) {
        let _ = send.send_data(Bytes::from(id.to_string()), true);
    }
}

fn parse_id(body: &[u8]) -> u64 {
    std::str::from_utf8(body)
        .ok()
        .and_then(|s| s.strip_prefix("id="))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a body `id=N`, not {body:?}"))
}

/// A replica speaking raw HTTP/2 frames (RFC 9113 §4.1), so that its GOAWAY's last stream
/// id is chosen exactly: on each of its first `rounds` connections it holds the requests
/// until `held` are complete (or, with some complete, until no frame has come for
/// [`QUIET`]: the gateway may send this connection fewer, near the end of the load or
/// once it spreads its streams elsewhere), then sends GOAWAY with the second lowest of their ids as the
/// last stream id, answers the streams up to it (200, no body) and leaves the others
/// unprocessed, and closes the connection. Later connections are answered at once.
async fn goaway_replica(rounds: usize, held: usize) -> (SocketAddr, Arc<Record>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let record = Arc::new(Record::default());
    let rec = record.clone();
    tokio::spawn(async move {
        let mut conns = 0;
        while let Ok((stream, _)) = listener.accept().await {
            let hold = if conns < rounds { held } else { 1 };
            conns += 1;
            tokio::spawn(raw_h2(stream, rec.clone(), hold));
        }
    });
    (addr, record)
}

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// `:status: 200`, HPACK's static table entry 8 (RFC 7541 Appendix A).
const STATUS_200: [u8; 1] = [0x88];

async fn raw_h2(mut stream: TcpStream, record: Arc<Record>, hold: usize) {
    let mut preface = [0u8; 24];
    if stream.read_exact(&mut preface).await.is_err() {
        return;
    }
    assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    let _ = stream.write_all(&frame(SETTINGS, 0, 0, &[])).await;
    let mut bodies: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut complete: Vec<u32> = Vec::new();
    loop {
        let mut head = [0u8; 9];
        let holding = hold > 1 && !complete.is_empty();
        let read = match holding {
            true => tokio::time::timeout(QUIET, stream.read_exact(&mut head)).await,
            false => Ok(stream.read_exact(&mut head).await),
        };
        let quiet = match read {
            Ok(Ok(_)) => false,
            Ok(Err(_)) => return,
            Err(_) => true,
        };
        if quiet {
            go_away(&mut stream, &record, &bodies, &complete).await;
            return;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if stream.read_exact(&mut payload).await.is_err() {
            return;
        }
        match kind {
            SETTINGS if flags & ACK == 0 => {
                let _ = stream.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
            }
            PING if flags & ACK == 0 => {
                let _ = stream.write_all(&frame(PING, ACK, 0, &payload)).await;
            }
            HEADERS | DATA => {
                let body = bodies.entry(id).or_default();
                if kind == DATA {
                    body.extend_from_slice(&payload);
                } else {
                    record.arrived.fetch_add(1, Ordering::SeqCst);
                }
                if flags & END_STREAM != 0 {
                    complete.push(id);
                }
            }
            _ => {}
        }
        if complete.len() < hold {
            continue;
        }
        if hold == 1 {
            for id in complete.drain(..) {
                record
                    .processed
                    .lock()
                    .unwrap()
                    .push(parse_id(&bodies[&id]));
                let answer = frame(HEADERS, END_HEADERS | END_STREAM, id, &STATUS_200);
                let _ = stream.write_all(&answer).await;
            }
            continue;
        }
        go_away(&mut stream, &record, &bodies, &complete).await;
        return;
    }
}

/// How long a holding replica waits for another frame before it goes away with the
/// requests it has.
const QUIET: Duration = Duration::from_millis(100);

/// GOAWAY (RFC 9113 §6.8) with a last stream id and error code NO_ERROR, the answers to
/// the streams up to it, then the connection closed once the client has read it all. The
/// last stream id is the second lowest if the two lowest streams are complete, else below
/// (down to 0: none processed), so that every stream up to it can be answered.
async fn go_away(
    stream: &mut TcpStream,
    record: &Record,
    bodies: &BTreeMap<u32, Vec<u8>>,
    complete: &[u32],
) {
    let mut last = 0;
    for (n, id) in bodies.keys().enumerate() {
        if n >= 2 || !complete.contains(id) {
            break;
        }
        last = *id;
    }

    let mut goaway = last.to_be_bytes().to_vec();
    goaway.extend(0u32.to_be_bytes());
    let mut out = frame(GOAWAY, 0, 0, &goaway);
    for id in bodies.keys().copied() {
        if id <= last && complete.contains(&id) {
            record
                .processed
                .lock()
                .unwrap()
                .push(parse_id(&bodies[&id]));
            out.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &STATUS_200));
        } else {
            record.unprocessed.fetch_add(1, Ordering::SeqCst);
        }
    }
    let _ = stream.write_all(&out).await;
    // Close after the client has read it all: drain until it closes.
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(DEADLINE, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// The gateway and its clients.

struct Edge {
    addr: SocketAddr,
    gateway: Arc<Gateway>,
    _serving: Serving,
}

impl Edge {
    /// A gateway whose h2c service `app` has `replicas`, with `extra` service settings.
    async fn start(replicas: &[SocketAddr], extra: &str) -> Edge {
        let servers: Vec<String> = replicas.iter().map(|a| format!("http://{a}")).collect();
        let yaml = format!(
            "gateway:
  entrypoints:
    web: {{ listen: 127.0.0.1:0 }}
services:
  app:
    servers: [{}]
    protocol: h2c
{extra}
routes:
  - match: PathPrefix(`/`)
    service: app
",
            servers.join(", ")
        );
        let stack = shoal_config::parse(&yaml, "h2-failover-test.yaml").unwrap();
        let gateway = Gateway::new(&stack);
        let started = common::start_serving(&gateway, &stack);
        let addr = started.addrs[0].1;
        let serving = started.serving;
        Edge {
            addr,
            gateway,
            _serving: serving,
        }
    }

    fn traffic(&self) -> ServiceTraffic {
        self.gateway.traffic("app").unwrap().0
    }
}

type Body = UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// One HTTP/2 connection to the gateway, as a gRPC channel.
fn channel() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// POST `id=N`: with a length for even ids; for odd ones without, as gRPC sends its calls.
async fn post(client: &Client<HttpConnector, Body>, gateway: SocketAddr, id: u64) -> StatusCode {
    let text = Bytes::from(format!("id={id}"));
    let body = if id.is_multiple_of(2) {
        Full::new(text).boxed_unsync()
    } else {
        let frames = futures_util::stream::iter([Ok(Frame::data(text))]);
        StreamBody::new(frames).boxed_unsync()
    };
    post_body(client, gateway, body).await
}

async fn post_body(
    client: &Client<HttpConnector, Body>,
    gateway: SocketAddr,
    body: Body,
) -> StatusCode {
    let req = Request::post(format!("http://{gateway}/call"))
        .header("content-type", "application/octet-stream")
        .body(body)
        .unwrap();
    let resp = tokio::time::timeout(DEADLINE, client.request(req))
        .await
        .expect("an answer in time")
        .expect("the gateway answers");
    let status = resp.status();
    let body = resp.into_body().collect().await;
    if status != StatusCode::OK {
        let text = body.map(|b| b.to_bytes()).unwrap_or_default();
        eprintln!("{status}: {}", String::from_utf8_lossy(&text));
    }
    status
}

/// `WORKERS` workers posting ids `first..first + count` over one connection; the statuses
/// by id.
async fn load(edge: &Edge, first: u64, count: u64) -> BTreeMap<u64, StatusCode> {
    let client = channel();
    let next = Arc::new(AtomicU64::new(first));
    let results = Arc::new(Mutex::new(BTreeMap::new()));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (client, next, results, gateway) =
            (client.clone(), next.clone(), results.clone(), edge.addr);
        workers.push(tokio::spawn(async move {
            loop {
                let id = next.fetch_add(1, Ordering::SeqCst);
                if id >= first + count {
                    return;
                }
                let status = post(&client, gateway, id).await;
                results.lock().unwrap().insert(id, status);
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    Arc::try_unwrap(results).unwrap().into_inner().unwrap()
}

/// Every id in `ids` processed exactly once, by one of `records`.
fn exactly_once(ids: impl IntoIterator<Item = u64>, records: &[&Record]) {
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for r in records {
        for id in r.processed() {
            *seen.entry(id).or_default() += 1;
        }
    }
    for id in ids {
        assert_eq!(seen.remove(&id), Some(1), "request {id} processed once");
    }
    assert!(seen.is_empty(), "processed but never sent: {seen:?}");
}

fn failures(results: &BTreeMap<u64, StatusCode>) -> Vec<(u64, StatusCode)> {
    results
        .iter()
        .filter(|(_, s)| **s != StatusCode::OK)
        .map(|(id, s)| (*id, *s))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Stories.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_above_the_goaway_last_stream_id_go_to_another_replica() {
    let (a, goaway) = goaway_replica(2, 4).await;
    let b = Replica::start(|_| Action::Answer).await;
    let edge = Edge::start(&[a, b.addr], "").await;
    let results = load(&edge, 0, 200).await;
    assert_eq!(failures(&results), vec![]);
    exactly_once(0..200, &[&goaway, &b.record]);
    let skipped = goaway.unprocessed.load(Ordering::SeqCst);
    assert!(skipped >= 2, "streams above the last stream id: {skipped}");
    let retries = edge.traffic().retries_total;
    assert!(
        retries >= skipped,
        "each stream left unprocessed was retried: {retries} retries for {skipped}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_streams_go_to_another_replica() {
    // Every other stream refused; passive health off so that the replica stays in rotation.
    let a = Replica::start(|n| match n % 2 {
        0 => Action::Refuse,
        _ => Action::Answer,
    })
    .await;
    let b = Replica::start(|_| Action::Answer).await;
    let edge = Edge::start(&[a.addr, b.addr], "    passive: false").await;
    let results = load(&edge, 0, 200).await;
    assert_eq!(failures(&results), vec![]);
    exactly_once(0..200, &[&a.record, &b.record]);
    let refused = a.record.unprocessed.load(Ordering::SeqCst);
    assert!(refused > 0, "the replica refused streams");
    let traffic = edge.traffic();
    assert_eq!(
        traffic.retries_total, refused,
        "one retry per refused stream"
    );
    assert_eq!(traffic.retries_refused_total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_with_a_pooled_connection_costs_no_request() {
    let a = Replica::start(|_| Action::Answer).await;
    let b = Replica::start(|_| Action::Answer).await;
    let edge = Edge::start(&[a.addr, b.addr], "").await;
    let warm = load(&edge, 0, 40).await;
    assert_eq!(failures(&warm), vec![]);
    let at_a = a.record.processed().len();
    assert!(
        at_a > 0 && !b.record.processed().is_empty(),
        "both replicas served"
    );
    // The gateway's HTTP/2 connection to `a` is pooled; `a` dies with it.
    a.kill().await;
    let results = load(&edge, 40, 200).await;
    assert_eq!(failures(&results), vec![]);
    exactly_once(0..240, &[&a.record, &b.record]);
    assert_eq!(
        a.record.processed().len(),
        at_a,
        "nothing reached the dead replica"
    );
}

/// Sequential POSTs `0..n`, one connection; statuses by id.
async fn one_by_one(edge: &Edge, n: u64) -> BTreeMap<u64, StatusCode> {
    let client = channel();
    let mut statuses = BTreeMap::new();
    for id in 0..n {
        statuses.insert(id, post(&client, edge.addr, id).await);
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reset_after_the_replica_read_it_is_not_retried() {
    let a = Replica::start(|_| Action::ResetAfterRead).await;
    let b = Replica::start(|_| Action::Answer).await;
    let edge = Edge::start(&[a.addr, b.addr], "    passive: false").await;
    let statuses = one_by_one(&edge, 10).await;
    let at_a = a.record.processed();
    assert!(
        !at_a.is_empty(),
        "some requests went to the resetting replica"
    );
    for (id, status) in &statuses {
        let expected = match at_a.contains(id) {
            true => StatusCode::BAD_GATEWAY,
            false => StatusCode::OK,
        };
        assert_eq!(*status, expected, "request {id}");
    }
    exactly_once(0..10, &[&a.record, &b.record]);
    assert_eq!(edge.traffic().retries_total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_is_not_retried_past_the_budget() {
    let a = Replica::start(|_| Action::Refuse).await;
    let b = Replica::start(|_| Action::Answer).await;
    let extra = "    passive: false\n    retry: { budget: { ratio: 0, min_per_sec: 0 } }";
    let edge = Edge::start(&[a.addr, b.addr], extra).await;
    let statuses = one_by_one(&edge, 10).await;
    let refused = a.record.unprocessed.load(Ordering::SeqCst);
    assert!(refused > 0, "some requests went to the refusing replica");
    let failed = failures(&statuses);
    assert_eq!(failed.len() as u64, refused, "{failed:?}");
    assert!(
        failed.iter().all(|(_, s)| *s == StatusCode::BAD_GATEWAY),
        "{failed:?}"
    );
    let ok = statuses.iter().filter(|(_, s)| **s == StatusCode::OK);
    exactly_once(ok.map(|(id, _)| *id), &[&a.record, &b.record]);
    let traffic = edge.traffic();
    assert_eq!(traffic.retries_total, 0);
    assert_eq!(traffic.retries_refused_total, refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_whose_body_was_too_long_to_keep_is_not_retried() {
    let a = Replica::start(|_| Action::Refuse).await;
    let b = Replica::start(|_| Action::Answer).await;
    let extra = "    passive: false\n    retry: { max_replay_body: 16 }";
    let edge = Edge::start(&[a.addr, b.addr], extra).await;
    let client = channel();
    let mut statuses = BTreeMap::new();
    for id in 0..10u64 {
        // 40 bytes: longer than the 16 kept. Leading zeros keep the id readable.
        let body = Full::new(Bytes::from(format!("id={id:037}"))).boxed_unsync();
        statuses.insert(id, post_body(&client, edge.addr, body).await);
    }
    let refused = a.record.unprocessed.load(Ordering::SeqCst);
    assert!(refused > 0, "some requests went to the refusing replica");
    let failed = failures(&statuses);
    assert_eq!(failed.len() as u64, refused, "{failed:?}");
    let ok = statuses.iter().filter(|(_, s)| **s == StatusCode::OK);
    exactly_once(ok.map(|(id, _)| *id), &[&a.record, &b.record]);
    assert_eq!(edge.traffic().retries_total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_streams_to_a_new_replica_shares_one_connection() {
    // `WORKERS` requests at once find no connection: one is made, and all ride on it.
    let replica = Replica::start(|_| Action::Answer).await;
    let edge = Edge::start(&[replica.addr], "").await;
    let results = load(&edge, 0, 80).await;
    assert_eq!(failures(&results), vec![]);
    exactly_once(0..80, &[&replica.record]);
    assert_eq!(replica.record.connections.load(Ordering::SeqCst), 1);
}
