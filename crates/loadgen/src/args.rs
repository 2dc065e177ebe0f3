//! The raw command-line arguments of `shoal load`, as typed. Each flag is defined once here;
//! it drives `shoal load --help`, and [`crate::Plan::from_args`] validates it, naming the
//! flag in every error.
use std::path::PathBuf;

use clap::Args;

/// `shoal load [OPTIONS] URL[@WEIGHT]...`
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Load")]
pub struct LoadArgs {
    /// Target URLs (http:// or https://; without a scheme, http:// as in curl). Several URLs
    /// share the load, interleaved; `URL@3` gives one three times the requests of a `URL@1`
    /// (default weight 1). With --scenario, at most one: the base of the file's relative
    /// URLs.
    #[arg(value_name = "URL[@WEIGHT]", required_unless_present = "scenario")]
    pub urls: Vec<String>,

    /// User flows from a YAML file: weighted user types, each a list of steps (method, URL,
    /// headers, body, expected status, captures, think time), with latency per step. -c
    /// users loop their flow; --rate starts that many flows per second; -n counts flows.
    /// See docs/load.md.
    #[arg(long, value_name = "FILE.yaml")]
    pub scenario: Option<PathBuf>,

    /// Closed model: this many connections (users), each sending its next request when
    /// the previous one is answered. Open model (--rate/--stages): the most requests in
    /// flight at once.
    #[arg(
        short = 'c',
        long = "connections",
        visible_alias = "users",
        default_value_t = 50,
        value_name = "N"
    )]
    pub connections: u32,

    /// Closed model: start the connections (users) gradually, this many per second
    /// (Locust's spawn rate) [default: all at once].
    #[arg(long, value_name = "USERS/S")]
    pub spawn_rate: Option<f64>,

    /// Stop after this many requests.
    #[arg(short = 'n', long = "requests", value_name = "N")]
    pub requests: Option<u64>,

    /// Stop after this long, e.g. 30s, 2m [default: 10s, unless -n or --stages bound the run].
    #[arg(short = 'd', long = "duration", value_name = "DURATION")]
    pub duration: Option<String>,

    /// Open model: send this many requests per second, on a schedule that does not wait for
    /// responses; latency is measured from each request's intended send time.
    #[arg(short = 'r', long = "rate", value_name = "REQ/S")]
    pub rate: Option<f64>,

    /// Open model with a ramp: comma-separated DURATION:RATE stages; each moves the rate
    /// linearly to RATE over DURATION, starting from --rate (or 0), e.g. 10s:100,30s:500,10s:0.
    #[arg(long, value_name = "STAGES")]
    pub stages: Option<String>,

    /// Generator threads, each with its own event loop and share of the connections
    /// [default: CPU count, at most the connections].
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Option<u32>,

    /// HTTP method.
    #[arg(
        short = 'm',
        long = "method",
        default_value = "GET",
        value_name = "METHOD"
    )]
    pub method: String,

    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Request body.
    #[arg(long, value_name = "STRING", conflicts_with = "body_file")]
    pub body: Option<String>,

    /// Request body, read from a file.
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,

    /// Give up on a request (connect, send, whole response) after this long.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub timeout: String,

    /// HTTP version: `auto` (HTTP/1.1 for http://, ALPN for https://), `1.1`, or `2`
    /// (h2c prior knowledge for http://, ALPN h2 for https://).
    #[arg(long = "http", default_value = "auto", value_name = "auto|1.1|2")]
    pub http: String,

    /// Trust this CA certificate (PEM) for https:// targets instead of the system roots.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Do not verify https:// certificates at all.
    #[arg(long)]
    pub insecure: bool,

    /// The response header that names the replica that served a request.
    #[arg(long, default_value = "x-shoal-replica", value_name = "NAME")]
    pub replica_header: String,

    /// Call the spread unbalanced when a replica's share is further than this from an even
    /// share, in percent of the even share.
    #[arg(long, default_value_t = 10.0, value_name = "PERCENT")]
    pub balance_tolerance: f64,

    /// shoal's admin API (e.g. http://127.0.0.1:8080): record each service's replica count
    /// every second during the run, to show scaling.
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,

    /// Bearer token for --admin.
    #[arg(
        long,
        env = "SHOAL_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        requires = "admin"
    )]
    pub admin_token: Option<String>,

    /// Print the report as JSON on stdout instead of the summary table.
    #[arg(long)]
    pub json: bool,

    /// Also write a self-contained HTML report (charts over time, spread, scaling) here.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,

    /// No live progress bar (it is shown only when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}
