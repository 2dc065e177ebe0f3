//! `shoal top`: a live terminal view of the running shoal, refreshed from the admin API
//! (`GET /api/v1/services` and `/api/v1/events`) every interval, with keys to select a
//! service and scale it by one.
//!
//! The screen is a pure function of what was fetched ([`view`]); this module owns the
//! terminal (raw mode and the alternate screen, restored on quit, error and panic), the keys
//! and the admin calls. Keys are read with a timeout on this thread and each admin call is a
//! `block_on` on a current-thread runtime, so nothing runs in the background.
mod view;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use hyper::Method;
use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use shoal_core::{Event, ServiceStatus};
use tokio::runtime::Runtime;
use tokio::time::Instant;

use crate::admin_client::AdminClient;
use crate::cli::TopArgs;
use view::{Snapshot, Status, View};

/// Events kept for the events panel (more than any terminal is tall).
const KEEP_EVENTS: usize = 200;

/// How long one refresh (two admin calls) may take before it counts as failed.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Quit,
    /// Move the selection by this many rows.
    Select(i32),
    /// Change the selected service's desired count by this much.
    Scale(i32),
}

fn action(key: KeyEvent) -> Option<Action> {
    if key.kind != KeyEventKind::Press {
        return None;
    }
    match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Some(Action::Quit),
        KeyCode::Char('q') | KeyCode::Esc => Some(Action::Quit),
        KeyCode::Up | KeyCode::Char('k') => Some(Action::Select(-1)),
        KeyCode::Down | KeyCode::Char('j') => Some(Action::Select(1)),
        KeyCode::Char('+' | '=') => Some(Action::Scale(1)),
        KeyCode::Char('-' | '_') => Some(Action::Scale(-1)),
        _ => None,
    }
}

/// What `shoal top` knows: the last two snapshots, recent events, the selection.
#[derive(Debug)]
struct App {
    client: AdminClient,
    now: Snapshot,
    previous: Option<Snapshot>,
    events: Vec<Event>,
    /// The selected service, by name, so it stays selected when services come and go.
    selected: Option<String>,
    /// The answer to the last key.
    status: Option<Status>,
    /// Why the last refresh failed; shown instead of `status` until one succeeds.
    refresh_error: Option<Status>,
}

async fn fetch(client: &AdminClient, since: u64) -> anyhow::Result<(Snapshot, Vec<Event>)> {
    let events_path = format!("/api/v1/events?since={since}");
    let get = async {
        let (services, events) = tokio::try_join!(
            client.json(Method::GET, "/api/v1/services", None),
            client.json(Method::GET, &events_path, None),
        )?;
        let services: Vec<ServiceStatus> =
            serde_json::from_value(services).context("unexpected answer from /api/v1/services")?;
        let events: Vec<Event> =
            serde_json::from_value(events).context("unexpected answer from /api/v1/events")?;
        anyhow::Ok((services, events))
    };
    let (services, events) = tokio::time::timeout(FETCH_TIMEOUT, get)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the admin API at {} did not answer within {FETCH_TIMEOUT:?}",
                client.addr
            )
        })??;
    let snapshot = Snapshot {
        at: Instant::now(),
        services,
    };
    Ok((snapshot, events))
}

impl App {
    /// The first fetch: fails (before the terminal is touched) if shoal cannot be reached.
    async fn connect(client: AdminClient) -> anyhow::Result<App> {
        let (now, events) = fetch(&client, 0).await?;
        let mut app = App {
            client,
            selected: now.services.first().map(|s| s.name.clone()),
            now,
            previous: None,
            events: Vec::new(),
            status: None,
            refresh_error: None,
        };
        merge_events(&mut app.events, events);
        Ok(app)
    }

    async fn refresh(&mut self) {
        // From the last event kept, which comes back first unless shoal was restarted.
        let since = self.events.last().map_or(0, |e| e.seq - 1);
        match fetch(&self.client, since).await {
            Ok((now, events)) => {
                merge_events(&mut self.events, events);
                self.previous = Some(std::mem::replace(&mut self.now, now));
                self.refresh_error = None;
            }
            Err(e) => {
                self.refresh_error = Some(Status {
                    text: format!("refresh failed: {e:#}"),
                    error: true,
                });
            }
        }
    }

    fn selected_index(&self) -> usize {
        let services = &self.now.services;
        self.selected
            .as_ref()
            .and_then(|name| services.iter().position(|s| &s.name == name))
            .unwrap_or(0)
    }

    fn select(&mut self, by: i32) {
        let n = self.now.services.len();
        if n == 0 {
            return;
        }
        let i = (self.selected_index() as i64 + i64::from(by)).clamp(0, n as i64 - 1) as usize;
        self.selected = Some(self.now.services[i].name.clone());
    }

    async fn scale(&mut self, by: i32) {
        let Some(service) = self.now.services.get(self.selected_index()) else {
            return;
        };
        let name = service.name.clone();
        let Some(replicas) = service.desired.checked_add_signed(by) else {
            self.status = Some(Status {
                text: format!("{name} has no replicas to remove"),
                error: true,
            });
            return;
        };
        let path = format!("/api/v1/services/{name}/scale");
        let body = serde_json::json!({ "replicas": replicas });
        self.status = Some(
            match self.client.json(Method::POST, &path, Some(body)).await {
                Ok(done) => {
                    let set = done["replicas"].as_u64().unwrap_or(replicas.into());
                    let mut text = format!("{name}: scaled to {set} replicas");
                    if let Some(note) = done["note"].as_str() {
                        text.push_str(&format!(" — {note}"));
                    }
                    Status { text, error: false }
                }
                Err(e) => Status {
                    text: format!("{name}: cannot scale to {replicas}: {e:#}"),
                    error: true,
                },
            },
        );
    }

