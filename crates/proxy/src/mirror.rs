//! Mirroring (Traefik's): a copy of some of a route's requests goes to another service, whose
//! answers are read and thrown away. It is for trying a new version on real traffic without
//! letting it answer anyone.
//!
//! # Which requests
//!
//! Requests whose body is known and at most `max_body` bytes are *eligible*: a bodiless
//! request, one with a `Content-Length` within the limit (the full stack reads such a body
//! before sending the request, as it does for a replayable one), and every request the
//! HTTP/1.1 relay carries (it holds bodies of at most 64 KiB). Streamed (chunked, or HTTP/2
//! without a length) and longer bodies, and upgrades (WebSocket), are never copied. Of the
//! eligible requests exactly `percent` % are copied, by a counter rather than at random
//! (a Bresenham accumulator): with 10 % the 10th, 20th, 30th… eligible request, so `n`
//! eligible requests give `floor(n × percent / 100)` copies.
//!
//! # Never in the way
//!
//! A copy is the request as it goes upstream (after the route's middlewares: path,
//! headers, body) sent to one replica of the mirror service on a task of its own: the real
//! request does not wait for it, and nothing of the copy — its status, its failure, its
//! time — reaches the client, the route's metrics or its service's health. It is sent
//! once (no retry, no hedge), and the whole copy (connect, answer, body) has the mirror
//! service's response-header timeout, at most [`MAX_TIME`]. At most [`MAX_COPIES`] copies
//! per route are under way at once; a request selected while that many are (a mirror that
//! hangs) is simply not copied, so a hanging or refusing mirror costs the real traffic
//! neither latency nor errors, and cannot pile up tasks. The mirror service's own request
//! counters (`shoal status`, `/api/services`) count the copies and their 5xx (a copy that
//! got no answer counts as a 502 or, timed out, a 504).
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use shoal_balance::PickContext;
use shoal_config::Mirror;

use crate::exchange::hyper::hyper_try;
use crate::table::ServiceHandle;
use crate::tries::boxed_bytes;
use crate::upstream::Upstreams;

/// Most copies of one route's requests under way at once.
pub(crate) const MAX_COPIES: usize = 256;

/// Longest a copy may take, whatever the mirror service's timeout.
pub(crate) const MAX_TIME: Duration = Duration::from_secs(10);

/// A route's mirror: where copies go, and which requests are copied.
#[derive(Debug)]
pub(crate) struct RouteMirror {
    pub(crate) service: Arc<ServiceHandle>,
    pub(crate) def: Mirror,
    /// Bound on the whole copy.
    pub(crate) time: Duration,
    /// Kept across reloads that leave the route's `mirror:` as it was.
    pub(crate) state: Arc<MirrorState>,
}

/// The counter that selects requests, and the copies under way.
#[derive(Debug, Default)]
pub(crate) struct MirrorState {
    /// Eligible requests seen.
    eligible: AtomicU64,
    /// Copies under way.
    in_flight: Arc<AtomicUsize>,
}

/// A place among a route's copies under way, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl RouteMirror {
    /// Whether to copy a request whose body is `len` bytes (`None`: not known in advance),
    /// and its place among the copies under way if so. Advances the selection counter for
    /// every eligible request.
    pub(crate) fn select(&self, len: Option<u64>) -> Option<Slot> {
        if len? > self.def.max_body {
            return None;
        }
        let n = self.state.eligible.fetch_add(1, Ordering::Relaxed);
        if !copied(n, self.def.percent) {
            return None;
        }
        let in_flight = &self.state.in_flight;
        in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c < MAX_COPIES).then_some(c + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(in_flight)))
    }

    /// Send a copy of the request on a task of its own and return at once. `host_header`
    /// is the request's host, for an HTTP/1 mirror when the headers have none (they were
    /// prepared for an HTTP/2 target).
    // The request's parts, as the two request paths hold them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send(
        &self,
        slot: Slot,
        upstreams: &Arc<Upstreams>,
        method: &Method,
        path_and_query: &PathAndQuery,
        headers: &HeaderMap,
        host_header: Option<&HeaderValue>,
        body: Bytes,
    ) {
        let service = Arc::clone(&self.service);
        let h2 = service.speaks_h2();
        let upstreams = match service.def.tls {
            Some(_) => service
                .tls_pool
                .load_full()
                .unwrap_or_else(|| Arc::clone(upstreams)),
            None => Arc::clone(upstreams),
        };
        let mut headers = headers.clone();
        // Framing is hyper's to write from the body.
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::TRANSFER_ENCODING);
        if h2 {
            headers.remove(header::HOST);
        } else if let Some(host) = host_header
            && !headers.contains_key(header::HOST)
        {
            headers.insert(header::HOST, host.clone());
        }
        let mut req = Request::new(boxed_bytes(body));
        *req.method_mut() = method.clone();
        *req.version_mut() = if h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        *req.uri_mut() = Uri::from(path_and_query.clone());
        *req.headers_mut() = headers;
        let time = self.time;
        tokio::spawn(async move {
            let status = match tokio::time::timeout(time, copy(&service, upstreams, h2, req)).await
            {
                Ok(Some(status)) => status,
                Ok(None) => StatusCode::BAD_GATEWAY,
                Err(_) => StatusCode::GATEWAY_TIMEOUT,
            };
            service.health.counters.answered(status);
            drop(slot);
        });
    }
}

/// Whether the `n`-th eligible request (from 0) is copied at `percent` %: the Bresenham
/// step, in thousandths of a percent, so that the first `n` give `floor(n × percent / 100)`.
fn copied(n: u64, percent: f64) -> bool {
    let per_100k = (percent.clamp(0.0, 100.0) * 1000.0).round() as u64;
    (n + 1) * per_100k / 100_000 > n * per_100k / 100_000
}

/// One try of the copy on one replica; the response body is read and dropped. The status,
/// or `None` if there was no answer.
async fn copy(
    service: &ServiceHandle,
    upstreams: Arc<Upstreams>,
    h2: bool,
    req: Request<crate::body::ProxyBody>,
) -> Option<StatusCode> {
    // Holding the pick counts the copy as in flight on its replica (drains wait for it).
    let pick = service.balancer.pick(&PickContext::default())?;
    let (resp, pool) = hyper_try(upstreams, Arc::clone(pick.backend()), h2, req)
        .await
        .ok()?;
    let status = resp.status();
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            return Some(status);
        }
    }
    if let Some((pool, sender)) = pool {
        pool.checkin(pick.backend().addr(), sender);
    }
    Some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(percent: f64, n: u64) -> u64 {
        (0..n).filter(|&i| copied(i, percent)).count() as u64
    }

    #[test]
    fn the_accumulator_copies_exactly_the_share() {
        assert_eq!(count(10.0, 1000), 100);
        assert_eq!(count(10.0, 9), 0);
        assert_eq!(count(10.0, 10), 1);
        assert!(copied(9, 10.0) && copied(19, 10.0) && !copied(10, 10.0));
        assert_eq!(count(100.0, 500), 500);
        assert_eq!(count(0.0, 500), 0);
        assert_eq!(count(33.0, 300), 99);
        assert_eq!(count(0.5, 1000), 5);
        assert_eq!(count(12.345, 100_000), 12_345);
    }
}
