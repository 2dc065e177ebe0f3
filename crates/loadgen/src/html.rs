//! `--report FILE.html`: one self-contained page (inline SVG and CSS, no script, no CDN)
//! with the summary, throughput, latency percentiles and errors per second, the spread over
//! replicas, requests per replica over time, and — with `--admin` — the replica count of
//! each service over time.
use std::fmt::Write as _;

use crate::report::{Report, ms, num};

const COLORS: [&str; 8] = [
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
];

/// One line of a chart.
struct Line {
    name: String,
    points: Vec<(f64, f64)>,
    step: bool,
}

/// The whole page.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let title = format!(
        "shoal load — {}",
        r.urls
            .iter()
            .map(|u| u.url.as_str())
            .chain(r.scenario.as_ref().map(|s| s.file.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = write!(
        o,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>{}</style></head><body>",
        esc(&title),
        CSS
    );
    let _ = write!(o, "<h1>{}</h1>", esc(&title));
    let _ = write!(o, "<pre class=\"summary\">{}</pre>", esc(&r.summary()));

    let t = |s: &crate::report::Second| s.t as f64 + 0.5;
    o.push_str(&chart(
        "Throughput (answers per second)",
        "req/s",
        &[
            Line {
                name: "answers".into(),
                points: r
                    .series
                    .iter()
                    .map(|s| (t(s), s.responses as f64))
                    .collect(),
                step: false,
            },
            Line {
                name: "ok (2xx/3xx)".into(),
                points: r.series.iter().map(|s| (t(s), s.ok as f64)).collect(),
                step: false,
            },
        ],
    ));
    let mut lat = vec![
        Line {
            name: "p50".into(),
            points: r.series.iter().map(|s| (t(s), s.p50)).collect(),
            step: false,
        },
        Line {
            name: "p90".into(),
            points: r.series.iter().map(|s| (t(s), s.p90)).collect(),
            step: false,
        },
        Line {
            name: "p99".into(),
            points: r.series.iter().map(|s| (t(s), s.p99)).collect(),
            step: false,
        },
        Line {
            name: "max".into(),
            points: r.series.iter().map(|s| (t(s), s.max)).collect(),
            step: false,
        },
    ];
    if r.latency_uncorrected.is_some() {
        lat.push(Line {
            name: "p99 uncorrected".into(),
            points: r
                .series
                .iter()
                .filter_map(|s| Some((t(s), s.p99_uncorrected?)))
                .collect(),
            step: false,
        });
    }
    let lat_title = if r.latency_uncorrected.is_some() {
        "Latency per second (ms, corrected for coordinated omission)"
    } else {
        "Latency per second (ms)"
    };
    o.push_str(&chart(lat_title, "ms", &lat));
    o.push_str(&chart(
        "Failed requests per second (no answer, or 4xx/5xx)",
        "failed/s",
        &[Line {
            name: "failed".into(),
            points: r.series.iter().map(|s| (t(s), s.failed as f64)).collect(),
            step: false,
        }],
    ));

    if let Some(sc) = &r.scenario {
        o.push_str(&steps_table(sc));
    }
    o.push_str(&spread_bars(r));
    let names: Vec<&String> = r.spread.replicas.iter().map(|x| &x.name).collect();
    if !names.is_empty() {
        let lines: Vec<Line> = names
            .iter()
            .map(|n| Line {
                name: (*n).clone(),
                points: r
                    .series
                    .iter()
                    .map(|s| (t(s), s.replicas.get(*n).copied().unwrap_or(0) as f64))
                    .collect(),
                step: false,
            })
            .collect();
        o.push_str(&chart("Answers per replica per second", "req/s", &lines));
    }
    if !r.scaling.is_empty() {
        let mut services: Vec<&String> = r.scaling.iter().flat_map(|s| s.services.keys()).collect();
        services.sort();
        services.dedup();
        let lines: Vec<Line> = services
            .iter()
            .map(|name| Line {
                name: format!("{name} ready"),
                points: r
                    .scaling
                    .iter()
                    .filter_map(|s| Some((s.t, s.services.get(*name)?.ready as f64)))
                    .collect(),
                step: true,
            })
            .collect();
        o.push_str(&chart(
            "Ready replicas per service (from the admin API)",
            "replicas",
            &lines,
        ));
    }
    if !r.generator.cpu_series.is_empty() {
        o.push_str(&chart(
            "Generator CPU (share of its threads)",
            "%",
            &[Line {
                name: "cpu %".into(),
                points: r
                    .generator
                    .cpu_series
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (i as f64 + 0.5, c * 100.0))
                    .collect(),
                step: false,
            }],
        ));
    }
    o.push_str("</body></html>\n");
    o
}

