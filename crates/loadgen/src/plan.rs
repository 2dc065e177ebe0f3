//! A validated run: [`LoadArgs`] (raw strings) → [`Plan`]. Every error names its flag.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, Scheme, Uri};
use serde::Serialize;
use shoal_config::parse_duration;

use crate::args::LoadArgs;
use crate::scenario::{self, Scenario};
use crate::schedule::Schedule;

/// How long a run lasts when neither `-n`, `-d` nor `--stages` bounds it.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// A flag whose value is unusable. Exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {message}")]
pub struct PlanError {
    /// The flag, as typed (`--rate`, `URL`).
    pub flag: &'static str,
    /// What is wrong with it.
    pub message: String,
}

fn bad(flag: &'static str, message: impl Into<String>) -> PlanError {
    PlanError {
        flag,
        message: message.into(),
    }
}

/// Which HTTP version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpVersion {
    /// HTTP/1.1 for http://; for https://, whatever ALPN picks.
    Auto,
    /// HTTP/1.1 with keep-alive.
    #[serde(rename = "1.1")]
    Http1,
    /// HTTP/2: prior knowledge (h2c) for http://, ALPN h2 for https://.
    #[serde(rename = "2")]
    Http2,
}

/// One host:port the generator connects to.
#[derive(Debug, Clone)]
pub struct Origin {
    /// https://?
    pub tls: bool,
    /// Host name, for DNS, SNI and the Host header.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `host:port` as in the URL.
    pub authority: Authority,
    /// Resolved when the run starts.
    pub addr: Option<SocketAddr>,
}

/// One URL to send requests to.
#[derive(Debug, Clone)]
pub struct Target {
    /// As given, without the weight (and with `http://` added when it had no scheme).
    pub url: String,
    /// Relative share of the requests.
    pub weight: u32,
    /// Index into [`Plan::origins`].
    pub origin: usize,
    /// The full URI (HTTP/2 sends it as :scheme/:authority/:path).
    pub uri: Uri,
    /// Only path and query (the HTTP/1.1 request line).
    pub path: Uri,
}

/// The load model.
#[derive(Debug, Clone)]
pub enum Model {
    /// Each connection (user) sends its next request when the previous one is answered.
    Closed {
        /// Users started per second (`None`: all at once).
        spawn_rate: Option<f64>,
    },
    /// Requests are sent on a schedule, whether or not earlier ones were answered.
    Open(Schedule),
}

/// A validated run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// URLs with weights.
    pub targets: Vec<Target>,
    /// Distinct host:port pairs of the targets.
    pub origins: Vec<Origin>,
    /// Closed or open.
    pub model: Model,
    /// Closed: concurrent users; open: most requests in flight.
    pub connections: u32,
    /// Generator threads.
    pub threads: u32,
    /// Stop after this many requests.
    pub requests: Option<u64>,
    /// Stop after this long (always set unless `-n` alone bounds the run).
    pub duration: Option<Duration>,
    /// Method.
    pub method: Method,
    /// Extra request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
    /// Per-request timeout.
    pub timeout: Duration,
    /// HTTP version.
    pub http: HttpVersion,
    /// CA certificate file for https.
    pub cacert: Option<PathBuf>,
    /// Skip certificate verification.
    pub insecure: bool,
    /// Response header naming the replica.
    pub replica_header: HeaderName,
    /// Even-share tolerance, as a fraction (0.1 = 10 %).
    pub balance_tolerance: f64,
    /// shoal's admin API, for replica counts over time.
    pub admin: Option<AdminTarget>,
    /// `--scenario`: user flows instead of `targets` (which is then empty). `-n` then counts
    /// flows, `--rate` starts flows, and each of `-c` users loops its flow.
    pub scenario: Option<Arc<Scenario>>,
}

/// shoal's admin API.
#[derive(Debug, Clone)]
pub struct AdminTarget {
    /// `GET` this for the services.
    pub services_uri: Uri,
    /// Bearer token.
    pub token: Option<String>,
}

