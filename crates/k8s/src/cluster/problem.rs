//! API failures: what kind they are, how they are worded, and reporting each outage once.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::core::Status;
use shoal_core::{EventKind, EventLog};
use tokio::time::Instant;

/// A failed API call, by what the caller can do about it.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The API server answered with an error status (403, 404, 409, 410, 5xx…).
    Status(Box<Status>),
    /// No answer: connection refused or closed, timed out, TLS failed.
    Unreachable(String),
    /// Anything else (an answer that could not be read).
    Other(String),
}

impl Failure {
    /// The HTTP status, 0 when there was none.
    pub(crate) fn code(&self) -> u16 {
        match self {
            Failure::Status(s) => s.code,
            _ => 0,
        }
    }

    /// A one-line description of the failure for an event.
    pub(crate) fn detail(&self) -> String {
        match self {
            Failure::Status(s) => status_text(s),
            Failure::Unreachable(e) | Failure::Other(e) => e.clone(),
        }
    }

    pub(crate) fn is(&self, code: u16) -> bool {
        self.code() == code
    }
}

impl From<&kube::Error> for Failure {
    fn from(e: &kube::Error) -> Failure {
        match e {
            kube::Error::Api(status) => Failure::Status(status.clone()),
            kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
                Failure::Unreachable(chain(e))
            }
            kube::Error::RustlsTls(_) | kube::Error::TlsRequired | kube::Error::Auth(_) => {
                Failure::Unreachable(chain(e))
            }
            other => Failure::Other(chain(other)),
        }
    }
}

impl From<kube::Error> for Failure {
    fn from(e: kube::Error) -> Failure {
        Failure::from(&e)
    }
}

/// The API server's words: `"403 Forbidden: message"`.
fn status_text(s: &Status) -> String {
    let reason = if s.reason.is_empty() {
        String::new()
    } else {
        format!(" {}", s.reason)
    };
    if s.message.is_empty() {
        format!("{}{reason}", s.code)
    } else {
        format!("{}{reason}: {}", s.code, s.message)
    }
}

/// An error with its sources, `outer: inner: innermost`, without repeats.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Words for a failed call: `verb` on `resource` (e.g. `patch`, `deployments/scale`) in
/// `namespace`, done for `purpose` (e.g. "scaling users to 3").
pub(crate) fn describe(
    failure: &Failure,
    verb: &str,
    resource: &str,
    namespace: &str,
    purpose: &str,
) -> String {
    match failure {
        Failure::Status(s) if s.code == 403 => format!(
            "the gateway's ServiceAccount may not {verb} {resource} in namespace {namespace} \
             ({purpose}): its Role lacks the verb `{verb}` on `{resource}`: {}",
            status_text(s)
        ),
        Failure::Unreachable(e) => format!(
            "Kubernetes API unreachable ({verb} {resource} in namespace {namespace}, {purpose}): {e}"
        ),
        other => format!(
            "{verb} {resource} in namespace {namespace} failed ({purpose}): {}",
            other.detail()
        ),
    }
}

/// Reports API trouble as events, once per outage.
///
/// Two kinds: the API server being unreachable (one event for the whole outage, whichever
/// call noticed first; cleared by any call that succeeds), and a call that the server refuses
/// (per key, e.g. `patch deployments/scale users`: one event per key and status code until
/// that call succeeds). Retries in between only log at debug level.
#[derive(Debug)]
pub(crate) struct Troubles {
    events: Arc<EventLog>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Since when the API server is unreachable, and what noticed it.
    unreachable: Option<(Instant, String)>,
    /// Calls failing now: key → HTTP status (0: not a status).
    failing: HashMap<String, u16>,
}

impl Troubles {
    pub(crate) fn new(events: Arc<EventLog>) -> Troubles {
        Troubles {
            events,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A call failed. Unreachable → the outage's event (if it is new); otherwise the key's
    /// event (if the key was not failing with this status already). `message` is the event's
    /// text; `service` the service it concerns ("" for the gateway).
    pub(crate) fn failed(&self, key: &str, service: &str, failure: &Failure, message: String) {
        let mut inner = self.lock();
        if let Failure::Unreachable(_) = failure {
            if inner.unreachable.is_none() {
                inner.unreachable = Some((Instant::now(), key.to_owned()));
                drop(inner);
                tracing::warn!(call = key, "{message}");
                self.events
                    .emit(service, None, EventKind::ApiError, message);
            } else {
                tracing::debug!(call = key, "{message}");
            }
            return;
        }
        let code = failure.code();
        if inner.failing.insert(key.to_owned(), code) != Some(code) {
            drop(inner);
            tracing::warn!(call = key, "{message}");
            self.events
                .emit(service, None, EventKind::ApiError, message);
        } else {
            tracing::debug!(call = key, "{message}");
        }
    }

    /// Report a failure that must be an event even during an outage (a scale request that
    /// did not happen): per key, like a refused call.
    pub(crate) fn failed_call(&self, key: &str, service: &str, failure: &Failure, message: String) {
        let mut inner = self.lock();
        let code = failure.code();
        if inner.failing.insert(key.to_owned(), code) != Some(code) {
            drop(inner);
            tracing::warn!(call = key, "{message}");
            self.events
                .emit(service, None, EventKind::ApiError, message);
        } else {
            tracing::debug!(call = key, "{message}");
        }
    }

    /// A call succeeded: the API server is reachable, and this key works again.
    pub(crate) fn ok(&self, key: &str) {
        let mut inner = self.lock();
        if let Some((since, first)) = inner.unreachable.take() {
            tracing::info!(
                call = key,
                "Kubernetes API reachable again after {:.1}s (first noticed by {first})",
                since.elapsed().as_secs_f64()
            );
        }
        if inner.failing.remove(key).is_some() {
            tracing::info!(call = key, "Kubernetes API call works again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden() -> Failure {
        Failure::Status(Box::new(
            Status::failure("deployments.apps \"users\" is forbidden", "Forbidden").with_code(403),
        ))
    }

    #[test]
    fn a_403_names_the_verb_and_resource() {
        let text = describe(
            &forbidden(),
            "patch",
            "deployments/scale",
            "shop",
            "scaling users to 3",
        );
        assert!(
            text.contains("may not patch deployments/scale in namespace shop"),
            "{text}"
        );
        assert!(text.contains("403 Forbidden: deployments.apps"), "{text}");
    }

    #[test]
    fn one_event_per_outage_and_per_refused_call() {
        let events = Arc::new(EventLog::new(16));
        let t = Troubles::new(events.clone());
        let down = Failure::Unreachable("connection refused".into());
        t.failed("watch", "", &down, "down 1".into());
        t.failed("lease", "", &down, "down 2".into());
        t.failed("watch", "", &down, "down 3".into());
        assert_eq!(events.since(0).len(), 1);
        t.failed("patch users", "users", &forbidden(), "no 1".into());
        t.failed("patch users", "users", &forbidden(), "no 2".into());
        assert_eq!(events.since(0).len(), 2);
        t.ok("watch");
        t.failed("watch", "", &down, "down again".into());
        t.ok("patch users");
        t.failed("patch users", "users", &forbidden(), "no 3".into());
        let texts: Vec<String> = events.since(0).into_iter().map(|e| e.message).collect();
        assert_eq!(texts, ["down 1", "no 1", "down again", "no 3"]);
    }
}