/// `--scenario`: a row per step, with its failures.
fn steps_table(sc: &crate::report::ScenarioReport) -> String {
    let mut o = String::from(
        "<h2>Steps</h2><table class=\"steps\"><tr><th>user</th><th>step</th><th>requests</th><th>failed</th><th>p50</th><th>p95</th><th>p99</th><th>max</th><th>failures</th></tr>",
    );
    for s in &sc.steps {
        let failures: Vec<String> = s
            .failures
            .iter()
            .map(|(why, n)| format!("{} ×{n}", esc(why)))
            .collect();
        let _ = write!(
            o,
            "<tr><td>{}</td><td title=\"{} {}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.user),
            esc(&s.method),
            esc(&s.url),
            esc(&s.name),
            s.requests,
            s.failed,
            ms(s.latency.p50),
            ms(s.latency.p95),
            ms(s.latency.p99),
            ms(s.latency.max),
            failures.join("<br>")
        );
    }
    o.push_str("</table>");
    let flows: Vec<String> = sc
        .users
        .iter()
        .map(|u| {
            format!(
                "{} (weight {}): {} flows, {} completed, {} failed",
                esc(&u.name),
                u.weight,
                u.flows,
                u.completed,
                u.failed
            )
        })
        .collect();
    let _ = write!(o, "<p>{}</p>", flows.join("<br>"));
    o
}

const CSS: &str = "body{font:14px system-ui,sans-serif;margin:2em auto;max-width:900px;color:#111}\
h1{font-size:1.2em}h2{font-size:1em;margin:1.6em 0 .3em}h3{font-size:.95em;margin:1em 0 .2em}\
pre.summary{background:#f4f4f5;padding:1em;overflow-x:auto;font-size:12px}\
svg text{font:11px system-ui,sans-serif;fill:#333}.legend span{margin-right:1em}\
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}\
table.steps{border-collapse:collapse;font-size:12px}table.steps td,table.steps th{border:1px solid #ddd;padding:2px 6px;text-align:right}\
table.steps td:nth-child(-n+2),table.steps td:last-child,table.steps th{text-align:left}";

fn chart(title: &str, unit: &str, lines: &[Line]) -> String {
    let (w, h) = (860.0, 220.0);
    let (left, right, top, bottom) = (56.0, 12.0, 10.0, 26.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let max_x = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max)
        .ceil();
    let values = || lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let top_value = values().fold(0.0f64, f64::max);
    // Small counts (replicas, failures) get whole-number gridlines.
    let max_y = if top_value <= 40.0 && values().all(|v| v.fract() == 0.0) {
        (top_value / 4.0).ceil().max(1.0) * 4.0
    } else {
        nice(top_value)
    };
    let x = |v: f64| left + v / max_x * pw;
    let y = |v: f64| top + ph - v / max_y * ph;
    let mut o = String::new();
    let _ = write!(
        o,
        "<h2>{}</h2><svg viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\">",
        esc(title)
    );
    for i in 0..=4 {
        let v = max_y * f64::from(i) / 4.0;
        let _ = write!(
            o,
            "<line x1=\"{left}\" x2=\"{x2}\" y1=\"{yv:.1}\" y2=\"{yv:.1}\" stroke=\"#e4e4e7\"/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>",
            x2 = w - right,
            yv = y(v),
            tx = left - 4.0,
            ty = y(v) + 4.0,
            label = num(v)
        );
    }
    let xstep = (max_x / 10.0).ceil().max(1.0);
    let mut v = 0.0;
    while v <= max_x {
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}s</text>",
            x(v),
            h - 8.0,
            num(v)
        );
        v += xstep;
    }
    let _ = write!(
        o,
        "<text x=\"4\" y=\"{}\" transform=\"rotate(-90 10 {0})\">{}</text>",
        top + ph / 2.0,
        esc(unit)
    );
    for (i, l) in lines.iter().enumerate() {
        let mut pts = String::new();
        let mut prev: Option<(f64, f64)> = None;
        for &(px, py) in &l.points {
            if l.step
                && let Some((_, qy)) = prev
            {
                let _ = write!(pts, "{:.1},{:.1} ", x(px), y(qy));
            }
            let _ = write!(pts, "{:.1},{:.1} ", x(px), y(py));
            prev = Some((px, py));
        }
        let _ = write!(
            o,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\" points=\"{}\"><title>{}</title></polyline>",
            COLORS[i % COLORS.len()],
            pts.trim_end(),
            esc(&l.name)
        );
    }
    o.push_str("</svg><div class=\"legend\">");
    for (i, l) in lines.iter().enumerate() {
        let _ = write!(
            o,
            "<span><i style=\"background:{}\"></i>{}</span>",
            COLORS[i % COLORS.len()],
            esc(&l.name)
        );
    }
    o.push_str("</div>");
    o
}

