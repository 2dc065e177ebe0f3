//! The access log: one line per request, JSON or Common Log Format, to standard output or a
//! file.
//!
//! Off the hot path: a request only fills an [`Entry`] (reference-counted names, the URI and
//! method as they came) and `try_send`s it on a bounded channel. A writer task formats and
//! writes whole batches. When the channel is full the entry is dropped and counted
//! (`shoal_access_log_dropped_total`): a slow disk never slows the gateway.
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, Uri, Version};
use shoal_balance::Backend;
use shoal_config::{AccessLog as Config, AccessLogFormat};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// One request, as logged.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) start: SystemTime,
    pub(crate) client: IpAddr,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) host: Option<http::HeaderValue>,
    pub(crate) version: Version,
    pub(crate) status: u16,
    pub(crate) duration: Duration,
    pub(crate) entrypoint: Arc<str>,
    pub(crate) router: Option<Arc<str>>,
    pub(crate) service: Option<Arc<str>>,
    /// The replica that answered (its key is `service/N`, or a static server's URL).
    pub(crate) replica: Option<Arc<Backend>>,
    pub(crate) user_agent: Option<http::HeaderValue>,
    pub(crate) referer: Option<http::HeaderValue>,
    pub(crate) size: Option<u64>,
}

/// The sending side, held by the gateway.
#[derive(Debug)]
pub struct AccessLogger {
    tx: mpsc::Sender<Entry>,
    config: Config,
    dropped: Arc<AtomicU64>,
}

