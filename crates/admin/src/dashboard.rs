//! The web dashboard: a page at `/dashboard/`, embedded in the binary, and the server-sent
//! event stream it follows, `GET /api/v1/stream`.
//!
//! The page is three hand-written files (`assets/dashboard/`: HTML, CSS, JS; no build step,
//! nothing fetched from elsewhere) compiled in with `include_str!`. All live data comes from
//! the stream: on connect and then every second it sends one SSE message whose data is
//! `{"at_ms": …, "services": [ServiceStatus…], "events": [Event…]}` — the services exactly as
//! `GET /api/v1/services` answers, and the events logged since the previous message. Rates
//! (requests/s, error rate) are differences between snapshots, computed by the page. Each
//! message's SSE `id` is the sequence number of the last event sent, so a browser that
//! reconnects (it sends `Last-Event-ID`) carries on where it stopped; a new connection gets
//! the last [`BACKLOG`] events first, or those after `?since=SEQ`.
//!
//! A page opened now should not show empty charts until it has watched for minutes: the
//! server keeps the last [`HISTORY`] of per-service counters itself (one [`Sample`] a second,
//! taken by a task that runs as long as the router: one `services()` call a second, the
//! cost of one open page), and the first message of every stream carries them as
//! `history`, oldest first. The page computes the charts' rates from them as it does from
//! live snapshots.
//!
//! Access: the page's files hold no state and are served without the admin token; the page
//! itself sends it (`Authorization: Bearer`) on every API call. A browser cannot set headers
//! on an `EventSource`, so the stream — and only the stream — also accepts the token as
//! `?token=TOKEN` ([`query_token`]). Its one state-changing call, scale, is a same-origin
//! `fetch` with `Content-Type: application/json`, which the crate's access rules require of a
//! browser (the crate doc's "Access").
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use shoal_core::{Event, HealthState, ReplicaState, ServiceStatus};
use tokio::time::MissedTickBehavior;

use crate::AppState;

/// Where the stream is served.
pub(crate) const STREAM_PATH: &str = "/api/v1/stream";
/// How often the stream sends a snapshot.
const PERIOD: Duration = Duration::from_secs(1);
/// Events sent first to a new stream that gives no resume point.
pub const BACKLOG: usize = 100;
/// How far back the samples sent first to a new stream go (what the page's charts show).
pub const HISTORY: Duration = Duration::from_secs(5 * 60);

const INDEX_HTML: &str = include_str!("../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../assets/dashboard/app.js");
const STYLE_CSS: &str = include_str!("../assets/dashboard/style.css");

/// Everything the page loads comes from this server; nothing inline, nothing elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The dashboard's routes and the stream; starts the sampler of the charts' history if a
/// runtime is there to run it (it stops with the server, or when the router is dropped).
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    let history = Arc::new(History::default());
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(sample(
            Arc::downgrade(&history),
            state.control.clone(),
            state.stop.clone(),
        ));
    }
    Router::new()
        .route("/dashboard", get(to_index))
        .route(
            "/dashboard/",
            get(|| page(INDEX_HTML, "text/html; charset=utf-8")),
        )
        .route(
            "/dashboard/app.js",
            get(|| page(APP_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/dashboard/style.css",
            get(|| page(STYLE_CSS, "text/css; charset=utf-8")),
        )
        .route(
            STREAM_PATH,
            get(move |state, headers, query| stream(state, headers, query, history)),
        )
}

/// The dashboard's static files need no token (they hold no state).
pub(crate) fn is_public(path: &str) -> bool {
    path == "/dashboard" || path.starts_with("/dashboard/")
}

/// The `token` query parameter of a request for the stream (None for any other path).
pub(crate) fn query_token(req: &Request) -> Option<String> {
    #[derive(Deserialize)]
    struct TokenQuery {
        token: Option<String>,
    }
    if req.uri().path() != STREAM_PATH {
        return None;
    }
    Query::<TokenQuery>::try_from_uri(req.uri())
        .ok()
        .and_then(|Query(q)| q.token)
}

/// `/dashboard` → `/dashboard/`, keeping the query (it may carry the token).
async fn to_index(RawQuery(query): RawQuery) -> Redirect {
    match query {
        Some(q) => Redirect::permanent(&format!("/dashboard/?{q}")),
        None => Redirect::permanent("/dashboard/"),
    }
}

async fn page(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            // The page's URL may hold the token: never send it on.
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

/// One message of the stream.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Every service, as `GET /api/v1/services` answers.
    pub services: Vec<ServiceStatus>,
    /// Events logged since the previous message, oldest first.
    pub events: Vec<Event>,
    /// In a stream's first message only: the last [`HISTORY`] of samples, oldest first,
    /// one a second (empty, and absent from the JSON, in the others).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Sample>,
}

/// The services' counters at one moment, for the charts of a page opened later.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Every service at that moment.
    pub services: Vec<ServiceSample>,
}

