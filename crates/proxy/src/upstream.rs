//! Upstream connection pools: one HTTP/1.1 pool and one HTTP/2 (h2c, prior knowledge) pool,
//! each keyed by endpoint address, with keep-alive and bounded idle connections.
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::ProxyBody;

/// Pool settings, from the gateway config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolSettings {
    pub(crate) connect_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_idle_per_endpoint: usize,
}

/// The two client pools.
#[derive(Debug, Clone)]
pub(crate) struct Upstreams {
    pub(crate) settings: PoolSettings,
    pub(crate) http1: Client<HttpConnector, ProxyBody>,
    pub(crate) h2c: Client<HttpConnector, ProxyBody>,
}

impl Upstreams {
    pub(crate) fn new(settings: PoolSettings) -> Upstreams {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let builder = |h2: bool| {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(settings.idle_timeout)
                .pool_max_idle_per_host(settings.max_idle_per_endpoint)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .set_host(false);
            if h2 {
                b.http2_only(true)
                    .http2_keep_alive_interval(Some(Duration::from_secs(30)))
                    .http2_keep_alive_while_idle(false);
            }
            b.build(connector.clone())
        };
        Upstreams {
            settings,
            http1: builder(false),
            h2c: builder(true),
        }
    }
}
