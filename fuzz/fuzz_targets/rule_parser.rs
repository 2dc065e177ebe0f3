//! Feeds arbitrary text to the route rule parser and, when a rule parses, evaluates it on
//! a fixed request. Looks for panics, stack overflows, and regex or parse blow-ups (slow
//! units and OOMs).

#![no_main]

use std::net::{IpAddr, Ipv6Addr};
use std::sync::LazyLock;

use http::{HeaderMap, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use shoal_route::{RequestInfo, Rule};

static HEADERS: LazyLock<HeaderMap> = LazyLock::new(|| {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.append("x-env", HeaderValue::from_static("prod"));
    h.append("x-env", HeaderValue::from_static("dev"));
    h
});

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    match Rule::parse(&src) {
        Ok(rule) => {
            let req = RequestInfo {
                method: &Method::GET,
                host: Some("API.Example.com"),
                path: "/api/v1/items%2F42",
                query: Some("debug&v=1&name=J%C3%A9r%C3%B4me+x&bad=%zz;x"),
                headers: &HEADERS,
                client_ip: IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x0a01, 0x0203)),
            };
            let _ = rule.matches(&req);
            assert_eq!(rule.source(), &*src);
        }
        Err(e) => {
            assert!(e.offset <= src.len() && src.is_char_boundary(e.offset));
        }
    }
});