fn spread_bars(r: &Report) -> String {
    let s = &r.spread;
    let mut o = format!("<h2>Spread over replicas ({})</h2>", esc(&s.header));
    if s.replicas.is_empty() {
        let _ = write!(o, "<p>No answer carried {}.</p>", esc(&s.header));
        return o;
    }
    let several = s.services.len() > 1;
    if several && let Some(v) = &s.verdict {
        let _ = write!(o, "<p><b>{}</b></p>", esc(&v.text));
    }
    // One chart per service: each replica against an even share of its own service.
    let mut color = 0;
    for sv in &s.services {
        let rows: Vec<_> = s
            .replicas
            .iter()
            .filter(|x| x.service == sv.service)
            .collect();
        if several {
            let _ = write!(
                o,
                "<h3>{} ({} answers)</h3>",
                esc(crate::report::service_label(sv)),
                sv.requests
            );
        }
        let (w, row) = (860.0, 24.0);
        let h = row * rows.len() as f64 + 8.0;
        let max_share = rows.iter().map(|x| x.share).fold(0.0, f64::max).max(1e-9);
        let even = 1.0 / rows.len().max(1) as f64;
        let bar_w = 400.0;
        let _ = write!(
            o,
            "<svg viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\">"
        );
        for (i, rr) in rows.iter().enumerate() {
            let y = 4.0 + row * i as f64;
            let _ = write!(
                o,
                "<text x=\"150\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
                 <rect x=\"156\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{}\" fill=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\">{} ({:.1}%) p50 {} p99 {}</text>",
                y + 15.0,
                esc(&rr.name),
                rr.share / max_share * bar_w,
                row - 6.0,
                COLORS[color % COLORS.len()],
                160.0 + rr.share / max_share * bar_w,
                y + 15.0,
                rr.requests,
                rr.share * 100.0,
                ms(rr.latency.p50),
                ms(rr.latency.p99)
            );
            color += 1;
        }
        let ex = 156.0 + even / max_share * bar_w;
        let _ = write!(
            o,
            "<line x1=\"{ex:.1}\" x2=\"{ex:.1}\" y1=\"0\" y2=\"{h}\" stroke=\"#111\" stroke-dasharray=\"4 3\"><title>even share</title></line></svg>"
        );
        let _ = write!(
            o,
            "<p><b>{}</b> (dashed line: an even share{})</p>",
            esc(&sv.verdict.text),
            if several { " of this service" } else { "" }
        );
    }
    o
}

/// A round axis maximum at or above `v`.
fn nice(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axes() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(7.0), 10.0);
        assert_eq!(nice(180.0), 200.0);
        assert_eq!(nice(1000.0), 1000.0);
        assert_eq!(esc("<a&b>"), "&lt;a&amp;b&gt;");
    }
}
