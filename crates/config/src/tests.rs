//! Loader tests: every error names file:line:column and the field, says what was expected,
//! and suggests the nearest valid name.
use std::time::Duration;

use crate::*;

/// The edge of the stack (issue 17): TLS, redirects and the edge middlewares.
#[path = "tests_edge.rs"]
mod edge;

/// Shipping new versions (issue 21): rollouts, weighted splits, canaries, mirroring.
#[path = "tests_rollout.rs"]
mod rollout;

/// Start order and local resource limits (issue 23): `depends_on`, `resources`.
#[path = "tests_depends.rs"]
mod depends;

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
    let health = &s.service("users").unwrap().health;
    assert_eq!(health.path.as_deref(), Some("/health"));
    assert_eq!(users.autoscale, None);
    // `music` is autoscaled, starting with 2 replicas.
    let Source::Command(music) = &s.service("music").unwrap().source else {
        panic!()
    };
    assert_eq!(music.replicas, 2);
    let autoscale = music.autoscale.as_ref().unwrap();
    assert_eq!(
        (autoscale.policy.min, autoscale.policy.max),
        (1, 6),
        "{autoscale:?}"
    );
    assert_eq!(
        autoscale.policy.targets,
        [shoal_autoscale::Target::Concurrency(5.0)]
    );
    // The comment's load command goes to a route of `music`.
    assert!(
        DEMO_STACK.contains("shoal load 'http://127.0.0.1:8000/api/music/work?cpu_ms=20' -c 20")
    );
    assert!(
        s.routes
            .iter()
            .any(|r| r.service == "music" && r.rule.source().contains("/api/music")),
    );
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
fn every_unknown_field_and_every_other_problem_in_one_run() {
    let src = "services:
  web:
    command: shoal sample-app
    replicaz: 2
    helth:
      path: /health
      interval: 1s
  api:
    command: shoal sample-app
routes:
  - match: PathPrefix(`/`)
    service: web
    priorty: 3
  - match: PathPrefix(`/x`)
    service: nowhere
";
    let e = errors(src);
    let places: Vec<&str> = e.iter().map(|e| e.split(": ").next().unwrap()).collect();
    assert_eq!(
        places,
        [
            "shoal.yaml:4:5",
            "shoal.yaml:5:5",
            "shoal.yaml:13:5",
            "shoal.yaml:15:14"
        ],
        "{e:#?}"
    );
    assert!(e[1].contains("unknown field `helth`") && e[1].ends_with("did you mean `health`?"));
    assert!(
        e[3].contains("routes[1].service: unknown service `nowhere`"),
        "{e:#?}"
    );
}

