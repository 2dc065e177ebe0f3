//! Readiness probes: is the replica listening on its port, and does it answer?
//!
//! A TCP probe passes when a connection to `127.0.0.1:PORT` is accepted. An HTTP probe
//! sends a minimal `GET` (HTTP/1.1, `Connection: close`) over a plain `TcpStream`, reads
//! only the status line and passes on 2xx or 3xx — enough for a health endpoint without
//! pulling an HTTP client into the driver. Each probe is bounded by its timeout; the
//! thresholds that turn probe results into balancer membership live in `replica`.
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::spec::Probe;

/// Longest status line read before giving up on a response.
const MAX_STATUS_LINE: usize = 1024;

/// Run one probe against `127.0.0.1:port`; `Err` carries the reason it failed.
pub(crate) async fn check(probe: &Probe, port: u16, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, check_inner(probe, port)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "timed out after {}",
            crate::backoff::human(timeout)
        )),
    }
}

async fn check_inner(probe: &Probe, port: u16) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let Probe::Http { path } = probe else {
        return Ok(());
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: shoal-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            buf.truncate(end);
            break;
        }
        if buf.len() > MAX_STATUS_LINE {
            return Err("status line too long".into());
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            if buf.is_empty() {
                return Err("connection closed without a response".into());
            }
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let status = parse_status_line(&buf)?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP status {status}"))
    }
}

/// The status code of `HTTP/1.x NNN reason`.
fn parse_status_line(line: &[u8]) -> Result<u16, String> {
    let text = String::from_utf8_lossy(line);
    let mut parts = text.split_ascii_whitespace();
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/") || code.len() != 3 {
        return Err(format!("not an HTTP response: {:?}", truncate(&text, 60)));
    }
    code.parse()
        .map_err(|_| format!("bad status code {code:?}"))
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), Ok(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 302 Found"), Ok(302));
        assert_eq!(parse_status_line(b"HTTP/1.1 503"), Ok(503));
        assert!(parse_status_line(b"SSH-2.0-OpenSSH").is_err());
        assert!(parse_status_line(b"HTTP/1.1 2000 x").is_err());
    }

    /// A one-shot server answering every connection with `response`.
    async fn serve(response: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(response.as_bytes()).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn http_probe_passes_on_2xx_and_3xx_only() {
        let ok = serve("HTTP/1.1 204 No Content\r\n\r\n").await;
        let redirect = serve("HTTP/1.1 301 Moved\r\nLocation: /\r\n\r\n").await;
        let down = serve("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let http = Probe::Http {
            path: "/health".into(),
        };
        let t = Duration::from_secs(2);
        assert_eq!(check(&http, ok, t).await, Ok(()));
        assert_eq!(check(&http, redirect, t).await, Ok(()));
        assert_eq!(check(&http, down, t).await, Err("HTTP status 503".into()));
    }

    #[tokio::test]
    async fn probes_fail_when_nothing_listens_or_nothing_answers() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(
            check(&Probe::Tcp, port, Duration::from_secs(1))
                .await
                .is_err()
        );
        // A listener that accepts but never answers: the HTTP probe times out, TCP passes.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        assert_eq!(
            check(&Probe::Tcp, port, Duration::from_secs(1)).await,
            Ok(())
        );
        let http = Probe::Http { path: "/".into() };
        let err = check(&http, port, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(err.contains("timed out"), "{err}");
    }
}
