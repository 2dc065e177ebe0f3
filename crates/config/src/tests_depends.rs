//! `depends_on` (Compose's start order) and `resources` of local replicas (issue 23). Each
//! rule has a test that accepts and one that rejects, with the message and its place.
use super::{command_of, errors};
use crate::*;

#[test]
fn depends_on_takes_a_list_or_conditions() {
    let s = parse(
        "services:
  web:
    command: [app]
    depends_on: [db]
  api:
    command: [app]
    depends_on:
      db: {condition: service_healthy}
      cache:
        condition: service_started
  db:
    command: [db]
  cache:
    kind: worker
    command: [cache]
",
        "shoal.yaml",
    )
    .unwrap();
    let dep = |service: &str, healthy| Dependency {
        service: service.into(),
        healthy,
    };
    assert_eq!(command_of(&s, "web").depends_on, vec![dep("db", false)]);
    assert_eq!(
        command_of(&s, "api").depends_on,
        vec![dep("db", true), dep("cache", false)]
    );
    assert!(command_of(&s, "db").depends_on.is_empty());
}

#[test]
fn unknown_names_self_and_bad_conditions_are_placed() {
    let e = errors(
        "services:
  web:
    command: [app]
    depends_on: [db, cahce, web]
  api:
    command: [app]
    depends_on:
      cache: {condition: service_ready}
  cache:
    command: [cache]
  static:
    servers: [http://127.0.0.1:9]
  edge:
    command: [app]
    depends_on: [static]
",
    );
    let joined = e.join("\n");
    assert!(!joined.contains("did you mean `web`"), "{joined}");
    assert!(
        joined.contains("shoal.yaml:4:18: services.web.depends_on[0]: `web` depends on `db`, which is not a service"),
        "{joined}"
    );
    assert!(
        joined.contains("shoal.yaml:4:22: services.web.depends_on[1]: `web` depends on `cahce`, which is not a service; did you mean `cache`?"),
        "{joined}"
    );
    assert!(
        joined
            .contains("shoal.yaml:4:29: services.web.depends_on[2]: `web` cannot depend on itself"),
        "{joined}"
    );
    assert!(
        joined.contains("shoal.yaml:8:26: services.api.depends_on.cache.condition: unknown condition `service_ready`"),
        "{joined}"
    );
    assert!(
        joined.contains("services.edge.depends_on[0]: `static` has `servers:`"),
        "{joined}"
    );
    assert_eq!(e.len(), 5, "{joined}");
}

#[test]
fn cycles_are_refused_with_the_loop_spelled_out() {
    let e = errors(
        "services:
  a:
    command: [a]
    depends_on: [b]
  b:
    command: [b]
    depends_on:
      c: {condition: service_healthy}
  c:
    command: [c]
    depends_on: [a]
  d:
    command: [d]
    depends_on: [a]
",
    );
    assert_eq!(
        e,
        vec![
            "shoal.yaml:4:17: services.a.depends_on: depends_on cycle: a -> b -> c -> a".to_owned()
        ],
    );
}

#[test]
fn depends_on_is_for_services_shoal_runs() {
    let e = errors(
        "services:
  static:
    servers: [http://127.0.0.1:9]
    depends_on: [db]
  db:
    command: [db]
",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("shoal.yaml:4:5: services.static.depends_on: `depends_on` applies to services with `command`"),
        "{e:?}"
    );
}

#[test]
fn resources_of_a_command_service_limit_its_replicas() {
    let s = parse(
        "services:
  short:
    command: [app]
    resources: {memory: 256MiB, cpu: 0.5}
  full:
    command: [app]
    resources:
      requests: {cpu: 100m, memory: 64MiB}
      limits: {memory: 512MiB}
  none:
    command: [app]
",
        "shoal.yaml",
    )
    .unwrap();
    assert_eq!(
        command_of(&s, "short").limits,
        Quantities {
            cpu_millis: Some(500),
            memory_bytes: Some(256 << 20),
        }
    );
    // The limit where given, else the request.
    assert_eq!(
        command_of(&s, "full").limits,
        Quantities {
            cpu_millis: Some(100),
            memory_bytes: Some(512 << 20),
        }
    );
    assert_eq!(command_of(&s, "none").limits, Quantities::default());
}

#[test]
fn bad_resources_of_a_command_service_are_placed() {
    let e = errors(
        "services:
  web:
    command: [app]
    resources: {memory: lots, cpu: -1}
  static:
    servers: [http://127.0.0.1:9]
    resources: {memory: 1GiB}
",
    );
    let joined = e.join("\n");
    assert_eq!(e.len(), 3, "{joined}");
    assert!(
        joined.contains("shoal.yaml:4:25: services.web.resources.memory:"),
        "{joined}"
    );
    assert!(
        joined.contains("shoal.yaml:4:36: services.web.resources.cpu:"),
        "{joined}"
    );
    assert!(
        joined.contains("shoal.yaml:7:5: services.static.resources: `resources` describes the service's container"),
        "{joined}"
    );
}
