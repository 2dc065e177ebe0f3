//! Raw → validated for shipping new versions: a command service's `version:` and
//! `rollout:`, and a route's targets — one `service:`, or a weighted split (`services:`, with
//! `sticky:` and an automated `canary:`) — and its `mirror:`.
//!
//! Every service a route names, split targets and mirror included, gets the checks a route's
//! `service:` gets: it exists and it is not a worker. A split's weights are relative (Traefik's
//! weighted services), so only "not all 0" is asked of them; the canary and the mirror must
//! name a service that makes sense for the route (one of the split; not one of its targets).
use std::time::Duration;

use super::Cx;
use super::units::list_or_none;
use crate::error::did_you_mean;
use crate::model::*;
use crate::raw::*;

/// Highest weight of a split's target.
const MAX_WEIGHT: u32 = 1000;

/// Longest `version:` label (a Kubernetes label value's limit).
const MAX_VERSION_LEN: usize = 63;

/// Shortest `canary.interval`: tests run canaries in well under a second per step; a real
/// canary wants tens of seconds to see enough requests.
const MIN_CANARY_INTERVAL: Duration = Duration::from_millis(100);

/// Default `mirror.max_body`.
const DEFAULT_MIRROR_MAX_BODY: u64 = 1024 * 1024;

/// Where a route's requests go, as validated.
pub(super) struct Targets {
    /// The route's service (a split's first target).
    pub(super) service: String,
    pub(super) split: Option<Split>,
    pub(super) mirror: Option<Mirror>,
}

