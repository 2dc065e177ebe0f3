//! Raw → validated for the sections that configure shoal's own servers rather than a
//! service: `gateway:` (where it listens — `listen` or `entrypoints` —, its timeouts, limits,
//! workers and the replica header), `admin:`, `metrics:` and `access_log:`.
use std::path::Path;
use std::time::Duration;

use http::HeaderName;

use super::units::resolve;
use super::{Cx, DEFAULT_ADMIN_LISTEN, DEFAULT_GATEWAY_LISTEN, DEFAULT_REPLICA_HEADER};
use crate::error::did_you_mean;
use crate::model::*;
use crate::raw::*;

impl Cx<'_> {
    pub(super) fn gateway(&mut self, raw: RawGateway, base: &Path) -> Gateway {
        let mut entrypoints = Vec::new();
        match (&raw.listen, raw.entrypoints) {
            (Some(_), Some(_)) => self.misplaced(
                "gateway.listen",
                "set either `listen` (one entrypoint named `web`) or `entrypoints`, not both",
            ),
            (Some(listen), None) => {
                if let Some(addr) = self.socket_addr("gateway.listen", listen) {
                    entrypoints.push(Entrypoint {
                        name: "web".into(),
                        listen: addr,
                        tls: None,
                        redirect_to: None,
                    });
                }
            }
            (None, Some(eps)) => {
                if eps.is_empty() {
                    self.error("gateway.entrypoints", "needs at least one entrypoint");
                }
                // `redirect_to` names another entrypoint: resolved once all are read.
                let mut declared = Vec::new();
                let mut redirects = Vec::new();
                for (name, ep) in eps {
                    let path = format!("gateway.entrypoints.{name}");
                    let field = format!("{path}.listen");
                    let addr = self.socket_addr(&field, &ep.listen);
                    declared.push((name.clone(), ep.tls.is_some(), addr.map(|a| a.port())));
                    match (&ep.tls, ep.redirect_to) {
                        (Some(_), Some(_)) => self.misplaced(
                            &format!("{path}.redirect_to"),
                            "an entrypoint with `tls` serves HTTPS itself; `redirect_to` is for \
                             a plain HTTP entrypoint that sends clients to an HTTPS one",
                        ),
                        (None, Some(target)) => redirects.push((name.clone(), target)),
                        _ => {}
                    }
                    let tls = ep
                        .tls
                        .and_then(|t| self.entrypoint_tls(&format!("{path}.tls"), t, base));
                    if let Some(addr) = addr {
                        // Port 0 picks a free port for each: never a clash.
                        if addr.port() != 0
                            && entrypoints.iter().any(|e: &Entrypoint| e.listen == addr)
                        {
                            self.error(&field, format!("{addr} is used by two entrypoints"));
                        }
                        entrypoints.push(Entrypoint {
                            name,
                            listen: addr,
                            tls,
                            redirect_to: None,
                        });
                    }
                }
                self.redirects(&mut entrypoints, &declared, redirects);
            }
            (None, None) => {
                entrypoints.push(Entrypoint {
                    name: "web".into(),
                    listen: DEFAULT_GATEWAY_LISTEN,
                    tls: None,
                    redirect_to: None,
                });
            }
        }
        let workers = raw.workers.unwrap_or(0);
        if workers > 1024 {
            self.error("gateway.workers", "at most 1024 worker threads");
        }
        let d = Timeouts::default();
        let t = &raw.timeouts;
        let timeouts = Timeouts {
            connect: self.nonzero_duration(
                "gateway.timeouts.connect",
                t.connect.as_ref(),
                d.connect,
            ),
            response_header: self.nonzero_duration(
                "gateway.timeouts.response_header",
                t.response_header.as_ref(),
                d.response_header,
            ),
            upstream_idle: self.nonzero_duration(
                "gateway.timeouts.upstream_idle",
                t.upstream_idle.as_ref(),
                d.upstream_idle,
            ),
            client_idle: self.nonzero_duration(
                "gateway.timeouts.client_idle",
                t.client_idle.as_ref(),
                d.client_idle,
            ),
            header_read: self.nonzero_duration(
                "gateway.timeouts.header_read",
                t.header_read.as_ref(),
                d.header_read,
            ),
            body_idle: self.nonzero_duration(
                "gateway.timeouts.body_idle",
                t.body_idle.as_ref(),
                d.body_idle,
            ),
            grpc_max: self.nonzero_duration(
                "gateway.timeouts.grpc_max",
                t.grpc_max.as_ref(),
                d.grpc_max,
            ),
        };
        let limits = self.limits(raw.limits);
        let shutdown_grace = self.duration(
            "gateway.shutdown_grace",
            raw.shutdown_grace.as_ref(),
            Duration::from_secs(10),
        );
        let replica_header = match raw.replica_header {
            None | Some(BoolOrString::Bool(false)) => None,
            Some(BoolOrString::Bool(true)) => Some(HeaderName::from_static(DEFAULT_REPLICA_HEADER)),
            Some(BoolOrString::String(s)) => self.header_name("gateway.replica_header", &s),
        };
        Gateway {
            entrypoints,
            workers,
            timeouts,
            shutdown_grace,
            replica_header,
            max_idle_per_upstream: raw.max_idle_per_upstream.unwrap_or(1024),
            limits,
        }
    }

    pub(super) fn metrics(&mut self, raw: Option<BoolOr<RawMetrics>>) -> Metrics {
        let d = Metrics::default();
        let raw = match raw {
            None | Some(BoolOr::Bool(true)) => return d,
            Some(BoolOr::Bool(false)) => {
                return Metrics {
                    enabled: false,
                    ..d
                };
            }
            Some(BoolOr::Map(raw)) => raw,
        };
        let prefix = match raw.prefix.as_deref() {
            None | Some("shoal") => MetricsPrefix::Shoal,
            Some("traefik") => MetricsPrefix::Traefik,
            Some(other) => {
                self.error_hint(
                    "metrics.prefix",
                    format!("unknown prefix `{other}`, expected `shoal` or `traefik`"),
                    did_you_mean(other, ["shoal", "traefik"]),
                );
                MetricsPrefix::Shoal
            }
        };
        let buckets = match raw.buckets {
            None => d.buckets,
            Some(b) => {
                let ascending = b.windows(2).all(|w| w[0] < w[1]);
                if b.is_empty() || b.len() > MAX_BUCKETS {
                    self.error(
                        "metrics.buckets",
                        format!("list 1 to {MAX_BUCKETS} bucket bounds, in seconds"),
                    );
                    d.buckets
                } else if !ascending || b.iter().any(|v| !v.is_finite() || *v <= 0.0) {
                    self.error(
                        "metrics.buckets",
                        "bucket bounds are seconds above 0, in ascending order (e.g. `[0.1, 0.3, 1.2, 5]`)",
                    );
                    d.buckets
                } else {
                    b
                }
            }
        };
        Metrics {
            enabled: true,
            prefix,
            buckets,
        }
    }

    pub(super) fn access_log(
        &mut self,
        raw: Option<BoolOr<RawAccessLog>>,
        base: &Path,
    ) -> Option<AccessLog> {
        let raw = match raw {
            None | Some(BoolOr::Bool(false)) => return None,
            Some(BoolOr::Bool(true)) => RawAccessLog::default(),
            Some(BoolOr::Map(raw)) => raw,
        };
        let format = match raw.format.as_deref() {
            None | Some("json") => AccessLogFormat::Json,
            Some("common") => AccessLogFormat::Common,
            Some(other) => {
                self.error_hint(
                    "access_log.format",
                    format!("unknown format `{other}`, expected `json` or `common`"),
                    did_you_mean(other, ["json", "common"]),
                );
                AccessLogFormat::Json
            }
        };
        let path = match raw.path.as_deref() {
            None | Some("-") => None,
            Some("") => {
                self.error(
                    "access_log.path",
                    "give a file, or leave `path` out for standard output",
                );
                None
            }
            Some(p) => Some(resolve(base, p)),
        };
        let buffer = match raw.buffer {
            None => 16384,
            Some(0) => {
                self.error("access_log.buffer", "must be at least 1");
                16384
            }
            Some(n) if n > 1_000_000 => {
                self.error("access_log.buffer", "at most 1000000 lines");
                16384
            }
            Some(n) => n,
        };
        Some(AccessLog {
            format,
            path,
            buffer,
        })
    }

    pub(super) fn admin(&mut self, raw: RawAdmin) -> Admin {
        let listen = match &raw.listen {
            Some(text) => self
                .socket_addr("admin.listen", text)
                .unwrap_or(DEFAULT_ADMIN_LISTEN),
            None => DEFAULT_ADMIN_LISTEN,
        };
        if !listen.ip().is_loopback() && raw.token.as_deref().is_none_or(str::is_empty) {
            self.error_hint(
                "admin.listen",
                format!("{listen} is reachable beyond this machine, and the admin API can scale and stop services"),
                Some("set `admin.token` (clients send `Authorization: Bearer TOKEN`), or listen on 127.0.0.1".into()),
            );
        }
        Admin {
            listen,
            token: raw.token.filter(|t| !t.is_empty()),
        }
    }

    /// `gateway.limits`, each bounded so that a typo cannot turn a limit off.
    fn limits(&mut self, raw: RawLimits) -> Limits {
        let d = Limits::default();
        let head = raw
            .max_head_size
            .and_then(|s| self.size("gateway.limits.max_head_size", s));
        let mut within =
            |field: &str, value: Option<u64>, default: usize, range: (u64, u64)| match value {
                None => default,
                Some(n) if (range.0..=range.1).contains(&n) => n as usize,
                Some(n) => {
                    self.error(
                        field,
                        format!("{n} is out of range: between {} and {}", range.0, range.1),
                    );
                    default
                }
            };
        Limits {
            // hyper's full stack cannot read heads under 8 KiB; 1 MiB is already 30 times
            // what browsers send.
            max_head_size: within(
                "gateway.limits.max_head_size",
                head,
                d.max_head_size,
                (8 * 1024, 1024 * 1024),
            ),
            max_headers: within(
                "gateway.limits.max_headers",
                raw.max_headers.map(|n| n as u64),
                d.max_headers,
                (8, 1000),
            ),
            max_connections: within(
                "gateway.limits.max_connections",
                raw.max_connections.map(|n| n as u64),
                d.max_connections,
                (1, 1_000_000),
            ),
        }
    }
}
