//! The endpoints. Every handler returns a response (bad input becomes a 400 naming the
//! parameter); [`handle`] stamps the identity headers and ties the body to the in-flight count.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::body::{self, HandlerBody, InFlight, ResponseBody};

/// Longest CPU burn `/work?cpu_ms=` accepts, in milliseconds.
pub const MAX_CPU_MS: u64 = 10_000;
/// Longest sleep `/sleep?ms=` accepts, in milliseconds.
pub const MAX_SLEEP_MS: u64 = 600_000;

/// Header carrying the instance's name on every response.
pub const NAME_HEADER: &str = "x-sample-name";
/// Header carrying the replica index on every response, when there is one.
pub const REPLICA_HEADER: &str = "x-sample-replica";
/// Header carrying, on every response over TLS, the protocol ALPN chose (`h2`,
/// `http/1.1`, or `none`).
pub const TLS_HEADER: &str = "x-sample-tls";

/// What the TLS handshake of a request's connection settled (a request extension).
#[derive(Debug, Clone)]
pub(crate) struct TlsInfo {
    /// The protocol ALPN chose, or `none`.
    pub(crate) alpn: HeaderValue,
    /// The name the client sent as SNI, if any.
    pub(crate) sni: Option<String>,
}

/// What every connection of one instance shares.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) name: String,
    pub(crate) replica: Option<u32>,
    pub(crate) port: u16,
    name_header: HeaderValue,
    replica_header: Option<HeaderValue>,
    pub(crate) in_flight: Arc<InFlight>,
    /// When non-zero, every request but `/fault` and `/health` is answered with this status
    /// (set with `/fault?status=`; failover tests make one replica "sick" while its health
    /// check still passes, and well again).
    fault: AtomicU16,
    /// Permits for `/work` and `/sleep` when the capacity is limited.
    workers: Option<tokio::sync::Semaphore>,
    /// Set to `true` when shutdown starts; WebSocket sessions subscribe to it, and the server
    /// waits (within the grace period) until every subscriber has gone.
    pub(crate) shutdown: watch::Sender<bool>,
}

impl State {
    /// Check that `name` can be sent in [`NAME_HEADER`]; returns the header value.
    pub(crate) fn name_header(name: &str) -> std::io::Result<HeaderValue> {
        HeaderValue::from_str(name).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("sample-app name {name:?} cannot be sent as a header value"),
            )
        })
    }

    pub(crate) fn new(name: &str, replica: Option<u32>, port: u16) -> std::io::Result<State> {
        Ok(State {
            name: name.to_owned(),
            replica,
            port,
            name_header: Self::name_header(name)?,
            replica_header: replica.map(HeaderValue::from),
            in_flight: Arc::default(),
            fault: AtomicU16::new(0),
            workers: None,
            shutdown: watch::Sender::new(false),
        })
    }

    /// Serve at most `capacity` `/work` and `/sleep` requests at once.
    pub(crate) fn with_capacity(mut self, capacity: Option<usize>) -> State {
        self.workers = capacity.map(|n| tokio::sync::Semaphore::new(n.max(1)));
        self
    }

    fn stamp(&self, headers: &mut HeaderMap) {
        headers.insert(NAME_HEADER, self.name_header.clone());
        if let Some(replica) = &self.replica_header {
            headers.insert(REPLICA_HEADER, replica.clone());
        }
    }
}

/// The service function: route, stamp identity headers, count the request as in flight
/// until its body is done.
pub(crate) async fn handle(
    state: Arc<State>,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let guard = state.in_flight.enter();
    let alpn = req.extensions().get::<TlsInfo>().map(|t| t.alpn.clone());
    let mut response = route(&state, remote, req).await;
    state.stamp(response.headers_mut());
    if let Some(alpn) = alpn {
        response.headers_mut().insert(TLS_HEADER, alpn);
    }
    Ok(response.map(|body| ResponseBody::new(body, guard)))
}

