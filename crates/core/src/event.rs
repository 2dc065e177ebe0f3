//! Events: what happened to services and replicas, kept in a bounded log that can be followed.
use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// What kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A replica process was started.
    Started,
    /// A replica passed its readiness check and joined the balancer.
    Ready,
    /// A ready replica failed its readiness check and left the balancer.
    Unready,
    /// A replica process exited.
    Exited,
    /// A replica will be restarted (after its back-off).
    Restarted,
    /// A replica left the balancer to be stopped.
    Draining,
    /// A replica was stopped on purpose.
    Stopped,
    /// A service's desired replica count changed.
    Scaled,
    /// A service or replica was given up on.
    Failed,
    /// The stack file was re-read and applied.
    Reloaded,
    /// A reload was rejected (the stack file is invalid) and the previous configuration
    /// keeps serving; the message lists every problem, one per line.
    ReloadFailed,
    /// A replica failed its active health check and left rotation (gateway checks).
    Unhealthy,
    /// A replica passed its active health check again and is back in rotation.
    Healthy,
    /// Passive health checking took a replica out of rotation for a while.
    Ejected,
    /// An ejected replica is back in rotation.
    Readmitted,
    /// A service's circuit breaker opened (requests get 503 at once) or half-opened.
    CircuitOpen,
    /// A service's circuit breaker closed again.
    CircuitClosed,
    /// A call to the Kubernetes API failed (the message names the verb, the resource and
    /// the API server's reason, e.g. a missing RBAC verb).
    ApiError,
    /// This gateway became, or stopped being, the one that scales (Kubernetes Lease).
    Leader,
    /// Reading a queue's backlog from its broker failed (the message is the broker's):
    /// once per outage, however many reads fail.
    BrokerError,
    /// The broker of a queue's backlog can be read again after failed reads.
    BrokerOk,
    /// A service's rollout started (a new version), moved on, or completed.
    Rollout,
    /// A rollout was undone: past its progress deadline (the message says why: exit code,
    /// failed check, last log line), by `shoal rollout undo`, or a canary that failed its
    /// bounds.
    RolledBack,
    /// A route's split weights changed (`shoal weight`, a reload, an automated canary step).
    Weighted,
    /// A service's first replicas wait for its `depends_on` services (started or ready), or
    /// stopped waiting.
    Waiting,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 25] = [
        EventKind::Started,
        EventKind::Ready,
        EventKind::Unready,
        EventKind::Exited,
        EventKind::Restarted,
        EventKind::Draining,
        EventKind::Stopped,
        EventKind::Scaled,
        EventKind::Failed,
        EventKind::Reloaded,
        EventKind::ReloadFailed,
        EventKind::Unhealthy,
        EventKind::Healthy,
        EventKind::Ejected,
        EventKind::Readmitted,
        EventKind::CircuitOpen,
        EventKind::CircuitClosed,
        EventKind::ApiError,
        EventKind::Leader,
        EventKind::BrokerError,
        EventKind::BrokerOk,
        EventKind::Rollout,
        EventKind::RolledBack,
        EventKind::Weighted,
        EventKind::Waiting,
    ];

    /// The name the API and the CLI use, e.g. `"circuitopen"` (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Ready => "ready",
            EventKind::Unready => "unready",
            EventKind::Exited => "exited",
            EventKind::Restarted => "restarted",
            EventKind::Draining => "draining",
            EventKind::Stopped => "stopped",
            EventKind::Scaled => "scaled",
            EventKind::Failed => "failed",
            EventKind::Reloaded => "reloaded",
            EventKind::ReloadFailed => "reloadfailed",
            EventKind::Unhealthy => "unhealthy",
            EventKind::Healthy => "healthy",
            EventKind::Ejected => "ejected",
            EventKind::Readmitted => "readmitted",
            EventKind::CircuitOpen => "circuitopen",
            EventKind::CircuitClosed => "circuitclosed",
            EventKind::ApiError => "apierror",
            EventKind::Leader => "leader",
            EventKind::BrokerError => "brokererror",
            EventKind::BrokerOk => "brokerok",
            EventKind::Rollout => "rollout",
            EventKind::RolledBack => "rolledback",
            EventKind::Weighted => "weighted",
            EventKind::Waiting => "waiting",
        }
    }

    /// Something went wrong: a replica exited unexpectedly, was given up on or left
    /// rotation, a circuit breaker opened, a reload was rejected, a Kubernetes API call or a
    /// broker read failed. The rest is routine.
    pub fn is_trouble(self) -> bool {
        matches!(
            self,
            EventKind::Exited
                | EventKind::Failed
                | EventKind::Unready
                | EventKind::ReloadFailed
                | EventKind::Unhealthy
                | EventKind::Ejected
                | EventKind::CircuitOpen
                | EventKind::ApiError
                | EventKind::BrokerError
                | EventKind::RolledBack
        )
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Sequence number, increasing from 1 within one run of shoal.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Service the event is about (empty for gateway-wide events).
    pub service: String,
    /// Replica index, if about one replica.
    pub replica: Option<u32>,
    /// What happened.
    pub kind: EventKind,
    /// Human-readable detail, e.g. "exit code 1" or "readiness: connection refused".
    pub message: String,
}

