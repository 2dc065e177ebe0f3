//! The edge of the validated stack: TLS at the entrypoints and to the replicas, and the
//! middlewares beyond path and header edits (Traefik's names and semantics where Traefik has
//! them). Plain data; the gateway (`shoal-proxy`) acts on it.
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Method};

/// TLS termination on an entrypoint (`entrypoints.NAME.tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrypointTls {
    /// Certificates, chosen by SNI among the names each certificate is valid for; the first
    /// is the default (no SNI, or a name none matches). At least one.
    pub certificates: Vec<CertificateFiles>,
    /// Lowest protocol version accepted. Default TLS 1.2 (TLS 1.0 and 1.1 never are).
    pub min_version: TlsVersion,
}

/// A certificate chain and its private key, both PEM files (paths resolved against the stack
/// file's folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246).
    #[default]
    Tls12,
    /// TLS 1.3 (RFC 8446).
    Tls13,
}

/// An entrypoint that answers every request with a redirect to HTTPS on another entrypoint
/// (`entrypoints.NAME.redirect_to: OTHER`): 308, same host, path and query, OTHER's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectHttps {
    /// The TLS entrypoint redirected to.
    pub entrypoint: String,
    /// Its port (left out of the `Location` when 443).
    pub port: u16,
}

/// TLS to a service's replicas (`https://` servers, or `tls:` on the service).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamTls {
    /// CA bundle (PEM) that replica certificates must chain to; None = the system's roots.
    pub ca: Option<PathBuf>,
    /// Name to verify the replica's certificate for (and send as SNI); None = the host of
    /// the server's URL (`localhost` for local replicas).
    pub server_name: Option<String>,
    /// Accept any certificate (`insecure_skip_verify: true`): the connection is encrypted
    /// but not authenticated. Logged as a warning at start and on reload.
    pub insecure_skip_verify: bool,
}

/// Which requests share a limit (Traefik's `sourceCriterion`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKey {
    /// The client's IP: the TCP peer when `depth` is 0, else the `depth`-th address from the
    /// right of `X-Forwarded-For` (the one the nearest trusted proxy saw), falling back to
    /// the peer when the header has fewer.
    Ip {
        /// Trusted proxies in front of shoal.
        depth: usize,
    },
    /// A request header's value (requests without it share one key).
    Header(HeaderName),
    /// One key for the whole route.
    Route,
}

impl Default for ClientKey {
    fn default() -> Self {
        ClientKey::Ip { depth: 0 }
    }
}

/// `rate_limit`: at most `average` requests per `period` per key, with bursts of `burst`
/// (GCRA). Beyond: 429 with `Retry-After` and `RateLimit-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per `period` on average. At least 1.
    pub average: u64,
    /// Default 1s.
    pub period: Duration,
    /// Requests allowed at once above the average. Default 1 (Traefik's).
    pub burst: u64,
    /// Default: the client IP.
    pub key: ClientKey,
    /// Most keys tracked at once; idle keys are forgotten first. Default 1 000 000.
    pub max_keys: usize,
}

/// `in_flight_req`: at most `amount` requests in flight per key; beyond: 429.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlightReq {
    /// At least 1.
    pub amount: u64,
    /// Default: the client IP.
    pub key: ClientKey,
}

/// `basic_auth`: RFC 7617 Basic authentication against bcrypt or argon2 hashes; 401 with
/// `WWW-Authenticate` otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// `(user, hash)` from `users:` and the lines of `users_file:` (htpasswd format), read
    /// at load and reload.
    pub users: Vec<(String, String)>,
    /// Realm in the challenge. Default `shoal`.
    pub realm: String,
    /// Remove `Authorization` before the request goes upstream. Default false.
    pub remove_header: bool,
    /// The authenticated user goes upstream in this header, if set.
    pub header_field: Option<HeaderName>,
}

/// `ip_allow_list`: only clients in these ranges; others get 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAllowList {
    /// Allowed ranges (a bare address is a /32 or /128).
    pub source_range: Vec<IpRange>,
    /// Trusted proxies, as in [`ClientKey::Ip`]. Default 0.
    pub depth: usize,
}

/// An address range: `network/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    /// The network address.
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

