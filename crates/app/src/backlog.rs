//! Reading the queues behind `autoscale.backlog`: one task per trigger reads its broker every
//! `poll` with a [`shoal_backlog::Reader`] and keeps the newest read for the autoscaler,
//! which passes it in every [`Sample`](shoal_autoscale::Sample) (the engine tells reads apart
//! by their time, so a read is counted once however `poll` and `tick` compare).
//!
//! A read's time ([`BacklogRead::at`]) is taken when it completes, on the autoscaler's clock.
//!
//! **Credentials** are resolved when the reader connects — the first time and after every
//! failed read (the reader drops its connection then) — so a rotated password file is picked
//! up on the next connection, and a missing variable or file is a failed read with its
//! reason, like a broker that does not answer, never a crash.
//!
//! **Events**: the first failed read of an outage is a `brokererror` event with the broker's
//! message; the reads that fail after it are not (they are counted in status and in
//! `shoal_backlog_read_errors_total`); the first successful read after it is a `brokerok`
//! event. No message holds a secret: `shoal-backlog`'s errors never do, and the password's
//! own problems name the variable or file, never its content.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_autoscale::{BacklogRead, BacklogSample};
use shoal_backlog::{Credentials, Reader, Secret, Source};
use shoal_config::{BacklogSource, BacklogTrigger, SecretSource};
use shoal_core::{EventKind, EventLog, unix_millis};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// The reading task of one service's backlog trigger; dropping it stops the task.
#[derive(Debug)]
pub(crate) struct Poller {
    trigger: BacklogTrigger,
    while_failing: String,
    source: String,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

/// What the task leaves for the autoscaler, the status and the metrics.
#[derive(Debug, Default)]
struct Shared {
    /// The newest read, successful or not.
    latest: Option<BacklogRead>,
    /// When it completed, in ms since the Unix epoch.
    read_at_ms: Option<u64>,
    /// Messages waiting at the last successful read.
    messages: Option<u64>,
    /// Failed reads since the poller started.
    errors_total: u64,
}

/// What the metrics show of one poller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PollerMetrics {
    /// Messages waiting at the last successful read.
    pub(crate) messages: Option<u64>,
    /// Failed reads so far.
    pub(crate) errors_total: u64,
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Poller {
    /// Start reading `trigger`'s queue for `service` now, then every `trigger.poll`. Read
    /// times are measured from `origin` (the autoscaler's clock). `while_failing` says, in
    /// the `brokererror` event, what the autoscaler does while reads fail.
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        service: &str,
        trigger: &BacklogTrigger,
        origin: Instant,
        events: Arc<EventLog>,
        while_failing: String,
    ) -> Poller {
        let source = source(&trigger.source);
        let shown = source.to_string();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let task = runtime.spawn(poll(
            Polling {
                service: service.to_owned(),
                trigger: trigger.clone(),
                source,
                origin,
                events,
                while_failing: while_failing.clone(),
            },
            Arc::clone(&shared),
        ));
        Poller {
            trigger: trigger.clone(),
            while_failing,
            source: shown,
            shared,
            task,
        }
    }

    /// The trigger this poller reads.
    pub(crate) fn trigger(&self) -> &BacklogTrigger {
        &self.trigger
    }

    /// Whether this poller reads `trigger` and says `while_failing` in its events.
    pub(crate) fn is(&self, trigger: &BacklogTrigger, while_failing: &str) -> bool {
        self.trigger == *trigger && self.while_failing == while_failing
    }

    /// The queue, as status shows it (no secret).
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// The newest read, if one has completed.
    pub(crate) fn latest(&self) -> Option<BacklogRead> {
        lock(&self.shared).latest.clone()
    }

    /// When the newest read completed (ms since the Unix epoch).
    pub(crate) fn read_at_ms(&self) -> Option<u64> {
        lock(&self.shared).read_at_ms
    }