async fn route(
    state: &Arc<State>,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Response<HandlerBody> {
    let query = req.uri().query();
    let path = req.uri().path();
    let fault = state.fault.load(Ordering::Relaxed);
    if fault != 0 && path != "/fault" && path != "/health" {
        let status = StatusCode::from_u16(fault).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return text(status, "injected fault (see /fault)\n");
    }
    let result = match path {
        "/fault" => set_fault(state, query),
        "/health" => Ok(text(StatusCode::OK, "ok")),
        "/whoami" => Ok(whoami(state, remote, &req)),
        "/work" | "/sleep" => {
            // A worker of the limited pool, if there is one: the rest wait their turn.
            let _permit = match &state.workers {
                Some(pool) => pool.acquire().await.ok(),
                None => None,
            };
            if path == "/work" {
                work(query).await
            } else {
                sleep(query).await
            }
        }
        "/fail" => fail(query),
        "/echo" => Ok(echo(req)),
        "/ws" => crate::ws::upgrade(state, req),
        _ => match path.strip_prefix("/status/") {
            Some(code) => status(code),
            None => Ok(text(StatusCode::OK, format!("hello from {}\n", state.name))),
        },
    };
    result.unwrap_or_else(|message| text(StatusCode::BAD_REQUEST, format!("{message}\n")))
}

fn text(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<HandlerBody> {
    let mut response = Response::new(body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(value: &serde_json::Value) -> Response<HandlerBody> {
    let mut response = Response::new(body::full(value.to_string()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `/whoami`: who answered, and what it received (so gateway tests can inspect forwarding).
fn whoami(state: &State, remote: SocketAddr, req: &Request<Incoming>) -> Response<HandlerBody> {
    let headers = headers_json(req.headers());
    json(&json!({
        "name": state.name,
        "replica": state.replica,
        "pid": std::process::id(),
        "port": state.port,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "version": format!("{:?}", req.version()),
        "remote": remote.to_string(),
        "headers": headers,
        "tls": req.extensions().get::<TlsInfo>().map(|t| json!({
            "alpn": t.alpn.to_str().unwrap_or_default(),
            "sni": t.sni,
        })),
    }))
}

/// `/work?cpu_ms=N`: busy-loop a blocking thread for N ms of wall-clock time.
async fn work(query: Option<&str>) -> Result<Response<HandlerBody>, String> {
    let cpu_ms: u64 = required(query, "cpu_ms")?;
    if cpu_ms > MAX_CPU_MS {
        return Err(format!(
            "query parameter cpu_ms={cpu_ms} is above the maximum {MAX_CPU_MS}"
        ));
    }
    let burnt = tokio::task::spawn_blocking(move || burn(Duration::from_millis(cpu_ms)))
        .await
        .map_err(|e| format!("work failed: {e}"))?;
    Ok(json(
        &json!({ "cpu_ms": cpu_ms, "burnt_ms": burnt.as_millis() as u64 }),
    ))
}

fn burn(duration: Duration) -> Duration {
    let start = Instant::now();
    let mut x = 0_u64;
    while start.elapsed() < duration {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
    }
    start.elapsed()
}

/// `/sleep?ms=N`: answer after N ms.
async fn sleep(query: Option<&str>) -> Result<Response<HandlerBody>, String> {
    let ms: u64 = required(query, "ms")?;
    if ms > MAX_SLEEP_MS {
        return Err(format!(
            "query parameter ms={ms} is above the maximum {MAX_SLEEP_MS}"
        ));
    }
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(json(&json!({ "slept_ms": ms })))
}

/// `/fail?rate=R`: 500 with probability R, else 200.
fn fail(query: Option<&str>) -> Result<Response<HandlerBody>, String> {
    let rate: f64 = required(query, "rate")?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!(
            "query parameter rate={rate} must be between 0 and 1"
        ));
    }
    Ok(if fastrand::f64() < rate {
        text(StatusCode::INTERNAL_SERVER_ERROR, "injected failure\n")
    } else {
        text(StatusCode::OK, "ok\n")
    })
}

/// `/fault?status=500`: answer every other request (but `/health`) with that status from now on;
/// `/fault?status=0`: back to normal.
fn set_fault(state: &State, query: Option<&str>) -> Result<Response<HandlerBody>, String> {
    let code: u16 = required(query, "status")?;
    if code != 0 && !(200..=599).contains(&code) {
        return Err(format!(
            "query parameter status={code} must be 0 or in 200..=599"
        ));
    }
    state.fault.store(code, Ordering::Relaxed);
    Ok(text(StatusCode::OK, format!("fault status {code}\n")))
}

/// `/status/CODE`: answer with that status.
fn status(code: &str) -> Result<Response<HandlerBody>, String> {
    let n = code
        .parse::<u16>()
        .ok()
        .filter(|n| (100..=599).contains(n))
        .ok_or_else(|| format!("status code {code:?} is not a number in 200..=599"))?;
    if n < 200 {
        return Err(format!("status code {n} is informational; use 200..=599"));
    }
    let status = StatusCode::from_u16(n).map_err(|e| format!("status code {n}: {e}"))?;
    Ok(text(status, format!("status {n}")))
}

/// `/echo`: stream the request body back frame by frame, with its content type.
fn echo(req: Request<Incoming>) -> Response<HandlerBody> {
    let content_type = req.headers().get(CONTENT_TYPE).cloned();
    let mut response = Response::new(req.into_body().map_err(body::BoxError::from).boxed_unsync());
    if let Some(content_type) = content_type {
        response.headers_mut().insert(CONTENT_TYPE, content_type);
    }
    response
}

/// The value of query parameter `name`, parsed; an error message naming it otherwise.
fn required<T: FromStr>(query: Option<&str>, name: &str) -> Result<T, String> {
    let value = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| match pair.split_once('=') {
            Some((key, value)) if key == name => Some(value),
            None if pair == name => Some(""),
            _ => None,
        })
        .ok_or_else(|| format!("missing query parameter {name}"))?;
    value
        .parse()
        .map_err(|_| format!("query parameter {name}={value:?} is not a valid number"))
}

/// Request headers as a JSON object, repeated headers joined with `", "` (what `/whoami`
/// reports; also used by the test harness's recorder backend).
pub fn headers_json(headers: &http::HeaderMap) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for name in headers.keys() {
        let values: Vec<_> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        map.insert(name.as_str().to_owned(), values.join(", ").into());
    }
    map.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_finds_and_parses_parameters() {
        assert_eq!(required::<u64>(Some("a=1&ms=25"), "ms"), Ok(25));
        assert_eq!(required::<f64>(Some("rate=0.25"), "rate"), Ok(0.25));
        assert_eq!(
            required::<u64>(Some("msx=1"), "ms"),
            Err("missing query parameter ms".to_owned())
        );
        assert_eq!(
            required::<u64>(None, "ms"),
            Err("missing query parameter ms".to_owned())
        );
        assert_eq!(
            required::<u64>(Some("ms=ten"), "ms"),
            Err("query parameter ms=\"ten\" is not a valid number".to_owned())
        );
        assert_eq!(
            required::<u64>(Some("ms"), "ms"),
            Err("query parameter ms=\"\" is not a valid number".to_owned())
        );
    }

    #[test]
    fn burn_runs_for_at_least_the_duration() {
        let burnt = burn(Duration::from_millis(20));
        assert!(burnt >= Duration::from_millis(20), "{burnt:?}");
    }
}
