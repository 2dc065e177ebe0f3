//! Text the commands and `shoal top` print alike: aligned tables, counts, durations,
//! percentages and sizes, events, a backlog in one line, and whether to colour. A cell
//! with nothing to show is `-`. Pure functions of their arguments (and of `NO_COLOR`), so
//! `shoal status`, `shoal events`, `shoal up` and `shoal top` cannot drift apart.
use std::io::IsTerminal;

// `4,210`: the CLI counts as the autoscaler's backlog reasons do.
pub(crate) use shoal_autoscale::decision::fmt_count as thousands;
use shoal_core::{AutoscaleBacklog, EventKind};

/// Colour for a person at a terminal only, and never when `NO_COLOR` is set to anything
/// (<https://no-color.org>).
pub(crate) fn color_for(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Rows as columns padded to their widest cell, then the notes, one per line.
pub(crate) fn aligned<const N: usize>(rows: &[[String; N]], notes: &[String]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for n in notes {
        out.push_str(n);
        out.push('\n');
    }
    out
}

/// The queue behind a backlog target in one line: `backlog 1,234 (redis … group g), 4
/// consumers, 48.2/s per replica`, or why it is unknown.
pub(crate) fn backlog_summary(b: &AutoscaleBacklog, consumers: u32) -> String {
    if b.failures > 0 {
        let fallback = if b.fallback {
            " [fallback replica count in force]"
        } else {
            ""
        };
        return format!(
            "backlog unknown: {} failed read{} in a row: {}{fallback}",
            b.failures,
            if b.failures == 1 { "" } else { "s" },
            b.error.as_deref().unwrap_or("?")
        );
    }
    let Some(messages) = b.messages else {
        return format!("backlog not read yet ({})", b.source);
    };
    let mut line = format!(
        "backlog {} ({}), {consumers} consumer{}",
        thousands(messages),
        b.source,
        if consumers == 1 { "" } else { "s" }
    );
    if let Some(p) = b.partitions {
        line.push_str(&format!(" on {p} partitions"));
    }
    if let Some(rate) = b.rate_per_replica {
        line.push_str(&format!(", {rate:.1}/s per replica"));
    }
    line
}

/// `42s`, `3m7s`, `2h5m`: whole seconds, the two largest units.
pub(crate) fn human_duration(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// How long a replica has been up, or `-` for one that is not running.
pub(crate) fn uptime(secs: f64) -> String {
    if secs > 0.0 {
        human_duration(secs)
    } else {
        "-".into()
    }
}

/// `12.5%`, or `-` when unknown.
pub(crate) fn percent(v: Option<f64>) -> String {
    v.map_or("-".into(), |p| format!("{p:.1}%"))
}

/// A size in MiB with one decimal (`48.3MiB`), or `-` when unknown.
pub(crate) fn mebibytes(bytes: Option<u64>) -> String {
    bytes.map_or("-".into(), |b| format!("{:.1}MiB", b as f64 / 1_048_576.0))
}

/// `HH:MM:SS  users/0  ready  message` (UTC), on one line: line breaks in the message are
/// drawn as ` ⏎ `.
pub(crate) fn format_event(e: &serde_json::Value) -> String {
    let secs = e["at_ms"].as_u64().unwrap_or(0) / 1000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let who = match (e["service"].as_str().unwrap_or(""), e["replica"].as_u64()) {
        ("", _) => "shoal".to_owned(),
        (svc, Some(i)) => format!("{svc}/{i}"),
        (svc, None) => svc.to_owned(),
    };
    let kind_width = EventKind::ALL
        .iter()
        .map(|k| k.as_str().len())
        .max()
        .unwrap_or(0);
    let message = e["message"]
        .as_str()
        .unwrap_or("")
        .trim_end_matches(['\n', '\r'])
        .replace("\r\n", "\n")
        .replace(['\n', '\r'], " ⏎ ");
    format!(
        "{h:02}:{m:02}:{s:02}  {who:<12} {:<kind_width$} {message}",
        e["kind"].as_str().unwrap_or("?"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_read_as_people_write_them_and_unknown_is_a_dash() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(4_210), "4,210");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(human_duration(59.9), "59s");
        assert_eq!(human_duration(187.0), "3m7s");
        assert_eq!(human_duration(7_500.0), "2h5m");
        assert_eq!(uptime(0.0), "-");
        assert_eq!(uptime(61.0), "1m1s");
        assert_eq!(percent(None), "-");
        assert_eq!(percent(Some(12.345)), "12.3%");
        assert_eq!(mebibytes(None), "-");
        assert_eq!(mebibytes(Some(50_646_630)), "48.3MiB");
    }

    #[test]
    fn a_table_pads_each_column_to_its_widest_cell() {
        let rows =
            [["NAME", "READY"], ["web", "2/2"], ["api-long", "1/3"]].map(|r| r.map(String::from));
        assert_eq!(
            aligned(&rows, &["api-long: starting".to_owned()]),
            "NAME      READY\nweb       2/2\napi-long  1/3\napi-long: starting\n"
        );
    }

    #[test]
    fn an_event_with_a_multi_line_message_is_one_aligned_line() {
        let rejected = serde_json::json!({
            "seq": 3, "at_ms": 3_661_000, "service": "", "replica": null,
            "kind": "reloadfailed",
            "message": "shoal.yaml:8:14: routes[0].service: unknown service `wbe`\r\nshoal.yaml:10:14: routes[1].service: unknown service `wbe`\n"
        });
        let line = format_event(&rejected);
        assert_eq!(
            line,
            "01:01:01  shoal        reloadfailed  shoal.yaml:8:14: routes[0].service: unknown service `wbe` ⏎ shoal.yaml:10:14: routes[1].service: unknown service `wbe`"
        );
        let scaled = serde_json::json!({
            "seq": 4, "at_ms": 3_662_000, "service": "web", "replica": null,
            "kind": "scaled", "message": "1 -> 2"
        });
        let other = format_event(&scaled);
        assert_eq!(
            other.find("1 -> 2"),
            line.find("shoal.yaml"),
            "messages start in one column:\n{line}\n{other}"
        );
    }
}
