//! Shipping new versions (issue 21): a command service's `version:` and `rollout:`, a
//! route's weighted split (`services:`, `sticky:`, `canary:`) and its `mirror:`. Each rule
//! has a test that accepts and one that rejects, with the message and its place asserted.
use std::time::Duration;

use super::{command_of, errors};
use crate::*;

/// Services for split tests, and the start of a route named `shop`: a route's own keys go
/// on line 14 and after, indented by 4.
const SPLIT: &str = "services:
  api:
    command: [app]
  api-v2:
    command: [app, --v2]
  shadow:
    command: [app, --shadow]
  jobs:
    kind: worker
    command: [work]
routes:
  - name: shop
    match: PathPrefix(`/`)
";

fn route(body: &str) -> String {
    format!("{SPLIT}{body}")
}

fn service_with(section: &str) -> String {
    format!("services:\n  api:\n    command: [app]\n{section}")
}

fn route_of(src: &str) -> Route {
    let mut s = parse(src, "shoal.yaml").unwrap();
    assert_eq!(s.routes.len(), 1);
    s.routes.remove(0)
}

#[test]
fn version_and_rollout_parse_into_the_command() {
    let s = parse(
        &service_with(
            "    version: 2024-06-01.rc_1
    rollout:
      max_surge: 25%
      max_unavailable: 2
      progress_deadline: 90s
",
        ),
        "shoal.yaml",
    )
    .unwrap();
    let c = command_of(&s, "api");
    assert_eq!(c.version.as_deref(), Some("2024-06-01.rc_1"));
    assert_eq!(
        c.rollout,
        Rollout {
            max_surge: Amount::Percent(25),
            max_unavailable: Amount::Count(2),
            progress_deadline: Duration::from_secs(90),
        }
    );
    // A bare number is a label too; percentages may be numbers or quoted text.
    let s = parse(
        &service_with(
            "    version: 7\n    rollout: { max_surge: \"100%\", max_unavailable: 0% }\n",
        ),
        "shoal.yaml",
    )
    .unwrap();
    let c = command_of(&s, "api");
    assert_eq!(c.version.as_deref(), Some("7"));
    assert_eq!(c.rollout.max_surge, Amount::Percent(100));
    assert_eq!(c.rollout.max_unavailable, Amount::Percent(0));
}

#[test]
fn rollout_defaults_one_surge_none_unavailable_a_minute() {
    let c = command_of(&parse(&service_with(""), "shoal.yaml").unwrap(), "api");
    assert_eq!(c.version, None);
    assert_eq!(
        c.rollout,
        Rollout {
            max_surge: Amount::Count(1),
            max_unavailable: Amount::Count(0),
            progress_deadline: Duration::from_secs(60),
        }
    );
    // Fields left out keep their defaults; `max_unavailable` alone may make room.
    let c = command_of(
        &parse(
            &service_with("    rollout: { max_surge: 0, max_unavailable: 1 }\n"),
            "shoal.yaml",
        )
        .unwrap(),
        "api",
    );
    assert_eq!(
        c.rollout,
        Rollout {
            max_surge: Amount::Count(0),
            max_unavailable: Amount::Count(1),
            progress_deadline: Duration::from_secs(60),
        }
    );
    // A worker is a command service too.
    let src = "services:\n  w:\n    kind: worker\n    command: [w]\n    version: v3\n    rollout: { max_unavailable: 50% }\n";
    let c = command_of(&parse(src, "shoal.yaml").unwrap(), "w");
    assert_eq!(c.version.as_deref(), Some("v3"));
    assert_eq!(c.rollout.max_unavailable, Amount::Percent(50));
}

#[test]
fn bad_versions_name_the_field() {
    assert_eq!(
        errors(&service_with("    version: \"a b\"\n")),
        [
            "shoal.yaml:4:14: services.api.version: `a b` is not a version label; use 1 to 63 letters, digits, `.`, `_` or `-`, e.g. `v2` or `2024-06-01.1`"
        ]
    );
    assert_eq!(
        errors(&service_with("    version: \"\"\n")),
        [
            "shoal.yaml:4:14: services.api.version: `` is not a version label; use 1 to 63 letters, digits, `.`, `_` or `-`, e.g. `v2` or `2024-06-01.1`"
        ]
    );
    let long = "v".repeat(64);
    assert_eq!(
        errors(&service_with(&format!("    version: {long}\n"))).len(),
        1
    );
    assert!(
        parse(
            &service_with(&format!("    version: {}\n", &long[1..])),
            "shoal.yaml"
        )
        .is_ok()
    );
    // YAML reads 1.10 as the number 1.1: refused rather than silently changed.
    assert_eq!(
        errors(&service_with("    version: 1.10\n")),
        [
            "shoal.yaml:4:14: services.api.version: read as the number `1.1`; quote the label to keep it as written (YAML reads `1.10` as `1.1`)"
        ]
    );
}

