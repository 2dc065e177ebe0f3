//! What `shoal top` draws, as a pure function of what the admin API reported: two snapshots
//! (rates are counter deltas between them), the retained events, the selected service and
//! the last status message. No I/O here, so the screen is tested with a `TestBackend`.
use std::net::SocketAddr;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, StatefulWidget, Table, TableState, Widget};
use shoal_core::{Event, ReplicaState, ServiceState, ServiceStatus};
use tokio::time::Instant;

use crate::format::{backlog_summary, format_event, mebibytes, percent, thousands, uptime};

/// What the admin API answered at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// When the answer arrived.
    pub(crate) at: Instant,
    /// `GET /api/v1/services`.
    pub(crate) services: Vec<ServiceStatus>,
}

/// A line under the tables: the answer to the last key, or why the last refresh failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) text: String,
    pub(crate) error: bool,
}

/// Everything one frame shows.
#[derive(Debug)]
pub(crate) struct View<'a> {
    pub(crate) admin: SocketAddr,
    pub(crate) now: &'a Snapshot,
    /// The snapshot before `now`, for rates; none on the first frame.
    pub(crate) previous: Option<&'a Snapshot>,
    /// Oldest first; the newest that fit are shown.
    pub(crate) events: &'a [Event],
    /// Index into `now.services` (clamped).
    pub(crate) selected: usize,
    pub(crate) status: Option<&'a Status>,
}

/// Render `view` into a fresh buffer of `area`'s size.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn draw(view: &View<'_>, area: Rect) -> Buffer {
    let mut buf = Buffer::empty(area);
    view.render(area, &mut buf);
    buf
}

/// A counter's increase per second between two readings; none if it went backwards (shoal
/// restarted) or no time passed.
pub(crate) fn per_second(now: u64, before: u64, secs: f64) -> Option<f64> {
    (now >= before && secs > 0.0).then(|| (now - before) as f64 / secs)
}

/// Requests/s and the share of 5xx answers (percent; none without requests) of one service.
pub(crate) fn service_rates(
    now: &ServiceStatus,
    previous: Option<&ServiceStatus>,
    secs: f64,
) -> (Option<f64>, Option<f64>) {
    let (Some(t), Some(p)) = (&now.traffic, previous.and_then(|p| p.traffic.as_ref())) else {
        return (None, None);
    };
    let rps = per_second(t.requests_total, p.requests_total, secs);
    let errors = match (
        t.requests_total.checked_sub(p.requests_total),
        t.server_errors_total.checked_sub(p.server_errors_total),
    ) {
        (Some(req), Some(err)) if req > 0 => Some(100.0 * err as f64 / req as f64),
        _ => None,
    };
    (rps, errors)
}

fn seconds_between(now: &Snapshot, previous: Option<&Snapshot>) -> f64 {
    previous.map_or(0.0, |p| {
        now.at
            .checked_duration_since(p.at)
            .map_or(0.0, |d| d.as_secs_f64())
    })
}

fn rate(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(r) if r < 1000.0 => format!("{r:.1}"),
        Some(r) => format!("{r:.0}"),
    }
}

fn millis(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(ms) if ms < 10.0 => format!("{ms:.1}ms"),
        Some(ms) => format!("{ms:.0}ms"),
    }
}

fn service_state_style(s: ServiceState) -> (&'static str, Style) {
    match s {
        ServiceState::Running => ("running", Style::new().fg(Color::Green)),
        ServiceState::Progressing => ("progressing", Style::new().fg(Color::Yellow)),
        ServiceState::Failed => ("failed", Style::new().fg(Color::Red)),
        ServiceState::Stopped => ("stopped", Style::new().fg(Color::DarkGray)),
    }
}

fn replica_state_style(s: ReplicaState) -> Style {
    match s {
        ReplicaState::Ready => Style::new().fg(Color::Green),
        ReplicaState::Starting | ReplicaState::Unready | ReplicaState::Draining => {
            Style::new().fg(Color::Yellow)
        }
        ReplicaState::Exited | ReplicaState::Failed => Style::new().fg(Color::Red),
    }
}