#[test]
fn an_unknown_field_in_a_flow_mapping_is_reported_alone() {
    // Not the first thing on its line: left for the next run, and nothing after it guessed.
    let e = one_error(
        "services:\n  web:\n    command: shoal sample-app\n    health: { path: /h, intervl: 1s }\n    replicaz: 2\n",
    );
    assert!(e.contains("unknown field `intervl`"), "{e}");
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
fn timeouts_per_service_and_per_route() {
    let src = "gateway:
  timeouts: { response_header: 20s, grpc_max: 2m }
services:
  api:
    servers: [http://127.0.0.1:9001]
    timeouts: { response_header: 90s }
  web:
    servers: [http://127.0.0.1:9002]
routes:
  - match: PathPrefix(`/reports`)
    service: api
    timeouts: { response_header: 10m }
  - match: PathPrefix(`/api`)
    service: api
  - match: PathPrefix(`/`)
    service: web
";
    let s = parse(src, "shoal.yaml").unwrap();
    assert_eq!(s.gateway.timeouts.response_header, Duration::from_secs(20));
    assert_eq!(s.gateway.timeouts.grpc_max, Duration::from_secs(120));
    let api = s.service("api").unwrap().timeouts;
    assert_eq!(api.response_header, Some(Duration::from_secs(90)));
    assert_eq!(
        s.service("web").unwrap().timeouts,
        RequestTimeouts::default()
    );
    let route = |name: &str| s.routes.iter().find(|r| r.name == name).unwrap().timeouts;
    // A route's own over its service's; unset: its service's (None when neither sets it,
    // and the gateway's applies).
    assert_eq!(
        route("route-0").over(api).response_header,
        Some(Duration::from_secs(600))
    );
    assert_eq!(
        route("route-1").over(api).response_header,
        Some(Duration::from_secs(90))
    );
    assert_eq!(route("route-2").response_header, None);
}

#[test]
fn grpc_max_defaults_to_five_minutes() {
    let s = parse(MINIMAL, "shoal.yaml").unwrap();
    assert_eq!(s.gateway.timeouts.grpc_max, Duration::from_secs(300));
    assert_eq!(s.routes[0].timeouts, RequestTimeouts::default());
}

#[test]
fn bad_request_timeouts_name_their_place() {
    let src = "gateway:
  timeouts: { grpc_max: 0s }
services:
  api:
    servers: [http://127.0.0.1:9001]
    timeouts: { response_header: 0ms }
routes:
  - match: PathPrefix(`/`)
    service: api
    timeouts: { response_header: 5 }
";
    assert_eq!(
        errors(src),
        [
            "shoal.yaml:2:25: gateway.timeouts.grpc_max: must be greater than 0 (there are no unbounded timeouts)",
            "shoal.yaml:6:34: services.api.timeouts.response_header: must be greater than 0 (there are no unbounded timeouts)",
            "shoal.yaml:10:34: routes[0].timeouts.response_header: `5` has no unit; write e.g. `5s` or `5ms`",
        ]
    );
    // Only `response_header` can differ per service and per route.
    let e = one_error(
        "services:\n  api:\n    servers: [http://127.0.0.1:9001]\n    timeouts: { connect: 1s }\n",
    );
    assert!(
        e.starts_with("shoal.yaml:4:17: services.api.timeouts: unknown field `connect`, expected `response_header`"),
        "{e}"
    );
    let e = one_error(
        "services:\n  w:\n    kind: worker\n    command: [x]\n    timeouts: { response_header: 1s }\n",
    );
    assert_eq!(
        e,
        "shoal.yaml:5:5: services.w.timeouts: `timeouts` is about requests, and a worker (`kind: worker`) serves none"
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
    assert!(
        e[0].contains("needs the scheme `http://` or `https://`"),
        "{}",
        e[0]
    );
    assert!(e[1].contains("has no path"), "{}", e[1]);
    assert!(
        e[2].contains("`http://h:1` is `http://` and `servers[2]` is `https://`"),
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
fn header_middlewares_cannot_touch_framing_or_host() {
    let base = "services:
  a:
    servers: [http://127.0.0.1:1]
middlewares:
  hdr:
    headers:
      request: { set: { X-Ok: 1 }, remove: [X-Gone] }
      response: { set: { X-Ok: 1 }, remove: [X-Gone] }
routes:
  - { match: PathPrefix(`/`), service: a, middlewares: [hdr] }
";
    parse(base, "f").unwrap();
    for (from, to, field) in [
        (
            "request: { set: { X-Ok",
            "request: { set: { Content-Length",
            "headers.request.set.Content-Length",
        ),
        (
            "remove: [X-Gone] }\n      response",
            "remove: [Transfer-Encoding] }\n      response",
            "headers.request.remove[0]",
        ),
        (
            "response: { set: { X-Ok",
            "response: { set: { Host",
            "headers.response.set.Host",
        ),
        (
            "response: { set: { X-Ok: 1 }, remove: [X-Gone]",
            "response: { set: { X-Ok: 1 }, remove: [connection]",
            "headers.response.remove[0]",
        ),
    ] {
        let e = one_error(&base.replace(from, to));
        assert!(
            e.contains(field) && e.contains("written by the gateway itself"),
            "{to}: {e}"
        );
    }
}

#[test]
fn services_learn_containers_for_kubernetes() {
    let src = "services:
  users:
    command: shoal sample-app
    image: ghcr.io/acme/users:1.4
    args: [--workers, '2']
    port: 9000
    resources: { cpu: 250m, memory: 128Mi }
  music:
    command: python3 -m http.server
    image: ghcr.io/acme/music:2
    resources:
      requests: { cpu: 0.5, memory: 256Mi }
      limits: { cpu: 1, memory: 512Mi }
";
    for runtime in [Runtime::Local, Runtime::Kubernetes] {
        let s = parse_for(src, "f", runtime).unwrap();
        let users = s.services[0].container.as_ref().unwrap();
        assert_eq!(users.image, "ghcr.io/acme/users:1.4");
        assert_eq!(users.args, ["--workers", "2"]);
        assert_eq!(users.port, 9000);
        assert_eq!(users.resources.requests.cpu_millis, Some(250));
        assert_eq!(
            users.resources.requests.memory_bytes,
            Some(128 * 1024 * 1024)
        );
        assert_eq!(users.resources.limits, Quantities::default());
        let music = s.services[1].container.as_ref().unwrap();
        assert_eq!(music.port, 8080, "the default port");
        assert_eq!(music.resources.requests.cpu_millis, Some(500));
        assert_eq!(music.resources.limits.cpu_millis, Some(1000));
        assert_eq!(music.resources.limits.memory_bytes, Some(512 * 1024 * 1024));
    }
    assert!(parse(MINIMAL, "f").unwrap().services[0].container.is_none());
}

#[test]
fn each_runtime_needs_its_own_way_to_run_a_service() {
    let image_only = "services:\n  web:\n    image: nginx:1.27\n";
    let e = one_error(image_only);
    assert!(
        e.contains("services.web.image: service `web` has only `image:`, and `shoal up` runs local processes"),
        "{e}"
    );
    let s = parse_for(image_only, "f", Runtime::Kubernetes).unwrap();
    let Source::Command(c) = &s.services[0].source else {
        panic!()
    };
    assert!(c.argv.is_empty(), "the image's own entrypoint runs");
    let command_only = "services:\n  web:\n    command: shoal sample-app\n";
    let e = parse_for(command_only, "f", Runtime::Kubernetes)
        .unwrap_err()
        .0;
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].to_string().contains(
            "services.web: on Kubernetes each replica of `web` is a container: add `image:`"
        ),
        "{}",
        e[0]
    );
    // Static servers need neither, on either runtime.
    parse_for(MINIMAL, "f", Runtime::Kubernetes).unwrap();
}

#[test]
fn container_fields_are_checked_where_they_are_written() {
    let e = one_error("services:\n  web:\n    command: x\n    args: [a]\n");
    assert!(
        e.contains(
            "services.web.args: `args` describes the service's container: give `image:` too"
        ),
        "{e}"
    );
    let e = one_error(
        "services:\n  web:\n    command: x\n    image: app:1\n    resources: { cpu: 2, limits: { cpu: 1 } }\n",
    );
    assert!(
        e.contains("services.web.resources.limits.cpu: the cpu limit is below its request"),
        "{e}"
    );
    let e = one_error(
        "services:\n  web:\n    command: x\n    image: app:1\n    resources: { memory: lots }\n",
    );
    assert!(e.contains("services.web.resources.memory"), "{e}");
    let e = one_error("services:\n  web:\n    command: x\n    image: 'my app'\n");
    assert!(
        e.contains("services.web.image: `my app` is not an image reference"),
        "{e}"
    );
    let e = one_error("services:\n  web:\n    servers: [http://127.0.0.1:1]\n    image: app:1\n");
    assert!(e.contains("services.web.image: `image` applies to services with `command` or `image`, not to `servers`") || e.contains("not both"), "{e}");
    let e = one_error(
        "services:\n  web:\n    command: x\n    image: app:1\n    resources: { gpu: 1 }\n",
    );
    assert!(e.contains("gpu"), "unknown fields stay errors: {e}");
}

#[test]
fn entrypoints_clash_on_a_fixed_port_but_not_on_port_0() {
    let two = |a: &str, b: &str| {
        format!(
            "gateway:\n  entrypoints: {{ web: {{ listen: '{a}' }}, internal: {{ listen: '{b}' }} }}\n"
        )
    };
    let s = parse(&two("127.0.0.1:0", "127.0.0.1:0"), "f").unwrap();
    assert_eq!(
        s.gateway.entrypoints.len(),
        2,
        "each gets its own free port"
    );
    let e = one_error(&two("127.0.0.1:8000", "127.0.0.1:8000"));
    assert!(
        e.contains("127.0.0.1:8000 is used by two entrypoints"),
        "{e}"
    );
}

#[test]
fn limits_have_defaults_and_bounds() {
    let s = parse(MINIMAL, "f").unwrap();
    assert_eq!(s.gateway.limits, Limits::default());
    assert_eq!(s.gateway.limits.max_head_size, 32 * 1024);
    assert_eq!(s.gateway.timeouts.header_read, Duration::from_secs(10));
    assert_eq!(s.gateway.timeouts.body_idle, Duration::from_secs(30));
    let s = parse(
        &format!(
            "{MINIMAL}gateway:\n  limits: {{ max_head_size: 16KiB, max_headers: 50, max_connections: 20 }}\n  timeouts: {{ header_read: 2s, body_idle: 3s }}\n"
        ),
        "f",
    )
    .unwrap();
    assert_eq!(
        s.gateway.limits,
        Limits {
            max_head_size: 16 * 1024,
            max_headers: 50,
            max_connections: 20
        }
    );
    assert_eq!(s.gateway.timeouts.header_read, Duration::from_secs(2));
    assert_eq!(s.gateway.timeouts.body_idle, Duration::from_secs(3));
    let e = one_error(&format!(
        "{MINIMAL}gateway:\n  limits: {{ max_head_size: 1KiB }}\n"
    ));
    assert!(
        e.contains("gateway.limits.max_head_size: 1024 is out of range: between 8192 and 1048576"),
        "{e}"
    );
    let e = one_error(&format!(
        "{MINIMAL}gateway:\n  limits: {{ max_header: 5 }}\n"
    ));
    assert!(e.contains("max_header"), "{e}");
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

const FAILOVER: &str = "services:
  api:
    servers: [http://127.0.0.1:9001, http://127.0.0.1:9002]
    health:
      path: /health
      expect_status: [200, \"300-302\"]
      interval: 2s
      fast_interval: 100ms
      timeout: 300ms
      healthy_threshold: 2
      unhealthy_threshold: 4
    retry:
      attempts: 4
      on_status: [502, \"503-504\", 429]
      per_try_timeout: 300ms
      max_replay_body: 1MiB
      budget: { ratio: 25%, min_per_sec: 5 }
      non_idempotent: true
    passive:
      consecutive_5xx: 7
      consecutive_failures: 2
      base_ejection: 2s
      max_ejection: 1m
      max_ejected_percent: 30
    circuit_breaker:
      window: 20s
      min_requests: 50
      error_ratio: 0.4
      slow_call: 2s
      slow_ratio: 80%
      open_for: 10s
      half_open_requests: 3
  worker:
    command: [app]
    health: { path: /ready, expect_status: 204, start_period: 5s, start_timeout: 2m }
    retry: { per_try_timeout: off, attempts: 2 }
routes:
  - match: PathPrefix(`/api`)
    service: api
    name: plain
  - match: PathPrefix(`/slow`)
    service: api
    name: slow
    retry: { attempts: 5 }
  - match: PathPrefix(`/w`)
    service: worker
    name: worker
";

#[test]
fn failover_sections_parse_into_the_model() {
    let s = parse(FAILOVER, "shoal.yaml").unwrap();
    let api = s.service("api").unwrap();
    assert_eq!(
        api.health,
        Health {
            enabled: true,
            path: Some("/health".into()),
            expect_status: vec![(200, 200), (300, 302)],
            interval: Duration::from_secs(2),
            fast_interval: Duration::from_millis(100),
            timeout: Duration::from_millis(300),
            healthy_threshold: 2,
            unhealthy_threshold: 4,
            start_period: Duration::ZERO,
            start_timeout: Duration::from_secs(60),
            liveness: Some(Duration::from_secs(30)),
        }
    );
    assert!(api.health.passes(301) && !api.health.passes(204));
    assert_eq!(
        api.retry,
        Retry {
            attempts: 4,
            on_status: vec![502, 503, 504, 429],
            per_try_timeout: PerTryTimeout::Fixed(Duration::from_millis(300)),
            max_replay_body: 1024 * 1024,
            budget_ratio: 0.25,
            budget_min_per_sec: 5,
            non_idempotent: true,
        }
    );
    assert_eq!(
        api.passive,
        Passive {
            enabled: true,
            consecutive_5xx: 7,
            consecutive_failures: 2,
            base_ejection: Duration::from_secs(2),
            max_ejection: Duration::from_secs(60),
            max_ejected_percent: 30,
        }
    );
    assert_eq!(
        api.circuit_breaker,
        Some(CircuitBreaker {
            window: Duration::from_secs(20),
            min_requests: 50,
            error_ratio: Some(0.4),
            slow_call: Duration::from_secs(2),
            slow_ratio: Some(0.8),
            open_for: Duration::from_secs(10),
            half_open_requests: 3,
        })
    );

    let worker = s.service("worker").unwrap();
    assert_eq!(worker.health.path.as_deref(), Some("/ready"));
    assert_eq!(worker.health.expect_status, [(204, 204)]);
    assert_eq!(worker.health.start_period, Duration::from_secs(5));
    assert_eq!(worker.health.start_timeout, Duration::from_secs(120));
    assert_eq!(worker.retry.per_try_timeout, PerTryTimeout::Off);
    assert_eq!(worker.retry.attempts, 2);
    assert_eq!(worker.retry.on_status, [502, 503, 504]);
    assert_eq!(worker.passive, Passive::default());
    assert_eq!(worker.circuit_breaker, None);

    let route = |name: &str| {
        s.routes
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no route for {name}"))
    };
    assert_eq!(route("plain").retry, None);
    assert_eq!(route("worker").retry, None);
    // The route's fields over its service's.
    assert_eq!(
        route("slow").retry,
        Some(Retry {
            attempts: 5,
            ..api.retry.clone()
        })
    );
}

#[test]
fn failover_defaults_when_absent() {
    let s = parse(MINIMAL, "shoal.yaml").unwrap();
    let web = s.service("web").unwrap();
    assert_eq!(web.health, Health::default());
    assert!(web.health.enabled);
    assert_eq!(web.health.expect_status, [(200, 399)]);
    assert_eq!(web.health.timeout, Duration::from_millis(500));
    assert_eq!(web.health.unhealthy_threshold, 2);
    assert_eq!(web.retry, Retry::default());
    assert_eq!(web.retry.attempts, 3);
    assert_eq!(web.retry.per_try_timeout, PerTryTimeout::Auto);
    assert_eq!(web.passive, Passive::default());
    assert!(web.passive.enabled);
    assert_eq!(web.circuit_breaker, None);
    assert_eq!(s.routes[0].retry, None);
}

#[test]
fn failover_sections_switch_with_booleans() {
    let src = "services:
  a:
    servers: [http://127.0.0.1:1]
    health: false
    retry: false
    passive: false
    circuit_breaker: true
  b:
    command: [app]
    health: true
    retry: true
    passive: true
    circuit_breaker: {}
  c:
    servers: [http://127.0.0.1:2]
    circuit_breaker: false
    retry: { per_try_timeout: false }
routes:
  - { match: PathPrefix(`/a`), service: a, retry: true }
  - { match: PathPrefix(`/b`), service: b, retry: false }
";
    let s = parse(src, "shoal.yaml").unwrap();
    let a = s.service("a").unwrap();
    assert!(!a.health.enabled);
    assert_eq!(
        a.retry,
        Retry {
            attempts: 1,
            ..Retry::default()
        }
    );
    assert!(!a.passive.enabled);
    assert_eq!(a.circuit_breaker, Some(CircuitBreaker::default()));
    assert_eq!(
        CircuitBreaker::default().error_ratio,
        Some(0.5),
        "on by default with an error ratio"
    );
    let b = s.service("b").unwrap();
    assert_eq!(b.health, Health::default());
    assert_eq!(b.retry, Retry::default());
    assert_eq!(b.passive, Passive::default());
    assert_eq!(b.circuit_breaker, Some(CircuitBreaker::default()));
    let c = s.service("c").unwrap();
    assert_eq!(c.circuit_breaker, None);
    assert_eq!(c.retry.per_try_timeout, PerTryTimeout::Off);
    let route = |svc: &str| s.routes.iter().find(|r| r.service == svc).unwrap();
    // `retry: true` on a route: the service's settings (attempts 1 for `a`).
    assert_eq!(route("a").retry, Some(a.retry.clone()));
    assert_eq!(
        route("b").retry,
        Some(Retry {
            attempts: 1,
            ..Retry::default()
        })
    );
}

#[test]
fn route_retry_takes_unset_fields_from_its_service() {
    let src = "services:
  a:
    servers: [http://127.0.0.1:1]
    retry:
      on_status: [503]
      budget: { ratio: 0.1, min_per_sec: 3 }
      per_try_timeout: 200ms
routes:
  - match: PathPrefix(`/`)
    service: a
    retry:
      attempts: 5
      budget: { ratio: 0.5 }
";
    let s = parse(src, "shoal.yaml").unwrap();
    assert_eq!(
        s.routes[0].retry,
        Some(Retry {
            attempts: 5,
            on_status: vec![503],
            per_try_timeout: PerTryTimeout::Fixed(Duration::from_millis(200)),
            max_replay_body: 64 * 1024,
            budget_ratio: 0.5,
            budget_min_per_sec: 3,
            non_idempotent: false,
        })
    );
    // The service keeps its own.
    assert_eq!(s.services[0].retry.attempts, 3);
    assert_eq!(s.services[0].retry.budget_ratio, 0.1);
    // A route to an unknown service: one error (the service), not one per retry field.
    let e = one_error(&src.replace("service: a\n    retry", "service: b\n    retry"));
    assert!(e.contains("unknown service `b`"), "{e}");
}

#[test]
fn a_split_routes_retry_takes_unset_fields_from_each_targets_service() {
    let src = "services:
  a:
    servers: [http://127.0.0.1:1]
    retry: { attempts: 1, on_status: [503] }
  b:
    servers: [http://127.0.0.1:2]
    retry: { attempts: 4 }
routes:
  - match: PathPrefix(`/`)
    services: [{ name: a, weight: 1 }, { name: b, weight: 1 }]
    retry: { per_try_timeout: 300ms }
";
    let s = parse(src, "shoal.yaml").unwrap();
    let per_try_timeout = PerTryTimeout::Fixed(Duration::from_millis(300));
    let a = Retry {
        attempts: 1,
        on_status: vec![503],
        per_try_timeout,
        ..Retry::default()
    };
    let b = Retry {
        attempts: 4,
        per_try_timeout,
        ..Retry::default()
    };
    let route = &s.routes[0];
    let split = route.split.as_ref().unwrap();
    assert_eq!(split.targets[0].retry, Some(a.clone()));
    assert_eq!(split.targets[1].retry, Some(b), "b keeps its own attempts");
    assert_eq!(
        route.retry,
        Some(a),
        "the route's own: over its first service's"
    );
    // Without a route `retry:` each target keeps its service's.
    let s = parse(
        &src.replace("    retry: { per_try_timeout: 300ms }\n", ""),
        "shoal.yaml",
    )
    .unwrap();
    let split = s.routes[0].split.as_ref().unwrap();
    assert_eq!(
        (split.targets[0].retry.as_ref(), s.routes[0].retry.as_ref()),
        (None, None)
    );
    // A bad field is one error, not one per target.
    let e = one_error(&src.replace("per_try_timeout: 300ms", "attempts: 99"));
    assert!(e.contains("routes[0].retry.attempts"), "{e}");
}

#[test]
fn circuit_breaker_ratios() {
    let svc = |b: &str| {
        format!("services:\n  a:\n    servers: [http://127.0.0.1:1]\n    circuit_breaker: {b}\n")
    };
    let get = |b: &str| {
        parse(&svc(b), "f").unwrap().services[0]
            .circuit_breaker
            .clone()
            .unwrap()
    };
    // Neither ratio: the default error ratio.
    let cb = get("{ window: 30s }");
    assert_eq!((cb.error_ratio, cb.slow_ratio), (Some(0.5), None));
    assert_eq!(cb.window, Duration::from_secs(30));
    // Only the slow ratio: no error ratio.
    let cb = get("{ slow_ratio: 0.3 }");
    assert_eq!((cb.error_ratio, cb.slow_ratio), (None, Some(0.3)));
    // Both.
    let cb = get("{ slow_ratio: '30%', error_ratio: 1 }");
    assert_eq!((cb.error_ratio, cb.slow_ratio), (Some(1.0), Some(0.3)));

    let e = one_error(&svc("{ error_ratio: 1.5 }"));
    assert_eq!(
        e,
        "shoal.yaml:4:37: services.a.circuit_breaker.error_ratio: must be above 0 and at most 1 (100%), got `1.5`"
    );
    let e = one_error(&svc("{ error_ratio: 50 }"));
    assert!(
        e.ends_with("got `50`; for a percentage, write `50%`"),
        "{e}"
    );
    let e = one_error(&svc("{ slow_ratio: 0 }"));
    assert!(
        e.starts_with("shoal.yaml:4:36: services.a.circuit_breaker.slow_ratio: must be above 0"),
        "{e}"
    );
    let e = one_error(&svc("{ error_ratio: half }"));
    assert!(
        e.contains("error_ratio: `half` is not a ratio; expected a number like `0.2` or a percentage like `20%`"),
        "{e}"
    );
    let e = one_error(&svc("{ min_requests: 0 }"));
    assert!(
        e.starts_with(
            "shoal.yaml:4:38: services.a.circuit_breaker.min_requests: must be at least 1"
        ),
        "{e}"
    );
    let e = one_error(&svc("{ open_for: 0s }"));
    assert!(
        e.contains("circuit_breaker.open_for: must be greater than 0"),
        "{e}"
    );
    let e = one_error(&svc("sometimes"));
    assert!(e.starts_with("shoal.yaml:4:22: "), "{e}");
    assert!(e.contains("expected `true`, `false` or a mapping"), "{e}");
}

/// A service with one section, for error tests: the section's value is on line 4.
fn api_with(section: &str) -> String {
    format!("services:\n  api:\n    servers: [http://127.0.0.1:1]\n    {section}\n")
}

#[test]
fn bad_expect_status_points_at_the_value() {
    let e = one_error(&api_with("health: { path: /h, expect_status: \"700\" }"));
    assert_eq!(
        e,
        "shoal.yaml:4:40: services.api.health.expect_status: `700` is out of range; statuses here are 100 to 599"
    );
    // In a list, at the item.
    let e = one_error(&api_with(
        "health: { path: /h, expect_status: [200, \"299-200\"] }",
    ));
    assert!(
        e.starts_with("shoal.yaml:4:46: services.api.health.expect_status[1]: `299-200`: a range goes from the lower status to the higher, e.g. `200-299`"),
        "{e}"
    );
    let e = one_error(&api_with("health: { path: /h, expect_status: 2xx }"));
    assert!(
        e.contains(
            "`2xx` is not a status; expected an HTTP status like `100` or a range like `100-199`"
        ),
        "{e}"
    );
    let e = one_error(&api_with("health: { path: /h, expect_status: [] }"));
    assert!(
        e.contains("expect_status: needs at least one status"),
        "{e}"
    );
    let e = one_error(&api_with("health: { expect_status: 200 }"));
    assert!(
        e.starts_with("shoal.yaml:4:15: services.api.health.expect_status: `expect_status` applies to HTTP checks; set `path` too"),
        "{e}"
    );
    let e = one_error(&api_with("health: { path: /h, fast_interval: 0s }"));
    assert!(
        e.starts_with("shoal.yaml:4:40: services.api.health.fast_interval: must be greater than 0"),
        "{e}"
    );
}

#[test]
fn health_on_servers_services_is_allowed_but_start_settings_are_not() {
    let s = parse(
        &api_with("health: { path: /health, interval: 5s }"),
        "shoal.yaml",
    )
    .unwrap();
    assert_eq!(s.services[0].health.path.as_deref(), Some("/health"));
    assert_eq!(s.services[0].health.interval, Duration::from_secs(5));
    let e = errors(&api_with(
        "health:\n      start_period: 5s\n      start_timeout: 1m",
    ));
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!(
        e[0],
        "shoal.yaml:5:7: services.api.health.start_period: `start_period` applies to services with `command`, not to `servers`"
    );
    assert!(
        e[1].starts_with("shoal.yaml:6:7: services.api.health.start_timeout: `start_timeout` applies to services with `command`"),
        "{}",
        e[1]
    );
}

#[test]
fn liveness_is_on_by_default_and_takes_a_duration_or_false() {
    let web = |health: &str| {
        format!("services:\n  web:\n    command: shoal sample-app\n    health: {health}\n")
    };
    let liveness = |src: &str| {
        parse(src, "shoal.yaml").unwrap().services[0]
            .health
            .liveness
    };
    let thirty = Some(Duration::from_secs(30));
    assert_eq!(
        liveness("services:\n  web:\n    command: shoal sample-app\n"),
        thirty
    );
    assert_eq!(liveness(&web("{ path: /h }")), thirty);
    assert_eq!(liveness(&web("{ liveness: true }")), thirty);
    assert_eq!(
        liveness(&web("{ path: /h, liveness: 2m }")),
        Some(Duration::from_secs(120))
    );
    assert_eq!(liveness(&web("{ liveness: false }")), None);
    // No checks, nothing to fail: no liveness either.
    assert_eq!(liveness(&web("false")), None);

    let e = one_error(&web("{ liveness: 0s }"));
    assert!(
        e.starts_with("shoal.yaml:4:25: services.web.health.liveness: must be greater than 0"),
        "{e}"
    );
    let e = one_error(&web("{ liveness: soon }"));
    assert!(
        e.starts_with("shoal.yaml:4:25: services.web.health.liveness: "),
        "{e}"
    );
    // Static servers are not restarted by shoal.
    let e = one_error(&api_with("health: { liveness: 10s }"));
    assert!(
        e.starts_with("shoal.yaml:4:15: services.api.health.liveness: `liveness` applies to services with `command`"),
        "{e}"
    );
}

#[test]
fn bad_passive_values() {
    let e = one_error(&api_with(
        "passive: { base_ejection: 10s, max_ejection: 5s }",
    ));
    assert_eq!(
        e,
        "shoal.yaml:4:50: services.api.passive.max_ejection: must not be shorter than `base_ejection` (10s)"
    );
    let e = one_error(&api_with("passive: { base_ejection: 1m }"));
    assert!(
        e.starts_with("shoal.yaml:4:31: services.api.passive.base_ejection: is longer than `max_ejection` (default 30s); set `max_ejection` too"),
        "{e}"
    );
    let e = one_error(&api_with("passive: { max_ejected_percent: 0 }"));
    assert!(
        e.starts_with("shoal.yaml:4:37: services.api.passive.max_ejected_percent: expected a whole percentage from 1 to 100"),
        "{e}"
    );
    let s = parse(&api_with("passive: { max_ejected_percent: 100% }"), "f").unwrap();
    assert_eq!(s.services[0].passive.max_ejected_percent, 100);
    let e = one_error(&api_with("passive: { consecutive_5xx: 0 }"));
    assert!(
        e.contains("passive.consecutive_5xx: must be at least 1"),
        "{e}"
    );
    let e = one_error(&api_with("passive: { base_ejection: 0s }"));
    assert!(
        e.contains("passive.base_ejection: must be greater than 0"),
        "{e}"
    );
}

#[test]
fn bad_retry_values() {
    let e = one_error(&api_with("retry: { attempts: 0 }"));
    assert_eq!(
        e,
        "shoal.yaml:4:24: services.api.retry.attempts: must be between 1 and 10 (tries per request, the first included; 1 = never retry)"
    );
    let e = one_error(&api_with("retry: { attempts: 11 }"));
    assert!(
        e.contains("retry.attempts: must be between 1 and 10"),
        "{e}"
    );
    let e = one_error(&api_with("retry: { per_try_timeout: fast }"));
    assert_eq!(
        e,
        "shoal.yaml:4:31: services.api.retry.per_try_timeout: `fast` is not a per-try timeout; expected `auto`, `off` or a duration like `300ms`"
    );
    let e = one_error(&api_with("retry: { per_try_timeout: atuo }"));
    assert!(e.ends_with("did you mean `auto`?"), "{e}");
    let e = one_error(&api_with("retry: { per_try_timeout: 0ms }"));
    assert!(
        e.contains("per_try_timeout: must be greater than 0; write `off`"),
        "{e}"
    );
    let e = one_error(&api_with("retry: { per_try_timeout: 300 }"));
    assert!(e.contains("per_try_timeout: `300` has no unit"), "{e}");
    let e = one_error(&api_with("retry: { on_status: [502, 302] }"));
    assert_eq!(
        e,
        "shoal.yaml:4:31: services.api.retry.on_status[1]: `302` is out of range; statuses here are 400 to 599"
    );
    let s = parse(&api_with("retry: { on_status: [] }"), "f").unwrap();
    assert!(s.services[0].retry.on_status.is_empty());
    let e = one_error(&api_with("retry: { budget: { ratio: 1.5 } }"));
    assert_eq!(
        e,
        "shoal.yaml:4:31: services.api.retry.budget.ratio: must be between 0 and 1 (0% and 100%), got `1.5`"
    );
    let s = parse(&api_with("retry: { budget: { ratio: 0 } }"), "f").unwrap();
    assert_eq!(s.services[0].retry.budget_ratio, 0.0);
    let e = one_error(&api_with("retry: { budget: { ratio: 120% } }"));
    assert!(
        e.contains("budget.ratio: must be between 0 and 1 (0% and 100%), got `120%`"),
        "{e}"
    );
    let e = one_error(&api_with("retry: { max_replay_body: 64 kilobytes }"));
    assert!(
        e.starts_with(
            "shoal.yaml:4:31: services.api.retry.max_replay_body: `64 kilobytes` is not a size"
        ),
        "{e}"
    );
    let s = parse(&api_with("retry: { max_replay_body: 0 }"), "f").unwrap();
    assert_eq!(s.services[0].retry.max_replay_body, 0);
}

#[test]
fn route_retry_errors_point_into_the_route() {
    let src = format!(
        "{}routes:\n  - match: PathPrefix(`/`)\n    service: api\n    retry:\n      attempts: 20\n",
        api_with("retry: { attempts: 2 }")
    );
    let e = one_error(&src);
    assert!(
        e.starts_with("shoal.yaml:9:17: routes[0].retry.attempts: must be between 1 and 10"),
        "{e}"
    );
    let e = one_error(&src.replace("attempts: 20", "atempts: 2"));
    assert!(
        e.starts_with("shoal.yaml:9:7: routes[0].retry: unknown field `atempts`"),
        "{e}"
    );
    assert!(e.ends_with("did you mean `attempts`?"), "{e}");
}

#[test]
fn typos_in_failover_sections_get_hints() {
    for (section, typo, name, column) in [
        ("retry: { atempts: 2 }", "atempts", "attempts", 14),
        ("retry: { budget: { ration: 0.1 } }", "ration", "ratio", 24),
        (
            "passive: { max_ejection_percent: 20 }",
            "max_ejection_percent",
            "max_ejected_percent",
            16,
        ),
        (
            "circuit_breaker: { error_rate: 0.1 }",
            "error_rate",
            "error_ratio",
            24,
        ),
        (
            "health: { expect_statuses: 200 }",
            "expect_statuses",
            "expect_status",
            15,
        ),
    ] {
        let e = one_error(&api_with(section));
        assert!(
            e.starts_with(&format!("shoal.yaml:4:{column}: ")),
            "{section}: {e}"
        );
        assert!(
            e.contains(&format!("unknown field `{typo}`")),
            "{section}: {e}"
        );
        assert!(
            e.ends_with(&format!("did you mean `{name}`?")),
            "{section}: {e}"
        );
    }
    let e = one_error(&api_with("retyr: { attempts: 2 }"));
    assert!(e.ends_with("did you mean `retry`?"), "{e}");
}

const AUTOSCALE: &str = "services:
  api:
    command: [shoal, sample-app]
    replicas: 4
    autoscale:
      min: 2
      max: 12
      cpu: 60%
      cpu_request: 500m
      memory: 256Mi
      concurrency: 7.5
      rps: 120
      latency_p95: 250ms
      tolerance: { up: 15%, down: 0.05 }
      scale_up:
        stabilization: 3s
        policies: [{ pods: 2, period: 2s }, { percent: 150%, period: 3s }]
      scale_down: { stabilization: 45s, policies: [{ percent: 25, period: 10s }] }
      panic: { threshold: 300%, window: 8s, hold: 20s }
      scale_to_zero_after: 2m
      warm_up: 7s
      tick: 500ms
      hold: { queue: 50, timeout: 10s }
      preset: shoal
";

fn command_of(s: &Stack, name: &str) -> Command {
    match &s.service(name).unwrap().source {
        Source::Command(c) => (**c).clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn autoscale_section_parses_into_the_policy() {
    use shoal_autoscale::{Policy, RatePolicy, Target};
    let s = parse(AUTOSCALE, "shoal.yaml").unwrap();
    let api = command_of(&s, "api");
    assert_eq!(api.replicas, 4);
    assert_eq!(
        api.autoscale,
        Some(Autoscale {
            policy: Policy {
                min: 2,
                max: 12,
                // Always in this order: cpu, memory, concurrency, rps, latency_p95.
                targets: vec![
                    Target::Cpu(0.6),
                    Target::Memory(256 * 1024 * 1024),
                    Target::Concurrency(7.5),
                    Target::Rps(120.0),
                    Target::LatencyP95(Duration::from_millis(250)),
                ],
                tolerance_up: 0.15,
                tolerance_down: 0.05,
                up_stabilization: Duration::from_secs(3),
                down_stabilization: Duration::from_secs(45),
                up_policies: vec![
                    RatePolicy::Pods {
                        value: 2,
                        period: Duration::from_secs(2),
                    },
                    RatePolicy::Percent {
                        value: 150,
                        period: Duration::from_secs(3),
                    },
                ],
                down_policies: vec![RatePolicy::Percent {
                    value: 25,
                    period: Duration::from_secs(10),
                }],
                panic_threshold: 3.0,
                panic_window: Duration::from_secs(8),
                panic_hold: Duration::from_secs(20),
                scale_to_zero_after: Duration::from_secs(120),
                warm_up: Duration::from_secs(7),
            },
            cpu_request: 0.5,
            tick: Duration::from_millis(500),
            hold: Hold {
                queue: 50,
                timeout: Duration::from_secs(10),
            },
            preset: Preset::Shoal,
        })
    );
    // The order of the targets does not depend on the order in the file.
    let reordered = AUTOSCALE.replace("      cpu: 60%\n", "") + "      cpu: 0.6\n";
    let s = parse(&reordered, "shoal.yaml").unwrap();
    let policy = command_of(&s, "api").autoscale.unwrap().policy;
    assert_eq!(policy.targets[0], Target::Cpu(0.6));
    assert_eq!(policy.targets.len(), 5);
}

/// A command service with one section, for autoscale tests: the section's value is on
/// line 4.
fn cmd_with(section: &str) -> String {
    format!("services:\n  api:\n    command: [app]\n    {section}\n")
}

fn autoscale_of(section: &str) -> (u32, Autoscale) {
    let s = parse(&cmd_with(section), "shoal.yaml").unwrap();
    let c = command_of(&s, "api");
    (c.replicas, c.autoscale.unwrap())
}

#[test]
fn autoscale_defaults() {
    use shoal_autoscale::{Policy, Target};
    let (replicas, a) = autoscale_of("autoscale: { max: 5, rps: 100 }");
    assert_eq!(
        a,
        Autoscale {
            policy: Policy {
                min: 1,
                max: 5,
                targets: vec![Target::Rps(100.0)],
                ..Policy::default()
            },
            cpu_request: 1.0,
            tick: Duration::from_secs(1),
            hold: Hold {
                queue: 1000,
                timeout: Duration::from_secs(30),
            },
            preset: Preset::Shoal,
        }
    );
    assert_eq!(a.policy.panic_threshold, 2.0);
    assert_eq!(a.policy.down_stabilization, Duration::from_secs(30));
    // The starting count defaults to max(min, 1).
    assert_eq!(replicas, 1);
    let (replicas, a) = autoscale_of("autoscale: { min: 0, max: 5, concurrency: 10 }");
    assert_eq!((replicas, a.policy.min), (1, 0));
    let (replicas, _) = autoscale_of("autoscale: { min: 3, max: 5, concurrency: 10 }");
    assert_eq!(replicas, 3);
    // With min 0 the service may also start with none.
    let src = cmd_with("autoscale: { min: 0, max: 5, concurrency: 10 }")
        .replace("command: [app]\n", "command: [app]\n    replicas: 0\n");
    assert_eq!(command_of(&parse(&src, "f").unwrap(), "api").replicas, 0);
    // A service without `autoscale` has none.
    let s = parse(&cmd_with("replicas: 2"), "f").unwrap();
    assert_eq!(command_of(&s, "api").autoscale, None);
    // Other spellings.
    let (_, a) = autoscale_of("autoscale: { max: 5, cpu: 0.5, cpu_request: 2, memory: 1048576 }");
    assert_eq!(
        a.policy.targets,
        [Target::Cpu(0.5), Target::Memory(1024 * 1024)]
    );
    assert_eq!(a.cpu_request, 2.0);
    let (_, a) = autoscale_of("autoscale: { max: 5, cpu: 250%, cpu_request: '1.5', tolerance: 0 }");
    assert_eq!(a.policy.targets, [Target::Cpu(2.5)]);
    assert_eq!(a.cpu_request, 1.5);
    assert_eq!((a.policy.tolerance_up, a.policy.tolerance_down), (0.0, 0.0));
    let (_, a) = autoscale_of("autoscale: { max: 5, rps: 1, tolerance: { down: 20% } }");
    assert_eq!((a.policy.tolerance_up, a.policy.tolerance_down), (0.1, 0.2));
    // `policies: []`: no limit.
    let (_, a) = autoscale_of("autoscale: { max: 5, rps: 1, scale_up: { policies: [] } }");
    assert!(a.policy.up_policies.is_empty());
    assert_eq!(a.policy.down_policies, Policy::default().down_policies);
}

#[test]
fn autoscale_presets() {
    use shoal_autoscale::{Policy, RatePolicy, Target};
    let secs = Duration::from_secs;
    let (_, hpa) = autoscale_of("autoscale: { max: 8, cpu: 80%, preset: hpa }");
    assert_eq!(hpa.preset, Preset::Hpa);
    assert_eq!(hpa.tick, secs(15));
    assert_eq!(
        hpa.policy,
        Policy {
            min: 1,
            max: 8,
            targets: vec![Target::Cpu(0.8)],
            tolerance_up: 0.1,
            tolerance_down: 0.1,
            up_stabilization: Duration::ZERO,
            down_stabilization: secs(300),
            up_policies: vec![
                RatePolicy::Pods {
                    value: 4,
                    period: secs(15),
                },
                RatePolicy::Percent {
                    value: 100,
                    period: secs(15),
                },
            ],
            down_policies: vec![RatePolicy::Percent {
                value: 100,
                period: secs(15),
            }],
            panic_threshold: f64::INFINITY,
            panic_window: secs(6),
            panic_hold: secs(10),
            scale_to_zero_after: secs(300),
            warm_up: secs(30),
        }
    );
    assert_eq!(hpa.hold, Hold::default());

    let (_, kpa) = autoscale_of("autoscale: { min: 0, max: 8, concurrency: 70, preset: kpa }");
    assert_eq!(kpa.preset, Preset::Kpa);
    assert_eq!(kpa.tick, secs(2));
    assert_eq!(
        kpa.policy,
        Policy {
            min: 0,
            max: 8,
            targets: vec![Target::Concurrency(70.0)],
            tolerance_up: 0.0,
            tolerance_down: 0.0,
            up_stabilization: Duration::ZERO,
            down_stabilization: secs(60),
            up_policies: vec![],
            down_policies: vec![RatePolicy::Percent {
                value: 50,
                period: secs(2),
            }],
            panic_threshold: 2.0,
            panic_window: secs(6),
            panic_hold: secs(60),
            scale_to_zero_after: secs(90),
            warm_up: Duration::ZERO,
        }
    );

    let (_, shoal) = autoscale_of("autoscale: { max: 8, rps: 5, preset: shoal }");
    let (_, none) = autoscale_of("autoscale: { max: 8, rps: 5 }");
    assert_eq!(shoal, none);
    assert_eq!(Preset::Shoal.policy(), Policy::default());

    // Explicit fields override the preset's; the others keep it.
    let (_, a) = autoscale_of(
        "autoscale: { max: 8, cpu: 80%, preset: hpa, tick: 5s, scale_down: { stabilization: 60s }, panic: true }",
    );
    assert_eq!(a.tick, secs(5));
    assert_eq!(
        a.policy,
        Policy {
            down_stabilization: secs(60),
            // `panic: true` turns panic mode on with shoal's threshold.
            panic_threshold: 2.0,
            ..hpa.policy
        }
    );
    let (_, a) = autoscale_of("autoscale: { max: 8, rps: 5, preset: kpa, panic: { window: 10s } }");
    assert_eq!(
        (
            a.policy.panic_threshold,
            a.policy.panic_window,
            a.policy.panic_hold
        ),
        (2.0, secs(10), secs(60))
    );
}

#[test]
fn autoscale_panic_false_switches_panic_mode_off() {
    let (_, a) = autoscale_of("autoscale: { max: 8, rps: 5, panic: false }");
    assert_eq!(a.policy.panic_threshold, f64::INFINITY);
    assert_eq!(
        a.policy,
        shoal_autoscale::Policy {
            max: 8,
            targets: vec![shoal_autoscale::Target::Rps(5.0)],
            panic_threshold: f64::INFINITY,
            ..shoal_autoscale::Policy::default()
        }
    );
    let (_, a) = autoscale_of("autoscale: { max: 8, rps: 5, preset: kpa, panic: false }");
    assert_eq!(a.policy.panic_threshold, f64::INFINITY);
}

#[test]
fn bad_autoscale_values() {
    // No target: at the `autoscale` key.
    let e = one_error(&cmd_with("autoscale: { max: 5 }"));
    assert_eq!(
        e,
        "shoal.yaml:4:5: services.api.autoscale: needs at least one target: `cpu`, `memory`, `concurrency`, `rps`, `latency_p95` or `backlog`"
    );
    // No max.
    let e = one_error(&cmd_with("autoscale: { rps: 5 }"));
    assert_eq!(
        e,
        "shoal.yaml:4:5: services.api.autoscale: needs `max`, the most replicas (1 to 1000)"
    );
    let e = one_error(&cmd_with("autoscale: { min: 4, max: 3, rps: 5 }"));
    assert_eq!(
        e,
        "shoal.yaml:4:31: services.api.autoscale.max: must not be below `min` (4), got 3"
    );
    let e = one_error(&cmd_with("autoscale: { min: 0, max: 0, rps: 5 }"));
    assert_eq!(
        e,
        "shoal.yaml:4:31: services.api.autoscale.max: must be at least 1"
    );
    let e = one_error(&cmd_with("autoscale: { max: 1001, rps: 5 }"));
    assert!(e.contains("autoscale.max: at most 1000 replicas"), "{e}");
    let e = one_error(&cmd_with("autoscale: { max: 5, cpu: 0% }"));
    assert_eq!(
        e,
        "shoal.yaml:4:31: services.api.autoscale.cpu: must be above 0% and at most 1000% (of `cpu_request`), got `0%`"
    );
    let e = one_error(&cmd_with("autoscale: { max: 5, cpu: 50 }"));
    assert!(
        e.ends_with("got `50`; for a percentage, write `50%`"),
        "{e}"
    );
    let e = one_error(&cmd_with("autoscale: { max: 5, cpu: 50%, cpu_request: 0 }"));
    assert_eq!(
        e,
        "shoal.yaml:4:49: services.api.autoscale.cpu_request: must be above 0 cores, got `0`"
    );
    let e = one_error(&cmd_with(
        "autoscale: { max: 5, cpu: 50%, cpu_request: 0m }",
    ));
    assert!(e.contains("cpu_request: must be above 0 cores"), "{e}");
    let e = one_error(&cmd_with(
        "autoscale: { max: 5, cpu: 50%, cpu_request: lots }",
    ));
    assert!(
        e.ends_with("`lots` is not a number of CPU cores; expected e.g. `1`, `0.5` or `500m`"),
        "{e}"
    );
    let e = one_error(&cmd_with("autoscale: { max: 5, concurrency: 0 }"));
    assert_eq!(
        e,
        "shoal.yaml:4:39: services.api.autoscale.concurrency: must be above 0, got `0`"
    );
    let e = one_error(&cmd_with("autoscale: { max: 5, rps: 10% }"));
    assert!(
        e.contains("autoscale.rps: `10%` is not a number; expected e.g. `100`"),
        "{e}"
    );
    let e = one_error(&cmd_with("autoscale: { max: 5, memory: 0 }"));
    assert!(e.contains("autoscale.memory: must be above 0 bytes"), "{e}");
    let e = one_error(&cmd_with("autoscale: { max: 5, memory: 1 gig }"));
    assert!(e.contains("autoscale.memory: `1 gig` is not a size"), "{e}");
    let e = one_error(&cmd_with("autoscale: { max: 5, latency_p95: 0s }"));
    assert_eq!(
        e,
        "shoal.yaml:4:39: services.api.autoscale.latency_p95: must be greater than 0"
    );
    let e = one_error(&cmd_with("autoscale: { max: 5, rps: 5, tolerance: 100% }"));
    assert_eq!(
        e,
        "shoal.yaml:4:45: services.api.autoscale.tolerance: must be at least 0 and below 1 (100%), got `100%`"
    );
    let e = one_error(&cmd_with(
        "autoscale: { max: 5, rps: 5, tolerance: { up: 5%, down: 1 } }",
    ));
    assert!(
        e.starts_with(
            "shoal.yaml:4:61: services.api.autoscale.tolerance.down: must be at least 0 and below 1"
        ),
        "{e}"
    );
    let e = one_error(&cmd_with("autoscale: { max: 5, rps: 5, tick: 0s }"));
    assert_eq!(
        e,
        "shoal.yaml:4:40: services.api.autoscale.tick: must be greater than 0"
    );
    let e = one_error(&cmd_with("autoscale: { max: 5, rps: 5, tick: 2m }"));
    assert!(e.contains("autoscale.tick: must be at most 60s"), "{e}");
    let e = one_error(&cmd_with("autoscale: { max: 5, rps: 5, tick: 1 }"));
    assert!(e.contains("autoscale.tick: `1` has no unit"), "{e}");
    let e = one_error(&cmd_with(
        "autoscale: { max: 5, rps: 5, panic: { threshold: 100% } }",
    ));
    assert_eq!(
        e,
        "shoal.yaml:4:54: services.api.autoscale.panic.threshold: must be above 100% and at most 1000% (of the current replicas), got `100%`"
    );
    let e = one_error(&cmd_with(
        "autoscale: { max: 5, rps: 5, panic: { threshold: 200 } }",
    ));
    assert!(e.ends_with("for a percentage, write `200%`"), "{e}");
    let e = one_error(&cmd_with(
        "autoscale: { max: 5, rps: 5, hold: { queue: 0 } }",
    ));
    assert!(
        e.contains("autoscale.hold.queue: must be at least 1"),
        "{e}"
    );
    let e = one_error(&cmd_with(
        "autoscale: { max: 5, rps: 5, hold: { timeout: 0s } }",
    ));
    assert!(
        e.contains("autoscale.hold.timeout: must be greater than 0"),
        "{e}"
    );
    // Several problems are all reported, in file order.
    let e = errors(&cmd_with("autoscale: { max: 0, cpu: 0, tick: 0s }"));
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(e[0].contains("autoscale.max"), "{}", e[0]);
    assert!(e[1].contains("autoscale.cpu"), "{}", e[1]);
    assert!(e[2].contains("autoscale.tick"), "{}", e[2]);
}

#[test]
fn bad_autoscale_rate_policies() {
    let section = |p: &str| {
        cmd_with(&format!(
            "autoscale:\n      max: 5\n      rps: 5\n      scale_up:\n        policies:\n          - {p}\n"
        ))
    };
    // Line 9 is the policy.
    let e = one_error(&section("{ pods: 2, percent: 100, period: 1s }"));
    assert_eq!(
        e,
        "shoal.yaml:9:24: services.api.autoscale.scale_up.policies[0].percent: a policy has either `pods` or `percent`, not both"
    );
    let e = one_error(&section("{ period: 1s }"));
    assert_eq!(
        e,
        "shoal.yaml:9:13: services.api.autoscale.scale_up.policies[0]: a policy needs `pods: N` (replicas) or `percent: N` (of the current count), and `period`"
    );
    let e = one_error(&section("{ pods: 2 }"));
    assert_eq!(
        e,
        "shoal.yaml:9:13: services.api.autoscale.scale_up.policies[0]: a policy needs `period`, e.g. `period: 15s`"
    );
    let e = one_error(&section("{ pods: 0, period: 1s }"));
    assert_eq!(
        e,
        "shoal.yaml:9:21: services.api.autoscale.scale_up.policies[0].pods: must be at least 1"
    );
    let e = one_error(&section("{ percent: 0.5, period: 1s }"));
    assert_eq!(
        e,
        "shoal.yaml:9:24: services.api.autoscale.scale_up.policies[0].percent: expected a whole percentage of at least 1, like `50` or `50%`, got `0.5`"
    );
    let e = one_error(&section("{ percent: 100%, period: 0s }"));
    assert_eq!(
        e,
        "shoal.yaml:9:38: services.api.autoscale.scale_up.policies[0].period: must be greater than 0"
    );
    let e = one_error(&section("{ pods: 2, period: 1s, every: 2s }"));
    assert!(
        e.starts_with(
            "shoal.yaml:9:36: services.api.autoscale.scale_up.policies[0]: unknown field `every`"
        ),
        "{e}"
    );
    // The second entry, in scale_down.
    let e = one_error(&cmd_with(
        "autoscale: { max: 5, rps: 5, scale_down: { policies: [{ pods: 1, period: 1s }, { pods: 1 }] } }",
    ));
    assert!(
        e.starts_with("shoal.yaml:4:84: services.api.autoscale.scale_down.policies[1]: a policy needs `period`"),
        "{e}"
    );
}

#[test]
fn unknown_autoscale_names_get_hints() {
    let e = one_error(&cmd_with("autoscale: { max: 5, rps: 5, preset: hap }"));
    assert_eq!(
        e,
        "shoal.yaml:4:42: services.api.autoscale.preset: unknown preset `hap`; expected `shoal`, `hpa` or `kpa`; did you mean `hpa`?"
    );
    let e = one_error(&cmd_with("autoscale: { max: 5, rps: 5, preset: knative }"));
    assert!(e.ends_with("expected `shoal`, `hpa` or `kpa`"), "{e}");
    for (section, typo, name, column) in [
        ("autoscale: { max: 5, rsp: 5 }", "rsp", "rps", 26),
        (
            "autoscale: { max: 5, rps: 5, latency_p99: 1s }",
            "latency_p99",
            "latency_p95",
            34,
        ),
        ("autoscale: { mxa: 5, rps: 5 }", "mxa", "max", 18),
        (
            "autoscale: { max: 5, rps: 5, scale_down: { stabilisation: 1m } }",
            "stabilisation",
            "stabilization",
            48,
        ),
        (
            "autoscale: { max: 5, rps: 5, scale_up: { policies: [{ pod: 1, period: 1s }] } }",
            "pod",
            "pods",
            59,
        ),
        (
            "autoscale: { max: 5, rps: 5, panic: { treshold: 3 } }",
            "treshold",
            "threshold",
            43,
        ),
        (
            "autoscale: { max: 5, rps: 5, hold: { queues: 3 } }",
            "queues",
            "queue",
            42,
        ),
    ] {
        let e = one_error(&cmd_with(section));
        assert!(
            e.starts_with(&format!("shoal.yaml:4:{column}: ")),
            "{section}: {e}"
        );
        assert!(
            e.contains(&format!("unknown field `{typo}`")),
            "{section}: {e}"
        );
        assert!(
            e.ends_with(&format!("did you mean `{name}`?")),
            "{section}: {e}"
        );
    }
    let e = one_error(&cmd_with("autoscael: { max: 5, rps: 5 }"));
    assert!(e.ends_with("did you mean `autoscale`?"), "{e}");
}

#[test]
fn autoscale_applies_to_command_services_only() {
    let e = one_error(&api_with("autoscale: { max: 5, rps: 5 }"));
    assert_eq!(
        e,
        "shoal.yaml:4:5: services.api.autoscale: `autoscale` applies to services with `command` or `image`, not to `servers`"
    );
}

#[test]
fn autoscaled_replicas_start_within_min_and_max() {
    let with = |replicas: u32, autoscale: &str| {
        format!(
            "services:\n  api:\n    command: [app]\n    replicas: {replicas}\n    autoscale: {autoscale}\n"
        )
    };
    let e = one_error(&with(12, "{ max: 10, rps: 5 }"));
    assert_eq!(
        e,
        "shoal.yaml:4:15: services.api.replicas: with `autoscale`, `replicas` is the starting count and must be between `min` (1) and `max` (10), got 12"
    );
    let e = one_error(&with(1, "{ min: 2, max: 10, rps: 5 }"));
    assert!(
        e.contains("must be between `min` (2) and `max` (10), got 1"),
        "{e}"
    );
    let e = one_error(&with(0, "{ max: 10, rps: 5 }"));
    assert!(e.contains("got 0"), "{e}");
    for (replicas, autoscale) in [
        (0, "{ min: 0, max: 3, rps: 5 }"),
        (3, "{ min: 0, max: 3, rps: 5 }"),
        (2, "{ min: 2, max: 3, rps: 5 }"),
    ] {
        let s = parse(&with(replicas, autoscale), "f").unwrap();
        assert_eq!(command_of(&s, "api").replicas, replicas);
    }
    // Without autoscale, replicas is not bounded by it.
    let s = parse(
        &with(12, "{ max: 10, rps: 5 }").replace("    autoscale: { max: 10, rps: 5 }\n", ""),
        "f",
    )
    .unwrap();
    assert_eq!(command_of(&s, "api").replicas, 12);
}

#[test]
fn kubernetes_size_units() {
    let (_, a) = autoscale_of("autoscale: { max: 5, memory: 512Ki }");
    assert_eq!(
        a.policy.targets,
        [shoal_autoscale::Target::Memory(512 * 1024)]
    );
    let (_, a) = autoscale_of("autoscale: { max: 5, memory: 1Gi }");
    assert_eq!(a.policy.targets, [shoal_autoscale::Target::Memory(1 << 30)]);
    let s = parse(&cmd_with("logs: { max_size: 2Mi }"), "f").unwrap();
    assert_eq!(command_of(&s, "api").logs.max_size, 2 * 1024 * 1024);
}

#[test]
fn metrics_and_access_log_default_and_forms() {
    let s = parse(MINIMAL, "shoal.yaml").unwrap();
    assert_eq!(s.metrics, Metrics::default());
    assert!(s.metrics.enabled);
    assert_eq!(s.metrics.prefix, MetricsPrefix::Shoal);
    assert_eq!(s.metrics.buckets, vec![0.1, 0.3, 1.2, 5.0]);
    assert_eq!(s.access_log, None);

    let src = format!(
        "{MINIMAL}metrics: {{ prefix: traefik, buckets: [0.05, 0.5, 2] }}\naccess_log: {{ format: common, path: access.log }}\n"
    );
    let s = parse(&src, "shoal.yaml").unwrap();
    assert_eq!(s.metrics.prefix, MetricsPrefix::Traefik);
    assert_eq!(s.metrics.buckets, vec![0.05, 0.5, 2.0]);
    let log = s.access_log.unwrap();
    assert_eq!(log.format, AccessLogFormat::Common);
    assert_eq!(
        log.path.as_deref(),
        Some(std::path::Path::new("access.log"))
    );

    let s = parse(
        &format!("{MINIMAL}metrics: false\naccess_log: true\n"),
        "shoal.yaml",
    )
    .unwrap();
    assert!(!s.metrics.enabled);
    let log = s.access_log.unwrap();
    assert_eq!((log.format, log.path), (AccessLogFormat::Json, None));
}

#[test]
fn metrics_and_access_log_errors_point_at_the_field() {
    let e = one_error(&format!("{MINIMAL}metrics: {{ prefix: trafik }}\n"));
    assert!(
        e.starts_with("shoal.yaml:7:20: metrics.prefix: unknown prefix `trafik`"),
        "{e}"
    );
    assert!(e.contains("did you mean `traefik`?"), "{e}");
    let e = one_error(&format!("{MINIMAL}metrics: {{ buckets: [1, 0.5] }}\n"));
    assert!(e.starts_with("shoal.yaml:7:21: metrics.buckets:"), "{e}");
    let e = one_error(&format!("{MINIMAL}access_log: {{ format: clf }}\n"));
    assert!(e.starts_with("shoal.yaml:7:23: access_log.format:"), "{e}");
    let e = one_error(&format!("{MINIMAL}access_log: {{ formt: json }}\n"));
    assert!(e.contains("unknown field `formt`"), "{e}");
    assert!(e.contains("did you mean `format`?"), "{e}");
    assert!(e.starts_with("shoal.yaml:7:"), "{e}");
}

const WORKER: &str = "services:
  aggregator:
    kind: worker
    command: [python3, worker.py]
    stop: { grace: 30s }
    autoscale:
      min: 0
      max: 8
      scale_to_zero_after: 30s
      backlog:
        redis: { url: redis://127.0.0.1:6379, stream: sales, group: aggregators }
        password_env: REDIS_PASSWORD
        per_replica: 100
        activation: 5
        drain_within: 10s
        poll: 500ms
        smoothing: 2s
        fallback: { after: 4, replicas: 2 }
";

#[test]
fn worker_with_a_backlog_parses_into_the_policy_and_the_queue() {
    use shoal_autoscale::{Backlog, Fallback, Target};
    let s = parse(WORKER, "shoal.yaml").unwrap();
    let svc = s.service("aggregator").unwrap();
    assert!(svc.is_worker());
    assert!(!svc.health.enabled, "a worker is ready once it runs");
    let c = command_of(&s, "aggregator");
    assert_eq!(c.kind, ServiceKind::Worker);
    assert_eq!(c.replicas, 1, "starts with one, as any `min: 0` service");
    assert_eq!(
        c.stop,
        Stop {
            drain_timeout: Duration::ZERO,
            grace: Duration::from_secs(30),
        }
    );
    let a = c.autoscale.unwrap();
    assert_eq!((a.policy.min, a.policy.max), (0, 8));
    assert_eq!(a.policy.scale_to_zero_after, Duration::from_secs(30));
    assert_eq!(
        a.policy.targets,
        [Target::Backlog(Backlog {
            per_replica: 100,
            activation: 5,
            drain_within: Some(Duration::from_secs(10)),
            smoothing: Duration::from_secs(2),
            cap_at_partitions: true,
            fallback: Some(Fallback {
                after: 4,
                replicas: 2
            }),
        })]
    );
    assert_eq!(
        c.backlog,
        Some(BacklogTrigger {
            source: BacklogSource::Redis {
                url: "redis://127.0.0.1:6379".into(),
                stream: "sales".into(),
                group: "aggregators".into(),
            },
            password: Some(SecretSource::Env("REDIS_PASSWORD".into())),
            poll: Duration::from_millis(500),
        })
    );
    // A web service is `kind: web`, and has no queue unless it has a backlog target.
    let s = parse(MINIMAL, "shoal.yaml").unwrap();
    assert!(!s.service("web").unwrap().is_worker());
    let demo = parse(DEMO_STACK, "<demo>").unwrap();
    let users = command_of(&demo, "users");
    assert_eq!((users.kind, users.backlog), (ServiceKind::Web, None));
}

#[test]
fn backlog_defaults_follow_keda_per_broker() {
    use shoal_autoscale::{Backlog, Target};
    let of = |broker: &str| {
        let (_, a) = autoscale_of(&format!("autoscale: {{ max: 5, backlog: {{ {broker} }} }}"));
        match a.policy.targets[..] {
            [Target::Backlog(b)] => b,
            ref other => panic!("{other:?}"),
        }
    };
    let redis = of("redis: { url: 'redis://localhost', stream: s, group: g }");
    assert_eq!(redis, Backlog::new(5));
    assert_eq!(redis.smoothing, Duration::from_secs(5));
    let rabbit = of("rabbitmq: { url: 'amqp://guest@localhost/%2f', queue: q }");
    assert_eq!(rabbit.per_replica, 20);
    let kafka = of("kafka: { brokers: 'localhost:9092', topic: t, group: g }");
    assert_eq!(kafka, Backlog::new(10));
    let idle =
        of("kafka: { brokers: [a:9092, b:9092], topic: t, group: g, allow_idle_consumers: true }");
    assert!(!idle.cap_at_partitions);

    let src = cmd_with(
        "autoscale: { max: 5, backlog: { kafka: { brokers: [a:9092, 'b:9093'], topic: t, group: g } } }",
    );
    let c = command_of(&parse(&src, "shoal.yaml").unwrap(), "api");
    assert_eq!(
        c.backlog,
        Some(BacklogTrigger {
            source: BacklogSource::Kafka {
                brokers: vec!["a:9092".into(), "b:9093".into()],
                topic: "t".into(),
                group: "g".into(),
            },
            password: None,
            poll: Duration::from_secs(1),
        })
    );
    // The management API counts unacknowledged messages.
    let src = cmd_with(
        "autoscale: { max: 5, backlog: { rabbitmq: { url: 'http://guest@localhost:15672/%2f', queue: q, include_unacked: true } } }",
    );
    let c = command_of(&parse(&src, "shoal.yaml").unwrap(), "api");
    assert!(matches!(
        c.backlog.unwrap().source,
        BacklogSource::RabbitMq {
            include_unacked: true,
            ..
        }
    ));
}

#[test]
fn a_web_service_may_scale_on_a_backlog_too() {
    use shoal_autoscale::{Backlog, Target};
    let src = "services:
  api:
    command: [app]
    autoscale:
      min: 0
      max: 5
      backlog:
        redis: { url: 'redis://localhost', stream: s, group: g }
        per_replica: 50
      concurrency: 10
routes:
  - { match: PathPrefix(`/`), service: api }
";
    let s = parse(src, "shoal.yaml").unwrap();
    let a = command_of(&s, "api").autoscale.unwrap();
    // Documented order: the backlog after the request targets.
    assert_eq!(
        a.policy.targets,
        [Target::Concurrency(10.0), Target::Backlog(Backlog::new(50))]
    );
}

#[test]
fn password_file_is_relative_to_the_stack_file() {
    let dir = std::env::temp_dir().join(format!("shoal-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shoal.yaml");
    std::fs::write(
        &path,
        WORKER.replace(
            "password_env: REDIS_PASSWORD",
            "password_file: secrets/redis",
        ),
    )
    .unwrap();
    // Not read (nor required to exist) at validation: it is read when connecting.
    let s = load(&path).unwrap();
    let c = command_of(&s, "aggregator");
    assert_eq!(
        c.backlog.unwrap().password,
        Some(SecretSource::File(dir.join("secrets/redis")))
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_worker_has_no_request_settings() {
    let src = "services:
  w:
    kind: worker
    command: [x]
    health: { path: /h }
    retry: false
    port_env: P
    stop: { drain_timeout: 1s }
    balance: least_requests
    passive: false
    circuit_breaker: true
    protocol: h2c
";
    assert_eq!(
        errors(src),
        [
            "shoal.yaml:5:5: services.w.health: a worker (`kind: worker`) has no port to check: it is ready once its process runs",
            "shoal.yaml:6:5: services.w.retry: `retry` is about requests, and a worker (`kind: worker`) serves none",
            "shoal.yaml:7:5: services.w.port_env: a worker (`kind: worker`) has no port",
            "shoal.yaml:8:13: services.w.stop.drain_timeout: a worker (`kind: worker`) has no requests to drain: it gets SIGTERM at once, then `stop.grace` to finish its work",
            "shoal.yaml:9:5: services.w.balance: `balance` is about requests, and a worker (`kind: worker`) serves none",
            "shoal.yaml:10:5: services.w.passive: `passive` is about requests, and a worker (`kind: worker`) serves none",
            "shoal.yaml:11:5: services.w.circuit_breaker: `circuit_breaker` is about requests, and a worker (`kind: worker`) serves none",
            "shoal.yaml:12:5: services.w.protocol: `protocol` is about requests, and a worker (`kind: worker`) serves none",
        ]
    );
    let e = one_error("services:\n  w:\n    kind: worker\n    servers: [http://127.0.0.1:1]\n");
    assert_eq!(
        e,
        "shoal.yaml:4:5: services.w.servers: a worker (`kind: worker`) is run by shoal: give `command:`, not `servers:`"
    );
    let e = one_error("services:\n  w:\n    kind: wroker\n    command: [x]\n");
    assert_eq!(
        e,
        "shoal.yaml:3:11: services.w.kind: unknown kind `wroker`; expected `web` (serves requests on a port) or `worker` (no port, e.g. a queue consumer); did you mean `worker`?"
    );
    // `kind: web` is the default, written or not.
    parse("services:\n  w:\n    kind: web\n    command: [x]\n", "f").unwrap();
    // Not on Kubernetes yet.
    let e = parse_for(
        "services:\n  w:\n    kind: worker\n    command: [x]\n    image: w:1\n",
        "f",
        Runtime::Kubernetes,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("f:3:5: services.w.kind: `shoal k8s render` does not render workers yet"),
        "{e}"
    );
}

#[test]
fn no_route_can_name_a_worker() {
    let src = "services:
  w:
    kind: worker
    command: [x]
routes:
  - match: PathPrefix(`/`)
    service: w
";
    assert_eq!(
        one_error(src),
        "shoal.yaml:7:14: routes[0].service: `w` is a worker (`kind: worker`): it has no port and serves no requests, so no route can send it any"
    );
}

#[test]
fn a_worker_scales_on_its_queue_cpu_or_memory() {
    let worker = |autoscale: &str| {
        format!("services:\n  w:\n    kind: worker\n    command: [x]\n    {autoscale}\n")
    };
    assert_eq!(
        one_error(&worker("autoscale: { min: 0, max: 3, cpu: 50% }")),
        "shoal.yaml:5:23: services.w.autoscale.min: a worker at zero replicas can only be woken by its queue: `min: 0` needs `backlog`; add `backlog:`, or keep at least one replica with `min: 1`"
    );
    parse(
        &worker("autoscale: { max: 3, cpu: 50%, memory: 1GiB }"),
        "f",
    )
    .unwrap();
    assert_eq!(
        errors(&worker(
            "autoscale: { max: 3, rps: 5, concurrency: 1, latency_p95: 1s, hold: { queue: 1 } }"
        )),
        [
            "shoal.yaml:5:26: services.w.autoscale.rps: a worker (`kind: worker`) serves no requests: scale it on `backlog`, `cpu` or `memory`",
            "shoal.yaml:5:34: services.w.autoscale.concurrency: a worker (`kind: worker`) serves no requests: scale it on `backlog`, `cpu` or `memory`",
            "shoal.yaml:5:50: services.w.autoscale.latency_p95: a worker (`kind: worker`) serves no requests: scale it on `backlog`, `cpu` or `memory`",
            "shoal.yaml:5:67: services.w.autoscale.hold: `hold` keeps requests while a service wakes from zero, and a worker (`kind: worker`) gets none",
        ]
    );
    // No target at all names the backlog too.
    assert_eq!(
        one_error(&cmd_with("autoscale: { max: 5 }")),
        "shoal.yaml:4:5: services.api.autoscale: needs at least one target: `cpu`, `memory`, `concurrency`, `rps`, `latency_p95` or `backlog`"
    );
}

/// A command service with an `autoscale.backlog` section written out in `backlog` (each
/// line indented by 8): the section starts on line 7.
fn with_backlog(backlog: &str) -> String {
    format!(
        "services:\n  w:\n    command: [x]\n    autoscale:\n      max: 3\n      backlog:\n{backlog}"
    )
}

#[test]
fn backlog_errors_name_the_field() {
    // A password in a URL is refused, and never repeated in the message.
    let e = one_error(&with_backlog(
        "        redis: { url: 'redis://app:hunter2@127.0.0.1', stream: s, group: g }\n",
    ));
    assert_eq!(
        e,
        "shoal.yaml:7:23: services.w.autoscale.backlog.redis.url: the URL has a password in it; a password never goes in the stack file; keep the user name in the URL and give the password in `password_env` (a variable's name) or `password_file` (a file)"
    );
    assert!(!e.contains("hunter2"));
    let e = one_error(&with_backlog(
        "        rabbitmq: { url: 'amqp://:s3cret@localhost', queue: q }\n",
    ));
    assert!(
        e.contains("rabbitmq.url: the URL has a password in it"),
        "{e}"
    );
    assert!(!e.contains("s3cret"));

    assert_eq!(
        one_error(&with_backlog("        per_replica: 10\n")),
        "shoal.yaml:6:7: services.w.autoscale.backlog: needs the queue to read: `redis: { url, stream, group }`, `rabbitmq: { url, queue }` or `kafka: { brokers, topic, group }`"
    );
    assert_eq!(
        one_error(&with_backlog(
            "        redis: { url: 'redis://h', stream: s, group: g }\n        kafka: { brokers: [a:1], topic: t, group: g }\n"
        )),
        "shoal.yaml:8:9: services.w.autoscale.backlog.kafka: a backlog reads one queue: give one of `redis`, `rabbitmq` or `kafka` (`redis` is given too)"
    );
    assert_eq!(
        one_error(&with_backlog(
            "        redis: { url: 'redis://h', stream: s }\n"
        )),
        "shoal.yaml:7:16: services.w.autoscale.backlog.redis: missing field `group`"
    );
    let e = one_error(&with_backlog(
        "        redis: { url: 'redis://h', stream: s, group: g, db: 1 }\n",
    ));
    assert!(e.contains("backlog.redis: unknown field `db`"), "{e}");
    assert_eq!(
        one_error(&with_backlog(
            "        rabbitmq: { url: 'amqp://guest@h/%2f', queue: q, include_unacked: true }\n"
        )),
        "shoal.yaml:7:75: services.w.autoscale.backlog.rabbitmq.include_unacked: AMQP does not count unacknowledged messages: `include_unacked` needs the management API; give its URL instead, e.g. `http://guest@127.0.0.1:15672/%2f`"
    );
    assert_eq!(
        errors(&with_backlog(
            "        kafka: { brokers: ['kafka://a:1', b], topic: '', group: g }\n        password_file: ./pw\n"
        )),
        [
            "shoal.yaml:7:28: services.w.autoscale.backlog.kafka.brokers[0]: `kafka://a:1`: a broker is `host:port`, without a scheme",
            "shoal.yaml:7:43: services.w.autoscale.backlog.kafka.brokers[1]: `b` is not a broker address; expected `host:port`, e.g. `127.0.0.1:9092`",
            "shoal.yaml:7:54: services.w.autoscale.backlog.kafka.topic: give the topic's name",
            "shoal.yaml:8:9: services.w.autoscale.backlog.password_file: the Kafka reader does not authenticate yet (no SASL): leave the password out",
        ]
    );
    assert_eq!(
        errors(&with_backlog(
            "        per_replica: 0\n        redis: { url: 'rediss://h', stream: s, group: g }\n        fallback: { replicas: 4 }\n        poll: 0s\n        password_env: A\n        password_file: B\n"
        )),
        [
            "shoal.yaml:7:22: services.w.autoscale.backlog.per_replica: must be at least 1 (messages waiting per replica)",
            "shoal.yaml:8:23: services.w.autoscale.backlog.redis.url: `rediss://` (TLS) is not supported yet; use `redis://`",
            "shoal.yaml:9:31: services.w.autoscale.backlog.fallback.replicas: must not be above `max` (3), got 4",
            "shoal.yaml:10:15: services.w.autoscale.backlog.poll: must be greater than 0",
            "shoal.yaml:12:9: services.w.autoscale.backlog.password_file: give the password in `password_env` or in `password_file`, not both",
        ]
    );
    let e = one_error(&with_backlog(
        "        redis: { url: 'redis://h', stream: s, group: g }\n        fallback: { replicas: 0 }\n",
    ));
    assert!(
        e.contains("fallback.replicas: must be at least 1: a broker that cannot be read never scales a service to zero"),
        "{e}"
    );
    let e = errors(&with_backlog(
        "        redis: { url: 'redis://h', stream: s, group: g }\n        fallback: { after: 0, replicas: 1 }\n        drain_within: 0s\n        poll: 10m\n        activation: -1\n",
    ));
    assert_eq!(e.len(), 1, "serde stops at the first type error: {e:#?}");
    assert_eq!(
        e[0],
        "shoal.yaml:11:21: services.w.autoscale.backlog.activation: invalid type: integer `-1`, expected u64"
    );
    assert_eq!(
        errors(&with_backlog(
            "        redis: { url: 'redis://h', stream: s, group: g }\n        fallback: { after: 0, replicas: 1 }\n        drain_within: 0s\n        poll: 10m\n"
        )),
        [
            "shoal.yaml:8:28: services.w.autoscale.backlog.fallback.after: must be at least 1 failed read",
            "shoal.yaml:9:23: services.w.autoscale.backlog.drain_within: must be greater than 0",
            "shoal.yaml:10:15: services.w.autoscale.backlog.poll: must be at most 300s",
        ]
    );
    for (url, message) in [
        (
            "'127.0.0.1:6379'",
            "expected a URL starting with `redis://`, e.g. `redis://127.0.0.1`",
        ),
        (
            "'http://h'",
            "`http://` is not a scheme for this broker; use `redis://`",
        ),
        ("'redis://'", "the URL has no host"),
        ("'redis://:6379'", "the URL has no host"),
    ] {
        let e = one_error(&with_backlog(&format!(
            "        redis: {{ url: {url}, stream: s, group: g }}\n"
        )));
        assert!(e.ends_with(&format!("redis.url: {message}")), "{url}: {e}");
    }
    assert!(
        one_error(&with_backlog(
            "        redis: { url: 'redis://h', stream: ' ', group: g }\n"
        ))
        .ends_with("backlog.redis.stream: give the stream's name")
    );
    // A user name in the URL is fine (the password comes from `password_env`).
    parse(
        &with_backlog(
            "        rabbitmq: { url: 'amqp://app@h:5672/orders', queue: q }\n        password_env: RABBIT_PASSWORD\n",
        ),
        "f",
    )
    .unwrap();
}

#[test]
fn an_unknown_field_after_multibyte_text_on_its_line_is_reported_without_a_panic() {
    let e = errors("services:\n  web: { servers: [http://127.0.0.1:1], ünknown: 1 }\n");
    assert!(e[0].contains("unknown field `ünknown`"), "{e:#?}");
}
