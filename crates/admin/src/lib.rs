//! The admin API: a small JSON HTTP API that the CLI (`shoal status`, `scale`, `events`,
//! `logs`, `reload`, `down`) and the dashboard use.
//!
//! This crate owns the API's routes, its JSON shapes, and its access rules (below). It does
//! not own any state: everything is asked of a [`Control`], which the app implements over
//! the gateway, the driver and the event log.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /api/v1/health` | `{"status":"ok"}` |
//! | `GET /api/v1/services` | every service with its replicas (`ServiceStatus`) |
//! | `GET /api/v1/services/{name}` | one service, 404 if unknown |
//! | `POST /api/v1/services/{name}/scale` `{"replicas":N}` | sets the desired count |
//! | `GET /api/v1/services/{name}/rollout` | the service's latest rollout (`RolloutStatus`), `null` if none |
//! | `POST /api/v1/services/{name}/rollout` `{"action":"undo"\|"restart"}` | starts a rollout back to the previous version, or of fresh replicas |
//! | `POST /api/v1/routes/{name}/weights` `{"weights":{"api":50}}` | sets a split route's weights live; answers them all |
//! | `GET /api/v1/events?since=SEQ` | events after `SEQ` (default 0), oldest first |
//! | `GET /api/v1/events/follow?since=SEQ` | the same, then new events as they happen (NDJSON) |
//! | `GET /api/v1/services/{name}/logs?replica=N&tail=N&follow=BOOL` | replica output (NDJSON `{"replica":0,"line":"…"}`): the last `tail` lines (default 100) of each replica or of `replica`, then with `follow=true` new lines as they are written |
//! | `POST /api/v1/reload` | re-reads the stack file; 422 with the errors if it is invalid |
//! | `POST /api/v1/shutdown` | starts the graceful shutdown (as SIGTERM does); 202 |
//! | `GET /metrics` | Prometheus text format (see `docs/observability.md`) |
//! | `GET /api/v1/routes` | the routes, in the order they are tried |
//! | `GET /api/v1/stream` | a snapshot of every service and the new events, every second (SSE) |
//! | `GET /dashboard/` | the web dashboard (`docs/dashboard.md`); its files need no token |
//!
//! # Access
//!
//! Checked on every request before any handler, in this order (the reasons are in the
//! `access` module's doc):
//!
//! 1. **Host** (against DNS rebinding): `Host` must be `localhost` or an IP address literal,
//!    which covers the addresses the server is bound to; any other name gets 421 naming the
//!    `Host` received. No `Host` at all (HTTP/1.0) is served to loopback peers only (403).
//! 2. **Origin**, for every method but `GET` and `HEAD` (against cross-site requests): 403
//!    when `Sec-Fetch-Site` is present and not `same-origin` or `none`, or when `Origin` is
//!    present and its `host[:port]` is not the `Host` (another loopback name on the same port
//!    passes; `Origin: null` does not).
//! 3. **Content type**, for the same methods: `application/json`, or none at all from a client
//!    that is not a browser (no `Origin`, no `Sec-Fetch-*`), as curl and the shoal CLI send
//!    (`reload` has no body); 415 otherwise.
//! 4. **Token**, when one is configured: `Authorization: Bearer TOKEN` (or `?token=` on the
//!    stream), compared in constant time; 401 otherwise. The dashboard's files need none.
#![warn(missing_docs)]

mod access;
mod dashboard;
#[cfg(test)]
mod tests;