/// Column widths that fit the header and every cell; the last column takes the rest.
fn widths(header: &[&str], rows: &[Vec<(String, Style)>]) -> Vec<Constraint> {
    let n = header.len();
    (0..n)
        .map(|c| {
            if c + 1 == n {
                return Constraint::Fill(1);
            }
            let w = rows
                .iter()
                .map(|r| r[c].0.chars().count())
                .chain([header[c].chars().count()])
                .max()
                .unwrap_or(0);
            Constraint::Length(w as u16)
        })
        .collect()
}

fn table<'a>(header: &[&'a str], rows: Vec<Vec<(String, Style)>>, title: Line<'a>) -> Table<'a> {
    let constraints = widths(header, &rows);
    let rows = rows.into_iter().map(|r| {
        Row::new(
            r.into_iter()
                .map(|(text, style)| Cell::from(text).style(style)),
        )
    });
    Table::new(rows, constraints)
        .header(Row::new(header.to_vec()).style(Style::new().add_modifier(Modifier::BOLD)))
        .block(Block::bordered().title(title))
        .column_spacing(2)
}

const SERVICE_COLUMNS: [&str; 9] = [
    "NAME", "STATE", "READY", "REQ/S", "ERRORS", "P95", "BACKLOG", "TARGETS", "MIN/MAX",
];

const REPLICA_COLUMNS: [&str; 11] = [
    "REPLICA",
    "STATE",
    "HEALTH",
    "PID",
    "CPU",
    "MEMORY",
    "IN-FLIGHT",
    "REQ/S",
    "RESTARTS",
    "UPTIME",
    "NOTE",
];

impl View<'_> {
    fn selected(&self) -> Option<&ServiceStatus> {
        let services = &self.now.services;
        services.get(self.selected.min(services.len().saturating_sub(1)))
    }

    fn previous_service(&self, name: &str) -> Option<&ServiceStatus> {
        self.previous?.services.iter().find(|s| s.name == name)
    }

    fn service_rows(&self, secs: f64) -> Vec<Vec<(String, Style)>> {
        let plain = Style::new();
        self.now
            .services
            .iter()
            .map(|s| {
                let (rps, errors) = service_rates(s, self.previous_service(&s.name), secs);
                let (state, state_style) = service_state_style(s.state);
                let error_style = match errors {
                    Some(e) if e > 0.0 => Style::new().fg(Color::Red),
                    _ => plain,
                };
                let p95 = s.traffic.as_ref().and_then(|t| t.latency_p95_ms);
                let (targets, bounds) = match &s.autoscale {
                    Some(a) => (a.targets.clone(), format!("{}/{}", a.min, a.max)),
                    None => ("-".into(), "-".into()),
                };
                // Messages waiting in the queue a backlog target reads; `unknown` (red)
                // while the broker cannot be read.
                let backlog = match s.autoscale.as_ref().and_then(|a| a.backlog.as_ref()) {
                    Some(b) if b.failures > 0 => {
                        ("unknown".to_owned(), Style::new().fg(Color::Red))
                    }
                    Some(b) => (b.messages.map_or_else(|| "-".into(), thousands), plain),
                    None => ("-".into(), plain),
                };
                vec![
                    (s.name.clone(), plain),
                    (state.into(), state_style),
                    (format!("{}/{}", s.ready, s.desired), plain),
                    (rate(rps), plain),
                    (percent(errors), error_style),
                    (millis(p95), plain),
                    backlog,
                    (targets, plain),
                    (bounds, plain),
                ]
            })
            .collect()
    }

    fn replica_rows(&self, s: &ServiceStatus, secs: f64) -> Vec<Vec<(String, Style)>> {
        let plain = Style::new();
        let before = self.previous_service(&s.name);
        s.replicas
            .iter()
            .map(|r| {
                let traffic = r.traffic.as_ref();
                let health = traffic.map_or("-".into(), |t| t.health.to_string());
                let health_style = match traffic.map(|t| t.health) {
                    Some(shoal_core::HealthState::Healthy) => Style::new().fg(Color::Green),
                    Some(_) => Style::new().fg(Color::Red),
                    None => plain,
                };
                let rps = traffic.and_then(|t| {
                    let p = before?
                        .replicas
                        .iter()
                        .find(|p| p.index == r.index)?
                        .traffic
                        .as_ref()?;
                    per_second(t.requests_total, p.requests_total, secs)
                });
                let note = traffic
                    .and_then(|t| t.reason.clone())
                    .or_else(|| r.message.clone().filter(|_| r.state != ReplicaState::Ready))
                    .unwrap_or_default();
                let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                vec![
                    (format!("{}/{}", s.name, r.index), plain),
                    (r.state.to_string(), replica_state_style(r.state)),
                    (health, health_style),
                    (opt(r.pid.map(|p| p.to_string())), plain),
                    (percent(r.cpu_percent), plain),
                    (mebibytes(r.rss_bytes), plain),
                    (opt(traffic.map(|t| t.in_flight.to_string())), plain),
                    (rate(rps), plain),
                    (r.restarts.to_string(), plain),
                    (uptime(r.uptime_secs), plain),
                    (note, Style::new().fg(Color::Yellow)),
                ]
            })
            .collect()
    }

    fn header(&self) -> Line<'static> {
        let services = &self.now.services;
        let ready: u32 = services.iter().map(|s| s.ready).sum();
        let desired: u32 = services.iter().map(|s| s.desired).sum();
        Line::from(vec![
            Span::styled("shoal top", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(format!(
                "  admin {}  ·  {} service{}  ·  {ready}/{desired} replicas ready",
                self.admin,
                services.len(),
                if services.len() == 1 { "" } else { "s" },
            )),
        ])
    }

    fn footer(&self) -> Line<'_> {
        let keys = Span::styled(
            "↑/↓ select  +/- scale  q quit",
            Style::new().fg(Color::DarkGray),
        );
        match self.status {
            Some(s) => Line::from(vec![
                Span::styled(
                    s.text.as_str(),
                    Style::new().fg(if s.error { Color::Red } else { Color::Cyan }),
                ),
                Span::raw("   "),
                keys,
            ]),
            None => Line::from(keys),
        }
    }
}

