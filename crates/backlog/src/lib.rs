//! Reads the backlog of a queue from a real broker, for autoscaling workers on it: a Redis
//! Streams consumer group, a RabbitMQ queue, or a Kafka consumer group.
//!
//! One [`Reader`] per trigger keeps its connection open between reads, drops it after any
//! error and connects again on the next read; every read is bounded by a timeout (2 s by
//! default), so a hung broker is an error, never a hang. A [`Reading`] says how many
//! messages wait ([`Reading::backlog`]) and, where the broker has one, a counter of messages
//! consumed so far ([`Reading::consumed`]) from whose deltas the caller derives a
//! consumption rate.
//!
//! What is read, per broker (the semantics follow KEDA's scalers unless said otherwise):
//!
//! - **Redis Streams** ([`Source::Redis`]): `XINFO GROUPS stream`, the group's `lag`
//!   (Redis ≥ 7: entries added to the stream and not yet delivered to the group); when lag
//!   is nil (Redis cannot tell, e.g. after an `XDEL` past the group's position) or
//!   absent (Redis < 7), the group's pending count (delivered, not acknowledged) instead.
//!   `entries-read` is the consumed counter.
//! - **RabbitMQ** ([`Source::RabbitMq`]): with an `amqp://` URL, a passive `queue.declare`
//!   whose reply carries the queue's *ready* messages; AMQP has no count of unacknowledged
//!   messages nor of messages consumed, so `include_unacked` needs the management API and
//!   with an `amqp://` URL it is an [`BacklogError::Unsupported`] error (the same rule as
//!   KEDA's `protocol: amqp`). With an `http://` URL (`http://user@host:15672[/vhost]`,
//!   KEDA's form: the last path segment is the vhost, `/` by default) the management API's
//!   `GET /api/queues/{vhost}/{queue}` is read instead: `messages_ready` (+
//!   `messages_unacknowledged` with `include_unacked`), and the acknowledged-message counter
//!   (`message_stats.ack` + `deliver_no_ack` + `get_no_ack`) as consumed. The management
//!   plugin's figures are samples, 5 s apart by default (measured: a publish shows after
//!   5.1 s); for 1 s polling to see fresh figures set `collect_statistics_interval = 1000`
//!   and `management.sample_retention_policies.{global,basic}.minute = 1` (and
//!   `….detailed.10 = 1`) in `rabbitmq.conf` (measured: 1.1 s).
//! - **Kafka** ([`Source::Kafka`]): the sum over the topic's partitions of high watermark −
//!   committed offset of the group. A partition on which the group has committed nothing
//!   counts as a backlog of 1, as KEDA does with its default `offsetResetPolicy: latest`
//!   (and `scaleToZeroOnInvalidOffset: false`): a consumer that starts will begin at the
//!   end of the log, so the true backlog is unknown, and 1 wakes one consumer so that it
//!   can join and commit. A committed offset past the high watermark (a truncated log)
//!   counts as 0. Kafka cannot tell a group that does not exist from one that has
//!   committed nothing. `partitions` is the topic's partition count (the caller's cap on
//!   replicas); consumed is the sum of committed offsets.
//!
//! Libraries: the `redis` crate (async, tokio) and `lapin` (AMQP 0-9-1) are the
//! well-kept clients of their brokers; the management API is read with hyper's HTTP/1.1
//! client and `serde_json`. For Kafka no maintained Rust client can read a group's
//! committed offsets and the partitions' high watermarks without joining the group:
//! `rskafka` has "no support for offset tracking, consumer groups" (its README), and
//! `rdkafka` binds librdkafka, a C library built with cmake. So the Kafka reader speaks the
//! protocol with `kafka-protocol`, codecs generated from Kafka's own JSON message schemas:
//! ApiVersions (to pick versions both sides support), Metadata (≤ v12), FindCoordinator
//! (≤ v4), OffsetFetch (≤ v8) and ListOffsets (≤ v7); the tests run them against `tansu`, a
//! Kafka-compatible broker, at those versions, and the older request shapes (before
//! FindCoordinator and OffsetFetch took batches) by round trips through the codecs. Ours is only the 4-byte length framing, with a size bound
//! (16 MiB) and a correlation-id check. One known weakness there: `kafka-protocol` 0.18
//! reserves an array's capacity from the count on the wire before reading its elements, so
//! a broken or hostile server on the configured port could make the process abort on a
//! failed allocation; the brokers are the operator's own, and a fix belongs upstream
//! (bounding the capacity by the bytes left).
//!
//! Not supported, each reported as [`BacklogError::Unsupported`] when asked for: TLS
//! (`rediss://`, `amqps://`, `https://`) and Kafka SASL. Redis Cluster is not either (a
//! stream on another node answers `MOVED`: a broker error). A password never
//! appears in a [`Source`] (a URL with one is refused: credentials come in
//! [`Credentials`]), nor in an error's text.
//!
//! This crate does not decide anything: turning readings into replicas (targets,
//! activation, fallback after failed reads, rates from `consumed`) is `shoal-autoscale`'s,
//! polling and events are `shoal-app`'s, and the stack-file syntax is `shoal-config`'s.
#![warn(missing_docs)]

mod error;
mod kafka;
mod rabbitmq;
mod redis_streams;
mod source;

use std::time::Duration;

pub use error::BacklogError;
pub use source::{Credentials, Secret, Source};

