//! HTTPS to replicas: what a service's `tls:` setting becomes in the data plane.
//!
//! A service with `tls:` gets its own connection pool ([`Upstreams`] with a
//! [`ClientTls`]): its connections are TLS, verified with the service's settings, and never
//! shared with another service that reaches the same address with other settings (or
//! without TLS). The client config is built when the routing table is built, and kept
//! across reloads while the settings, the CA bundle's contents and the pool settings are
//! unchanged (so are the pooled connections and the TLS session cache). ALPN offers `h2`
//! for `protocol: h2` and `http/1.1` otherwise.
//!
//! The name verified and sent as SNI is `server_name` if set, else the host of the static
//! server's URL, or `localhost` for local replicas (they listen on 127.0.0.1, and a
//! development certificate names `localhost`).
//!
//! `insecure_skip_verify: true` is logged as a warning each time the table is built.
use std::sync::Arc;

use shoal_config::{Protocol, Service, Source};
use shoal_health::tls::{ALPN_H2, ALPN_HTTP1, TlsError, TlsSettings};
use shoal_health::{ClientTls, ProbeTls};

use crate::upstream::{PoolSettings, TlsPool, Upstreams};

/// The host local replicas are verified as (when `server_name` is not set).
const LOCAL_HOST: &str = "localhost";

/// The client settings of `def`'s replicas for `alpn`, if it has `tls:`.
fn settings(def: &Service, alpn: &[u8]) -> Option<TlsSettings> {
    let tls = def.tls.as_ref()?;
    Some(TlsSettings {
        ca: tls.ca.clone(),
        server_name: tls.server_name.clone(),
        insecure_skip_verify: tls.insecure_skip_verify,
        alpn: vec![alpn.to_vec()],
    })
}

/// The host replicas of `def` are verified as, when the setting names none: `localhost`
/// for local replicas; None for static servers (the host of each server's URL).
fn fixed_host(def: &Service) -> Option<String> {
    match def.source {
        Source::Command(_) => Some(LOCAL_HOST.to_owned()),
        Source::Servers(_) => None,
    }
}

/// The pool of `def` if it speaks TLS to its replicas: `previous` when nothing it depends
/// on changed, else a new one. A setting that cannot be used (an unreadable CA bundle)
/// keeps `previous` if there is one, else gives a pool whose every connect fails with the
/// reason (its requests get 502s that say why).
pub(crate) fn pool_for(
    def: &Service,
    previous: Option<Arc<Upstreams>>,
    pool: PoolSettings,
) -> Option<Arc<Upstreams>> {
    let alpn = match def.protocol {
        Protocol::H2 | Protocol::H2c => ALPN_H2,
        Protocol::Http1 => ALPN_HTTP1,
    };
    let settings = settings(def, alpn)?;
    if settings.insecure_skip_verify {
        tracing::warn!(
            service = %def.name,
            "tls.insecure_skip_verify is on: the replicas' certificates are NOT verified; \
             the connections are encrypted but anyone on the path can pose as a replica"
        );
    }
    let old = previous
        .as_ref()
        .filter(|p| p.settings == pool)
        .and_then(|p| p.tls().and_then(|t| t.client.as_ref().ok()));
    let h2 = def.protocol != Protocol::Http1;
    let host = fixed_host(def);
    match ClientTls::rebuild(old, settings) {
        Ok(client) => {
            if let Some(p) = &previous
                && p.settings == pool
                && p.tls().is_some_and(|t| {
                    t.client.as_ref().is_ok_and(|c| *c == client) && t.host == host && t.h2 == h2
                })
            {
                return previous;
            }
            Some(Upstreams::with_tls(
                pool,
                TlsPool {
                    client: Ok(client),
                    host,
                    h2,
                },
            ))
        }
        Err(e) => {
            tracing::error!(service = %def.name, error = %e, "HTTPS to the replicas cannot be set up");
            if previous.is_some() {
                tracing::warn!(service = %def.name, "keeping the previous TLS settings");
                return previous;
            }
            Some(Upstreams::with_tls(
                pool,
                TlsPool {
                    client: Err(e.to_string()),
                    host,
                    h2,
                },
            ))
        }
    }
}

/// How HTTPS health checks of `def`'s replicas do their TLS handshake, if the service has
/// `tls:` (`Err`: why it cannot). The gateway's checks of static servers and the
/// supervisor's readiness and liveness probes of local replicas (verified as `localhost`
/// unless `server_name` says otherwise) both use it.
pub fn probe_tls(def: &Service) -> Option<Result<ProbeTls, TlsError>> {
    let settings = settings(def, ALPN_HTTP1)?;
    Some(ClientTls::new(settings).map(|client| ProbeTls {
        client,
        host: fixed_host(def),
    }))
}