pub use dashboard::{BACKLOG, HISTORY, Sample, ServiceSample, Snapshot};

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, body::Body};
use serde::{Deserialize, Serialize};
use shoal_core::{Event, EventLog, ServiceStatus};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the admin API asks of the running shoal.
pub trait Control: Send + Sync + 'static {
    /// Every service, sorted by name.
    fn services(&self) -> Vec<ServiceStatus>;
    /// Set a service's desired replica count; says what was set (an autoscaled service is
    /// clamped to its bounds).
    fn scale(&self, service: &str, replicas: u32) -> Result<Scaled, ScaleError>;
    /// Re-read and apply the stack file; the error lists every problem (file:line:column).
    fn reload(&self) -> Result<String, String>;
    /// The event log.
    fn events(&self) -> &EventLog;
    /// The routes, in the order they are tried (highest priority first).
    fn routes(&self) -> Vec<RouteInfo>;
    /// Every metric in Prometheus' text format (`GET /metrics`); see `docs/observability.md`.
    fn metrics(&self) -> String {
        String::new()
    }
    /// `shoal rollout undo|restart SERVICE`: start it and say what was started.
    fn rollout(&self, service: &str, action: RolloutAction) -> Result<String, ScaleError> {
        let _ = (service, action);
        Err(ScaleError::Invalid(
            "rollouts are not supported here".into(),
        ))
    }
    /// `shoal logs`: a service's replica output, as [`LogQuery`] asks, in batches of
    /// lines; the stream ends (when not following) after the history, or when dropped.
    fn logs(&self, service: &str, query: &LogQuery) -> Result<LogStream, ScaleError> {
        let _ = (service, query);
        Err(ScaleError::Invalid(
            "replica output is not kept here".into(),
        ))
    }
    /// `shoal down`: start the graceful shutdown (as SIGTERM does) and say so. Returns at
    /// once; the admin API is the last thing to stop.
    fn shutdown(&self) -> Result<String, ScaleError> {
        Err(ScaleError::Invalid(
            "this shoal cannot be stopped through its admin API".into(),
        ))
    }
    /// `shoal weight ROUTE SERVICE=W...`: set a split route's weights live (services not
    /// named keep theirs); returns every target's weight now.
    fn set_weights(
        &self,
        route: &str,
        weights: &[(String, u32)],
    ) -> Result<Vec<(String, u32)>, ScaleError> {
        let _ = (route, weights);
        Err(ScaleError::Invalid("weights are not supported here".into()))
    }
}

/// What `POST /api/v1/services/{name}/rollout` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutAction {
    /// Back to the previous spec.
    Undo,
    /// Fresh replicas of the same spec.
    Restart,
}

/// What `GET /api/v1/services/{name}/logs` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogQuery {
    /// One replica's output only.
    #[serde(default)]
    pub replica: Option<u32>,
    /// Lines of history per replica (at most [`MAX_TAIL`]).
    #[serde(default = "default_tail")]
    pub tail: usize,
    /// Keep streaming new lines.
    #[serde(default)]
    pub follow: bool,
}

/// Most lines of history `GET /api/v1/services/{name}/logs` sends per replica.
pub const MAX_TAIL: usize = 100_000;

fn default_tail() -> usize {
    100
}

/// One line of a replica's output, as the logs endpoint sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// The replica's index.
    pub replica: u32,
    /// The line as the replica wrote it (escape codes included), without its newline.
    pub line: String,
}

/// Batches of log lines, as [`Control::logs`] streams them.
pub type LogStream = futures_util::stream::BoxStream<'static, Vec<LogLine>>;

/// A route as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteInfo {
    /// Name (`route-N` unless the file names it).
    pub name: String,
    /// The rule as written, e.g. ``PathPrefix(`/api`)``.
    pub rule: String,
    /// Target service (of a split, the first).
    pub service: String,
    /// A split route's services and their weights now (empty: one service).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<(String, u32)>,
    /// Where a share of the requests is copied (`mirror:`): the service and the percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<(String, f64)>,
    /// Higher is tried first.
    pub priority: i64,
    /// Entrypoints it listens on; None = all.
    pub entrypoints: Option<Vec<String>>,
    /// Its middlewares in order, described in a few words (e.g. `strip_prefix /api`).
    pub middlewares: Vec<String>,
}

/// What a scale request did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scaled {
    /// The replica count now desired.
    pub replicas: u32,
    /// Why it differs from the one asked for, if it does.
    pub note: Option<String>,
}

/// Why a scale request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// No such service.
    #[error("no service named `{0}`")]
    UnknownService(String),
    /// No such route.
    #[error("no route named `{0}`")]
    UnknownRoute(String),
    /// Something else asked for does not exist (the message says what).
    #[error("{0}")]
    NotFound(String),
    /// The service cannot be scaled this way (e.g. it has static servers).
    #[error("{0}")]
    Invalid(String),
}

/// Admin server settings.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Required bearer token, if any.
    pub token: Option<String>,
}