#[test]
fn bad_rollout_values_name_the_field() {
    assert_eq!(
        errors(&service_with(
            "    rollout:\n      max_surge: 0.25\n      max_unavailable: 150%\n      progress_deadline: 0s\n"
        )),
        [
            "shoal.yaml:5:18: services.api.rollout.max_surge: expected a count of replicas like `1` or a percentage of them like `25%`, got `0.25`; for a share, write a percentage: `25%`",
            "shoal.yaml:6:24: services.api.rollout.max_unavailable: a percentage is 0% to 100%, got `150%`",
            "shoal.yaml:7:26: services.api.rollout.progress_deadline: must be greater than 0",
        ]
    );
    assert_eq!(
        errors(&service_with(
            "    rollout: { max_surge: -1, max_unavailable: lots, progress_deadline: 30 }\n"
        )),
        [
            "shoal.yaml:4:27: services.api.rollout.max_surge: expected a count of replicas like `1` or a percentage of them like `25%`, got `-1`",
            "shoal.yaml:4:48: services.api.rollout.max_unavailable: expected a count of replicas like `1` or a percentage of them like `25%`, got `lots`",
            "shoal.yaml:4:73: services.api.rollout.progress_deadline: `30` has no unit; write e.g. `30s` or `30ms`",
        ]
    );
}

#[test]
fn rollout_cannot_have_both_surge_and_unavailability_zero() {
    let message = "`max_surge` and `max_unavailable` are both 0: no replica could ever be replaced; raise one of them; `max_surge: 1` starts a new replica before an old one stops";
    // Both written: at `max_surge`.
    assert_eq!(
        errors(&service_with(
            "    rollout: { max_surge: 0, max_unavailable: 0% }\n"
        )),
        [format!(
            "shoal.yaml:4:27: services.api.rollout.max_surge: {message}"
        )]
    );
    // `max_surge: 0` alone (max_unavailable defaults to 0): at `max_surge`.
    assert_eq!(
        errors(&service_with("    rollout:\n      max_surge: 0%\n")),
        [format!(
            "shoal.yaml:5:18: services.api.rollout.max_surge: {message}"
        )]
    );
}

#[test]
fn version_and_rollout_apply_to_command_services() {
    assert_eq!(
        errors(
            "services:\n  api:\n    servers: [http://127.0.0.1:1]\n    version: v2\n    rollout: { max_surge: 2 }\n"
        ),
        [
            "shoal.yaml:4:5: services.api.version: `version` applies to services with `command` or `image`, not to `servers`",
            "shoal.yaml:5:5: services.api.rollout: `rollout` applies to services with `command` or `image`, not to `servers`",
        ]
    );
    assert_eq!(
        errors(&service_with("    rollout:\n      max_surg: 2\n")),
        [
            "shoal.yaml:5:7: services.api.rollout: unknown field `max_surg`, expected one of `max_surge`, `max_unavailable`, `progress_deadline`; did you mean `max_surge`?"
        ]
    );
}

#[test]
fn a_split_with_every_field_parses_into_the_route() {
    let r = route_of(&route(
        "    services:
      - { name: api, weight: 90 }
      - { name: api-v2, weight: 10 }
    sticky: { cookie: shop_v }
    canary:
      service: api-v2
      step: 5
      max_weight: 50
      interval: 250ms
      min_requests: 3
      max_error_increase: 2%
      max_p95_ratio: 2
      failures: 2
    mirror:
      service: shadow
      percent: 12.5
      max_body: 64KiB
",
    ));
    assert_eq!(
        r.service, "api",
        "a split's first target is the route's service"
    );
    assert_eq!(
        r.split,
        Some(Split {
            targets: vec![
                WeightedTarget {
                    service: "api".into(),
                    weight: 90,
                    retry: None
                },
                WeightedTarget {
                    service: "api-v2".into(),
                    weight: 10,
                    retry: None
                },
            ],
            sticky: Some(Sticky {
                cookie: "shop_v".into()
            }),
            canary: Some(Canary {
                service: "api-v2".into(),
                step: 5,
                max_weight: 50,
                interval: Duration::from_millis(250),
                min_requests: 3,
                max_error_increase: 0.02,
                max_p95_ratio: 2.0,
                failures: 2,
            }),
        })
    );
    assert_eq!(
        r.mirror,
        Some(Mirror {
            service: "shadow".into(),
            percent: 12.5,
            max_body: 64 * 1024,
        })
    );
}