impl Plan {
    /// Validate raw arguments.
    pub fn from_args(args: &LoadArgs) -> Result<Plan, PlanError> {
        let mut targets = Vec::new();
        let mut origins: Vec<Origin> = Vec::new();
        let scenario = match &args.scenario {
            Some(path) => Some(Arc::new(load_scenario(args, path, &mut origins)?)),
            None if args.urls.is_empty() => return Err(bad("URL", "give at least one URL")),
            None => None,
        };
        for raw in args.urls.iter().filter(|_| scenario.is_none()) {
            let (given, weight) = split_weight(raw)?;
            let url = with_scheme(given)?;
            let url = url.as_str();
            let uri: Uri = url
                .parse()
                .map_err(|e| bad("URL", format!("`{given}` is not a URL: {e}")))?;
            let tls = match uri.scheme() {
                Some(s) if *s == Scheme::HTTP => false,
                Some(s) if *s == Scheme::HTTPS => true,
                _ => return Err(bad("URL", format!("`{url}`: use http:// or https://"))),
            };
            let origin = add_origin(&mut origins, &uri, tls, url, "URL")?;
            let pq = uri.path_and_query().map_or("/", |p| p.as_str());
            let path: Uri = pq
                .parse()
                .map_err(|e| bad("URL", format!("`{url}`: {e}")))?;
            let uri = Uri::builder()
                .scheme(if tls { "https" } else { "http" })
                .authority(origins[origin].authority.clone())
                .path_and_query(pq)
                .build()
                .map_err(|e| bad("URL", format!("`{url}`: {e}")))?;
            targets.push(Target {
                url: url.to_owned(),
                weight,
                origin,
                uri,
                path,
            });
        }

        if args.connections == 0 {
            return Err(bad("--connections", "must be at least 1"));
        }
        let duration = args
            .duration
            .as_deref()
            .map(|d| parse_duration(d).map_err(|e| bad("--duration", e.to_string())))
            .transpose()?;
        if duration == Some(Duration::ZERO) {
            return Err(bad("--duration", "must be longer than 0"));
        }
        if args.requests == Some(0) {
            return Err(bad("--requests", "must be at least 1"));
        }
        if let Some(r) = args.rate
            && !(r.is_finite() && r > 0.0)
        {
            return Err(bad(
                "--rate",
                format!("must be a number of requests/s above 0 (got {r})"),
            ));
        }
        if let Some(s) = args.spawn_rate {
            if !(s.is_finite() && s > 0.0) {
                return Err(bad("--spawn-rate", format!("must be above 0 (got {s})")));
            }
            if args.rate.is_some() || args.stages.is_some() {
                return Err(bad(
                    "--spawn-rate",
                    "ramps users of the closed model; with --rate, use --stages to ramp the rate",
                ));
            }
        }

        let (model, duration) = match (&args.stages, args.rate) {
            (Some(text), initial) => {
                let stages = parse_stages(text)?;
                let schedule = Schedule::ramps(initial.unwrap_or(0.0), &stages);
                if schedule.total() == 0 {
                    return Err(bad("--stages", "no requests: every stage's rate is 0"));
                }
                let d = schedule.duration();
                (
                    Model::Open(schedule),
                    Some(duration.map_or(d, |x| x.min(d))),
                )
            }
            (None, Some(rate)) => {
                let d = match (duration, args.requests) {
                    (Some(d), _) => d,
                    // -n at a rate: long enough to send them all.
                    (None, Some(n)) => Duration::from_secs_f64(n as f64 / rate),
                    (None, None) => DEFAULT_DURATION,
                };
                (Model::Open(Schedule::constant(rate, d)), Some(d))
            }
            (None, None) => {
                let d = match (duration, args.requests) {
                    (None, None) => Some(DEFAULT_DURATION),
                    (d, _) => d,
                };
                (
                    Model::Closed {
                        spawn_rate: args.spawn_rate,
                    },
                    d,
                )
            }
        };

        let threads = match args.threads {
            Some(0) => return Err(bad("--threads", "must be at least 1")),
            Some(t) => t,
            None => std::thread::available_parallelism()
                .map_or(1, |n| n.get() as u32)
                .min(args.connections),
        };

        let method = Method::from_bytes(args.method.as_bytes()).map_err(|_| {
            bad(
                "--method",
                format!("`{}` is not an HTTP method", args.method),
            )
        })?;
        let mut headers = HeaderMap::new();
        for h in &args.headers {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| bad("--header", format!("`{h}`: write it as `Name: value`")))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                bad(
                    "--header",
                    format!("`{h}`: `{}` is not a header name", name.trim()),
                )
            })?;
            let value = HeaderValue::from_str(value.trim()).map_err(|_| {
                bad(
                    "--header",
                    format!("`{h}`: the value has characters a header cannot carry"),
                )
            })?;
            headers.append(name, value);
        }
        let body = match (&args.body, &args.body_file) {
            (Some(s), _) => Bytes::from(s.clone()),
            (None, Some(f)) => Bytes::from(
                std::fs::read(f)
                    .map_err(|e| bad("--body-file", format!("cannot read {}: {e}", f.display())))?,
            ),
            (None, None) => Bytes::new(),
        };
        let timeout = parse_duration(&args.timeout).map_err(|e| bad("--timeout", e.to_string()))?;
        if timeout.is_zero() {
            return Err(bad("--timeout", "must be longer than 0"));
        }
        let http = match args.http.as_str() {
            "auto" => HttpVersion::Auto,
            "1.1" | "1" | "http1" | "h1" => HttpVersion::Http1,
            "2" | "http2" | "h2" | "h2c" => HttpVersion::Http2,
            other => return Err(bad("--http", format!("`{other}`: use auto, 1.1 or 2"))),
        };
        if let Some(ca) = &args.cacert
            && !ca.is_file()
        {
            return Err(bad(
                "--cacert",
                format!("{} is not a readable file", ca.display()),
            ));
        }
        let replica_header =
            HeaderName::from_bytes(args.replica_header.as_bytes()).map_err(|_| {
                bad(
                    "--replica-header",
                    format!("`{}` is not a header name", args.replica_header),
                )
            })?;
        if !(args.balance_tolerance.is_finite() && args.balance_tolerance >= 0.0) {
            return Err(bad(
                "--balance-tolerance",
                "must be a percentage, 0 or more",
            ));
        }
        let admin = args
            .admin
            .as_deref()
            .map(|a| parse_admin(a, args.admin_token.clone()))
            .transpose()?;

        Ok(Plan {
            targets,
            origins,
            model,
            connections: args.connections,
            threads,
            requests: args.requests,
            duration,
            method,
            headers,
            body,
            timeout,
            http,
            cacert: args.cacert.clone(),
            insecure: args.insecure,
            replica_header,
            balance_tolerance: args.balance_tolerance / 100.0,
            admin,
            scenario,
        })
    }

    /// Open model?
    pub fn is_open(&self) -> bool {
        matches!(self.model, Model::Open(_))
    }
}

