//! HTTPS to replicas, end to end: sample-app replicas serving TLS with certificates made
//! here (rcgen: a test CA and a leaf for `localhost` and 127.0.0.1, written to a temp dir),
//! behind a plain entrypoint on `127.0.0.1:0` (so requests also go through the relay's
//! decision to hand TLS services to the full stack).
//!
//! - HTTPS/1.1 and HTTP/2 over TLS, with ALPN and SNI checked on the replica's side;
//! - a certificate from another CA: 502 that says why; `insecure_skip_verify` accepts it;
//! - a name the certificate is not for: 502; a replica that does not speak TLS: 502;
//! - a replica stopped under load: no request fails (retries over TLS);
//! - gRPC-style HTTP/2 (content type, `TE: trailers`, trailers) through to an h2 replica;
//! - HTTPS health checks of static servers, verified like requests.
mod common;

use std::future::ready;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType};
use shoal_config::{Protocol, Stack, UpstreamTls};
use shoal_core::{EventKind, EventLog};
use shoal_proxy::{Gateway, Serving};
use shoal_sample_app::{Options, SampleApp, TlsFiles};
use shoal_test_support::{eventually, test_ca};
use tokio::time::Instant;

/// Long enough for anything that should happen soon on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Certificates.

/// A test CA, and the files of what it signs.
struct Pki {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let (issuer, ca) = test_ca(name);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, issuer }
    }

    /// The CA's certificate file.
    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A leaf for `localhost` and 127.0.0.1, written to `NAME.pem` and `NAME-key.pem`.
    fn leaf(&self, name: &str) -> TlsFiles {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = TlsFiles {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}-key.pem")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }
}

/// A sample-app replica named `name` serving HTTPS with `files`.
async fn tls_replica(name: &str, files: TlsFiles) -> SampleApp {
    SampleApp::start(Options {
        name: name.into(),
        tls: Some(files),
        ..Options::default()
    })
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// The gateway.

/// A gateway with one plain entrypoint and one service `app` on `replicas`, whose stack
/// `edit` adjusts (the service's `tls` and protocol) before it starts.
struct Edge {
    addr: SocketAddr,
    gateway: Arc<Gateway>,
    stack: Stack,
    events: Arc<EventLog>,
    serving: Option<Serving>,
}

fn stack_for(replicas: &[&SampleApp], extra: &str, edit: impl FnOnce(&mut Stack)) -> Stack {
    let servers: Vec<String> = replicas
        .iter()
        .map(|r| format!("http://{}", r.local_addr()))
        .collect();
    let yaml = format!(
        "gateway:
  entrypoints:
    web: {{ listen: 127.0.0.1:0 }}
services:
  app:
    servers: [{}]
{extra}
routes:
  - match: PathPrefix(`/`)
    service: app
",
        servers.join(", ")
    );
    let mut stack = shoal_config::parse(&yaml, "upstream-tls-test.yaml").unwrap();
    edit(&mut stack);
    stack
}

/// Set the service's TLS and protocol.
fn tls(settings: UpstreamTls, protocol: Protocol) -> impl FnOnce(&mut Stack) {
    move |stack| {
        let service = &mut stack.services[0];
        service.tls = Some(settings);
        service.protocol = protocol;
    }
}

fn ca(pki: &Pki) -> UpstreamTls {
    UpstreamTls {
        ca: Some(pki.ca()),
        ..UpstreamTls::default()
    }
}

impl Edge {
    async fn start(stack: Stack) -> Edge {
        let events = Arc::new(EventLog::new(1000));
        let gateway = Gateway::with_events(&stack, events.clone());
        let started = common::start_serving(&gateway, &stack);
        let addr = started.addrs[0].1;
        let serving = started.serving;
        Edge {
            addr,
            gateway,
            stack,
            events,
            serving: Some(serving),
        }
    }

    /// Reload with the service's TLS and protocol set by `edit`.
    fn reload(&mut self, edit: impl FnOnce(&mut Stack)) {
        edit(&mut self.stack);
        self.gateway.reload(&self.stack);
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn stop(mut self) {
        let serving = self.serving.take().unwrap();
        assert!(serving.shutdown(Duration::from_secs(5)).await);
    }
}

// ---------------------------------------------------------------------------------------
// Clients.

type Body = UnsyncBoxBody<Bytes, std::convert::Infallible>;

fn http1() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn h2c() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.headers))
    }
}

