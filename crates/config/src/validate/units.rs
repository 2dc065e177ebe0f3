//! Values as users write them, checked the same way in every section: durations (the one
//! syntax of [`crate::parse_duration`]), counts, ratios and percentages, sizes, CPU cores,
//! addresses and header names; and the small helpers the sections share (the name rule,
//! paths relative to the stack file, lists in messages, places inside a scalar).
//!
//! Each `Cx` method reports a bad value at its field and returns the default (or None), so
//! that one run of `shoal check` lists every problem.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;

use super::Cx;
use crate::duration::parse_duration;
use crate::raw::*;

impl Cx<'_> {
    pub(super) fn duration(
        &mut self,
        field: &str,
        value: Option<&String>,
        default: Duration,
    ) -> Duration {
        match value.map(|v| parse_duration(v)) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.error(field, e.to_string());
                default
            }
        }
    }

    pub(super) fn nonzero_duration(
        &mut self,
        field: &str,
        value: Option<&String>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(field, value, default);
        if d.is_zero() {
            self.error(
                field,
                "must be greater than 0 (there are no unbounded timeouts)",
            );
            return default;
        }
        d
    }

    /// A duration that must not be zero (an interval, a window, a target).
    pub(super) fn nonzero(
        &mut self,
        field: &str,
        value: Option<&String>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(field, value, default);
        if d.is_zero() {
            self.error(field, "must be greater than 0");
            return default;
        }
        d
    }

    pub(super) fn positive(&mut self, field: &str, value: Option<u32>, default: u32) -> u32 {
        match value {
            Some(0) => {
                self.error(field, "must be at least 1");
                default
            }
            Some(v) => v,
            None => default,
        }
    }

    pub(super) fn socket_addr(&mut self, field: &str, text: &str) -> Option<SocketAddr> {
        let text = text.trim();
        let normalized = match text.strip_prefix("localhost:") {
            Some(port) => format!("127.0.0.1:{port}"),
            None => text.to_owned(),
        };
        match normalized.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                let hint = (!text.contains(':')).then(|| format!("add a port, e.g. `{text}:8000`"));
                self.error_hint(
                    field,
                    format!(
                        "`{text}` is not an address; expected IP:PORT such as `127.0.0.1:8000`"
                    ),
                    hint,
                );
                None
            }
        }
    }

    pub(super) fn header_name(&mut self, field: &str, name: &str) -> Option<HeaderName> {
        match HeaderName::try_from(name) {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(field, format!("`{name}` is not a valid header name"));
                None
            }
        }
    }

    /// A share: `0.2` or `20%`, from 0 (if `zero_ok`, else above 0) to 1.
    pub(super) fn ratio(&mut self, field: &str, raw: RawNumber, zero_ok: bool) -> Option<f64> {
        if zero_ok {
            self.fraction(
                field,
                raw,
                |v| (0.0..=1.0).contains(&v),
                "must be between 0 and 1 (0% and 100%)",
            )
        } else {
            self.fraction(
                field,
                raw,
                |v| v > 0.0 && v <= 1.0,
                "must be above 0 and at most 1 (100%)",
            )
        }
    }

    /// A number or a percentage (`0.2` or `20%`) for which `ok` holds; `range` says which
    /// values are, when it does not. A whole number that is out of range but would be in
    /// range as a percentage (`error_ratio: 50`) gets the hint to write `50%`.
    pub(super) fn fraction(
        &mut self,
        field: &str,
        raw: RawNumber,
        ok: impl Fn(f64) -> bool,
        range: &str,
    ) -> Option<f64> {
        let (value, percent, shown) = match raw {
            RawNumber::Number(v) => (Some(v), false, v.to_string()),
            RawNumber::Text(t) => match t.trim().strip_suffix('%') {
                Some(p) => (p.trim().parse::<f64>().ok().map(|v| v / 100.0), true, t),
                None => (t.trim().parse::<f64>().ok(), false, t),
            },
        };
        let Some(value) = value.filter(|v| v.is_finite()) else {
            self.error(
                field,
                format!(
                    "`{shown}` is not a ratio; expected a number like `0.2` or a percentage like `20%`"
                ),
            );
            return None;
        };
        if ok(value) {
            return Some(value);
        }
        let hint = (!percent && value.fract() == 0.0 && ok(value / 100.0))
            .then(|| format!("for a percentage, write `{shown}%`"));
        self.error_hint(field, format!("{range}, got `{shown}`"), hint);
        None
    }

    /// A positive number (`10`, `2.5`), e.g. a concurrency or rate target.
    pub(super) fn positive_number(
        &mut self,
        field: &str,
        raw: RawNumber,
        example: &str,
    ) -> Option<f64> {
        let (value, shown) = match raw {
            RawNumber::Number(v) => (Some(v), v.to_string()),
            RawNumber::Text(t) => (t.trim().parse::<f64>().ok(), t),
        };
        match value.filter(|v| v.is_finite()) {
            Some(v) if v > 0.0 => Some(v),
            Some(_) => {
                self.error(field, format!("must be above 0, got `{shown}`"));
                None
            }
            None => {
                self.error(
                    field,
                    format!("`{shown}` is not a number; expected e.g. `{example}`"),
                );
                None
            }
        }
    }

    /// A whole percentage of at least 1, with no upper bound: `50`, `200` or `200%`.
    pub(super) fn whole_percent(&mut self, field: &str, raw: RawNumber) -> Option<u32> {
        let (value, shown) = match raw {
            RawNumber::Number(v) => (Some(v), v.to_string()),
            RawNumber::Text(t) => {
                let v = t.trim().trim_end_matches('%').trim().parse::<f64>().ok();
                (v, t)
            }
        };
        match value {
            Some(v) if v.fract() == 0.0 && v >= 1.0 && v <= f64::from(u32::MAX) => Some(v as u32),
            _ => {
                self.error(
                    field,
                    format!(
                        "expected a whole percentage of at least 1, like `50` or `50%`, got `{shown}`"
                    ),
                );
                None
            }
        }
    }

    /// A whole percentage from 1 to 100: `50` or `50%`.
    pub(super) fn percent(&mut self, field: &str, raw: RawNumber) -> Option<u32> {
        let (value, shown) = match raw {
            RawNumber::Number(v) => (Some(v), v.to_string()),
            RawNumber::Text(t) => {
                let v = t.trim().trim_end_matches('%').trim().parse::<f64>().ok();
                (v, t)
            }
        };
        match value {
            Some(v) if v.fract() == 0.0 && (1.0..=100.0).contains(&v) => Some(v as u32),
            _ => {
                self.error(
                    field,
                    format!("expected a whole percentage from 1 to 100, like `50`, got `{shown}`"),
                );
                None
            }
        }
    }

    /// A size in bytes: a number or text like `64KiB`.
    pub(super) fn size(&mut self, field: &str, raw: RawSize) -> Option<u64> {
        match raw {
            RawSize::Bytes(n) => Some(n),
            RawSize::Text(text) => match parse_size(&text) {
                Ok(n) => Some(n),
                Err(e) => {
                    self.error(field, e);
                    None
                }
            },
        }
    }

    /// CPU cores: `1`, `0.5` or Kubernetes' millicores, `500m`.
    pub(super) fn cores(&mut self, field: &str, raw: RawNumber) -> Option<f64> {
        let (value, shown) = match raw {
            RawNumber::Number(v) => (Some(v), v.to_string()),
            RawNumber::Text(t) => {
                let text = t.trim();
                let v = match text.strip_suffix('m') {
                    Some(milli) => milli.trim().parse::<f64>().ok().map(|m| m / 1000.0),
                    None => text.parse::<f64>().ok(),
                };
                (v, t)
            }
        };
        match value.filter(|v| v.is_finite()) {
            Some(v) if v > 0.0 => Some(v),
            Some(_) => {
                self.error(field, format!("must be above 0 cores, got `{shown}`"));
                None
            }
            None => {
                self.error(
                    field,
                    format!(
                        "`{shown}` is not a number of CPU cores; expected e.g. `1`, `0.5` or `500m`"
                    ),
                );
                None
            }
        }
    }

    /// A required name (stream, group, queue, topic): not empty.
    pub(super) fn nonempty(&mut self, field: &str, value: &str, what: &str) {
        if value.trim().is_empty() {
            self.error(field, format!("give the {what}'s name"));
        }
    }
}

