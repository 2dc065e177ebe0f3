//! Loader tests: every error names file:line:column and the field, says what was expected,
//! and suggests the nearest valid name.
use std::time::Duration;

use crate::*;

fn errors(src: &str) -> Vec<String> {
    parse(src, "shoal.yaml")
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn one_error(src: &str) -> String {
    let e = errors(src);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    e.into_iter().next().unwrap()
}

const MINIMAL: &str = "services:
  web:
    servers: [http://127.0.0.1:9001]
routes:
  - match: PathPrefix(`/`)
    service: web
";

#[test]
fn minimal_stack_gets_documented_defaults() {
    let s = parse(MINIMAL, "shoal.yaml").unwrap();
    assert_eq!(s.gateway.entrypoints[0].listen, DEFAULT_GATEWAY_LISTEN);
    assert_eq!(s.admin.listen, DEFAULT_ADMIN_LISTEN);
    assert_eq!(s.gateway.timeouts.connect, Duration::from_secs(1));
    assert_eq!(s.gateway.timeouts.response_header, Duration::from_secs(30));
    assert_eq!(s.gateway.replica_header, None);
    let web = s.service("web").unwrap();
    assert_eq!(web.balance, Balance::RoundRobin);
    assert_eq!(web.protocol, Protocol::Http1);
    match &web.source {
        Source::Servers(v) => assert_eq!(
            (v[0].authority.as_str(), v[0].weight),
            ("127.0.0.1:9001", 1)
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.routes[0].priority, "PathPrefix(`/`)".len() as i64);
}

#[test]
fn demo_stack_is_valid() {
    let s = parse(DEMO_STACK, "<demo>").unwrap();
    assert_eq!(s.services.len(), 2);
    assert_eq!(
        s.gateway.replica_header.as_ref().map(|h| h.as_str()),
        Some("x-shoal-replica")
    );
    let Source::Command(users) = &s.service("users").unwrap().source else {
        panic!()
    };
    assert_eq!(users.argv, ["shoal", "sample-app"]);
    assert_eq!(users.replicas, 3);
    assert_eq!(users.health.path.as_deref(), Some("/health"));
    assert_eq!(s.routes.len(), 2);
    assert_eq!(
        s.routes[0].middlewares,
        vec![Middleware::StripPrefix(vec!["/api/users".into()])]
    );
}

#[test]
fn unknown_field_points_at_it_and_suggests() {
    let e = one_error("services:\n  web:\n    servers: [http://127.0.0.1:1]\n    replcas: 2\n");
    assert!(
        e.starts_with("shoal.yaml:4:5: services.web: unknown field `replcas`"),
        "{e}"
    );
    assert!(e.ends_with("did you mean `replicas`?"), "{e}");
}

#[test]
fn unknown_top_level_field() {
    let e = one_error("servics: {}\n");
    assert!(
        e.starts_with("shoal.yaml:1:1: unknown field `servics`"),
        "{e}"
    );
    assert!(e.contains("did you mean `services`?"), "{e}");
}

#[test]
fn wrong_type_names_field_and_expectation() {
    let e = one_error("services:\n  web:\n    command: [x]\n    replicas: many\n");
    assert!(
        e.starts_with("shoal.yaml:4:15: services.web.replicas: invalid type"),
        "{e}"
    );
    assert!(e.contains("expected u32"), "{e}");
}

#[test]
fn unknown_service_in_route_suggests_nearest() {
    let src = MINIMAL.replace("service: web", "service: wbe");
    let e = one_error(&src);
    assert_eq!(
        e,
        "shoal.yaml:6:14: routes[0].service: unknown service `wbe`; did you mean `web`?"
    );
}

#[test]
fn unknown_service_without_near_name_lists_services() {
    let src = MINIMAL.replace("service: web", "service: payments");
    let e = one_error(&src);
    assert!(
        e.ends_with("unknown service `payments`; defined services: `web`"),
        "{e}"
    );
}

#[test]
fn rule_error_points_into_the_rule() {
    let src = MINIMAL.replace("PathPrefix(`/`)", "PathPrefx(`/`)");
    let e = one_error(&src);
    assert!(
        e.starts_with("shoal.yaml:5:12: routes[0].match: invalid rule:"),
        "{e}"
    );
    assert!(e.contains("PathPrefix"), "{e}");
    // Quoted rules: the column accounts for the opening quote.
    let src = MINIMAL.replace("PathPrefix(`/`)", "\"Path(`/`) && Bogus(`x`)\"");
    let e = one_error(&src);
    assert!(e.starts_with("shoal.yaml:5:26: routes[0].match"), "{e}");
}

#[test]
fn bad_durations_and_addresses() {
    let src = "gateway:\n  listen: 127.0.0.1\n  timeouts:\n    connect: 5\n";
    let e = errors(src);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].starts_with("shoal.yaml:2:11: gateway.listen: `127.0.0.1` is not an address"),
        "{}",
        e[0]
    );
    assert!(e[0].contains("add a port"), "{}", e[0]);
    assert!(
        e[1].starts_with("shoal.yaml:4:14: gateway.timeouts.connect: `5` has no unit"),
        "{}",
        e[1]
    );
}

#[test]
fn zero_timeouts_are_refused() {
    let e = one_error("gateway:\n  timeouts:\n    response_header: 0s\n");
    assert!(
        e.contains("gateway.timeouts.response_header: must be greater than 0"),
        "{e}"
    );
}

#[test]
fn service_needs_a_source() {
    let e = one_error("services:\n  web:\n    protocol: http\n");
    assert!(
        e.starts_with("shoal.yaml:2:3: services.web: a service needs `servers:`"),
        "{e}"
    );
}

#[test]
fn command_fields_on_static_services_are_refused() {
    let e = one_error("services:\n  web:\n    servers: [http://127.0.0.1:1]\n    replicas: 3\n");
    assert!(
        e.starts_with(
            "shoal.yaml:4:5: services.web.replicas: `replicas` applies to services with `command`"
        ),
        "{e}"
    );
}

#[test]
fn upstream_urls_are_checked() {
    let e = errors(
        "services:\n  a:\n    servers: [ftp://x:1, http://127.0.0.1:1/api, https://x:1, 'http://h:1']\n",
    );
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(e[0].contains("needs the scheme `http://`"), "{}", e[0]);
    assert!(e[1].contains("has no path"), "{}", e[1]);
    assert!(
        e[2].contains("https upstreams are not supported yet"),
        "{}",
        e[2]
    );
}

#[test]
fn balance_forms() {
    let svc =
        |b: &str| format!("services:\n  a:\n    servers: [http://127.0.0.1:1]\n    balance: {b}\n");
    let get = |b: &str| parse(&svc(b), "f").unwrap().services[0].balance.clone();
    assert_eq!(get("least_requests"), Balance::LeastRequests);
    assert_eq!(
        get("{algorithm: hash, hash_on: client_ip}"),
        Balance::Hash(HashOn::ClientIp)
    );
    assert_eq!(
        get("{algorithm: hash, hash_on: 'header:X-User'}"),
        Balance::Hash(HashOn::Header(http::HeaderName::from_static("x-user")))
    );
    assert_eq!(
        get("{algorithm: hash, hash_on: 'cookie:sid'}"),
        Balance::Hash(HashOn::Cookie("sid".into()))
    );
    assert_eq!(
        get("sticky"),
        Balance::Sticky {
            cookie: "shoal_a".into()
        }
    );
    assert_eq!(
        get("{algorithm: sticky, cookie: lb}"),
        Balance::Sticky {
            cookie: "lb".into()
        }
    );
    let e = errors(&svc("least_request"));
    assert!(
        e[0].contains("unknown algorithm `least_request`")
            && e[0].ends_with("did you mean `least_requests`?"),
        "{e:?}"
    );
    let e = errors(&svc("{algorithm: hash}"));
    assert!(e[0].contains("needs `hash_on`"), "{e:?}");
    let e = errors(&svc("{algorithm: sticky, hash_on: client_ip}"));
    assert!(
        e[0].contains("`hash_on` applies to `algorithm: hash`"),
        "{e:?}"
    );
}

#[test]
fn middlewares_resolve_and_validate() {
    let src = "services:
  a:
    servers: [http://127.0.0.1:1]
middlewares:
  strip: { strip_prefix: [/api, /api/v2/] }
  add: { add_prefix: /v1/ }
  hdr:
    headers:
      request: { set: { X-Env: demo }, remove: [Cookie] }
      response: { set: { X-Served: shoal } }
routes:
  - match: PathPrefix(`/api`)
    service: a
    strip_prefix: /inline
    middlewares: [strip, add, hdr]
";
    let s = parse(src, "f").unwrap();
    let m = &s.routes[0].middlewares;
    assert_eq!(m[0], Middleware::StripPrefix(vec!["/inline".into()]));
    assert_eq!(
        m[1],
        Middleware::StripPrefix(vec!["/api/v2".into(), "/api".into()])
    );
    assert_eq!(m[2], Middleware::AddPrefix("/v1".into()));
    let Middleware::Headers(h) = &m[3] else {
        panic!()
    };
    assert_eq!(h.request_set[0].0.as_str(), "x-env");
    assert_eq!(h.request_remove[0].as_str(), "cookie");

    let e = one_error(&src.replace("[strip, add, hdr]", "[strp]"));
    assert!(
        e.contains("routes[0].middlewares[0]: unknown middleware `strp`; did you mean `strip`?"),
        "{e}"
    );
    let e = one_error(&src.replace(
        "add: { add_prefix: /v1/ }",
        "add: { add_prefix: /v1/, strip_prefix: /x }",
    ));
    assert!(e.contains("needs exactly one of"), "{e}");
}

#[test]
fn priority_orders_routes_and_defaults_to_rule_length() {
    let src = "services:
  a: { servers: [http://127.0.0.1:1] }
routes:
  - { match: PathPrefix(`/`), service: a, name: short }
  - { match: PathPrefix(`/api/users`), service: a, name: long }
  - { match: PathPrefix(`/x`), service: a, name: pinned, priority: 1000 }
";
    let s = parse(src, "f").unwrap();
    let names: Vec<&str> = s.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["pinned", "long", "short"]);
}

#[test]
fn admin_beyond_loopback_needs_a_token() {
    let e = one_error("admin:\n  listen: 0.0.0.0:8080\n");
    assert!(
        e.starts_with(
            "shoal.yaml:2:11: admin.listen: 0.0.0.0:8080 is reachable beyond this machine"
        ),
        "{e}"
    );
    assert!(e.contains("set `admin.token`"), "{e}");
    assert!(parse("admin:\n  listen: 0.0.0.0:8080\n  token: s3cret\n", "f").is_ok());
}

#[test]
fn restart_policy_vocabulary() {
    let svc = |r: &str| format!("services:\n  a:\n    command: [x]\n    restart: {r}\n");
    let get = |r: &str| {
        let s = parse(&svc(r), "f").unwrap();
        let Source::Command(c) = &s.services[0].source else {
            panic!()
        };
        c.restart.clone()
    };
    assert_eq!(get("always").policy, RestartPolicy::Always);
    assert_eq!(get("{policy: no, max_attempts: 2}").max_attempts, 2);
    let e = one_error(&svc("on_failure"));
    assert!(
        e.contains("unknown restart policy `on_failure`")
            && e.ends_with("did you mean `on-failure`?"),
        "{e}"
    );
}

#[test]
fn command_string_is_split_and_env_kept() {
    let s = parse("services:\n  a:\n    command: python3 -m http.server\n    env: { A: b }\n    replicas: 2\n", "f").unwrap();
    let Source::Command(c) = &s.services[0].source else {
        panic!()
    };
    assert_eq!(c.argv, ["python3", "-m", "http.server"]);
    assert_eq!(c.env, [("A".to_owned(), "b".to_owned())]);
    assert_eq!((c.port_env.as_str(), c.replicas), ("PORT", 2));
}

#[test]
fn several_errors_are_all_reported_in_file_order() {
    let src = "services:\n  Web:\n    servers: [http://127.0.0.1:1]\nroutes:\n  - { match: Path(`/`), service: nope }\n";
    let e = errors(src);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].starts_with("shoal.yaml:2:3: services.Web: service name `Web`"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("shoal.yaml:5:34: routes[0].service: unknown service `nope`"),
        "{}",
        e[1]
    );
}

#[test]
fn yaml_syntax_errors_have_positions() {
    let e = one_error("services:\n  web: [\n");
    assert!(e.starts_with("shoal.yaml:"), "{e}");
    assert!(!e.starts_with("shoal.yaml: "), "has a position: {e}");
}

#[test]
fn empty_file_is_an_empty_stack() {
    let s = parse("", "f").unwrap();
    assert!(s.services.is_empty() && s.routes.is_empty());
}

#[test]
fn log_rotation_sizes() {
    let s = parse(
        "services:\n  web:\n    command: [app]\n    logs: { max_size: 256KiB, keep: 2 }\n  api:\n    command: [app]\n    logs:\n      max_size: 2048\n  plain:\n    command: [app]\n",
        "shoal.yaml",
    )
    .unwrap();
    let logs = |name: &str| match &s.service(name).unwrap().source {
        Source::Command(c) => c.logs.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        logs("web"),
        Logs {
            max_size: 256 * 1024,
            keep: 2
        }
    );
    assert_eq!(logs("api").max_size, 2048);
    assert_eq!(logs("api").keep, 3);
    assert_eq!(logs("plain"), Logs::default());
    assert_eq!(Logs::default().max_size, 10 * 1024 * 1024);
}

#[test]
fn bad_log_rotation_sizes_point_at_the_value() {
    let e =
        one_error("services:\n  web:\n    command: [app]\n    logs:\n      max_size: 10 megs\n");
    assert!(
        e.starts_with("shoal.yaml:5:17: services.web.logs.max_size: `10 megs` is not a size"),
        "{e}"
    );
    assert!(e.contains("`10MiB`"), "{e}");
    let e = one_error("services:\n  web:\n    command: [app]\n    logs: { max_size: 10B }\n");
    assert!(
        e.starts_with("shoal.yaml:4:23: services.web.logs.max_size: must be at least 1024 bytes"),
        "{e}"
    );
    let e = one_error("services:\n  web:\n    command: [app]\n    logs: { max_size: -5 }\n");
    assert!(e.starts_with("shoal.yaml:4:23: "), "{e}");
    assert!(e.contains("a size cannot be negative"), "{e}");
    let e = one_error("services:\n  web:\n    command: [app]\n    logs: { max_size: [1] }\n");
    assert!(e.starts_with("shoal.yaml:4:23: "), "{e}");
    assert!(e.contains("expected a size"), "{e}");
    let e = one_error("services:\n  web:\n    command: [app]\n    logs: { size: 1MiB }\n");
    assert!(e.starts_with("shoal.yaml:4:13: "), "{e}");
    assert!(e.contains("max_size"), "{e}");
    let e =
        one_error("services:\n  web:\n    servers: [http://127.0.0.1:1]\n    logs: { keep: 1 }\n");
    assert!(
        e.starts_with(
            "shoal.yaml:4:5: services.web.logs: `logs` applies to services with `command`"
        ),
        "{e}"
    );
}

#[test]
fn peek_admin_reads_the_admin_section_of_an_invalid_file() {
    let dir = std::env::temp_dir().join(format!("shoal-peek-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shoal.yaml");
    std::fs::write(
        &path,
        "admin: { listen: 'localhost:9191', token: t0k }\nroutes:\n  - { match: Nope(`x`), service: missing }\n",
    )
    .unwrap();
    assert!(load(&path).is_err(), "the file is invalid");
    let admin = peek_admin(&path).unwrap();
    assert_eq!(admin.listen.to_string(), "127.0.0.1:9191");
    assert_eq!(admin.token.as_deref(), Some("t0k"));
    std::fs::write(&path, "services: {}\n").unwrap();
    assert_eq!(peek_admin(&path).unwrap().listen, DEFAULT_ADMIN_LISTEN);
    assert!(peek_admin(&dir.join("absent.yaml")).is_none());
    let _ = std::fs::remove_dir_all(dir);
}
