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
//! Access: the page's files hold no state and are served without the admin token; the page
//! itself sends it (`Authorization: Bearer`) on every API call. A browser cannot set headers
//! on an `EventSource`, so the stream — and only the stream — also accepts the token as
//! `?token=TOKEN` ([`query_token`]). Its one state-changing call, scale, is a same-origin
//! `fetch` with `Content-Type: application/json`, which the crate's access rules require of a
//! browser (the crate doc's "Access").
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use shoal_core::{Event, ServiceStatus};
use tokio::time::MissedTickBehavior;

use crate::AppState;

/// Where the stream is served.
pub(crate) const STREAM_PATH: &str = "/api/v1/stream";
/// How often the stream sends a snapshot.
const PERIOD: Duration = Duration::from_secs(1);
/// Events sent first to a new stream that gives no resume point.
pub const BACKLOG: usize = 100;

const INDEX_HTML: &str = include_str!("../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../assets/dashboard/app.js");
const STYLE_CSS: &str = include_str!("../assets/dashboard/style.css");

/// Everything the page loads comes from this server; nothing inline, nothing elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The dashboard's routes and the stream.
pub(crate) fn routes() -> Router<AppState> {
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
        .route(STREAM_PATH, get(stream))
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
    let messages = futures_util::stream::unfold(
        (s, ticks, last_seq),
        |(s, mut ticks, mut last_seq)| async move {
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
            };
            let message = SseEvent::default()
                .id(last_seq.to_string())
                .json_data(&snapshot)
                .unwrap_or_else(|e| SseEvent::default().event("error").data(e.to_string()));
            Some((Ok(message), (s, ticks, last_seq)))
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