/// One service in a [`Sample`]: the fields of [`ServiceStatus`] the charts use.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceSample {
    /// Service name.
    pub name: String,
    /// Requests answered so far (absent for a service without traffic counters).
    pub requests_total: Option<u64>,
    /// Of those, answered 5xx.
    pub server_errors_total: Option<u64>,
    /// Recent p95 latency, in milliseconds.
    pub latency_p95_ms: Option<f64>,
    /// Replicas [in rotation](in_rotation).
    pub ready: u32,
}

impl ServiceSample {
    fn of(s: &ServiceStatus) -> ServiceSample {
        ServiceSample {
            name: s.name.clone(),
            requests_total: s.traffic.as_ref().map(|t| t.requests_total),
            server_errors_total: s.traffic.as_ref().map(|t| t.server_errors_total),
            latency_p95_ms: s.traffic.as_ref().and_then(|t| t.latency_p95_ms),
            ready: in_rotation(s),
        }
    }
}

/// Replicas of `s` that are ready *and* in the gateway's rotation: an ejected or
/// unhealthy replica is not counted (the page's header counts the same way). A replica
/// the gateway does not route to (a worker) counts when it is ready. Without a replica
/// list, the service's own count.
pub(crate) fn in_rotation(s: &ServiceStatus) -> u32 {
    if s.replicas.is_empty() {
        return s.ready;
    }
    let count = s
        .replicas
        .iter()
        .filter(|r| {
            r.state == ReplicaState::Ready
                && r.traffic
                    .as_ref()
                    .is_none_or(|t| t.health == HealthState::Healthy)
        })
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// The samples of the last [`HISTORY`].
#[derive(Debug, Default)]
struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    fn push(&self, sample: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let horizon = u64::try_from(HISTORY.as_millis()).unwrap_or(u64::MAX);
        let oldest = sample.at_ms.saturating_sub(horizon);
        while samples.front().is_some_and(|s| s.at_ms < oldest) {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    fn all(&self) -> Vec<Sample> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.iter().cloned().collect()
    }
}

/// Every [`PERIOD`], a sample into `history`, until the server stops or the router (the
/// history's owner) is gone.
async fn sample(
    history: Weak<History>,
    control: Arc<dyn crate::Control>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(PERIOD);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut stop = stop;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stopped(&mut stop) => return,
        }
        let Some(history) = history.upgrade() else {
            return;
        };
        history.push(Sample {
            at_ms: shoal_core::unix_millis(),
            services: control.services().iter().map(ServiceSample::of).collect(),
        });
    }
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    since: Option<u64>,
}

/// `text/event-stream`: a [`Snapshot`] now and then every second, until the client goes or
/// the server stops.
async fn stream(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
    history: Arc<History>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(q.since);
    let recent = s.control.events().since(0);
    let newest = recent.last().map_or(0, |e| e.seq);
    let last_seq = match resume {
        Some(seq) if seq <= newest => seq,
        // No resume point, or one from before shoal restarted: the last BACKLOG events.
        _ => recent
            .len()
            .checked_sub(BACKLOG + 1)
            .map_or(0, |i| recent[i].seq),
    };
    let mut ticks = tokio::time::interval(PERIOD);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first message carries the history; `take` leaves the later ones without.
    let first = Some(history);
    let messages = futures_util::stream::unfold(
        (s, ticks, last_seq, first),
        |(s, mut ticks, mut last_seq, mut first)| async move {
            let mut stop = s.stop.clone();
            tokio::select! {
                _ = ticks.tick() => {}
                () = stopped(&mut stop) => return None,
            }
            let events = s.control.events().since(last_seq);
            if let Some(e) = events.last() {
                last_seq = e.seq;
            }
            let snapshot = Snapshot {
                at_ms: shoal_core::unix_millis(),
                services: s.control.services(),
                events,
                history: first.take().map(|h| h.all()).unwrap_or_default(),
            };
            let message = SseEvent::default()
                .id(last_seq.to_string())
                .json_data(&snapshot)
                .unwrap_or_else(|e| SseEvent::default().event("error").data(e.to_string()));
            Some((Ok(message), (s, ticks, last_seq, first)))
        },
    );
    Sse::new(messages).keep_alive(KeepAlive::default())
}

/// Resolves when the server is stopping; never if it cannot tell.
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    if stop.wait_for(|&s| s).await.is_err() {
        std::future::pending::<()>().await;
    }
}