#[test]
fn split_canary_and_mirror_defaults() {
    let r = route_of(&route(
        "    services: [{ name: api-v2 }, { name: api }]
    sticky: true
    canary: { service: api-v2 }
    mirror: { service: shadow }
",
    ));
    assert_eq!(r.service, "api-v2");
    let split = r.split.unwrap();
    assert_eq!(
        split
            .targets
            .iter()
            .map(|t| (t.service.as_str(), t.weight))
            .collect::<Vec<_>>(),
        [("api-v2", 1), ("api", 1)],
        "weight defaults to 1"
    );
    assert_eq!(split.sticky.unwrap().cookie, "shoal_shop");
    assert_eq!(
        split.canary.unwrap(),
        Canary {
            service: "api-v2".into(),
            step: 10,
            max_weight: 100,
            interval: Duration::from_secs(30),
            min_requests: 20,
            max_error_increase: 0.01,
            max_p95_ratio: 1.5,
            failures: 1,
        }
    );
    assert_eq!(
        r.mirror.unwrap(),
        Mirror {
            service: "shadow".into(),
            percent: 100.0,
            max_body: 1024 * 1024,
        }
    );
    // No `sticky`, `sticky: false`: not sticky; a weight may be 0 (blue-green's idle side).
    for sticky in ["", "    sticky: false\n"] {
        let r = route_of(&route(&format!(
            "    services: [{{ name: api, weight: 0 }}, {{ name: api-v2, weight: 1000 }}]\n{sticky}"
        )));
        let split = r.split.unwrap();
        assert_eq!((split.sticky, split.canary), (None, None));
        assert_eq!(split.targets[0].weight, 0);
        assert_eq!(r.mirror, None);
    }
    // One `service:` has no split; a mirror is fine there, its share as `N%` too.
    let r = route_of(&route(
        "    service: api\n    mirror: { service: shadow, percent: \"0.5%\", max_body: 0 }\n",
    ));
    assert_eq!((r.service.as_str(), r.split), ("api", None));
    assert_eq!(
        r.mirror.unwrap(),
        Mirror {
            service: "shadow".into(),
            percent: 0.5,
            max_body: 0,
        }
    );
}

#[test]
fn the_default_sticky_cookie_is_a_valid_cookie_name() {
    let src = route("    services: [{ name: api }, { name: api-v2 }]\n    sticky: {}\n")
        .replace("name: shop", "name: \"shop/eu 1=é\"");
    let r = route_of(&src);
    assert_eq!(r.name, "shop/eu 1=é");
    assert_eq!(r.split.unwrap().sticky.unwrap().cookie, "shoal_shop_eu_1__");
    // The default route name too (`route-N`).
    let src = route("    services: [{ name: api }, { name: api-v2 }]\n    sticky: true\n")
        .replace("  - name: shop\n    match", "  - match");
    assert_eq!(
        route_of(&src).split.unwrap().sticky.unwrap().cookie,
        "shoal_route-0"
    );
}

#[test]
fn split_targets_get_the_checks_a_service_gets() {
    assert_eq!(
        errors(&route(
            "    services:
      - { name: api, weight: 0 }
      - { name: api, weight: 1 }
      - { name: jobs }
      - { name: apii }
      - { name: api-v2, weight: 1001 }
"
        )),
        [
            "shoal.yaml:16:17: routes[0].services[1].name: `api` is listed twice in the split",
            "shoal.yaml:17:17: routes[0].services[2].name: `jobs` is a worker (`kind: worker`): it has no port and serves no requests, so no route can send it any",
            "shoal.yaml:18:17: routes[0].services[3].name: unknown service `apii`; did you mean `api`?",
            "shoal.yaml:19:33: routes[0].services[4].weight: a weight is 0 to 1000 (relative to the others), got 1001",
        ]
    );
    assert_eq!(
        errors(&route("    services: [{ name: api }]\n")),
        [
            "shoal.yaml:14:15: routes[0].services: a split needs at least 2 services, got 1; for one target, write `service: NAME`"
        ]
    );
    assert_eq!(
        errors(&route(
            "    services: [{ name: api, weight: 0 }, { name: api-v2, weight: 0 }]\n"
        )),
        [
            "shoal.yaml:14:15: routes[0].services: every weight is 0: the route would send its requests nowhere"
        ]
    );
    assert_eq!(
        errors(&route(
            "    services: [{ name: api, wieght: 3 }, { name: api-v2 }]\n"
        )),
        [
            "shoal.yaml:14:29: routes[0].services[0]: unknown field `wieght`, expected `name` or `weight`; did you mean `weight`?"
        ]
    );
}

#[test]
fn a_route_has_service_or_services() {
    assert_eq!(
        errors(&route(
            "    service: api\n    services: [{ name: api }, { name: api-v2 }]\n"
        )),
        [
            "shoal.yaml:15:5: routes[0].services: give either `service:` (one target) or `services:` (a weighted split), not both"
        ]
    );
    assert_eq!(
        errors(&route("    priority: 3\n")),
        [
            "shoal.yaml:12:9: routes[0]: a route needs `service:` (its target) or `services:` (a weighted split)"
        ]
    );
    assert_eq!(
        errors(&route(
            "    service: api\n    sticky: true\n    canary: { service: api }\n"
        )),
        [
            "shoal.yaml:15:5: routes[0].sticky: `sticky` applies to a weighted split (`services:`), not to one `service:`",
            "shoal.yaml:16:5: routes[0].canary: `canary` applies to a weighted split (`services:`), not to one `service:`",
        ]
    );
}

