//! `/ws`: a WebSocket echo. The HTTP/1.1 upgrade is answered here; the session runs in its
//! own task, echoes text and binary messages, and leaves ping/pong and close replies to
//! tungstenite. On shutdown the session sends a 1001 ("going away") close.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::header::{
    CONNECTION, HeaderMap, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::body::{self, HandlerBody};
use crate::routes::State;

/// How long a session waits for the peer to answer its close on shutdown.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Answer an upgrade request with 101 and start the echo session once hyper hands over the
/// connection. Anything that is not a valid HTTP/1.1 WebSocket handshake gets an error message.
pub(crate) fn upgrade(
    state: &Arc<State>,
    mut req: Request<Incoming>,
) -> Result<Response<HandlerBody>, String> {
    if req.version() != Version::HTTP_11 {
        return Err("WebSocket upgrade needs HTTP/1.1".to_owned());
    }
    let headers = req.headers();
    if !has_token(headers, &CONNECTION, "upgrade") || !has_token(headers, &UPGRADE, "websocket") {
        return Err(
            "/ws expects a WebSocket upgrade (Connection: upgrade, Upgrade: websocket)".to_owned(),
        );
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err("/ws expects header Sec-WebSocket-Version: 13".to_owned());
    }
    let Some(key) = headers.get(SEC_WEBSOCKET_KEY) else {
        return Err("/ws expects header Sec-WebSocket-Key".to_owned());
    };
    let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|e| format!("Sec-WebSocket-Accept: {e}"))?;

    let on_upgrade = hyper::upgrade::on(&mut req);
    let shutdown = state.shutdown.subscribe();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "websocket upgrade failed");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        if let Err(error) = echo(ws, shutdown).await {
            tracing::debug!(%error, "websocket session ended with an error");
        }
    });

    let mut response = Response::new(body::full(""));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    Ok(response)
}

async fn echo<S>(
    mut ws: WebSocketStream<S>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), tungstenite::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        tokio::select! {
            message = ws.next() => match message {
                None => return Ok(()),
                Some(message) => match message? {
                    message @ (Message::Text(_) | Message::Binary(_)) => ws.send(message).await?,
                    // Pings are answered and closes acknowledged by tungstenite itself.
                    Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {}
                },
            },
            () = stopping(&mut shutdown) => break,
        }
    }
    let frame = CloseFrame {
        code: CloseCode::Away,
        reason: "server shutting down".into(),
    };
    ws.close(Some(frame)).await?;
    let drain = async {
        while let Some(message) = ws.next().await {
            message?;
        }
        Ok(())
    };
    tokio::time::timeout(CLOSE_WAIT, drain)
        .await
        .unwrap_or(Ok(()))
}

/// Resolves once shutdown has started, or the server is gone altogether.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it at once.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Whether a comma-separated header holds `token` (case-insensitive), e.g.
/// `Connection: keep-alive, Upgrade`.
fn has_token(headers: &HeaderMap, name: &http::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}