/// A running admin server.
#[derive(Debug)]
pub struct AdminServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    /// Serve the API on an already-bound listener.
    pub fn start(
        listener: TcpListener,
        control: Arc<dyn Control>,
        config: AdminConfig,
    ) -> std::io::Result<AdminServer> {
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let app = router_until(control, config, stopped.clone());
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.changed().await;
            };
            // The peer's address: a request without `Host` is served to loopback peers only.
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(error = %e, "admin server stopped");
            }
        });
        Ok(AdminServer { addr, stop, task })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving (followers of the event stream are cut off).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.task).await;
    }
}

#[derive(Clone)]
struct AppState {
    control: Arc<dyn Control>,
    token: Option<Arc<str>>,
    /// Turns true when the server stops (ends the dashboard's streams).
    stop: watch::Receiver<bool>,
}

/// The API's routes (exposed for in-process tests).
pub fn router(control: Arc<dyn Control>, config: AdminConfig) -> Router {
    router_until(control, config, watch::channel(false).1)
}

fn router_until(
    control: Arc<dyn Control>,
    config: AdminConfig,
    stop: watch::Receiver<bool>,
) -> Router {
    let state = AppState {
        control,
        token: config.token.map(Into::into),
        stop,
    };
    Router::new()
        .route(
            "/api/v1/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/api/v1/services", get(services))
        .route("/api/v1/services/{name}", get(service))
        .route("/api/v1/services/{name}/scale", post(scale))
        .route(
            "/api/v1/services/{name}/rollout",
            get(rollout_status).post(rollout),
        )
        .route("/api/v1/services/{name}/logs", get(logs))
        .route("/api/v1/routes/{name}/weights", post(weights))
        .route("/api/v1/events", get(events))
        .route("/api/v1/events/follow", get(follow))
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/shutdown", post(shutdown))
        .route("/api/v1/routes", get(routes))
        .route("/metrics", get(metrics))
        .merge(dashboard::routes(&state))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such admin endpoint; see docs/admin-api.md",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

/// JSON error body: `{"error": "..."}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Every request passes [`access::check`] first (see the module doc).
async fn authorize(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Err(refused) = access::check(&req, state.token.as_deref()) {
        let (method, path) = (req.method(), req.uri().path());
        tracing::debug!(%method, path, %refused, "admin request refused");
        return refused.into_response();
    }
    next.run(req).await
}

async fn services(State(s): State<AppState>) -> Json<Vec<ServiceStatus>> {
    Json(s.control.services())
}

async fn routes(State(s): State<AppState>) -> Json<Vec<RouteInfo>> {
    Json(s.control.routes())
}

async fn service(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    match s.control.services().into_iter().find(|x| x.name == name) {
        Some(svc) => Json(svc).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no service named `{name}`")),
    }
}

/// Body of a scale request.
#[derive(Debug, Serialize, Deserialize)]
pub struct ScaleRequest {
    /// Desired replica count.
    pub replicas: u32,
}

async fn scale(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<ScaleRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(req)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected a JSON body like {\"replicas\": 3}",
        );
    };
    match s.control.scale(&name, req.replicas) {
        Ok(done) => Json(serde_json::json!({
            "service": name,
            "replicas": done.replicas,
            "note": done.note,
        }))
        .into_response(),
        Err(e) => refused(e),
    }
}

/// A refusal as an answer: 404 for what does not exist, 400 for the rest.
fn refused(e: ScaleError) -> Response {
    let status = match e {
        ScaleError::UnknownService(_) | ScaleError::UnknownRoute(_) | ScaleError::NotFound(_) => {
            StatusCode::NOT_FOUND
        }
        ScaleError::Invalid(_) => StatusCode::BAD_REQUEST,
    };
    error(status, e.to_string())
}

/// `GET /api/v1/services/{name}/rollout`: the service's `rollout` (`null` before its first).
async fn rollout_status(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    match s.control.services().into_iter().find(|x| x.name == name) {
        Some(svc) => Json(svc.rollout).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no service named `{name}`")),
    }
}

/// Body of a rollout request.
#[derive(Debug, Serialize, Deserialize)]
pub struct RolloutRequest {
    /// `undo` or `restart`.
    pub action: RolloutAction,
}