    /// The figures `GET /metrics` shows.
    pub(crate) fn metrics(&self) -> PollerMetrics {
        let shared = lock(&self.shared);
        PollerMetrics {
            messages: shared.messages,
            errors_total: shared.errors_total,
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The stack file's queue as the reader's.
fn source(source: &BacklogSource) -> Source {
    match source {
        BacklogSource::Redis { url, stream, group } => Source::Redis {
            url: url.clone(),
            stream: stream.clone(),
            group: group.clone(),
        },
        BacklogSource::RabbitMq {
            url,
            queue,
            include_unacked,
        } => Source::RabbitMq {
            url: url.clone(),
            queue: queue.clone(),
            include_unacked: *include_unacked,
        },
        BacklogSource::Kafka {
            brokers,
            topic,
            group,
        } => Source::Kafka {
            brokers: brokers.clone(),
            topic: topic.clone(),
            group: group.clone(),
        },
    }
}

/// The password, read now from its variable or file; the error says which and why, never
/// the value. A file's one trailing newline (`\n` or `\r\n`) is not part of it.
fn credentials(password: Option<&SecretSource>) -> Result<Credentials, String> {
    let (password, origin) = match password {
        None => return Ok(Credentials::default()),
        Some(SecretSource::Env(var)) => match std::env::var(var) {
            Ok(value) => (value, format!("`{var}` (password_env)")),
            Err(std::env::VarError::NotPresent) => {
                return Err(format!(
                    "cannot read the password: `{var}` is not set in shoal's environment \
                     (password_env)"
                ));
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!(
                    "cannot read the password: `{var}` is not valid UTF-8 (password_env)"
                ));
            }
        },
        Some(SecretSource::File(path)) => match std::fs::read_to_string(path) {
            Ok(mut text) => {
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                (text, format!("{} (password_file)", path.display()))
            }
            Err(e) => {
                return Err(format!(
                    "cannot read the password file {} (password_file): {e}",
                    path.display()
                ));
            }
        },
    };
    if password.is_empty() {
        return Err(format!("cannot read the password: {origin} is empty"));
    }
    Ok(Credentials {
        username: None,
        password: Some(Secret::new(password)),
    })
}

/// What the reading task needs.
struct Polling {
    service: String,
    trigger: BacklogTrigger,
    source: Source,
    origin: Instant,
    events: Arc<EventLog>,
    while_failing: String,
}

/// Failed reads in a row, since when.
struct Outage {
    since: Instant,
    failures: u64,
}

/// Read now, then every `poll` (a read that takes longer delays the next, never piles
/// reads up), until the task is aborted.
async fn poll(p: Polling, shared: Arc<Mutex<Shared>>) {
    let context = p.source.to_string();
    let mut every = tokio::time::interval(p.trigger.poll);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut reader: Option<Reader> = None;
    let mut outage: Option<Outage> = None;
    loop {
        every.tick().await;
        let result = read(&p, &mut reader, &context).await;
        let at = p.origin.elapsed();
        let read = match &result {
            Ok(sample) => BacklogRead::ok(at, *sample),
            Err((message, _)) => BacklogRead::failed(at, message.clone()),
        };
        {
            let mut s = lock(&shared);
            s.latest = Some(read);
            s.read_at_ms = Some(unix_millis());
            match &result {
                Ok(sample) => s.messages = Some(sample.messages),
                Err(_) => s.errors_total += 1,
            }
        }
        match (result, &mut outage) {
            (Err(_), Some(o)) => o.failures += 1,
            (Err((message, transient)), None) => {
                let hint = if transient {
                    String::new()
                } else {
                    " (reading again will not help: fix `autoscale.backlog` and reload)".to_owned()
                };
                tracing::warn!(service = %p.service, error = %message, "cannot read the backlog");
                p.events.emit(
                    &p.service,
                    None,
                    EventKind::BrokerError,
                    format!("{message}{hint}; {}", p.while_failing),
                );
                outage = Some(Outage {
                    since: Instant::now(),
                    failures: 1,
                });
            }
            (Ok(sample), _) => {
                if let Some(o) = outage.take() {
                    let message = format!(
                        "{context}: read again after {} ({} failed read{}): backlog {}",
                        human(o.since.elapsed()),
                        o.failures,
                        if o.failures == 1 { "" } else { "s" },
                        sample.messages
                    );
                    tracing::info!(service = %p.service, "{message}");
                    p.events
                        .emit(&p.service, None, EventKind::BrokerOk, message);
                }
            }
        }
    }
}

/// One read: with the current reader, or a new one (credentials resolved now). A failed
/// read drops the reader, so the next connects anew. The error is the message and whether
/// reading again may help.
async fn read(
    p: &Polling,
    reader: &mut Option<Reader>,
    context: &str,
) -> Result<BacklogSample, (String, bool)> {
    let current = match reader {
        Some(r) => r,
        None => {
            let credentials = credentials(p.trigger.password.as_ref())
                .map_err(|e| (format!("{context}: {e}"), true))?;
            reader.insert(Reader::new(p.source.clone(), credentials))
        }
    };
    match current.read().await {
        Ok(reading) => Ok(BacklogSample {
            messages: reading.backlog,
            consumed: reading.consumed,
            partitions: reading.partitions,
        }),
        Err(e) => {
            *reader = None;
            Err((e.to_string(), e.is_transient()))
        }
    }
}

/// `12s`, `1m05s`.
fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.1}s")
    } else if s < 60.0 {
        format!("{s:.0}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Poll `done` every 10 ms for up to 5 s.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn secret(c: &Credentials) -> Option<&str> {
        c.password.as_ref().map(Secret::expose)
    }

    #[test]
    fn a_password_comes_from_a_variable_or_a_file_without_its_newline() {
        assert!(credentials(None).unwrap().password.is_none());
        // Cargo sets this variable for the tests it runs.
        let var = "CARGO_MANIFEST_DIR";
        let expected = std::env::var(var).unwrap();
        let c = credentials(Some(&SecretSource::Env(var.into()))).unwrap();
        assert_eq!(secret(&c), Some(expected.as_str()));

        let dir = tempfile::tempdir().unwrap();
        for (text, expected) in [
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
            ("s3cret", "s3cret"),
            ("s3cret\n\n", "s3cret\n"),
        ] {
            let path = dir.path().join("pw");
            std::fs::write(&path, text).unwrap();
            let c = credentials(Some(&SecretSource::File(path))).unwrap();
            assert_eq!(secret(&c), Some(expected), "{text:?}");
        }
    }

    #[test]
    fn a_missing_or_empty_password_is_a_reason_that_never_holds_the_secret() {
        let e =
            credentials(Some(&SecretSource::Env("SHOAL_NO_SUCH_VARIABLE_X".into()))).unwrap_err();
        assert_eq!(
            e,
            "cannot read the password: `SHOAL_NO_SUCH_VARIABLE_X` is not set in shoal's \
             environment (password_env)"
        );
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = credentials(Some(&SecretSource::File(missing.clone()))).unwrap_err();
        assert!(
            e.starts_with(&format!(
                "cannot read the password file {} (password_file): ",
                missing.display()
            )),
            "{e}"
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = credentials(Some(&SecretSource::File(empty.clone()))).unwrap_err();
        assert_eq!(
            e,
            format!(
                "cannot read the password: {} (password_file) is empty",
                empty.display()
            )
        );
    }

    #[tokio::test]
    async fn failed_reads_are_one_event_per_outage_and_a_missing_file_is_a_failed_read() {
        let dir = tempfile::tempdir().unwrap();
        let events = Arc::new(EventLog::new(100));
        let trigger = BacklogTrigger {
            source: BacklogSource::Redis {
                // Port 1 on loopback refuses at once.
                url: "redis://127.0.0.1:1".into(),
                stream: "s".into(),
                group: "g".into(),
            },
            password: Some(SecretSource::File(dir.path().join("pw"))),
            poll: Duration::from_millis(20),
        };
        let poller = Poller::start(
            &tokio::runtime::Handle::current(),
            "jobs",
            &trigger,
            Instant::now(),
            events.clone(),
            "holding the count".into(),
        );
        until("three failed reads", || poller.metrics().errors_total >= 3).await;
        let latest = poller.latest().unwrap();
        let error = latest.result.unwrap_err();
        assert!(error.contains("cannot read the password file"), "{error}");
        // The password appears: the next reads connect and are refused.
        std::fs::write(dir.path().join("pw"), "hunter2-secret\n").unwrap();
        until("a connection refused", || {
            matches!(poller.latest().map(|r| r.result),
                Some(Err(e)) if e.contains("cannot reach the broker"))
        })
        .await;
        drop(poller);
        let all = events.since(0);
        assert_eq!(all.len(), 1, "one event for the whole outage: {all:?}");
        assert_eq!(all[0].kind, EventKind::BrokerError);
        assert_eq!(all[0].service, "jobs");
        assert!(
            all[0].message.ends_with("; holding the count"),
            "{}",
            all[0].message
        );
        assert!(!format!("{all:?}").contains("hunter2"));
    }
}