async fn get(client: &Client<HttpConnector, Body>, url: &str) -> Answer {
    let req = Request::get(url).body(Empty::new().boxed_unsync()).unwrap();
    let resp = tokio::time::timeout(DEADLINE, client.request(req))
        .await
        .expect("an answer in time")
        .expect("the gateway answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// Stories.

#[tokio::test]
async fn https_1_1_to_a_replica_verified_by_its_ca() {
    let pki = Pki::new("shoal upstream test CA");
    let replica = tls_replica("r1", pki.leaf("r1")).await;
    let edge = Edge::start(stack_for(&[&replica], "", tls(ca(&pki), Protocol::Http1))).await;
    let client = http1();
    let mut remotes = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let answer = get(&client, &edge.url("/whoami")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(answer.header("x-sample-tls"), "http/1.1");
        let who = answer.json();
        assert_eq!(who["name"], "r1");
        assert_eq!(who["version"], "HTTP/1.1");
        assert_eq!(who["tls"]["alpn"], "http/1.1");
        // The server's URL names an IP address: verified against the IP SAN, no SNI.
        assert_eq!(who["tls"]["sni"], serde_json::Value::Null);
        remotes.insert(who["remote"].as_str().unwrap().to_owned());
    }
    // One upstream TLS connection, pooled and reused by each request in turn.
    assert_eq!(remotes.len(), 1, "{remotes:?}");

    // `server_name`: verified as, and sent as SNI.
    let mut edge = edge;
    edge.reload(tls(
        UpstreamTls {
            server_name: Some("localhost".into()),
            ..ca(&pki)
        },
        Protocol::Http1,
    ));
    let who = get(&client, &edge.url("/whoami")).await.json();
    assert_eq!(who["tls"]["sni"], "localhost");
    edge.stop().await;
    replica.shutdown().await;
}

#[tokio::test]
async fn h2_over_tls_to_a_replica() {
    let pki = Pki::new("shoal upstream test CA");
    let replica = tls_replica("r1", pki.leaf("r1")).await;
    let edge = Edge::start(stack_for(&[&replica], "", tls(ca(&pki), Protocol::H2))).await;
    // An HTTP/1.1 client, an HTTP/2 replica: the gateway speaks h2 upstream, chosen by ALPN.
    let answer = get(&http1(), &edge.url("/whoami?x=1")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.header("x-sample-tls"), "h2");
    let who = answer.json();
    assert_eq!(who["version"], "HTTP/2.0");
    assert_eq!(who["tls"]["alpn"], "h2");
    assert_eq!(who["query"], "x=1");
    // Many requests share the one multiplexed connection.
    let answers = futures_util::future::join_all(
        (0..20).map(|_| async { get(&http1(), &edge.url("/whoami")).await }),
    )
    .await;
    let remotes: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.status, StatusCode::OK);
            a.json()["remote"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(remotes.len(), 1, "one h2 connection: {remotes:?}");
    edge.stop().await;
    replica.shutdown().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_a_502_that_says_why_unless_verification_is_off() {
    let pki = Pki::new("shoal upstream test CA");
    let other = Pki::new("some other CA");
    let replica = tls_replica("r1", pki.leaf("r1")).await;
    let mut edge = Edge::start(stack_for(&[&replica], "", tls(ca(&other), Protocol::Http1))).await;
    let client = http1();
    let answer = get(&client, &edge.url("/whoami")).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.header("x-shoal-error"), "upstream-tls-failed");
    assert_eq!(
        answer.body,
        "502 Bad Gateway: TLS to the replicas of service `app` failed: TLS handshake failed: \
         the replica's certificate is not signed by a trusted CA (unknown issuer; set `tls.ca` \
         to the CA bundle that signed it)\n"
    );

    // The loudly named opt-out: encrypted, not authenticated, and it works.
    edge.reload(tls(
        UpstreamTls {
            insecure_skip_verify: true,
            ..UpstreamTls::default()
        },
        Protocol::Http1,
    ));
    let answer = get(&client, &edge.url("/whoami")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.header("x-sample-tls"), "http/1.1");

    // And back to verifying with the right CA: a new config, not the lenient one.
    edge.reload(tls(ca(&other), Protocol::H2));
    let answer = get(&client, &edge.url("/whoami")).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.body);
    edge.reload(tls(ca(&pki), Protocol::H2));
    let answer = get(&client, &edge.url("/whoami")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.header("x-sample-tls"), "h2");
    edge.stop().await;
    replica.shutdown().await;
}

#[tokio::test]
async fn a_name_the_certificate_is_not_for_is_a_502() {
    let pki = Pki::new("shoal upstream test CA");
    let replica = tls_replica("r1", pki.leaf("r1")).await;
    let settings = UpstreamTls {
        server_name: Some("api.internal.example".into()),
        ..ca(&pki)
    };
    let edge = Edge::start(stack_for(&[&replica], "", tls(settings, Protocol::Http1))).await;
    let answer = get(&http1(), &edge.url("/")).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.header("x-shoal-error"), "upstream-tls-failed");
    assert!(
        answer.body.contains(
            "the replica's certificate is not accepted: certificate not valid for name \"api.internal.example\"; \
             certificate is only valid for DnsName(\"localhost\") or IpAddress(127.0.0.1)"
        ),
        "{}",
        answer.body
    );
    edge.stop().await;
    replica.shutdown().await;
}