impl Cx<'_> {
    /// `version:` of a command service: a label of letters, digits, `.`, `_` and `-`.
    pub(super) fn version(&mut self, path: &str, raw: Option<RawLabel>) -> Option<String> {
        let RawLabel(label) = raw?;
        let field = format!("{path}.version");
        let ok = !label.is_empty()
            && label.len() <= MAX_VERSION_LEN
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            self.error(
                &field,
                format!(
                    "`{label}` is not a version label; use 1 to {MAX_VERSION_LEN} letters, digits, `.`, `_` or `-`, e.g. `v2` or `2024-06-01.1`"
                ),
            );
            return None;
        }
        Some(label)
    }

    /// `rollout:` of a command service. `max_surge` and `max_unavailable` may not both be 0:
    /// no replica could then ever be replaced.
    pub(super) fn rollout(&mut self, path: &str, raw: Option<RawRollout>) -> Rollout {
        let d = Rollout::default();
        let Some(raw) = raw else {
            return d;
        };
        let path = format!("{path}.rollout");
        let surge_field = format!("{path}.max_surge");
        let unavailable_field = format!("{path}.max_unavailable");
        let max_surge = match raw.max_surge.clone() {
            None => Some(d.max_surge),
            Some(n) => self.amount(&surge_field, n),
        };
        let max_unavailable = match raw.max_unavailable.clone() {
            None => Some(d.max_unavailable),
            Some(n) => self.amount(&unavailable_field, n),
        };
        let progress_deadline = self.nonzero(
            &format!("{path}.progress_deadline"),
            raw.progress_deadline.as_ref(),
            d.progress_deadline,
        );
        let zero = |a: Amount| matches!(a, Amount::Count(0) | Amount::Percent(0));
        if let (Some(s), Some(u)) = (max_surge, max_unavailable)
            && zero(s)
            && zero(u)
        {
            let field = if raw.max_surge.is_some() {
                surge_field
            } else {
                unavailable_field
            };
            self.error_hint(
                &field,
                "`max_surge` and `max_unavailable` are both 0: no replica could ever be replaced",
                Some(
                    "raise one of them; `max_surge: 1` starts a new replica before an old one stops"
                        .into(),
                ),
            );
        }
        Rollout {
            max_surge: max_surge.unwrap_or(d.max_surge),
            max_unavailable: max_unavailable.unwrap_or(d.max_unavailable),
            progress_deadline,
        }
    }

    /// A count of replicas (`2`) or a whole percentage of the desired count (`25%`).
    fn amount(&mut self, field: &str, raw: RawNumber) -> Option<Amount> {
        let expected = |shown: &str| {
            format!(
                "expected a count of replicas like `1` or a percentage of them like `25%`, got `{shown}`"
            )
        };
        match raw {
            RawNumber::Number(v) => {
                if v.fract() == 0.0 && (0.0..=f64::from(MAX_AMOUNT)).contains(&v) {
                    Some(Amount::Count(v as u32))
                } else {
                    let shown = v.to_string();
                    let hint = (v > 0.0 && v < 1.0)
                        .then(|| format!("for a share, write a percentage: `{}%`", v * 100.0));
                    self.error_hint(field, expected(&shown), hint);
                    None
                }
            }
            RawNumber::Text(t) => {
                let text = t.trim();
                let (number, percent) = match text.strip_suffix('%') {
                    Some(p) => (p.trim(), true),
                    None => (text, false),
                };
                match number.parse::<u32>() {
                    Ok(p) if percent && p <= 100 => Some(Amount::Percent(p)),
                    Ok(_) if percent => {
                        self.error(field, format!("a percentage is 0% to 100%, got `{t}`"));
                        None
                    }
                    Ok(n) if n <= MAX_AMOUNT => Some(Amount::Count(n)),
                    _ => {
                        self.error(field, expected(&t));
                        None
                    }
                }
            }
        }
    }

    /// That `name`, written at `field`, is a service a route can send requests to: it
    /// exists and is not a worker.
    pub(super) fn web_service(&mut self, field: &str, name: &str, services: &[Service]) -> bool {
        match services.iter().find(|s| s.name == name) {
            None => {
                let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
                let hint = did_you_mean(name, names.iter().copied())
                    .or_else(|| Some(format!("defined services: {}", list_or_none(&names))));
                self.error_hint(field, format!("unknown service `{name}`"), hint);
                false
            }
            Some(s) if s.is_worker() => {
                self.error(
                    field,
                    format!(
                        "`{name}` is a worker (`kind: worker`): it has no port and serves no \
                         requests, so no route can send it any"
                    ),
                );
                false
            }
            Some(_) => true,
        }
    }

    /// The route's `service:` or `services:` (exactly one of them), `sticky:`, `canary:`
    /// and `mirror:`. `route` is the route's name (the default sticky cookie's suffix).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn targets(
        &mut self,
        path: &str,
        route: &str,
        service: Option<String>,
        split: Option<Vec<RawTarget>>,
        sticky: Option<BoolOr<RawSticky>>,
        canary: Option<RawCanary>,
        mirror: Option<RawMirror>,
        services: &[Service],
    ) -> Targets {
        let (service, split) = match (service, split) {
            (Some(service), None) => {
                self.web_service(&format!("{path}.service"), &service, services);
                for (key, present) in [("sticky", sticky.is_some()), ("canary", canary.is_some())] {
                    if present {
                        self.misplaced(
                            &format!("{path}.{key}"),
                            format!(
                                "`{key}` applies to a weighted split (`services:`), not to one \
                                 `service:`"
                            ),
                        );
                    }
                }
                (service, None)
            }
            (Some(_), Some(_)) => {
                self.misplaced(
                    &format!("{path}.services"),
                    "give either `service:` (one target) or `services:` (a weighted split), not both",
                );
                (String::new(), None)
            }
            (None, None) => {
                self.misplaced(
                    path,
                    "a route needs `service:` (its target) or `services:` (a weighted split)",
                );
                (String::new(), None)
            }
            (None, Some(targets)) => {
                let split = self.split(path, route, targets, sticky, canary, services);
                let first = split
                    .as_ref()
                    .and_then(|s| s.targets.first())
                    .map(|t| t.service.clone())
                    .unwrap_or_default();
                (first, split)
            }
        };
        let mirror = mirror.and_then(|m| {
            let own: Vec<&str> = match &split {
                Some(s) => s.targets.iter().map(|t| t.service.as_str()).collect(),
                None => vec![service.as_str()],
            };
            self.mirror(&format!("{path}.mirror"), m, &own, services)
        });
        Targets {
            service,
            split,
            mirror,
        }
    }

    /// `services:` with its `sticky:` and `canary:`. None when anything in it is invalid
    /// (reported).
    fn split(
        &mut self,
        path: &str,
        route: &str,
        raw: Vec<RawTarget>,
        sticky: Option<BoolOr<RawSticky>>,
        canary: Option<RawCanary>,
        services: &[Service],
    ) -> Option<Split> {
        let field = format!("{path}.services");
        let before = self.diags.len();
        if raw.len() < 2 {
            self.error_hint(
                &field,
                format!("a split needs at least 2 services, got {}", raw.len()),
                Some("for one target, write `service: NAME`".into()),
            );
        }
        let mut targets: Vec<WeightedTarget> = Vec::new();
        for (j, t) in raw.into_iter().enumerate() {
            let at = format!("{field}[{j}]");
            if targets.iter().any(|o| o.service == t.name) {
                self.error(
                    &format!("{at}.name"),
                    format!("`{}` is listed twice in the split", t.name),
                );
                continue;
            }
            self.web_service(&format!("{at}.name"), &t.name, services);
            let weight = t.weight.unwrap_or(1);
            if weight > MAX_WEIGHT {
                self.error(
                    &format!("{at}.weight"),
                    format!("a weight is 0 to {MAX_WEIGHT} (relative to the others), got {weight}"),
                );
            }
            targets.push(WeightedTarget {
                service: t.name,
                weight,
                // Set with the route's `retry:` (`Cx::routes`).
                retry: None,
            });
        }
        if targets.len() >= 2 && targets.iter().all(|t| t.weight == 0) {
            self.error(
                &field,
                "every weight is 0: the route would send its requests nowhere",
            );
        }
        let sticky = match sticky {
            None | Some(BoolOr::Bool(false)) => None,
            Some(BoolOr::Bool(true)) => Some(Sticky {
                cookie: default_cookie(route),
            }),
            Some(BoolOr::Map(s)) => {
                let cookie = s.cookie.unwrap_or_else(|| default_cookie(route));
                if !cookie_token(&cookie) {
                    self.error(
                        &format!("{path}.sticky.cookie"),
                        format!(
                            "`{cookie}` is not a valid cookie name (RFC 6265: visible ASCII \
                             characters except separators like `;`, `,`, `=`, spaces and quotes)"
                        ),
                    );
                }
                Some(Sticky { cookie })
            }
        };
        let canary = canary.and_then(|c| self.canary(&format!("{path}.canary"), c, &targets));
        (self.diags.len() == before).then_some(Split {
            targets,
            sticky,
            canary,
        })
    }

    /// `canary:` of a split whose targets are `targets`.
    fn canary(&mut self, path: &str, raw: RawCanary, targets: &[WeightedTarget]) -> Option<Canary> {
        let before = self.diags.len();
        let service = match raw.service {
            None => {
                self.misplaced(
                    path,
                    "a canary needs `service:`, the new version (one of the route's `services:`)",
                );
                String::new()
            }
            Some(s) => {
                if !targets.iter().any(|t| t.service == s) {
                    let names: Vec<&str> = targets.iter().map(|t| t.service.as_str()).collect();
                    let hint = did_you_mean(&s, names.iter().copied())
                        .or_else(|| Some(format!("the split has {}", list_or_none(&names))));
                    self.error_hint(
                        &format!("{path}.service"),
                        format!("`{s}` is not one of the route's `services:`"),
                        hint,
                    );
                }
                s
            }
        };
        let percent = |cx: &mut Self, key: &str, value: Option<u32>, default: u32| match value {
            None => default,
            Some(v) if (1..=100).contains(&v) => v,
            Some(v) => {
                cx.error(
                    &format!("{path}.{key}"),
                    format!("expected a whole percentage from 1 to 100, got `{v}`"),
                );
                default
            }
        };
        let step = percent(self, "step", raw.step, 10);
        let max_weight = percent(self, "max_weight", raw.max_weight, 100);
        let interval_field = format!("{path}.interval");
        let interval = self.duration(
            &interval_field,
            raw.interval.as_ref(),
            Duration::from_secs(30),
        );
        if interval < MIN_CANARY_INTERVAL {
            self.error(
                &interval_field,
                format!(
                    "must be at least {}ms: each interval judges the canary on the requests it \
                     answered in it",
                    MIN_CANARY_INTERVAL.as_millis()
                ),
            );
        }
        let max_error_increase = match raw.max_error_increase {
            None => 0.01,
            Some(n) => self
                .ratio(&format!("{path}.max_error_increase"), n, true)
                .unwrap_or(0.01),
        };
        let max_p95_ratio = match raw.max_p95_ratio {
            None => 1.5,
            Some(n) => self.at_least_one(&format!("{path}.max_p95_ratio"), n),
        };
        let failures = self.positive(&format!("{path}.failures"), raw.failures, 1);
        (self.diags.len() == before).then_some(Canary {
            service,
            step,
            max_weight,
            interval,
            min_requests: raw.min_requests.unwrap_or(20),
            max_error_increase,
            max_p95_ratio,
            failures,
        })
    }

    /// A factor of at least 1 (`1.5`), e.g. how many times slower a canary may be.
    fn at_least_one(&mut self, field: &str, raw: RawNumber) -> f64 {
        let (value, shown) = match raw {
            RawNumber::Number(v) => (Some(v), v.to_string()),
            RawNumber::Text(t) => (t.trim().parse::<f64>().ok(), t),
        };
        match value.filter(|v| v.is_finite()) {
            Some(v) if v >= 1.0 => v,
            Some(_) => {
                self.error(
                    field,
                    format!("must be at least 1 (the stable version's p95), got `{shown}`"),
                );
                1.5
            }
            None => {
                self.error(
                    field,
                    format!("`{shown}` is not a number; expected a factor like `1.5`"),
                );
                1.5
            }
        }
    }

    /// `mirror:` of a route whose own targets are `own`.
    fn mirror(
        &mut self,
        path: &str,
        raw: RawMirror,
        own: &[&str],
        services: &[Service],
    ) -> Option<Mirror> {
        let before = self.diags.len();
        let service = match raw.service {
            None => {
                self.misplaced(
                    path,
                    "a mirror needs `service:`, the service that gets the copies",
                );
                String::new()
            }
            Some(s) => {
                let field = format!("{path}.service");
                if self.web_service(&field, &s, services) && own.contains(&s.as_str()) {
                    self.error(
                        &field,
                        format!(
                            "`{s}` already serves this route; a mirror copies requests to \
                             another service"
                        ),
                    );
                }
                s
            }
        };
        let percent = match raw.percent {
            None => 100.0,
            Some(n) => {
                let field = format!("{path}.percent");
                let (value, shown) = match n {
                    RawNumber::Number(v) => (Some(v), v.to_string()),
                    RawNumber::Text(t) => {
                        (t.trim().trim_end_matches('%').trim().parse::<f64>().ok(), t)
                    }
                };
                match value.filter(|v| v.is_finite()) {
                    Some(v) if (0.0..=100.0).contains(&v) => v,
                    _ => {
                        self.error(
                            &field,
                            format!(
                                "expected a percentage from 0 to 100 (fractions allowed, e.g. `0.5`), got `{shown}`"
                            ),
                        );
                        100.0
                    }
                }
            }
        };
        let max_body = match raw.max_body {
            None => DEFAULT_MIRROR_MAX_BODY,
            Some(s) => self
                .size(&format!("{path}.max_body"), s)
                .unwrap_or(DEFAULT_MIRROR_MAX_BODY),
        };
        (self.diags.len() == before).then_some(Mirror {
            service,
            percent,
            max_body,
        })
    }
}

/// Most replicas `max_surge` / `max_unavailable` may count (the most a service may have).
const MAX_AMOUNT: u32 = 1000;

/// `shoal_ROUTE`, with every character a cookie name cannot hold replaced by `_`.
fn default_cookie(route: &str) -> String {
    let suffix: String = route
        .chars()
        .map(|c| {
            if c.is_ascii() && cookie_token(c.encode_utf8(&mut [0; 4])) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("shoal_{suffix}")
}

/// An RFC 6265 cookie name: an RFC 2616 token, i.e. visible ASCII except separators.
fn cookie_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cookies_are_tokens() {
        assert_eq!(default_cookie("api"), "shoal_api");
        assert_eq!(default_cookie("my route/v2=é"), "shoal_my_route_v2__");
        assert!(cookie_token(&default_cookie("a b;c,d\"e")));
        assert!(cookie_token("shoal_api-v2.x"));
        assert!(!cookie_token("a=b"));
        assert!(!cookie_token(""));
        assert!(!cookie_token("a b"));
    }
}