/// The origin of `uri` in `origins`, added if new.
fn add_origin(
    origins: &mut Vec<Origin>,
    uri: &Uri,
    tls: bool,
    url: &str,
    flag: &'static str,
) -> Result<usize, PlanError> {
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| bad(flag, format!("`{url}` has no host")))?;
    if authority.host().is_empty() {
        return Err(bad(flag, format!("`{url}` has no host")));
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok(
        match origins
            .iter()
            .position(|o| o.tls == tls && o.host == host && o.port == port)
        {
            Some(i) => i,
            None => {
                origins.push(Origin {
                    tls,
                    host,
                    port,
                    authority,
                    addr: None,
                });
                origins.len() - 1
            }
        },
    )
}

/// `--scenario FILE`: the file, validated, with each step's origin in `origins`. A URL on
/// the command line is the base of the file's relative URLs.
fn load_scenario(
    args: &LoadArgs,
    path: &std::path::Path,
    origins: &mut Vec<Origin>,
) -> Result<Scenario, PlanError> {
    if args.urls.len() > 1 {
        return Err(bad(
            "URL",
            "with --scenario, give at most one URL: the base of the file's relative urls",
        ));
    }
    for (given, flag) in [
        (args.method != "GET", "--method"),
        (args.body.is_some(), "--body"),
        (args.body_file.is_some(), "--body-file"),
    ] {
        if given {
            return Err(bad(
                flag,
                "with --scenario, each step sets its own in the file",
            ));
        }
    }
    let base = args
        .urls
        .first()
        .map(|u| with_scheme(split_weight(u)?.0))
        .transpose()?;
    let mut s =
        scenario::load(path, base.as_deref()).map_err(|e| bad("--scenario", e.to_string()))?;
    for step in &mut s.steps {
        let uri: Uri = step
            .origin_url
            .parse()
            .map_err(|e| bad("--scenario", format!("`{}` is not a URL: {e}", step.url)))?;
        let tls = uri.scheme() == Some(&Scheme::HTTPS);
        step.origin = add_origin(origins, &uri, tls, &step.url, "--scenario")?;
    }
    Ok(s)
}