#[tokio::test]
async fn a_replica_that_does_not_speak_tls_is_a_502() {
    let pki = Pki::new("shoal upstream test CA");
    let plain = SampleApp::start(Options::default()).await.unwrap();
    let edge = Edge::start(stack_for(&[&plain], "", tls(ca(&pki), Protocol::Http1))).await;
    let answer = get(&http1(), &edge.url("/")).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.header("x-shoal-error"), "upstream-tls-failed");
    assert!(
        answer
            .body
            .contains("does the replica speak TLS on this port?"),
        "{}",
        answer.body
    );
    edge.stop().await;
    plain.shutdown().await;
}

#[tokio::test]
async fn a_replica_stopped_under_load_fails_no_request() {
    let pki = Pki::new("shoal upstream test CA");
    let leaving = tls_replica("leaving", pki.leaf("a")).await;
    let staying = tls_replica("staying", pki.leaf("b")).await;
    let edge = Edge::start(stack_for(
        &[&leaving, &staying],
        "",
        tls(ca(&pki), Protocol::Http1),
    ))
    .await;
    let url = edge.url("/whoami");
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let served_by_leaving = Arc::new(AtomicU64::new(0));
    // Four clients in a loop, each bounded in time and count.
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (url, ok, failed, stop, leaving) = (
                url.clone(),
                ok.clone(),
                failed.clone(),
                stop.clone(),
                served_by_leaving.clone(),
            );
            tokio::spawn(async move {
                let client = http1();
                let until = Instant::now() + DEADLINE;
                for _ in 0..2_000 {
                    if stop.load(Ordering::Relaxed) || Instant::now() > until {
                        break;
                    }
                    let answer = get(&client, &url).await;
                    if answer.status == StatusCode::OK {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if answer.header("x-sample-name") == "leaving" {
                            leaving.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("failed: {} {}", answer.status, answer.body);
                    }
                }
            })
        })
        .collect();
    // Both replicas serve, then one goes away mid-load.
    eventually(DEADLINE, || {
        let going =
            served_by_leaving.load(Ordering::Relaxed) >= 50 && ok.load(Ordering::Relaxed) >= 200;
        ready(going.then_some(()).ok_or("the load did not get going"))
    })
    .await;
    leaving.shutdown().await;
    let after_stop = ok.load(Ordering::Relaxed);
    eventually(DEADLINE, || {
        let going = ok.load(Ordering::Relaxed) >= after_stop + 300;
        ready(going.then_some(()).ok_or("the load stalled after the stop"))
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "failed requests");
    assert!(ok.load(Ordering::Relaxed) >= after_stop + 300);
    // The service still answers, from the replica that stayed.
    let answer = get(&http1(), &url).await;
    assert_eq!(answer.header("x-sample-name"), "staying");
    edge.stop().await;
    staying.shutdown().await;
}

