//! Durations as users write them: `250ms`, `1s`, `1.5s`, `2m`, `1h`.
//!
//! One syntax for the whole stack: the stack file, every `DURATION` flag of the CLI, and
//! `shoal load` (its flags and the think times of a scenario file) all parse with
//! [`parse_duration`], so a value that works in one place works in every other. A bare number
//! is refused everywhere: `5` could mean seconds (wrk, `sleep`) or milliseconds (k6's
//! numbers, many timeouts), and a wrong guess is off by a factor of 1000. The error says
//! which unit to add.
use std::time::Duration;

/// The longest duration accepted: a typo such as `99999h` is an error, not a timeout that
/// never fires.
const MAX_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// Why a duration was refused. Messages quote the text as written; the caller adds where it
/// was (the field of the stack file, the flag).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a number followed by a unit (`fast`, `-1s`, `s`).
    #[error("expected a duration like `500ms` or `2s`, got `{text}`")]
    NotADuration {
        /// The text as written.
        text: String,
    },
    /// A number without a unit (`5`).
    #[error("`{text}` has no unit; write e.g. `{number}s` or `{number}ms`")]
    NoUnit {
        /// The text as written.
        text: String,
        /// The number in it.
        number: String,
    },
    /// A unit other than `ms`, `s`, `m`, `h` (`5sec`, `500us`).
    #[error("unknown unit `{unit}` in `{text}`; use `ms`, `s`, `m` or `h`")]
    UnknownUnit {
        /// The text as written.
        text: String,
        /// The unit in it.
        unit: String,
    },
    /// Longer than a year.
    #[error("`{text}` is out of range (at most one year)")]
    OutOfRange {
        /// The text as written.
        text: String,
    },
}

/// Parse a duration with a unit (`ms`, `s`, `m`, `h`), a fraction allowed (`1.5s`); spaces
/// around it and between number and unit are ignored. Bare numbers are refused so that
/// nobody has to guess whether `5` means seconds or milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| DurationError::NotADuration {
        text: text.to_owned(),
    })?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "" => {
            return Err(DurationError::NoUnit {
                text: text.to_owned(),
                number: number.to_owned(),
            });
        }
        other => {
            return Err(DurationError::UnknownUnit {
                text: text.to_owned(),
                unit: other.to_owned(),
            });
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > MAX_SECS {
        return Err(DurationError::OutOfRange {
            text: text.to_owned(),
        });
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Render a duration the way users write them (for docs, API and `shoal check` output).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        parse_duration(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 1h "), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("10 s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("8760h"),
            Ok(Duration::from_secs(MAX_SECS as u64))
        );
    }

    #[test]
    fn refuses_bare_numbers_and_unknown_units() {
        assert!(error("5").contains("no unit"));
        assert_eq!(
            error("1.5"),
            "`1.5` has no unit; write e.g. `1.5s` or `1.5ms`"
        );
        assert!(error("5sec").contains("unknown unit `sec`"));
        // Units other tools take are refused with the list of ours, not misread.
        assert!(error("500us").contains("unknown unit `us`"));
        assert!(error("2min").contains("use `ms`, `s`, `m` or `h`"));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(
            parse_duration("99999h"),
            Err(DurationError::OutOfRange {
                text: "99999h".into()
            })
        );
        assert!(parse_duration("8761h").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for s in ["250ms", "1s", "90s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
