//! Durations as users write them: `250ms`, `1s`, `1.5s`, `2m`, `1h`.
use std::time::Duration;

/// Parse a duration with a unit (`ms`, `s`, `m`, `h`). Bare numbers are refused so that nobody
/// has to guess whether `5` means seconds or milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected a duration like `500ms` or `2s`, got `{text}`"))?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "" => {
            return Err(format!(
                "`{text}` has no unit; write e.g. `{number}s` or `{number}ms`"
            ));
        }
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}`; use `ms`, `s`, `m` or `h`"
            ));
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 365.0 * 24.0 * 3600.0 {
        return Err(format!("`{text}` is out of range (at most one year)"));
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

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 1h "), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn refuses_bare_numbers_and_unknown_units() {
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert!(
            parse_duration("5sec")
                .unwrap_err()
                .contains("unknown unit `sec`")
        );
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("99999h").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for s in ["250ms", "1s", "90s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
