//! What the edge middlewares add per request on the hot path: `rate_limit` keyed by client
//! IP, with one busy client, with a million distinct clients, and behind a trusted proxy
//! (`X-Forwarded-For`), against a route without checks.
//!
//! Run with `cargo bench -p shoal-proxy --bench middlewares`; prints nanoseconds per
//! request for each case.
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use http::HeaderValue;
use shoal_proxy::benching::EdgeProbe;
use tokio::time::Instant;

const ROUNDS: u32 = 2_000_000;

fn parts(xff: Option<&str>) -> http::request::Parts {
    let mut b = http::Request::builder().uri("/api/items?page=2");
    b = b
        .header("host", "example.com")
        .header("user-agent", "bench");
    if let Some(x) = xff {
        b = b.header("x-forwarded-for", HeaderValue::from_str(x).unwrap());
    }
    b.body(()).unwrap().into_parts().0
}

/// Nanoseconds per call of `f(i)`, best of three runs.
fn measure(mut f: impl FnMut(u32) -> bool) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let mut allowed = 0u32;
        for i in 0..ROUNDS {
            allowed += u32::from(black_box(f(i)));
        }
        let ns = start.elapsed().as_nanos() as f64 / f64::from(ROUNDS);
        black_box(allowed);
        best = best.min(ns);
    }
    best
}

fn main() {
    // Generous limits: every request is let through (the common case).
    let generous = || EdgeProbe::rate_limit(1_000_000_000, Duration::from_secs(1), 1000, 0);
    let peer = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    let none = EdgeProbe::none();
    let mut p = parts(None);
    let baseline = measure(|_| none.admit(&mut p, peer));

    let one = generous();
    let mut p = parts(None);
    let busy = measure(|_| one.admit(&mut p, peer));

    let many = generous();
    let mut p = parts(None);
    let distinct = measure(|i| {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i % 1_000_000)));
        many.admit(&mut p, ip)
    });

    let proxied = EdgeProbe::rate_limit(1_000_000_000, Duration::from_secs(1), 1000, 1);
    let mut p = parts(Some("203.0.113.9, 198.51.100.7"));
    let behind = measure(|_| proxied.admit(&mut p, peer));

    // Over the limit: the refusal is built (status, headers) but not sent.
    let strict = EdgeProbe::rate_limit(1, Duration::from_secs(3600), 1, 0);
    let mut p = parts(None);
    let refused = measure(|_| strict.admit(&mut p, peer));

    println!("edge checks per request (best of 3 x {ROUNDS}):");
    println!("  no checks (baseline)                     {baseline:7.1} ns");
    println!(
        "  rate_limit, one client                   {busy:7.1} ns  (+{:.1} ns)",
        busy - baseline
    );
    println!(
        "  rate_limit, 1 000 000 distinct clients   {distinct:7.1} ns  (+{:.1} ns)",
        distinct - baseline
    );
    println!(
        "  rate_limit, depth 1 (X-Forwarded-For)    {behind:7.1} ns  (+{:.1} ns)",
        behind - baseline
    );
    println!(
        "  rate_limit, refused (429 built)          {refused:7.1} ns  (+{:.1} ns)",
        refused - baseline
    );
}