async fn rollout(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<RolloutRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(req)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected a JSON body like {\"action\": \"undo\"} (or \"restart\")",
        );
    };
    match s.control.rollout(&name, req.action) {
        Ok(message) => Json(serde_json::json!({
            "service": name,
            "action": req.action,
            "message": message,
        }))
        .into_response(),
        Err(e) => refused(e),
    }
}

/// Body of a weights request: service → weight (0..=1000); services not named keep theirs.
#[derive(Debug, Serialize, Deserialize)]
pub struct WeightsRequest {
    /// The weights to set.
    pub weights: std::collections::BTreeMap<String, u32>,
}

async fn weights(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<WeightsRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let req = match body {
        Ok(Json(req)) if !req.weights.is_empty() => req,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "expected a JSON body like {\"weights\": {\"api\": 90, \"api-v2\": 10}} \
                 (whole numbers 0..=1000)",
            );
        }
    };
    let asked: Vec<(String, u32)> = req.weights.into_iter().collect();
    match s.control.set_weights(&name, &asked) {
        Ok(now) => Json(serde_json::json!({
            "route": name,
            "weights": now.into_iter().map(|(service, weight)| {
                serde_json::json!({ "service": service, "weight": weight })
            }).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => refused(e),
    }
}

#[derive(Debug, Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
}

async fn events(State(s): State<AppState>, Query(q): Query<Since>) -> Json<Vec<Event>> {
    Json(s.control.events().since(q.since))
}

/// Newline-delimited JSON: the backlog after `since`, then live events.
async fn follow(State(s): State<AppState>, Query(q): Query<Since>) -> Response {
    let rx = s.control.events().subscribe();
    let backlog = s.control.events().since(q.since);
    let last = backlog.last().map_or(q.since, |e| e.seq);
    let head = futures_util::stream::iter(backlog.into_iter().map(ndjson));
    let live = futures_util::stream::unfold((rx, last), |(mut rx, last)| async move {
        loop {
            match rx.recv().await {
                Ok(e) if e.seq <= last => continue,
                Ok(e) => {
                    let seq = e.seq;
                    return Some((ndjson(e), (rx, seq)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    use futures_util::StreamExt;
    let body = Body::from_stream(head.chain(live));
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

fn ndjson(e: Event) -> Result<bytes::Bytes, std::convert::Infallible> {
    let mut line = serde_json::to_vec(&e).unwrap_or_default();
    line.push(b'\n');
    Ok(line.into())
}

/// NDJSON lines of replica output; a follower's stream ends when the server stops.
async fn logs(
    State(s): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(mut q)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected ?replica=N&tail=N&follow=true|false (whole numbers)",
        );
    };
    q.tail = q.tail.min(MAX_TAIL);
    // The history is read from files: off the async workers.
    let control = s.control.clone();
    let stream = match tokio::task::spawn_blocking(move || control.logs(&name, &q)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return refused(e),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "reading logs panicked"),
    };
    let mut stop = s.stop.clone();
    let stopped = async move {
        // No server to stop (the in-process router): never.
        if stop.wait_for(|stopped| *stopped).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    use futures_util::StreamExt;
    let body = stream
        .filter(|batch| std::future::ready(!batch.is_empty()))
        .map(|batch| {
            let mut out = Vec::new();
            for line in &batch {
                out.extend(serde_json::to_vec(line).unwrap_or_default());
                out.push(b'\n');
            }
            Ok::<_, std::convert::Infallible>(bytes::Bytes::from(out))
        })
        .take_until(Box::pin(stopped));
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response()
}

/// `shoal down`: 202, and the graceful shutdown under way.
async fn shutdown(State(s): State<AppState>) -> Response {
    match s.control.shutdown() {
        Ok(message) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "stopping": true, "message": message })),
        )
            .into_response(),
        Err(e) => refused(e),
    }
}

async fn reload(State(s): State<AppState>) -> Response {
    let control = s.control.clone();
    match tokio::task::spawn_blocking(move || control.reload()).await {
        Ok(Ok(msg)) => {
            Json(serde_json::json!({ "reloaded": true, "message": msg })).into_response()
        }
        Ok(Err(errors)) => error(StatusCode::UNPROCESSABLE_ENTITY, errors),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "reload panicked"),
    }
}

/// `GET /metrics`: Prometheus' text exposition format, version 0.0.4.
async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.control.metrics(),
    )
        .into_response()
}