/// `URL@3` → (`URL`, 3); a URL without a numeric `@suffix` has weight 1.
fn split_weight(raw: &str) -> Result<(&str, u32), PlanError> {
    if let Some((url, w)) = raw.rsplit_once('@')
        && !w.is_empty()
        && w.bytes().all(|b| b.is_ascii_digit())
    {
        let weight: u32 = w
            .parse()
            .map_err(|_| bad("URL", format!("`{raw}`: weight {w} is too large")))?;
        if weight == 0 {
            return Err(bad("URL", format!("`{raw}`: a weight must be at least 1")));
        }
        return Ok((url, weight));
    }
    Ok((raw, 1))
}

/// A URL with a scheme as is; without one, `http://` in front, as curl does
/// (`localhost:8000/api`, `127.0.0.1:8000`, `[::1]:8000`, `example.com/x`). What is left
/// without a scheme must start with something that looks like a host — `localhost`, an IP
/// address, a name with a dot, or any name with a port — so that a path (`api/users`) or a
/// typo is an error naming the argument, not a run against a host called `api`.
fn with_scheme(url: &str) -> Result<String, PlanError> {
    let has_scheme = url.split_once("://").is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if has_scheme {
        return Ok(url.to_owned());
    }
    let authority = url.split(['/', '?', '#']).next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        // `[::1]` alone has colons but no port.
        Some((h, p)) if !authority.ends_with(']') => (h, Some(p)),
        _ => (authority, None),
    };
    let port_ok = port.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let looks_like_host = !host.is_empty()
        && !host.contains('@')
        && (port_ok
            || host.eq_ignore_ascii_case("localhost")
            || host.starts_with('[')
            || host.contains('.'));
    if !looks_like_host || (port.is_some() && !port_ok) {
        return Err(bad(
            "URL",
            format!("`{url}` is not a URL: give http://HOST[:PORT]/PATH (or HOST:PORT/PATH)"),
        ));
    }
    Ok(format!("http://{url}"))
}

/// `10s:100,30s:500,10s:0`.
fn parse_stages(text: &str) -> Result<Vec<(Duration, f64)>, PlanError> {
    let mut stages = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (d, r) = part.split_once(':').ok_or_else(|| {
            bad(
                "--stages",
                format!("`{part}`: write each stage as DURATION:RATE, e.g. 10s:100"),
            )
        })?;
        let d = parse_duration(d).map_err(|e| bad("--stages", format!("`{part}`: {e}")))?;
        let r: f64 = r.trim().parse().map_err(|_| {
            bad(
                "--stages",
                format!("`{part}`: `{r}` is not a rate in requests/s"),
            )
        })?;
        if !(r.is_finite() && r >= 0.0) {
            return Err(bad(
                "--stages",
                format!("`{part}`: a rate must be 0 or more"),
            ));
        }
        stages.push((d, r));
    }
    Ok(stages)
}