/// A bounded, followable event log shared by every plane. Cheap to clone the handle (wrap it in an `Arc`).
#[derive(Debug)]
pub struct EventLog {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Event>,
    capacity: usize,
}

#[derive(Debug)]
struct Inner {
    next_seq: u64,
    recent: VecDeque<Event>,
}

impl EventLog {
    /// A log that keeps the last `capacity` events.
    pub fn new(capacity: usize) -> EventLog {
        let (tx, _) = broadcast::channel(capacity.max(16));
        EventLog {
            inner: Mutex::new(Inner {
                next_seq: 1,
                recent: VecDeque::with_capacity(capacity),
            }),
            tx,
            capacity: capacity.max(1),
        }
    }

    /// Record an event; returns it with its sequence number and time.
    pub fn emit(
        &self,
        service: &str,
        replica: Option<u32>,
        kind: EventKind,
        message: impl Into<String>,
    ) -> Event {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let event = Event {
            seq: inner.next_seq,
            at_ms: crate::unix_millis(),
            service: service.to_owned(),
            replica,
            kind,
            message: message.into(),
        };
        inner.next_seq += 1;
        if inner.recent.len() == self.capacity {
            inner.recent.pop_front();
        }
        inner.recent.push_back(event.clone());
        // Sending under the lock keeps followers in sequence order; no receivers is fine.
        let _ = self.tx.send(event.clone());
        event
    }

    /// Events with a sequence number greater than `after`, oldest first.
    pub fn since(&self, after: u64) -> Vec<Event> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .recent
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .collect()
    }

    /// Follow new events as they are emitted.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_events_in_order() {
        let log = EventLog::new(3);
        for i in 0..5 {
            log.emit("users", Some(i), EventKind::Started, format!("n{i}"));
        }
        let seqs: Vec<u64> = log.since(0).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert_eq!(log.since(4).len(), 1);
    }

    #[test]
    fn names_are_the_serde_names_and_all_lists_each_kind_once() {
        let mut seen = std::collections::HashSet::new();
        for kind in EventKind::ALL {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.as_str())
            );
            assert!(seen.insert(kind), "{kind:?} twice in ALL");
        }
    }

    /// docs/admin-api.md's table of kinds has a row for every kind the code has, and no other.
    #[test]
    fn the_admin_api_doc_lists_every_kind() {
        let doc = include_str!("../../../docs/admin-api.md");
        let start = doc
            .find("`kind` is one of these")
            .expect("docs/admin-api.md lists the event kinds");
        let documented: std::collections::BTreeSet<&str> = doc[start..]
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|row| row.split('`').nth(1))
            .collect();
        let code: std::collections::BTreeSet<&str> =
            EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(documented, code, "docs/admin-api.md vs EventKind");
    }

    #[tokio::test]
    async fn followers_see_new_events() {
        let log = EventLog::new(8);
        let mut rx = log.subscribe();
        log.emit("music", None, EventKind::Scaled, "2 -> 3");
        let e = rx.recv().await.unwrap();
        assert_eq!((e.service.as_str(), e.kind), ("music", EventKind::Scaled));
    }
}
