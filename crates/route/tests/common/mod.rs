//! A request builder shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use shoal_route::{RequestInfo, Rule};

/// An owned request from which a [`RequestInfo`] is borrowed.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub host: Option<String>,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub client_ip: IpAddr,
}

pub fn req() -> Req {
    Req {
        method: Method::GET,
        host: Some("example.com".to_owned()),
        path: "/".to_owned(),
        query: None,
        headers: HeaderMap::new(),
        client_ip: "192.0.2.1".parse().unwrap(),
    }
}

impl Req {
    pub fn method(mut self, m: &str) -> Self {
        self.method = Method::from_bytes(m.as_bytes()).unwrap();
        self
    }
    pub fn host(mut self, h: Option<&str>) -> Self {
        self.host = h.map(str::to_owned);
        self
    }
    pub fn path(mut self, p: &str) -> Self {
        self.path = p.to_owned();
        self
    }
    pub fn query(mut self, q: Option<&str>) -> Self {
        self.query = q.map(str::to_owned);
        self
    }
    pub fn header(mut self, name: &str, value: &[u8]) -> Self {
        self.headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
        self
    }
    pub fn ip(mut self, ip: &str) -> Self {
        self.client_ip = ip.parse().unwrap();
        self
    }
    pub fn info(&self) -> RequestInfo<'_> {
        RequestInfo {
            method: &self.method,
            host: self.host.as_deref(),
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
            client_ip: self.client_ip,
        }
    }
}

/// Parses `rule` (panicking with the error) and evaluates it on `r`.
pub fn eval(rule: &str, r: &Req) -> bool {
    Rule::parse(rule)
        .unwrap_or_else(|e| panic!("{rule:?} should parse: {e} at {}", e.offset))
        .matches(&r.info())
}