/// `http://127.0.0.1:8080` or `127.0.0.1:8080`.
fn parse_admin(text: &str, token: Option<String>) -> Result<AdminTarget, PlanError> {
    let base = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let uri: Uri = base
        .parse()
        .map_err(|e| bad("--admin", format!("`{text}` is not a URL: {e}")))?;
    if uri.scheme() != Some(&Scheme::HTTP) || uri.authority().is_none() {
        return Err(bad("--admin", format!("`{text}`: give http://HOST:PORT")));
    }
    let services_uri = format!(
        "http://{}{}/api/v1/services",
        uri.authority().map_or("", |a| a.as_str()),
        uri.path().trim_end_matches('/')
    )
    .parse()
    .map_err(|e| bad("--admin", format!("`{text}`: {e}")))?;
    Ok(AdminTarget {
        services_uri,
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadArgs,
    }

    fn plan(line: &str) -> Result<Plan, PlanError> {
        let cli = Cli::try_parse_from(std::iter::once("load").chain(line.split_whitespace()))
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        Plan::from_args(&cli.args)
    }

    fn err(line: &str) -> String {
        plan(line).expect_err(line).to_string()
    }

    #[test]
    fn a_bare_url_is_a_ten_second_closed_run() {
        let p = plan("http://127.0.0.1:9/").unwrap();
        assert!(matches!(p.model, Model::Closed { spawn_rate: None }));
        assert_eq!(p.duration, Some(DEFAULT_DURATION));
        assert_eq!(p.connections, 50);
        assert_eq!(p.targets[0].path, "/");
        assert_eq!(p.origins[0].port, 9);
    }

    #[test]
    fn weights_and_shared_origins() {
        let p = plan("http://a:1/x@3 http://a:1/y http://b/z?q=1@2").unwrap();
        let w: Vec<u32> = p.targets.iter().map(|t| t.weight).collect();
        assert_eq!(w, [3, 1, 2]);
        assert_eq!(p.origins.len(), 2);
        assert_eq!(p.targets[2].path, "/z?q=1");
        assert_eq!(p.origins[1].port, 80);
        assert_eq!(p.targets[2].uri, "http://b/z?q=1");
    }

    #[test]
    fn a_url_without_a_scheme_is_http_as_in_curl() {
        for (given, uri, path) in [
            (
                "localhost:8000/api?x=1",
                "http://localhost:8000/api?x=1",
                "/api?x=1",
            ),
            ("127.0.0.1:8000", "http://127.0.0.1:8000/", "/"),
            ("[::1]:8000/x", "http://[::1]:8000/x", "/x"),
            ("example.com/a", "http://example.com/a", "/a"),
            ("LOCALHOST", "http://LOCALHOST/", "/"),
            (
                "localhost:8000/go?to=http://x/",
                "http://localhost:8000/go?to=http://x/",
                "/go?to=http://x/",
            ),
        ] {
            let p = plan(given).unwrap_or_else(|e| panic!("{given}: {e}"));
            let t = &p.targets[0];
            assert_eq!(
                (t.uri.to_string(), t.path.to_string()),
                (uri.into(), path.into())
            );
            assert!(!p.origins[0].tls);
            assert_eq!(
                t.url,
                format!("http://{given}"),
                "the report shows what was hit"
            );
        }
        let p = plan("localhost:8000/a@3 localhost:8000/b").unwrap();
        assert_eq!(p.origins.len(), 1);
        assert_eq!((p.targets[0].weight, p.origins[0].port), (3, 8000));
    }

    #[test]
    fn garbage_is_still_an_error_naming_the_url() {
        for garbage in [
            "api/users",
            "localhost:http/x",
            "http//h/x",
            "1http://h/",
            "://h",
            "user@example.com",
            "exa^mple.com",
        ] {
            let e = err(garbage);
            assert!(
                e.starts_with(&format!("URL: `{garbage}`")),
                "{garbage}: {e}"
            );
        }
        assert_eq!(err("ftp://h/"), "URL: `ftp://h/`: use http:// or https://");
    }

    #[test]
    fn requests_alone_bound_a_closed_run() {
        let p = plan("-n 100 http://h/").unwrap();
        assert_eq!((p.requests, p.duration), (Some(100), None));
    }

    #[test]
    fn open_models() {
        let p = plan("--rate 200 -d 3s http://h/").unwrap();
        let Model::Open(s) = &p.model else { panic!() };
        assert_eq!(s.total(), 600);
        let p = plan("--rate 50 -n 100 http://h/").unwrap();
        assert_eq!(p.duration, Some(Duration::from_secs(2)));
        let p = plan("--stages 10s:100,30s:500,10s:0 http://h/").unwrap();
        assert_eq!(p.duration, Some(Duration::from_secs(50)));
        let p = plan("--users 20 --spawn-rate 5 http://h/").unwrap();
        assert!(matches!(
            p.model,
            Model::Closed {
                spawn_rate: Some(5.0)
            }
        ));
    }

    #[test]
    fn errors_name_the_flag() {
        assert!(err("--rate 0 http://h/").starts_with("--rate: "));
        assert!(err("--rate=-3 http://h/").starts_with("--rate: "));
        assert!(err("ftp://h/").starts_with("URL: "));
        assert!(err("not-a-url").starts_with("URL: `not-a-url` is not a URL"));
        assert!(err("http://h/@0").contains("weight"));
        assert!(err("--stages 10s http://h/").starts_with("--stages: "));
        assert!(err("--stages 10x:5 http://h/").starts_with("--stages: "));
        assert!(err("--stages 1s:0 http://h/").contains("every stage's rate is 0"));
        assert!(err("-H nocolon http://h/").starts_with("--header: "));
        assert!(err("-d soon http://h/").starts_with("--duration: "));
        assert!(err("-c 0 http://h/").starts_with("--connections: "));
        assert!(err("--http 3 http://h/").starts_with("--http: "));
        assert!(err("--timeout 0s http://h/").starts_with("--timeout: "));
        assert!(err("--admin ftp://x http://h/").starts_with("--admin: "));
        assert!(err("--rate 5 --spawn-rate 2 http://h/").starts_with("--spawn-rate: "));
    }

    #[test]
    fn headers_method_body() {
        let p = plan("-m POST -H x-a:1 -H X-B:two --body hi http://h/").unwrap();
        assert_eq!(p.method, Method::POST);
        assert_eq!(p.headers["x-a"], "1");
        assert_eq!(p.headers["x-b"], "two");
        assert_eq!(p.body, "hi");
    }

    #[test]
    fn admin_url() {
        let p = plan("--admin 127.0.0.1:8080 http://h/").unwrap();
        assert_eq!(
            p.admin.unwrap().services_uri,
            "http://127.0.0.1:8080/api/v1/services"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5 parsecs").is_err());
    }

    /// The stack file's syntax on every flag: a bare number is refused with the flag named
    /// and the unit to add, not read as seconds.
    #[test]
    fn bare_numbers_are_refused_with_the_flag() {
        assert_eq!(
            err("-d 30 http://h/"),
            "--duration: `30` has no unit; write e.g. `30s` or `30ms`"
        );
        assert_eq!(
            err("--timeout 1.5 http://h/"),
            "--timeout: `1.5` has no unit; write e.g. `1.5s` or `1.5ms`"
        );
        assert!(
            err("--stages 10:100 http://h/").starts_with("--stages: `10:100`: `10` has no unit")
        );
        assert!(err("-d 500us http://h/").contains("unknown unit `us`"));
        let p = plan("-d 1.5s --timeout 250ms http://h/").unwrap();
        assert_eq!(p.duration, Some(Duration::from_millis(1500)));
        assert_eq!(p.timeout, Duration::from_millis(250));
    }
}
