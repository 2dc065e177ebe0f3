//! A queue consumer for end-to-end tests of workers: what the replicas of a test stack's
//! `kind: worker` service run. It takes one message at a time from a Redis Streams consumer
//! group, a RabbitMQ queue or a Kafka topic, works on it for a fixed time (20 ms by default),
//! appends the message's id to a log file (one line, one `write`, so that replicas appending
//! at once do not mix their lines), then acknowledges it. On SIGTERM it finishes the message
//! in hand and exits, as a worker given a grace period should. A lost broker is retried every
//! 100 ms, so a worker outlives a broker restart.
//!
//! Each message's payload is its id (a Redis entry's `id` field, a RabbitMQ body, a Kafka
//! record's value), so a test reads the log with [`processed`] and checks that every message
//! was processed exactly once.
//!
//! **Kafka** without a consumer group protocol: replica `SHOAL_REPLICA` = *i* consumes
//! partition *i* alone, from the group's committed offset, committing each message as a
//! standalone consumer (generation -1) before taking the next; a replica with no partition
//! idles. That is enough for shoal, which only reads the group's offsets, and it keeps each
//! partition to one consumer, so no message is processed twice: a real consumer's group
//! rebalances would (at-least-once), and `tansu` does not check a commit's generation. With
//! `max` replicas ≤ partitions, every partition is consumed once the service is at `max`.
//!
//! **How a test runs it.** The replicas are the test binary itself, run again with
//! [`command`]: arguments that make libtest run just one `#[ignore]`d test, which calls
//! [`run`]; the broker and the queue come in the environment ([`Worker::env`]). So no
//! worker program has to be built or installed besides the test:
//!
//! ```no_run
//! #[test]
//! #[ignore = "a worker replica run by the tests of this file, not a test"]
//! fn worker_replica() {
//!     shoal_test_support::worker::run();
//! }
//! ```
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

/// The variable that makes [`run`] consume: the broker (`redis`, `rabbitmq`, `kafka`).
pub const ENV: &str = "SHOAL_TEST_WORKER";

/// A queue's broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    /// A Redis Streams consumer group.
    Redis,
    /// A RabbitMQ queue, over AMQP.
    RabbitMq,
    /// A Kafka topic; replica *i* consumes partition *i*.
    Kafka,
}

impl Broker {
    fn name(self) -> &'static str {
        match self {
            Broker::Redis => "redis",
            Broker::RabbitMq => "rabbitmq",
            Broker::Kafka => "kafka",
        }
    }
}

/// What a worker consumes, and how.
#[derive(Debug, Clone)]
pub struct Worker {
    /// The broker.
    pub broker: Broker,
    /// `redis://[:PASSWORD@]127.0.0.1:PORT`, `amqp://guest:guest@127.0.0.1:PORT/%2f`, or
    /// `127.0.0.1:PORT` (Kafka): the worker's own, with its password.
    pub url: String,
    /// The stream, queue or topic.
    pub queue: String,
    /// The consumer group (Redis, Kafka).
    pub group: String,
    /// Time spent on each message.
    pub per_message: Duration,
    /// The file each processed message's id is appended to.
    pub log: PathBuf,
}

impl Worker {
    /// A worker of `broker`'s `queue`, 20 ms per message, logging to `log`.
    pub fn new(broker: Broker, url: &str, queue: &str, group: &str, log: &Path) -> Worker {
        Worker {
            broker,
            url: url.to_owned(),
            queue: queue.to_owned(),
            group: group.to_owned(),
            per_message: Duration::from_millis(20),
            log: log.to_owned(),
        }
    }