impl Widget for &View<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let secs = seconds_between(self.now, self.previous);
        let selected = self.selected();
        let n_services = self.now.services.len() as u16;
        let n_replicas = selected.map_or(0, |s| s.replicas.len() as u16);
        // Tables as tall as their rows (plus borders and header), so events get the rest.
        let [head, services, replicas, events, foot] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(n_services.max(1) + 3),
            Constraint::Length(n_replicas.max(1) + 3),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(area);

        Paragraph::new(self.header()).render(head, buf);

        let mut state = TableState::default().with_selected(
            selected.map(|_| self.selected.min(self.now.services.len().saturating_sub(1))),
        );
        let services_table = table(
            &SERVICE_COLUMNS,
            self.service_rows(secs),
            Line::from(" services "),
        )
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("▶ ");
        StatefulWidget::render(services_table, services, buf, &mut state);

        let (rows, title) = match selected {
            Some(s) => {
                let queue = s.autoscale.as_ref().and_then(|a| a.backlog.as_ref());
                let title = match queue {
                    Some(b) => {
                        format!(" replicas of {} · {} ", s.name, backlog_summary(b, s.ready))
                    }
                    None => format!(" replicas of {} ", s.name),
                };
                (self.replica_rows(s, secs), title)
            }
            None => (Vec::new(), " replicas ".to_owned()),
        };
        Widget::render(
            table(&REPLICA_COLUMNS, rows, Line::from(title)),
            replicas,
            buf,
        );

        let fit = events.height.saturating_sub(2) as usize;
        let lines: Vec<Line<'_>> = self.events[self.events.len().saturating_sub(fit)..]
            .iter()
            .map(|e| {
                let text = format_event(&serde_json::to_value(e).unwrap_or_default());
                Line::from(text)
            })
            .collect();
        Paragraph::new(lines)
            .block(Block::bordered().title(" events "))
            .render(events, buf);

        Paragraph::new(self.footer()).render(foot, buf);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;

    fn services(requests: u64, errors: u64, web_replicas: u32) -> Vec<ServiceStatus> {
        let replicas: Vec<serde_json::Value> = (0..web_replicas)
            .map(|i| {
                serde_json::json!({
                    "index": i, "state": "ready", "pid": 4100 + i, "port": 20000 + i,
                    "endpoint": null, "restarts": i, "uptime_secs": 75.0,
                    "cpu_percent": 12.5, "rss_bytes": 9_961_472, "last_exit": null, "message": null,
                    "traffic": { "health": "healthy", "reason": null, "in_flight": 3 + u64::from(i),
                                 "requests_total": requests / u64::from(web_replicas), "ejections_total": 0 }
                })
            })
            .collect();
        let traffic = |requests: u64, errors: u64, p95: Option<f64>| {
            serde_json::json!({
                "requests_total": requests, "server_errors_total": errors, "retries_total": 0,
                "hedges_total": 0, "retries_refused_total": 0, "ejections_total": 0,
                "breaker": null, "breaker_opened_total": 0, "breaker_rejected_total": 0,
                "per_try_timeout_ms": null, "latency_p95_ms": p95, "held": 0
            })
        };
        serde_json::from_value(serde_json::json!([
            {
                "name": "api", "desired": 3, "ready": 2, "state": "progressing",
                "replicas": [], "traffic": traffic(requests / 2, 0, None),
                "autoscale": {
                    "min": 1, "max": 10, "desired": 3, "targets": "23.5/10", "readings": [],
                    "panic": false, "reason": "above target", "limited_by": null,
                    "last_scaled_ms": null, "held": 0
                }
            },
            {
                "name": "web", "desired": web_replicas, "ready": web_replicas, "state": "running",
                "replicas": replicas, "traffic": traffic(requests, errors, Some(42.0))
            }
        ]))
        .unwrap()
    }

    fn screen(view: &View<'_>, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| f.render_widget(view, f.area())).unwrap();
        let buf = terminal.backend().buffer().clone();
        assert_eq!(buf, draw(view, Rect::new(0, 0, width, height)));
        (0..height)
            .map(|y| {
                let line: String = (0..width).map(|x| buf[(x, y)].symbol()).collect();
                line.trim_end().to_owned() + "\n"
            })
            .collect()
    }

    fn line<'s>(screen: &'s str, containing: &str) -> &'s str {
        screen
            .lines()
            .find(|l| l.contains(containing))
            .unwrap_or_else(|| panic!("no line with {containing:?} in\n{screen}"))
    }

    #[test]
    fn rates_come_from_counter_deltas() {
        assert_eq!(per_second(150, 50, 2.0), Some(50.0));
        assert_eq!(per_second(10, 50, 1.0), None, "a restarted shoal");
        assert_eq!(per_second(10, 5, 0.0), None);
        let before = &services(1000, 10, 2)[1];
        let now = &services(1400, 30, 2)[1];
        let (rps, errors) = service_rates(now, Some(before), 2.0);
        assert_eq!(rps, Some(200.0));
        assert_eq!(errors, Some(5.0));
        assert_eq!(service_rates(now, None, 2.0), (None, None));
        assert_eq!(
            service_rates(now, Some(now), 1.0),
            (Some(0.0), None),
            "no requests: no error rate"
        );
    }

    #[test]
    fn the_screen_shows_services_rates_the_selected_replicas_and_events() {
        let at = Instant::now();
        let previous = Snapshot {
            at,
            services: services(1000, 10, 2),
        };
        let now = Snapshot {
            at: at + Duration::from_secs(2),
            services: services(1400, 30, 2),
        };
        let events: Vec<Event> = serde_json::from_value(serde_json::json!([
            { "seq": 1, "at_ms": 3_600_000, "service": "web", "replica": 1, "kind": "ready", "message": "readiness passed" },
            { "seq": 2, "at_ms": 3_661_000, "service": "web", "replica": null, "kind": "scaled", "message": "2 → 3 replicas" }
        ]))
        .unwrap();
        let status = Status {
            text: "web: scaled to 3 replicas".into(),
            error: false,
        };
        let view = View {
            admin: "127.0.0.1:8080".parse().unwrap(),
            now: &now,
            previous: Some(&previous),
            events: &events,
            selected: 1,
            status: Some(&status),
        };
        let text = screen(&view, 140, 30);

        assert!(
            line(&text, "shoal top").contains("2 services  ·  4/5 replicas ready"),
            "{text}"
        );
        for column in SERVICE_COLUMNS.iter().chain(&REPLICA_COLUMNS) {
            assert!(text.contains(column), "{column} in\n{text}");
        }
        let web = line(&text, "▶ web");
        for cell in ["running", "2/2", "200.0", "5.0%", "42ms", "-"] {
            assert!(web.contains(cell), "{cell:?} in {web:?}\n{text}");
        }
        let api = line(&text, "api");
        for cell in ["progressing", "2/3", "100.0", "23.5/10", "1/10"] {
            assert!(api.contains(cell), "{cell:?} in {api:?}\n{text}");
        }
        assert!(text.contains("replicas of web"), "{text}");
        let r1 = line(&text, "web/1");
        for cell in [
            "ready", "healthy", "4101", "12.5%", "9.5MiB", "4", "100.0", "1m15s",
        ] {
            assert!(r1.contains(cell), "{cell:?} in {r1:?}\n{text}");
        }
        assert!(line(&text, "web/0").contains("4100"), "{text}");
        assert!(
            line(&text, "01:01:01").contains("scaled") && text.contains("2 → 3 replicas"),
            "{text}"
        );
        assert!(
            line(&text, "q quit").contains("web: scaled to 3 replicas"),
            "{text}"
        );
    }

    #[test]
    fn a_worker_shows_its_backlog_rate_and_consumers_and_no_request_figures() {
        let services: Vec<ServiceStatus> = serde_json::from_value(serde_json::json!([{
            "name": "jobs", "desired": 3, "ready": 3, "state": "running", "worker": true,
            "replicas": (0..3).map(|i| serde_json::json!({
                "index": i, "state": "ready", "pid": 4200 + i, "port": null, "endpoint": null,
                "restarts": 0, "uptime_secs": 12.0, "cpu_percent": 3.0, "rss_bytes": 1_048_576,
                "last_exit": null, "message": null, "traffic": null
            })).collect::<Vec<_>>(),
            "traffic": null,
            "autoscale": {
                "min": 0, "max": 8, "desired": 3, "targets": "411.3/100", "readings": [],
                "panic": false, "reason": "backlog", "limited_by": null,
                "last_scaled_ms": null, "held": 0,
                "backlog": {
                    "source": "kafka 127.0.0.1:9092 topic sales group agg", "messages": 1234,
                    "smoothed": 1200.0, "consumed": 99, "partitions": 12,
                    "rate_per_replica": 48.2, "active": true, "failures": 0, "error": null,
                    "fallback": false, "read_at_ms": 1
                }
            }
        }]))
        .unwrap();
        let now = Snapshot {
            at: Instant::now(),
            services,
        };
        let view = View {
            admin: "127.0.0.1:8080".parse().unwrap(),
            now: &now,
            previous: None,
            events: &[],
            selected: 0,
            status: None,
        };
        let text = screen(&view, 160, 20);
        let row = line(&text, "▶ jobs");
        for cell in ["running", "3/3", "1,234", "411.3/100", "0/8"] {
            assert!(row.contains(cell), "{cell:?} in {row:?}\n{text}");
        }
        assert!(
            text.contains(
                "replicas of jobs · backlog 1,234 (kafka 127.0.0.1:9092 topic sales group agg), \
                 3 consumers on 12 partitions, 48.2/s per replica"
            ),
            "{text}"
        );
        assert!(line(&text, "jobs/2").contains("4202"), "{text}");
    }

    #[test]
    fn the_first_frame_has_no_rates_and_selection_is_clamped() {
        let now = Snapshot {
            at: Instant::now(),
            services: services(1000, 0, 3),
        };
        let view = View {
            admin: "127.0.0.1:8080".parse().unwrap(),
            now: &now,
            previous: None,
            events: &[],
            selected: 7,
            status: None,
        };
        let text = screen(&view, 120, 24);
        let web = line(&text, "▶ web");
        assert!(!web.contains("200.0"), "{web}");
        assert!(text.contains("web/2"), "{text}");
        // A small terminal still draws (what fits).
        let small = screen(&view, 40, 8);
        assert!(small.contains("shoal top"), "{small}");
    }

    #[test]
    fn no_services_draws_empty_tables() {
        let now = Snapshot {
            at: Instant::now(),
            services: Vec::new(),
        };
        let view = View {
            admin: "127.0.0.1:8080".parse().unwrap(),
            now: &now,
            previous: None,
            events: &[],
            selected: 0,
            status: None,
        };
        let text = screen(&view, 100, 20);
        assert!(text.contains("0 services"), "{text}");
    }
}