#[tokio::test]
async fn grpc_style_h2_with_trailers_passes_through_over_tls() {
    let pki = Pki::new("shoal upstream test CA");
    let replica = tls_replica("grpc", pki.leaf("r1")).await;
    let edge = Edge::start(stack_for(&[&replica], "", tls(ca(&pki), Protocol::H2))).await;
    // A gRPC-style call: HTTP/2 (h2c to the gateway), `TE: trailers`, a body with
    // trailers; the replica's `/echo` sends the body and the trailers back.
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers.insert("grpc-message", HeaderValue::from_static("ok"));
    let frames = vec![
        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"\0\0\0\0\x05hello"))),
        Ok(Frame::trailers(trailers)),
    ];
    let req = Request::post(edge.url("/echo"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync())
        .unwrap();
    let resp = tokio::time::timeout(DEADLINE, h2c().request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    assert_eq!(resp.headers()["x-sample-tls"], "h2");
    let collected = resp.into_body().collect().await.unwrap();
    let echoed_trailers = collected.trailers().cloned().expect("trailers came back");
    assert_eq!(
        collected.to_bytes(),
        Bytes::from_static(b"\0\0\0\0\x05hello")
    );
    assert_eq!(echoed_trailers["grpc-status"], "0");
    assert_eq!(echoed_trailers["grpc-message"], "ok");
    edge.stop().await;
    replica.shutdown().await;
}

#[tokio::test]
async fn health_checks_of_https_servers_verify_like_requests() {
    let pki = Pki::new("shoal upstream test CA");
    let other = Pki::new("some other CA");
    let replica = tls_replica("r1", pki.leaf("r1")).await;
    let health = "    health: { path: /health, interval: 100ms, fast_interval: 50ms, timeout: 1s, \
                  unhealthy_threshold: 1, healthy_threshold: 1 }";
    let mut edge = Edge::start(stack_for(
        &[&replica],
        health,
        tls(ca(&other), Protocol::Http1),
    ))
    .await;
    // Checked with the wrong CA: out of rotation, and the event says why.
    let reason = eventually(DEADLINE, || {
        let events = edge.events.since(0);
        let unhealthy = events.into_iter().find(|e| e.kind == EventKind::Unhealthy);
        ready(unhealthy.map(|e| e.message).ok_or("no unhealthy event"))
    })
    .await;
    assert!(
        reason.contains(
            "TLS handshake failed: the replica's certificate is not signed by a trusted CA"
        ),
        "{reason}"
    );
    let answer = get(&http1(), &edge.url("/")).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    // The right CA: the HTTPS check passes and the server is back.
    let seen = edge.events.since(0).last().map_or(0, |e| e.seq);
    edge.reload(tls(ca(&pki), Protocol::Http1));
    eventually(DEADLINE, || {
        let events = edge.events.since(seen);
        let healthy = events.iter().any(|e| e.kind == EventKind::Healthy);
        ready(healthy.then_some(()).ok_or("no healthy event"))
    })
    .await;
    let answer = get(&http1(), &edge.url("/")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    edge.stop().await;
    replica.shutdown().await;
}

/// Requests per second, one keep-alive client after another, through the gateway to a
/// TLS replica and to a plain one (same machine, same run). A figure, not a check:
/// `cargo test --release -p shoal-proxy --test upstream_tls -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement; run by hand"]
async fn figure_requests_per_second_tls_vs_plain() {
    let pki = Pki::new("shoal upstream test CA");
    let secure = tls_replica("tls", pki.leaf("r1")).await;
    let plain = SampleApp::start(Options::default()).await.unwrap();
    for (label, edge) in [
        (
            "plain HTTP/1.1",
            Edge::start(stack_for(&[&plain], "", |_| {})).await,
        ),
        (
            "HTTPS/1.1",
            Edge::start(stack_for(&[&secure], "", tls(ca(&pki), Protocol::Http1))).await,
        ),
        (
            "h2 over TLS",
            Edge::start(stack_for(&[&secure], "", tls(ca(&pki), Protocol::H2))).await,
        ),
    ] {
        let url = edge.url("/");
        let clients = 16;
        let per_client = 2_000;
        let start = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move {
                    let client = http1();
                    for _ in 0..per_client {
                        assert_eq!(get(&client, &url).await.status, StatusCode::OK);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{label}: {:.0} requests/s ({} requests, {clients} clients)",
            (clients * per_client) as f64 / secs,
            clients * per_client
        );
        edge.stop().await;
    }
    secure.shutdown().await;
    plain.shutdown().await;
}
