//! Raw → validated for what a service does when a replica fails (`docs/failover.md`): active
//! health checks (`health:`), retries and hedging (`retry:`, `per_try_timeout`), passive
//! health (`passive:`, ejection) and the circuit breaker (`circuit_breaker:`). A route's
//! `retry:` is validated here too, on top of its service's.
use std::time::Duration;

use super::Cx;
use crate::duration::{format_duration, parse_duration};
use crate::error::did_you_mean;
use crate::model::*;
use crate::raw::*;

impl Cx<'_> {
    pub(super) fn health(
        &mut self,
        path: &str,
        raw: Option<BoolOr<RawHealth>>,
        servers: bool,
    ) -> Health {
        let d = Health::default();
        let raw = match raw {
            None | Some(BoolOr::Bool(true)) => return d,
            Some(BoolOr::Bool(false)) => {
                return Health {
                    enabled: false,
                    liveness: None,
                    ..d
                };
            }
            Some(BoolOr::Map(raw)) => raw,
        };
        if let Some(p) = &raw.path {
            if !p.starts_with('/') {
                self.error(
                    &format!("{path}.path"),
                    format!("`{p}` must start with `/`"),
                );
            }
            if raw.tcp == Some(true) {
                self.misplaced(
                    &format!("{path}.tcp"),
                    "set either `path` (HTTP check) or `tcp: true`, not both",
                );
            }
        }
        if servers {
            for (field, present) in [
                ("start_period", raw.start_period.is_some()),
                ("start_timeout", raw.start_timeout.is_some()),
                ("liveness", raw.liveness.is_some()),
            ] {
                if present {
                    self.misplaced(
                        &format!("{path}.{field}"),
                        format!("`{field}` applies to services with `command`, not to `servers`"),
                    );
                }
            }
        }
        let expect_field = format!("{path}.expect_status");
        let expect_status = match &raw.expect_status {
            None => d.expect_status.clone(),
            Some(_) if raw.path.is_none() => {
                self.misplaced(
                    &expect_field,
                    "`expect_status` applies to HTTP checks; set `path` too",
                );
                d.expect_status.clone()
            }
            Some(statuses) if statuses.items.is_empty() => {
                self.error(&expect_field, "needs at least one status");
                d.expect_status.clone()
            }
            Some(statuses) => self
                .statuses(&expect_field, statuses, 100, 599)
                .unwrap_or_else(|| d.expect_status.clone()),
        };
        Health {
            enabled: true,
            path: raw.path.clone(),
            expect_status,
            interval: self.nonzero_duration(
                &format!("{path}.interval"),
                raw.interval.as_ref(),
                d.interval,
            ),
            fast_interval: self.nonzero_duration(
                &format!("{path}.fast_interval"),
                raw.fast_interval.as_ref(),
                d.fast_interval,
            ),
            timeout: self.nonzero_duration(
                &format!("{path}.timeout"),
                raw.timeout.as_ref(),
                d.timeout,
            ),
            healthy_threshold: self.positive(
                &format!("{path}.healthy_threshold"),
                raw.healthy_threshold,
                d.healthy_threshold,
            ),
            unhealthy_threshold: self.positive(
                &format!("{path}.unhealthy_threshold"),
                raw.unhealthy_threshold,
                d.unhealthy_threshold,
            ),
            start_period: self.duration(
                &format!("{path}.start_period"),
                raw.start_period.as_ref(),
                d.start_period,
            ),
            start_timeout: self.nonzero_duration(
                &format!("{path}.start_timeout"),
                raw.start_timeout.as_ref(),
                d.start_timeout,
            ),
            liveness: match &raw.liveness {
                None | Some(BoolOrString::Bool(true)) => d.liveness,
                Some(BoolOrString::Bool(false)) => None,
                Some(BoolOrString::String(s)) => Some(self.nonzero_duration(
                    &format!("{path}.liveness"),
                    Some(s),
                    Duration::from_secs(30),
                )),
            },
        }
    }

    /// HTTP statuses and ranges, each within `min..=max`, as inclusive ranges. None if any
    /// is invalid (each is reported, at its list item when written as a list).
    fn statuses(
        &mut self,
        field: &str,
        raw: &RawStatuses,
        min: u16,
        max: u16,
    ) -> Option<Vec<(u16, u16)>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in raw.items.iter().enumerate() {
            let f = if raw.list {
                format!("{field}[{i}]")
            } else {
                field.to_owned()
            };
            match parse_status_range(item, min, max) {
                Ok(range) => out.push(range),
                Err(e) => {
                    self.error(&f, e);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// Retry settings over `base` (the defaults for a service; the service's for a route).
    pub(super) fn retry(
        &mut self,
        path: &str,
        raw: Option<BoolOr<RawRetry>>,
        base: &Retry,
    ) -> Retry {
        let raw = match raw {
            None | Some(BoolOr::Bool(true)) => return base.clone(),
            Some(BoolOr::Bool(false)) => {
                return Retry {
                    attempts: 1,
                    ..base.clone()
                };
            }
            Some(BoolOr::Map(raw)) => raw,
        };
        let attempts = match raw.attempts {
            None => base.attempts,
            Some(n @ 1..=MAX_ATTEMPTS) => n,
            Some(_) => {
                self.error(
                    &format!("{path}.attempts"),
                    format!("must be between 1 and {MAX_ATTEMPTS} (tries per request, the first included; 1 = never retry)"),
                );
                base.attempts
            }
        };
        let on_status = match &raw.on_status {
            None => base.on_status.clone(),
            Some(statuses) => match self.statuses(&format!("{path}.on_status"), statuses, 400, 599)
            {
                Some(ranges) => {
                    let mut out: Vec<u16> = Vec::new();
                    for (lo, hi) in ranges {
                        for s in lo..=hi {
                            if !out.contains(&s) {
                                out.push(s);
                            }
                        }
                    }
                    out
                }
                None => base.on_status.clone(),
            },
        };
        let per_try_timeout = match raw.per_try_timeout {
            None => base.per_try_timeout,
            Some(t) => self
                .per_try_timeout(&format!("{path}.per_try_timeout"), t)
                .unwrap_or(base.per_try_timeout),
        };
        let max_replay_body = match raw.max_replay_body {
            None => base.max_replay_body,
            Some(size) => self
                .size(&format!("{path}.max_replay_body"), size)
                .unwrap_or(base.max_replay_body),
        };
        let (mut budget_ratio, mut budget_min_per_sec) =
            (base.budget_ratio, base.budget_min_per_sec);
        if let Some(budget) = raw.budget {
            if let Some(r) = budget.ratio {
                budget_ratio = self
                    .ratio(&format!("{path}.budget.ratio"), r, true)
                    .unwrap_or(budget_ratio);
            }
            budget_min_per_sec = budget.min_per_sec.unwrap_or(budget_min_per_sec);
        }
        Retry {
            attempts,
            on_status,
            per_try_timeout,
            max_replay_body,
            budget_ratio,
            budget_min_per_sec,
            non_idempotent: raw.non_idempotent.unwrap_or(base.non_idempotent),
        }
    }

    fn per_try_timeout(&mut self, field: &str, raw: RawPerTryTimeout) -> Option<PerTryTimeout> {
        const WORDS: [&str; 2] = ["auto", "off"];
        let expected = "expected `auto`, `off` or a duration like `300ms`";
        let text = match raw {
            RawPerTryTimeout::Bool(false) => return Some(PerTryTimeout::Off),
            RawPerTryTimeout::Bool(true) => {
                self.error(
                    field,
                    format!("`true` is not a per-try timeout; {expected}"),
                );
                return None;
            }
            RawPerTryTimeout::Text(s) => s,
        };
        match text.trim() {
            "auto" => Some(PerTryTimeout::Auto),
            "off" => Some(PerTryTimeout::Off),
            t if t.starts_with(|c: char| c.is_ascii_digit() || c == '.') => {
                match parse_duration(t) {
                    Ok(d) if d.is_zero() => {
                        self.error_hint(
                            field,
                            "must be greater than 0",
                            Some("write `off` to never send a request to a second replica while the first try is pending".into()),
                        );
                        None
                    }
                    Ok(d) => Some(PerTryTimeout::Fixed(d)),
                    Err(e) => {
                        self.error(field, e.to_string());
                        None
                    }
                }
            }
            other => {
                self.error_hint(
                    field,
                    format!("`{other}` is not a per-try timeout; {expected}"),
                    did_you_mean(other, WORDS),
                );
                None
            }
        }
    }

    pub(super) fn passive(&mut self, path: &str, raw: Option<BoolOr<RawPassive>>) -> Passive {
        let d = Passive::default();
        let raw = match raw {
            None | Some(BoolOr::Bool(true)) => return d,
            Some(BoolOr::Bool(false)) => {
                return Passive {
                    enabled: false,
                    ..d
                };
            }
            Some(BoolOr::Map(raw)) => raw,
        };
        let base_ejection = self.nonzero_duration(
            &format!("{path}.base_ejection"),
            raw.base_ejection.as_ref(),
            d.base_ejection,
        );
        let max_ejection = self.nonzero_duration(
            &format!("{path}.max_ejection"),
            raw.max_ejection.as_ref(),
            d.max_ejection,
        );
        if max_ejection < base_ejection {
            if raw.max_ejection.is_some() {
                self.error(
                    &format!("{path}.max_ejection"),
                    format!(
                        "must not be shorter than `base_ejection` ({})",
                        format_duration(base_ejection)
                    ),
                );
            } else {
                self.error_hint(
                    &format!("{path}.base_ejection"),
                    format!(
                        "is longer than `max_ejection` (default {})",
                        format_duration(max_ejection)
                    ),
                    Some("set `max_ejection` too".into()),
                );
            }
        }
        let max_ejected_percent = match raw.max_ejected_percent {
            None => d.max_ejected_percent,
            Some(p) => self
                .percent(&format!("{path}.max_ejected_percent"), p)
                .unwrap_or(d.max_ejected_percent),
        };
        Passive {
            enabled: true,
            consecutive_5xx: self.positive(
                &format!("{path}.consecutive_5xx"),
                raw.consecutive_5xx,
                d.consecutive_5xx,
            ),
            consecutive_failures: self.positive(
                &format!("{path}.consecutive_failures"),
                raw.consecutive_failures,
                d.consecutive_failures,
            ),
            base_ejection,
            max_ejection: max_ejection.max(base_ejection),
            max_ejected_percent,
        }
    }

    pub(super) fn circuit_breaker(
        &mut self,
        path: &str,
        raw: Option<BoolOr<RawCircuitBreaker>>,
    ) -> Option<CircuitBreaker> {
        let d = CircuitBreaker::default();
        let raw = match raw {
            None | Some(BoolOr::Bool(false)) => return None,
            Some(BoolOr::Bool(true)) => return Some(d),
            Some(BoolOr::Map(raw)) => raw,
        };
        let given = raw.error_ratio.is_some() || raw.slow_ratio.is_some();
        let error_ratio = match raw.error_ratio {
            None if given => None,
            None => d.error_ratio,
            Some(r) => self
                .ratio(&format!("{path}.error_ratio"), r, false)
                .or(d.error_ratio),
        };
        let slow_ratio = match raw.slow_ratio {
            None => d.slow_ratio,
            Some(r) => self.ratio(&format!("{path}.slow_ratio"), r, false),
        };
        Some(CircuitBreaker {
            window: self.nonzero_duration(&format!("{path}.window"), raw.window.as_ref(), d.window),
            min_requests: self.positive(
                &format!("{path}.min_requests"),
                raw.min_requests,
                d.min_requests,
            ),
            error_ratio,
            slow_call: self.nonzero_duration(
                &format!("{path}.slow_call"),
                raw.slow_call.as_ref(),
                d.slow_call,
            ),
            slow_ratio,
            open_for: self.nonzero_duration(
                &format!("{path}.open_for"),
                raw.open_for.as_ref(),
                d.open_for,
            ),
            half_open_requests: self.positive(
                &format!("{path}.half_open_requests"),
                raw.half_open_requests,
                d.half_open_requests,
            ),
        })
    }
}

/// Most tries per request (`retry.attempts`).
const MAX_ATTEMPTS: u32 = 10;

/// `200` or `"200-299"` (or `"200"`), each status within `min..=max`.
fn parse_status_range(raw: &RawStatus, min: u16, max: u16) -> Result<(u16, u16), String> {
    let expected = || {
        format!(
            "expected an HTTP status like `{min}` or a range like `{min}-{}`",
            min + 99
        )
    };
    let check = |n: u64, shown: &str| -> Result<u16, String> {
        match u16::try_from(n) {
            Ok(s) if (min..=max).contains(&s) => Ok(s),
            _ => Err(format!(
                "`{shown}` is out of range; statuses here are {min} to {max}"
            )),
        }
    };
    match raw {
        RawStatus::Number(n) => {
            let s = check(*n, &n.to_string())?;
            Ok((s, s))
        }
        RawStatus::Text(text) => {
            let number = |t: &str| {
                t.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("`{text}` is not a status; {}", expected()))
            };
            let (lo, hi) = match text.split_once('-') {
                Some((lo, hi)) => (number(lo)?, number(hi)?),
                None => {
                    let n = number(text)?;
                    (n, n)
                }
            };
            let (lo, hi) = (check(lo, text)?, check(hi, text)?);
            if lo > hi {
                return Err(format!(
                    "`{text}`: a range goes from the lower status to the higher, e.g. `{hi}-{lo}`"
                ));
            }
            Ok((lo, hi))
        }
    }
}
