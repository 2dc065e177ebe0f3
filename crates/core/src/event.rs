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
    /// The configuration was reloaded (or a reload was rejected).
    Reloaded,
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

    #[tokio::test]
    async fn followers_see_new_events() {
        let log = EventLog::new(8);
        let mut rx = log.subscribe();
        log.emit("music", None, EventKind::Scaled, "2 -> 3");
        let e = rx.recv().await.unwrap();
        assert_eq!((e.service.as_str(), e.kind), ("music", EventKind::Scaled));
    }
}