impl AccessLogger {
    /// Open the log's file (or standard output) and start the writer task. Must be called
    /// within a tokio runtime.
    pub fn start(config: &Config) -> std::io::Result<AccessLogger> {
        let out: Box<dyn AsyncWrite + Send + Unpin> = match &config.path {
            Some(path) => Box::new(tokio::fs::File::from_std(open(path)?)),
            None => Box::new(tokio::io::stdout()),
        };
        let (tx, rx) = mpsc::channel(config.buffer);
        tokio::spawn(write_loop(rx, out, config.format));
        Ok(AccessLogger {
            tx,
            config: config.clone(),
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The settings it was started with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn log(&self, entry: Entry) {
        if self.tx.try_send(entry).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn open(path: &PathBuf) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

async fn write_loop(
    mut rx: mpsc::Receiver<Entry>,
    mut out: Box<dyn AsyncWrite + Send + Unpin>,
    format: AccessLogFormat,
) {
    let mut buf = String::new();
    let mut seq: u64 = 0;
    while let Some(first) = rx.recv().await {
        buf.clear();
        let mut next = Some(first);
        while let Some(entry) = next {
            seq += 1;
            match format {
                AccessLogFormat::Json => json_line(&mut buf, &entry),
                AccessLogFormat::Common => common_line(&mut buf, &entry, seq),
            }
            next = if buf.len() < 256 * 1024 {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if let Err(e) = async {
            out.write_all(buf.as_bytes()).await?;
            out.flush().await
        }
        .await
        {
            tracing::warn!(error = %e, "cannot write the access log");
        }
    }
}

fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn path(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

/// One JSON object with Traefik's access log field names, written directly (no
/// intermediate value: this runs once per request).
pub(crate) fn json_line(out: &mut String, e: &Entry) {
    out.push_str("{\"StartUTC\":\"");
    rfc3339(out, e.start);
    let _ = write!(out, "\",\"ClientHost\":\"{}\",\"RequestMethod\":", e.client);
    json_str(out, Some(e.method.as_str()));
    out.push_str(",\"RequestPath\":");
    json_str(out, Some(path(&e.uri)));
    let _ = write!(
        out,
        ",\"RequestProtocol\":\"{}\",\"RequestHost\":",
        version(e.version)
    );
    json_str(out, header(&e.host));
    let _ = write!(
        out,
        ",\"DownstreamStatus\":{},\"DownstreamContentSize\":",
        e.status
    );
    match e.size {
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None => out.push_str("null"),
    }
    let _ = write!(
        out,
        ",\"Duration\":{},\"DurationMs\":{},\"EntryPointName\":",
        e.duration.as_nanos(),
        e.duration.as_secs_f64() * 1000.0
    );
    json_str(out, Some(&e.entrypoint));
    out.push_str(",\"RouterName\":");
    json_str(out, e.router.as_deref());
    out.push_str(",\"ServiceName\":");
    json_str(out, e.service.as_deref());
    out.push_str(",\"Replica\":");
    json_str(out, e.replica.as_ref().map(|b| b.key()));
    out.push_str(",\"ServiceURL\":");
    match &e.replica {
        Some(b) => {
            out.push('"');
            service_url(out, b.key(), b.addr());
            out.push('"');
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"request_User-Agent\":");
    json_str(out, header(&e.user_agent));
    out.push_str(",\"request_Referer\":");
    json_str(out, header(&e.referer));
    out.push_str("}\n");
}

/// A header's value as text, if it is.
fn header(v: &Option<http::HeaderValue>) -> Option<&str> {
    v.as_ref().and_then(|v| v.to_str().ok())
}

/// A JSON string (or `null`), escaped.
fn json_str(out: &mut String, s: Option<&str>) {
    let Some(s) = s else {
        out.push_str("null");
        return;
    };
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Common Log Format, extended as Traefik does: `… "referer" "agent" SEQ "router"
/// "service" "replica-url" DURATIONms`.
pub(crate) fn common_line(out: &mut String, e: &Entry, seq: u64) {
    let quoted = |out: &mut String, v: &Option<http::HeaderValue>| match v
        .as_ref()
        .and_then(|v| v.to_str().ok())
    {
        Some(s) => {
            for c in s.chars() {
                if c == '"' {
                    out.push('\\');
                }
                out.push(c);
            }
        }
        None => out.push('-'),
    };
    let _ = write!(out, "{} - - [", e.client);
    clf_time(out, e.start);
    let _ = write!(out, "] \"{} ", e.method);
    for c in path(&e.uri).chars() {
        match c {
            '"' => out.push_str("%22"),
            c => out.push(c),
        }
    }
    let _ = write!(out, " {}\" {} ", version(e.version), e.status);
    match e.size {
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None => out.push('-'),
    }
    out.push_str(" \"");
    quoted(out, &e.referer);
    out.push_str("\" \"");
    quoted(out, &e.user_agent);
    let _ = write!(
        out,
        "\" {seq} \"{}\" \"{}\" \"",
        e.router.as_deref().unwrap_or("-"),
        e.service.as_deref().unwrap_or("-"),
    );
    match &e.replica {
        Some(b) => service_url(out, b.key(), b.addr()),
        None => out.push('-'),
    }
    let _ = writeln!(out, "\" {}ms", e.duration.as_millis());
}

/// A replica's URL: a static server's key is its URL; a local replica's is `http://ADDR`.
fn service_url(out: &mut String, key: &str, addr: &str) {
    if key.contains("://") {
        out.push_str(key);
    } else {
        out.push_str("http://");
        out.push_str(addr);
    }
}

/// (year, month, day, hour, minute, second, millisecond) in UTC.
fn civil(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = if month <= 2 { y + 1 } else { y };
    (
        year,
        month,
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis(),
    )
}

fn rfc3339(out: &mut String, t: SystemTime) {
    let (y, mo, d, h, mi, s, ms) = civil(t);
    let _ = write!(out, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z");
}

fn clf_time(out: &mut String, t: SystemTime) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, _) = civil(t);
    let _ = write!(
        out,
        "{d:02}/{}/{y:04}:{h:02}:{mi:02}:{s:02} +0000",
        MONTHS[mo as usize - 1]
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            start: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            client: "127.0.0.1".parse().unwrap(),
            method: Method::GET,
            uri: Uri::from_static("/api/x?y=1"),
            host: Some(http::HeaderValue::from_static("example.com")),
            version: Version::HTTP_11,
            status: 200,
            duration: Duration::from_micros(12_500),
            entrypoint: "web".into(),
            router: Some("api".into()),
            service: Some("users".into()),
            replica: Some(Backend::new("users/1", "127.0.0.1:20001", 1)),
            user_agent: Some(http::HeaderValue::from_static("curl/8")),
            referer: None,
            size: Some(42),
        }
    }

    #[test]
    fn formats_times() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let text = |f: fn(&mut String, SystemTime), t| {
            let mut out = String::new();
            f(&mut out, t);
            out
        };
        assert_eq!(text(rfc3339, t), "2023-11-14T22:13:20.123Z");
        assert_eq!(text(clf_time, t), "14/Nov/2023:22:13:20 +0000");
        assert_eq!(text(rfc3339, UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn common_log_format_line() {
        let mut out = String::new();
        common_line(&mut out, &entry(), 7);
        assert_eq!(
            out,
            "127.0.0.1 - - [14/Nov/2023:22:13:20 +0000] \"GET /api/x?y=1 HTTP/1.1\" 200 42 \"-\" \"curl/8\" 7 \"api\" \"users\" \"http://127.0.0.1:20001\" 12ms\n"
        );
    }

    #[test]
    fn json_line_has_traefiks_fields() {
        let mut out = String::new();
        json_line(&mut out, &entry());
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(v["DownstreamStatus"], 200);
        assert_eq!(v["RequestPath"], "/api/x?y=1");
        assert_eq!(v["RouterName"], "api");
        assert_eq!(v["ServiceName"], "users");
        assert_eq!(v["Replica"], "users/1");
        assert_eq!(v["ServiceURL"], "http://127.0.0.1:20001");
        assert_eq!(v["Duration"], 12_500_000);
        assert_eq!(v["StartUTC"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["RequestHost"], "example.com");
        assert_eq!(v["request_Referer"], serde_json::Value::Null);
        assert_eq!(v["DownstreamContentSize"], 42);
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut e = entry();
        e.user_agent = Some(http::HeaderValue::from_static("a \"quoted\" \\ agent\t"));
        let mut out = String::new();
        json_line(&mut out, &e);
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(v["request_User-Agent"], "a \"quoted\" \\ agent\t");
    }
}
