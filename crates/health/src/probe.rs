//! One probe: is the replica listening, and does it answer?
//!
//! A TCP probe passes when a connection to the address is accepted. An HTTP probe sends a
//! minimal `GET` (HTTP/1.1, `Connection: close`) over a plain `TcpStream`, reads only the
//! status line and passes when the status is in the expected ranges (2xx or 3xx by
//! default) — enough for a health endpoint without pulling an HTTP client in. Each probe is
//! bounded by its timeout. Note that a TCP probe passes on a hung process (the kernel
//! accepts connections into the listen backlog); only an HTTP probe notices a hang.
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `GET http://ADDR{path}`; passes when the status is in one of the `expect` ranges.
    Http {
        /// Request path, starting with `/`.
        path: String,
        /// Inclusive status ranges that pass.
        expect: Vec<(u16, u16)>,
    },
    /// A TCP connection to the address is accepted.
    Tcp,
}

impl Probe {
    /// An HTTP probe of `path` passing on the `expect` ranges, or a TCP probe without a path
    /// (the shape of a stack file's `health:` section).
    pub fn of(path: Option<&str>, expect: &[(u16, u16)]) -> Probe {
        match path {
            Some(path) => Probe::Http {
                path: path.to_owned(),
                expect: expect.to_vec(),
            },
            None => Probe::Tcp,
        }
    }

    /// An HTTP probe of `path` passing on 2xx and 3xx.
    pub fn http(path: impl Into<String>) -> Probe {
        Probe::Http {
            path: path.into(),
            expect: vec![(200, 399)],
        }
    }
}

/// Longest status line read before giving up on a response.
const MAX_STATUS_LINE: usize = 1024;

/// Run one probe against `addr` (`host:port`); `Err` carries the reason it failed.
pub async fn check(probe: &Probe, addr: &str, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, check_inner(probe, addr)).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {}ms", timeout.as_millis())),
    }
}

async fn check_inner(probe: &Probe, addr: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let Probe::Http { path, expect } = probe else {
        return Ok(());
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: shoal-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
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
    if expect.iter().any(|&(lo, hi)| (lo..=hi).contains(&status)) {
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
    async fn serve(response: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(response.as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn http_probe_passes_on_2xx_and_3xx_only() {
        let ok = serve("HTTP/1.1 204 No Content\r\n\r\n").await;
        let redirect = serve("HTTP/1.1 301 Moved\r\nLocation: /\r\n\r\n").await;
        let down = serve("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let http = Probe::http("/health");
        let t = Duration::from_secs(2);
        assert_eq!(check(&http, &ok, t).await, Ok(()));
        assert_eq!(check(&http, &redirect, t).await, Ok(()));
        assert_eq!(check(&http, &down, t).await, Err("HTTP status 503".into()));
        // Expected statuses are configurable: 503 passes, 204 does not.
        let only_503 = Probe::Http {
            path: "/health".into(),
            expect: vec![(503, 503)],
        };
        assert_eq!(check(&only_503, &down, t).await, Ok(()));
        assert_eq!(
            check(&only_503, &ok, t).await,
            Err("HTTP status 204".into())
        );
    }

    #[tokio::test]
    async fn probes_fail_when_nothing_listens_or_nothing_answers() {
        // A port that was free a moment ago: nothing listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        assert!(
            check(&Probe::Tcp, &addr, Duration::from_secs(1))
                .await
                .is_err()
        );
        // A listener that accepts but never answers: the HTTP probe times out, TCP passes.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        assert_eq!(
            check(&Probe::Tcp, &addr, Duration::from_secs(1)).await,
            Ok(())
        );
        let http = Probe::http("/");
        let err = check(&http, &addr, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(err.contains("timed out"), "{err}");
    }
}