/// Where byte `offset` of a scalar starting at `start` lands (single-line scalars are exact;
/// for multi-line ones we count lines within the scalar's text).
pub(super) fn offset_place(
    text: &str,
    offset: usize,
    start: crate::locate::Place,
) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let newlines = before.matches('\n').count();
    if newlines == 0 {
        (
            start.line,
            start.column + usize::from(start.quoted) + before.chars().count(),
        )
    } else {
        let last = before.rsplit('\n').next().unwrap_or("");
        (start.line + newlines, 1 + last.chars().count())
    }
}

/// `1048576`, `512KiB`, `10MiB`, `1GiB`, `10MB`, `100KB`, `64B` (binary units are powers of
/// 1024, decimal ones of 1000). Kubernetes' `Ki`, `Mi`, `Gi` are the binary units too.
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let expected = || {
        format!(
            "`{text}` is not a size; expected bytes or a number with a unit, like `10MiB`, `512KiB` or `10MB`"
        )
    };
    let n: u64 = digits.parse().map_err(|_| expected())?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "Ki" => 1 << 10,
        "MiB" | "Mi" => 1 << 20,
        "GiB" | "Gi" => 1 << 30,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(expected()),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

pub(super) fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub(super) fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !name.ends_with('-')
}

pub(super) fn resolve(base: &Path, dir: &str) -> PathBuf {
    let p = Path::new(dir);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
