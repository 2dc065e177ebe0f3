//! Prometheus' text exposition format (version 0.0.4): the `# HELP` / `# TYPE` lines and
//! the sample lines every `/metrics` renderer writes — the gateway's request families
//! (`shoal-proxy`) and shoal's own gauges (`shoal-app`) alike — so that escaping and number
//! formatting are decided once.
//!
//! Writes into a `String` the caller owns (a scrape renders everything into one buffer);
//! knows nothing of where the numbers come from.
//! Format: <https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format>.
use std::fmt::Write;

/// `# HELP` and `# TYPE` lines of the family `name` (`kind`: `counter`, `gauge`,
/// `histogram`, …).
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line, label values escaped (`\\`, `\"`, `\n`, as the format requires).
pub fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_value(value));
    out.push('\n');
}

/// A sample value as Prometheus writes it (`+Inf`, `NaN`, integers without `.0`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(&mut out, "x", &[("a", "q\"b\\n\n")], 1.5);
        assert_eq!(out, "x{a=\"q\\\"b\\\\n\\n\"} 1.5\n");
    }

    #[test]
    fn values_are_written_as_prometheus_reads_them() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
    }

    #[test]
    fn a_family_is_a_help_a_type_and_its_samples() {
        let mut out = String::new();
        header(&mut out, "shoal_up", "gauge", "Whether shoal runs.");
        sample(&mut out, "shoal_up", &[], 1.0);
        assert_eq!(
            out,
            "# HELP shoal_up Whether shoal runs.\n# TYPE shoal_up gauge\nshoal_up 1\n"
        );
    }
}