/// The default bound on one [`Reader::read`], connecting included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// One measurement of a queue's backlog.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Messages waiting to be consumed (see the crate doc for what each broker counts).
    pub backlog: u64,
    /// A counter of messages consumed so far, monotonic while the broker keeps its state
    /// (Redis `entries-read`, Kafka's summed committed offsets, RabbitMQ's acknowledged
    /// messages through the management API); `None` when the broker does not tell.
    pub consumed: Option<u64>,
    /// The number of partitions (Kafka only): more consumers than partitions would idle.
    pub partitions: Option<u32>,
}

/// Reads one [`Source`]'s backlog, again and again.
///
/// It keeps its connection between reads; after an error (or a timeout) it drops it and
/// connects again on the next read.
pub struct Reader {
    source: Source,
    timeout: Duration,
    backend: Backend,
}

enum Backend {
    Redis(redis_streams::Reader),
    // Boxed: lapin's handles make it twice the size of the others.
    RabbitMq(Box<rabbitmq::Reader>),
    Kafka(kafka::Reader),
}

impl Reader {
    /// A reader of `source` that authenticates with `credentials`; it connects on the
    /// first [`read`](Reader::read).
    pub fn new(source: Source, credentials: Credentials) -> Reader {
        let backend = match &source {
            Source::Redis { url, stream, group } => Backend::Redis(redis_streams::Reader::new(
                url.clone(),
                stream.clone(),
                group.clone(),
                credentials,
            )),
            Source::RabbitMq {
                url,
                queue,
                include_unacked,
            } => Backend::RabbitMq(Box::new(rabbitmq::Reader::new(
                url.clone(),
                queue.clone(),
                *include_unacked,
                credentials,
            ))),
            Source::Kafka {
                brokers,
                topic,
                group,
            } => Backend::Kafka(kafka::Reader::new(
                brokers.clone(),
                topic.clone(),
                group.clone(),
                credentials,
            )),
        };
        Reader {
            source,
            timeout: DEFAULT_TIMEOUT,
            backend,
        }
    }

    /// The same reader with another bound on each read (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Reader {
        self.timeout = timeout;
        self
    }

    /// What this reader reads.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Reads the backlog once, within the timeout.
    pub async fn read(&mut self) -> Result<Reading, BacklogError> {
        let context = self.source.to_string();
        let result = match tokio::time::timeout(self.timeout, self.backend.read()).await {
            Ok(result) => result,
            Err(_) => Err(error::Failure::Timeout(self.timeout)),
        };
        result.map_err(|failure| {
            self.backend.disconnect();
            failure.into_error(context, self.backend.password())
        })
    }
}

impl Backend {
    async fn read(&mut self) -> Result<Reading, error::Failure> {
        match self {
            Backend::Redis(reader) => reader.read().await,
            Backend::RabbitMq(reader) => reader.read().await,
            Backend::Kafka(reader) => reader.read().await,
        }
    }

    fn disconnect(&mut self) {
        match self {
            Backend::Redis(reader) => reader.disconnect(),
            Backend::RabbitMq(reader) => reader.disconnect(),
            Backend::Kafka(reader) => reader.disconnect(),
        }
    }

    fn password(&self) -> Option<&str> {
        let credentials = match self {
            Backend::Redis(reader) => reader.credentials(),
            Backend::RabbitMq(reader) => reader.credentials(),
            Backend::Kafka(reader) => reader.credentials(),
        };
        credentials.password.as_ref().map(Secret::expose)
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("source", &self.source)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[tokio::test]
    async fn readers_and_their_reads_can_move_to_a_task() {
        for source in [
            Source::Redis {
                url: "redis://127.0.0.1:1".into(),
                stream: "s".into(),
                group: "g".into(),
            },
            Source::RabbitMq {
                url: "amqp://127.0.0.1:1".into(),
                queue: "q".into(),
                include_unacked: false,
            },
            Source::Kafka {
                brokers: vec!["127.0.0.1:1".into()],
                topic: "t".into(),
                group: "g".into(),
            },
        ] {
            let mut reader = Reader::new(source, Credentials::default());
            assert_send(&reader);
            let read = reader.read();
            assert_send(&read);
            // Port 1 on loopback refuses: unreachable, and quickly.
            let error = read.await.unwrap_err();
            assert!(
                matches!(error, BacklogError::Unreachable { .. }),
                "{error:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_invalid_source_fails_every_read_without_io() {
        let mut reader = Reader::new(
            Source::Redis {
                url: "redis://app:pw@127.0.0.1:1".into(),
                stream: "s".into(),
                group: "g".into(),
            },
            Credentials::default(),
        );
        let error = reader.read().await.unwrap_err();
        assert!(matches!(error, BacklogError::Invalid { .. }), "{error:?}");
        assert!(!error.is_transient());
        let mut reader = Reader::new(
            Source::Kafka {
                brokers: vec!["127.0.0.1:1".into()],
                topic: "t".into(),
                group: "g".into(),
            },
            Credentials {
                username: Some("app".into()),
                password: Some(Secret::new("secret-value".into())),
            },
        );
        let error = reader.read().await.unwrap_err();
        assert!(
            matches!(error, BacklogError::Unsupported { .. }),
            "{error:?}"
        );
        assert!(!error.to_string().contains("secret-value"));
    }
}
