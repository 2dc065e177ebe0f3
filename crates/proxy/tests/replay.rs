//! One replay limit for both request paths (docs/configuration.md, `retry.max_replay_body`):
//! a request whose body is longer than the limit is sent once, however it came in — over
//! HTTP/1.1 keep-alive (the relay, which holds the body in memory anyway) or HTTP/2 (the
//! full stack) — and one within it is sent again after a retryable answer.
mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::{Client, Path, serve, stack};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A replica answering every request with `503` (a status `retry.on_status` retries),
/// counting the requests it received.
async fn unavailable() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counted = Arc::clone(&counted);
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let counted = Arc::clone(&counted);
                async move {
                    let _ = req.into_body().collect().await;
                    counted.fetch_add(1, Ordering::SeqCst);
                    let mut resp = Response::new(Full::new(Bytes::from_static(b"busy")));
                    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, count)
}

/// How many requests the replicas got for one idempotent PUT of `body` on `path`, with
/// bodies kept for replay up to 16 bytes and two tries allowed.
async fn sent_for(path: Path, body: &'static [u8]) -> usize {
    let (a, a_count) = unavailable().await;
    let (b, b_count) = unavailable().await;
    let gw = serve(&stack(&format!(
        "services:\n\
         \x20 web:\n    servers: [http://{a}, http://{b}]\n    passive: false\n\
         \x20   retry: {{ attempts: 2, max_replay_body: 16, per_try_timeout: off }}\n\
         routes:\n\
         \x20 - match: PathPrefix(`/`)\n    service: web\n"
    )));
    let mut client = Client::connect(gw.addr, path).await;
    let answer = client.send(Method::PUT, "/", &[], body).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    a_count.load(Ordering::SeqCst) + b_count.load(Ordering::SeqCst)
}

/// 40 bytes: longer than the 16 kept.
const LONG: &[u8] = b"0123456789012345678901234567890123456789";
/// 10 bytes: kept.
const SHORT: &[u8] = b"0123456789";

#[tokio::test]
async fn the_relay_sends_a_body_over_max_replay_body_once() {
    assert_eq!(
        sent_for(Path::Relay, SHORT).await,
        2,
        "within the limit: retried"
    );
    assert_eq!(
        sent_for(Path::Relay, LONG).await,
        1,
        "over the limit: sent once"
    );
}

#[tokio::test]
async fn the_full_stack_sends_a_body_over_max_replay_body_once() {
    assert_eq!(
        sent_for(Path::Full, SHORT).await,
        2,
        "within the limit: retried"
    );
    assert_eq!(
        sent_for(Path::Full, LONG).await,
        1,
        "over the limit: sent once"
    );
}