#[test]
fn bad_sticky_and_canary_values_name_the_field() {
    assert_eq!(
        errors(&route(
            "    services: [{ name: api }, { name: api-v2 }]
    sticky: { cookie: \"a;b\" }
    canary:
      service: api-v3
      step: 0
      max_weight: 101
      interval: 50ms
      max_error_increase: 2
      max_p95_ratio: 0.5
      failures: 0
"
        )),
        [
            "shoal.yaml:15:23: routes[0].sticky.cookie: `a;b` is not a valid cookie name (RFC 6265: visible ASCII characters except separators like `;`, `,`, `=`, spaces and quotes)",
            "shoal.yaml:17:16: routes[0].canary.service: `api-v3` is not one of the route's `services:`; did you mean `api-v2`?",
            "shoal.yaml:18:13: routes[0].canary.step: expected a whole percentage from 1 to 100, got `0`",
            "shoal.yaml:19:19: routes[0].canary.max_weight: expected a whole percentage from 1 to 100, got `101`",
            "shoal.yaml:20:17: routes[0].canary.interval: must be at least 100ms: each interval judges the canary on the requests it answered in it",
            "shoal.yaml:21:27: routes[0].canary.max_error_increase: must be between 0 and 1 (0% and 100%), got `2`; for a percentage, write `2%`",
            "shoal.yaml:22:22: routes[0].canary.max_p95_ratio: must be at least 1 (the stable version's p95), got `0.5`",
            "shoal.yaml:23:17: routes[0].canary.failures: must be at least 1",
        ]
    );
    assert_eq!(
        errors(&route(
            "    services: [{ name: api }, { name: api-v2 }]\n    canary: { step: 5 }\n"
        )),
        [
            "shoal.yaml:15:5: routes[0].canary: a canary needs `service:`, the new version (one of the route's `services:`)"
        ]
    );
    assert_eq!(
        errors(&route(
            "    services: [{ name: api }, { name: api-v2 }]\n    canary:\n      service: api-v2\n      stpe: 5\n"
        )),
        [
            "shoal.yaml:17:7: routes[0].canary: unknown field `stpe`, expected one of `service`, `step`, `max_weight`, `interval`, `min_requests`, `max_error_increase`, `max_p95_ratio`, `failures`; did you mean `step`?"
        ]
    );
}

#[test]
fn a_mirror_copies_to_another_web_service() {
    assert_eq!(
        errors(&route(
            "    service: api\n    mirror: { service: api, percent: 150, max_body: 1XB }\n"
        )),
        [
            "shoal.yaml:15:24: routes[0].mirror.service: `api` already serves this route; a mirror copies requests to another service",
            "shoal.yaml:15:38: routes[0].mirror.percent: expected a percentage from 0 to 100 (fractions allowed, e.g. `0.5`), got `150`",
            "shoal.yaml:15:53: routes[0].mirror.max_body: `1XB` is not a size; expected bytes or a number with a unit, like `10MiB`, `512KiB` or `10MB`",
        ]
    );
    assert_eq!(
        errors(&route(
            "    services: [{ name: api }, { name: api-v2 }]\n    mirror: { service: api-v2 }\n"
        )),
        [
            "shoal.yaml:15:24: routes[0].mirror.service: `api-v2` already serves this route; a mirror copies requests to another service"
        ]
    );
    assert_eq!(
        errors(&route("    service: api\n    mirror: { service: jobs }\n")),
        [
            "shoal.yaml:15:24: routes[0].mirror.service: `jobs` is a worker (`kind: worker`): it has no port and serves no requests, so no route can send it any"
        ]
    );
    assert_eq!(
        errors(&route("    service: api\n    mirror: { service: shadw }\n")),
        [
            "shoal.yaml:15:24: routes[0].mirror.service: unknown service `shadw`; did you mean `shadow`?"
        ]
    );
    assert_eq!(
        errors(&route("    service: api\n    mirror: { percent: 5 }\n")),
        [
            "shoal.yaml:15:5: routes[0].mirror: a mirror needs `service:`, the service that gets the copies"
        ]
    );
    assert_eq!(
        errors(&route(
            "    service: api\n    mirror: { service: shadow, percnt: 3 }\n"
        )),
        [
            "shoal.yaml:15:32: routes[0].mirror: unknown field `percnt`, expected one of `service`, `percent`, `max_body`; did you mean `percent`?"
        ]
    );
}
