//! Streaming with bounded memory: a large upload goes through the gateway to the backend's
//! `/echo` and back while the process's peak resident memory barely moves.
//!
//! Alone in its file, so it runs alone in its test process: the peak RSS it reads
//! (`VmHWM` in `/proc/self/status`) is the whole process's.
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use shoal_test_support::{Backend, Client, TestGateway, body};
use tokio::time::Instant;

const MIB: u64 = 1024 * 1024;
/// The body: 1 GiB.
const TOTAL: u64 = 1024 * MIB;
const CHUNK: usize = 64 * 1024;
/// Allowed growth of the peak RSS while streaming.
const MAX_GROWTH: u64 = 200 * MIB;

/// The process's peak resident set size, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_upload_streams_through_and_back_in_bounded_memory() {
    let backend = Backend::start("web").await;
    let gw = TestGateway::in_front_of(&backend).await;
    // Warm up the connections both sides, so their buffers are in the baseline.
    assert_eq!(gw.get("/").await.status, StatusCode::OK);
    let before = peak_rss();
    let started = Instant::now();

    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let chunks = (TOTAL / CHUNK as u64) as usize;
    let req = Request::post(gw.url("/echo"))
        .header("content-type", "application/octet-stream")
        .body(body::repeat(chunk, chunks))
        .unwrap();
    let response = Client::http1().send(req).await.expect("response headers");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut received = 0_u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("the echoed body streams without error");
        if let Some(data) = frame.data_ref() {
            assert!(
                data.iter().all(|&b| b == b'x'),
                "corrupted byte near {received}"
            );
            received += data.len() as u64;
        }
    }

    let elapsed = started.elapsed();
    let growth = peak_rss().saturating_sub(before);
    eprintln!(
        "streamed {} MiB up and back in {elapsed:?}; peak RSS grew by {} MiB",
        TOTAL / MIB,
        growth / MIB
    );
    assert_eq!(received, TOTAL, "every byte came back");
    assert!(
        growth < MAX_GROWTH,
        "peak RSS grew by {} MiB while streaming {} MiB",
        growth / MIB,
        TOTAL / MIB
    );
}