    /// The environment that tells [`run`] what to consume (for the service's `env:`).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (ENV.to_owned(), self.broker.name().to_owned()),
            ("WORKER_URL".to_owned(), self.url.clone()),
            ("WORKER_QUEUE".to_owned(), self.queue.clone()),
            ("WORKER_GROUP".to_owned(), self.group.clone()),
            (
                "WORKER_MS".to_owned(),
                self.per_message.as_millis().to_string(),
            ),
            ("WORKER_LOG".to_owned(), self.log.display().to_string()),
        ]
    }

    /// The service's `command:` and `env:` lines of a stack file, running this worker
    /// through `test` (see [`command`]).
    pub fn service_yaml(&self, test: &str) -> Vec<String> {
        let quote = |s: &str| serde_json::to_string(s).expect("a string");
        let argv: Vec<String> = command(test).iter().map(|a| quote(a)).collect();
        let env: Vec<String> = self
            .env()
            .iter()
            .map(|(k, v)| format!("{k}: {}", quote(v)))
            .collect();
        vec![
            format!("command: [{}]", argv.join(", ")),
            format!("env: {{ {} }}", env.join(", ")),
        ]
    }

    fn from_env() -> Option<Worker> {
        let broker = match std::env::var(ENV).ok()?.as_str() {
            "redis" => Broker::Redis,
            "rabbitmq" => Broker::RabbitMq,
            "kafka" => Broker::Kafka,
            other => panic!("{ENV}={other}: not a broker"),
        };
        let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
        Some(Worker {
            broker,
            url: var("WORKER_URL"),
            queue: var("WORKER_QUEUE"),
            group: var("WORKER_GROUP"),
            per_message: Duration::from_millis(var("WORKER_MS").parse().expect("WORKER_MS")),
            log: PathBuf::from(var("WORKER_LOG")),
        })
    }
}

/// The command that runs test `test` of the current test binary alone, ignored or not,
/// output not captured: with [`ENV`] set, a worker replica.
pub fn command(test: &str) -> Vec<String> {
    let exe = std::env::current_exe().expect("the test binary's path");
    [
        exe.display().to_string().as_str(),
        test,
        "--exact",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The ids in a worker log, in the order they were processed.
pub fn processed(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// How many times each id appears in `ids`.
pub fn counts(ids: &[String]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for id in ids {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    counts
}

/// Consume as [`ENV`] says until SIGTERM; without [`ENV`] (the test run as a test), return
/// at once.
pub fn run() {
    let Some(worker) = Worker::from_env() else {
        return;
    };
    let replica: u32 = std::env::var("SHOAL_REPLICA")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let (stop_tx, stop) = watch::channel(false);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::spawn(async move {
            term.recv().await;
            let _ = stop_tx.send(true);
        });
        println!(
            "worker {replica}: consuming {} {} ({} ms a message)",
            worker.broker.name(),
            worker.queue,
            worker.per_message.as_millis()
        );
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&worker.log)
            .expect("open the worker log");
        let mut done = |id: &str| {
            log.write_all(format!("{id}\n").as_bytes())
                .expect("append to the worker log");
        };
        let processed = match worker.broker {
            Broker::Redis => redis(&worker, replica, stop, &mut done).await,
            Broker::RabbitMq => rabbitmq(&worker, replica, stop, &mut done).await,
            Broker::Kafka => kafka(&worker, replica, stop, &mut done).await,
        };
        println!("worker {replica}: SIGTERM after {processed} messages: done");
    });
}

/// Whether SIGTERM came.
fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow()
}

/// After a broker error: wait a little, unless told to stop.
async fn pause(stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = stop.changed() => {}
        () = tokio::time::sleep(Duration::from_millis(100)) => {}
    }
}

async fn redis(
    w: &Worker,
    replica: u32,
    mut stop: watch::Receiver<bool>,
    done: &mut impl FnMut(&str),
) -> u64 {
    use redis::AsyncCommands as _;
    use redis::streams::{StreamReadOptions, StreamReadReply};
    let consumer = format!("replica-{replica}-{}", std::process::id());
    let client = redis::Client::open(w.url.as_str()).expect("WORKER_URL");
    let mut processed = 0;
    let mut conn = None;
    while !stopping(&stop) {
        let c = match &mut conn {
            Some(c) => c,
            None => match client.get_multiplexed_async_connection().await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    println!("worker {replica}: {e}");
                    pause(&mut stop).await;
                    continue;
                }
            },
        };
        let options = StreamReadOptions::default()
            .group(&w.group, &consumer)
            .count(1)
            .block(200);
        let reply: Result<Option<StreamReadReply>, _> =
            c.xread_options(&[&w.queue], &[">"], &options).await;
        let entries = match reply {
            Ok(reply) => reply.map(|r| r.keys).unwrap_or_default(),
            Err(e) => {
                println!("worker {replica}: {e}");
                conn = None;
                pause(&mut stop).await;
                continue;
            }
        };
        for entry in entries.iter().flat_map(|k| &k.ids) {
            let id: String = entry.get("id").expect("an entry with an `id` field");
            tokio::time::sleep(w.per_message).await;
            done(&id);
            processed += 1;
            // Acknowledge, retrying through an outage (the entry stays pending meanwhile) on
            // a new connection: a multiplexed connection to a killed server stays broken.
            loop {
                let acked: Result<u64, _> = c.xack(&w.queue, &w.group, &[&entry.id]).await;
                match acked {
                    Ok(_) => break,
                    Err(e) => {
                        println!("worker {replica}: XACK: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        match client.get_multiplexed_async_connection().await {
                            Ok(fresh) => *c = fresh,
                            Err(e) => println!("worker {replica}: reconnect: {e}"),
                        }
                    }
                }
            }
        }
    }
    processed
}