/// `redirect_scheme`: redirect to another scheme (and port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectScheme {
    /// `https` or `http`.
    pub scheme: String,
    /// Port in the `Location`; None = the scheme's default.
    pub port: Option<u16>,
    /// 308 if true, else 307 (Traefik: 301/302 for GET, 308/307 otherwise; shoal always
    /// keeps the method). Default true.
    pub permanent: bool,
}

/// A regular expression as written, compiled.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// As written.
    pub source: String,
    /// Compiled (`regex` crate syntax).
    pub regex: regex::Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

/// `redirect_regex`: redirect when the full request URL (`scheme://host/path?query`) matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectRegex {
    /// Matched against the full URL.
    pub regex: Pattern,
    /// The `Location`, with `$1`/`${name}` from the match.
    pub replacement: String,
    /// 308 if true, else 307. Default false.
    pub permanent: bool,
}

/// `replace_path_regex`: rewrite the path; the original goes upstream in
/// `X-Replaced-Path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacePathRegex {
    /// Matched against the path.
    pub regex: Pattern,
    /// The new path, with `$1`/`${name}` from the match.
    pub replacement: String,
}

/// A content coding `compress` can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `zstd` (RFC 8878).
    Zstd,
    /// `br` (RFC 7932).
    Brotli,
    /// `gzip` (RFC 1952).
    Gzip,
}

impl Encoding {
    /// The token in `Accept-Encoding` / `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Zstd => "zstd",
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }
}

/// `compress`: compress responses by the client's `Accept-Encoding`, streamed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compress {
    /// Offered, in the server's order of preference (used when the client's q-values tie).
    /// Default `[zstd, br, gzip]`.
    pub encodings: Vec<Encoding>,
    /// Responses whose `Content-Length` is below this are sent as they are. Default 1024.
    pub min_response_body_bytes: u64,
    /// Media types never compressed (besides responses that already have a
    /// `Content-Encoding`), lowercase, `type/subtype` or `type/*`. Default
    /// [`DEFAULT_EXCLUDED_CONTENT_TYPES`]: images, video, audio, archives and fonts that are
    /// already compressed.
    pub excluded_content_types: Vec<String>,
}

/// What `compress` never compresses unless `excluded_content_types` is given: media types
/// whose bodies are already compressed, so compressing them again costs CPU for nothing.
/// An entry is `type/subtype` or `type/*` (the whole type), compared with the response's
/// `Content-Type` without its parameters, ignoring case. Images are listed one by one, so
/// that `image/svg+xml` (text) and `image/bmp` (uncompressed) still are compressed;
/// `application/octet-stream` is excluded because unlabelled binaries are mostly downloads
/// of archives; `application/grpc` because gRPC compresses its own messages.
pub const DEFAULT_EXCLUDED_CONTENT_TYPES: [&str; 23] = [
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/avif",
    "image/heic",
    "image/heif",
    "image/jxl",
    "video/*",
    "audio/*",
    "font/woff",
    "font/woff2",
    "application/zip",
    "application/gzip",
    "application/x-gzip",
    "application/zstd",
    "application/x-bzip2",
    "application/x-xz",
    "application/x-7z-compressed",
    "application/x-rar-compressed",
    "application/vnd.rar",
    "application/octet-stream",
    "application/grpc",
];

impl Default for Compress {
    fn default() -> Self {
        Compress {
            encodings: vec![Encoding::Zstd, Encoding::Brotli, Encoding::Gzip],
            min_response_body_bytes: 1024,
            excluded_content_types: DEFAULT_EXCLUDED_CONTENT_TYPES
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
        }
    }
}

/// `buffering`: bound request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffering {
    /// Longest request body, in bytes; longer ones get 413 (at once when `Content-Length`
    /// says so, else when the limit is crossed), without the rest being read into memory.
    pub max_request_body_bytes: u64,
}

/// `cors`: CORS (the Fetch standard): preflights answered at the gateway, response headers
/// added for allowed origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Allowed origins (`*` = any; with `allow_credentials` the request's origin is echoed).
    pub allow_origins: Vec<String>,
    /// Allowed methods. Default GET, HEAD, POST.
    pub allow_methods: Vec<Method>,
    /// Allowed request headers (`*` = any).
    pub allow_headers: Vec<String>,
    /// Response headers the browser may read.
    pub expose_headers: Vec<String>,
    /// `Access-Control-Allow-Credentials: true`. Default false.
    pub allow_credentials: bool,
    /// How long a preflight answer may be cached; None = not said.
    pub max_age: Option<Duration>,
}