    fn view(&self) -> View<'_> {
        View {
            admin: self.client.addr,
            now: &self.now,
            previous: self.previous.as_ref(),
            events: &self.events,
            selected: self.selected_index(),
            status: self.refresh_error.as_ref().or(self.status.as_ref()),
        }
    }
}

/// Add the events fetched from the sequence number before `kept`'s last one. That answer
/// starts with the last kept event again; if it does not, shoal was restarted and numbers
/// its events anew: then forget them all, and the next refresh fetches the new log whole.
fn merge_events(kept: &mut Vec<Event>, mut answer: Vec<Event>) {
    if let Some(last) = kept.last() {
        if answer.first() != Some(last) {
            kept.clear();
            return;
        }
        answer.remove(0);
    }
    kept.extend(answer);
    let extra = kept.len().saturating_sub(KEEP_EVENTS);
    kept.drain(..extra);
}

/// Raw mode and the alternate screen while it lives; dropping it (on quit, error or a
/// panic's unwinding) restores the terminal. `ratatui::try_init` also installs a panic hook
/// that restores it before the panic message is printed.
struct Screen {
    terminal: DefaultTerminal,
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = self.terminal.show_cursor();
        ratatui::restore();
    }
}

pub(crate) fn run(args: &TopArgs) -> anyhow::Result<ExitCode> {
    if args.admin.json {
        bail!("shoal top has no --json; `shoal status --json` prints the same data once");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = AdminClient::from_args(&args.admin);
    let mut app = runtime.block_on(App::connect(client))?;
    if !std::io::stdout().is_terminal() {
        bail!("shoal top needs a terminal; `shoal status` prints the same tables once");
    }
    let mut screen = Screen {
        terminal: ratatui::try_init().context("cannot set up the terminal")?,
    };
    event_loop(&runtime, &mut app, &mut screen.terminal, args.interval)?;
    Ok(ExitCode::SUCCESS)
}

fn event_loop(
    runtime: &Runtime,
    app: &mut App,
    terminal: &mut DefaultTerminal,
    interval: Duration,
) -> anyhow::Result<()> {
    let mut next = Instant::now() + interval;
    loop {
        terminal.draw(|f| f.render_widget(&app.view(), f.area()))?;
        let wait = next.saturating_duration_since(Instant::now());
        if event::poll(wait)?
            && let event::Event::Key(key) = event::read()?
        {
            match action(key) {
                Some(Action::Quit) => return Ok(()),
                Some(Action::Select(by)) => app.select(by),
                Some(Action::Scale(by)) => {
                    runtime.block_on(app.scale(by));
                    // Show the new desired count at once.
                    next = Instant::now();
                }
                None => {}
            }
        }
        if Instant::now() >= next {
            runtime.block_on(app.refresh());
            next = Instant::now() + interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> Option<Action> {
        action(KeyEvent::new(code, modifiers))
    }

    fn event(seq: u64, at_ms: u64) -> Event {
        serde_json::from_value(serde_json::json!({
            "seq": seq, "at_ms": at_ms, "service": "web", "replica": 0,
            "kind": "ready", "message": ""
        }))
        .unwrap()
    }

    #[test]
    fn events_are_merged_and_a_restarted_shoal_starts_them_over() {
        let mut kept = Vec::new();
        merge_events(&mut kept, (1..=3).map(|s| event(s, s)).collect());
        // Asked from seq 2: the answer repeats 3, then what is new.
        merge_events(&mut kept, (3..=4).map(|s| event(s, s)).collect());
        let seqs: Vec<u64> = kept.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        merge_events(&mut kept, vec![event(4, 4)]);
        assert_eq!(kept.len(), 4, "nothing new");
        // A new shoal: its event 4 is another one (or there is none yet).
        merge_events(&mut kept, vec![event(4, 99)]);
        assert!(kept.is_empty());
        merge_events(
            &mut kept,
            (1..=KEEP_EVENTS as u64 + 5).map(|s| event(s, 99)).collect(),
        );
        assert_eq!(kept.len(), KEEP_EVENTS);
        assert_eq!(kept.last().unwrap().seq, KEEP_EVENTS as u64 + 5);
    }

    #[test]
    fn keys_map_to_actions() {
        let none = KeyModifiers::NONE;
        assert_eq!(key(KeyCode::Char('q'), none), Some(Action::Quit));
        assert_eq!(key(KeyCode::Esc, none), Some(Action::Quit));
        assert_eq!(
            key(KeyCode::Char('c'), KeyModifiers::CONTROL),
            Some(Action::Quit)
        );
        assert_eq!(key(KeyCode::Char('c'), none), None);
        assert_eq!(key(KeyCode::Up, none), Some(Action::Select(-1)));
        assert_eq!(key(KeyCode::Char('j'), none), Some(Action::Select(1)));
        assert_eq!(key(KeyCode::Char('+'), none), Some(Action::Scale(1)));
        assert_eq!(key(KeyCode::Char('-'), none), Some(Action::Scale(-1)));
        let mut release = KeyEvent::new(KeyCode::Char('q'), none);
        release.kind = KeyEventKind::Release;
        assert_eq!(action(release), None);
    }
}