async fn rabbitmq(
    w: &Worker,
    replica: u32,
    mut stop: watch::Receiver<bool>,
    done: &mut impl FnMut(&str),
) -> u64 {
    use futures_util::StreamExt as _;
    use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
    use lapin::types::FieldTable;
    let mut processed = 0;
    'connect: while !stopping(&stop) {
        let connection = match lapin::Connection::connect(
            &w.url,
            lapin::ConnectionProperties::default(),
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                println!("worker {replica}: {e}");
                pause(&mut stop).await;
                continue;
            }
        };
        let consumer = async {
            let channel = connection.create_channel().await?;
            // One message at a time: the others stay ready, counted in the backlog.
            channel.basic_qos(1, BasicQosOptions::default()).await?;
            channel
                .basic_consume(
                    w.queue.as_str().into(),
                    format!("replica-{replica}").as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
        };
        let mut consumer = match consumer.await {
            Ok(c) => c,
            Err(e) => {
                println!("worker {replica}: {e}");
                pause(&mut stop).await;
                continue;
            }
        };
        loop {
            let delivery = tokio::select! {
                biased;
                _ = stop.changed() => break 'connect,
                next = consumer.next() => next,
            };
            let delivery = match delivery {
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    println!("worker {replica}: {e}");
                    continue 'connect;
                }
                None => continue 'connect,
            };
            tokio::time::sleep(w.per_message).await;
            done(&String::from_utf8_lossy(&delivery.data));
            processed += 1;
            if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                println!("worker {replica}: ack: {e}");
            }
        }
    }
    processed
}

async fn kafka(
    w: &Worker,
    replica: u32,
    mut stop: watch::Receiver<bool>,
    done: &mut impl FnMut(&str),
) -> u64 {
    use crate::brokers::kafka::Client;
    let port: u16 = w
        .url
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("WORKER_URL: 127.0.0.1:PORT");
    let partition = replica as i32;
    let mut processed = 0;
    let mut position: Option<i64> = None;
    let mut client: Option<Client> = None;
    while !stopping(&stop) {
        let c = match &mut client {
            Some(c) => c,
            None => match Client::connect(port).await {
                Ok(c) => client.insert(c),
                Err(e) => {
                    println!("worker {replica}: {e}");
                    pause(&mut stop).await;
                    continue;
                }
            },
        };
        let offset = match position {
            Some(offset) => offset,
            None => match c.committed(&w.group, &w.queue, partition).await {
                Ok(committed) => *position.insert(committed.max(0)),
                Err(e) => {
                    // Most likely a replica beyond the partitions: nothing of its own.
                    println!("worker {replica}: partition {partition}: {e}");
                    client = None;
                    pause(&mut stop).await;
                    continue;
                }
            },
        };
        let records = match c.fetch(&w.queue, partition, offset, 200).await {
            Ok(records) => records,
            Err(e) => {
                println!("worker {replica}: fetch: {e}");
                client = None;
                pause(&mut stop).await;
                continue;
            }
        };
        if records.is_empty() {
            // An empty answer can come at once (a partition it does not have): pace the loop.
            pause(&mut stop).await;
        }
        for (offset, value) in records {
            if stopping(&stop) {
                break;
            }
            tokio::time::sleep(w.per_message).await;
            // Commit first: a message is logged only once it can never be consumed again.
            let mut committed = c
                .commit(&w.group, &w.queue, &[(partition, offset + 1)])
                .await;
            while let Err(e) = committed {
                println!("worker {replica}: commit: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                committed = match Client::connect(port).await {
                    Ok(mut fresh) => {
                        let result = fresh
                            .commit(&w.group, &w.queue, &[(partition, offset + 1)])
                            .await;
                        *c = fresh;
                        result
                    }
                    Err(e) => Err(e),
                };
            }
            done(&String::from_utf8_lossy(&value));
            processed += 1;
            position = Some(offset + 1);
        }
    }
    processed
}
