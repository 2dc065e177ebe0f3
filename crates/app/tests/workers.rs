//! Workers scaled on the backlog of their queue, end to end, one story per broker: a real
//! broker started by the test on free loopback ports, a whole shoal on its stack file, and a
//! `kind: worker` service whose replicas consume the queue at 20 ms a message. The replicas
//! are this test binary run again (`worker_replica` below runs
//! [`shoal_test_support::worker`]), so nothing but the broker has to be installed.
//!
//! Each story publishes a burst of [`N`] messages and checks what a user would: the
//! autoscaler asks for more replicas within 2 s of the burst (default `poll: 1s` and
//! `tick: 1s`), the backlog drains, the service returns to `min` after its cooldown, every
//! message was processed exactly once (the workers log each id they processed), and status
//! shows the queue. One story stops the broker for 10 s: the workers are not scaled to zero,
//! one `brokererror` event says why, a `brokerok` event says when it is back, and the service
//! carries on. The figures are printed (`--nocapture`).
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use shoal_test_support::brokers::kafka;
use shoal_test_support::brokers::{
    RabbitMq, RedisServer, free_port, start_tansu, tansu_binary, temp_dir,
};
use shoal_test_support::worker::{self, Broker, Worker};
use shoal_test_support::{Client, Service, StackBuilder, TestGateway};
use tempfile::TempDir;
use tokio::time::{Instant, sleep};

/// Messages in a burst.
const N: usize = 300;

/// The test the worker replicas run: this binary again, with the broker in the environment.
const WORKER_TEST: &str = "worker_replica";

#[test]
#[ignore = "a worker replica, run by the tests of this file as this binary again: not a test"]
fn worker_replica() {
    worker::run();
}

/// A running shoal with one worker service, `jobs`.
struct Story {
    gw: TestGateway,
    client: Client,
    log: PathBuf,
    _dir: TempDir,
}

impl Story {
    /// Start shoal with `jobs` running `worker`; `autoscale` is the service's `autoscale:`
    /// block (YAML, indented by 2). Waits for the first read of the queue.
    async fn start(worker: &Worker, dir: TempDir, autoscale: &str) -> Story {
        let service = Service::worker(worker, WORKER_TEST)
            .with("stop: { grace: 2s }")
            .with(&format!("autoscale:\n{autoscale}"));
        let gw = StackBuilder::new()
            .service_with("jobs", service)
            .start()
            .await;
        let story = Story {
            gw,
            client: Client::http1(),
            log: worker.log.clone(),
            _dir: dir,
        };
        story
            .until(
                "the first read of the queue",
                Duration::from_secs(10),
                |s| s["autoscale"]["backlog"]["messages"] == 0,
            )
            .await;
        story
    }

    async fn admin(&self, path: &str) -> shoal_test_support::Answer {
        let url = format!("http://{}{path}", self.gw.shoal().admin_addr());
        self.client.get(&url).await
    }

    /// `GET /api/v1/services/jobs`.
    async fn service(&self) -> Value {
        self.admin("/api/v1/services/jobs").await.json()
    }

    /// Events about `jobs` so far.
    async fn events(&self) -> Vec<Value> {
        let all = self.admin("/api/v1/events").await.json();
        all.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["service"] == "jobs")
            .cloned()
            .collect()
    }

    /// Poll the service every 20 ms until `done` holds; panic at the deadline.
    async fn until(&self, what: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let s = self.service().await;
            if done(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; {} messages processed; last status:\n{s:#}\nevents: {:#?}",
                self.processed().len(),
                self.events().await
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    fn processed(&self) -> Vec<String> {
        worker::processed(&self.log)
    }
}

/// What one burst showed, measured from the start of the publishing.
#[derive(Debug)]
struct Burst {
    published: Duration,
    first_scale_up: Duration,
    first_ready: Duration,
    drained: Duration,
    back_to_min: Duration,
    peak_desired: u64,
    peak_ready: u64,
    rate_per_replica: Option<f64>,
}

/// Publish a burst of `n` messages (`publish`), then follow the service until it is back at
/// `min` replicas with every message processed; assert the timings the issue asks for.
async fn burst(story: &Story, n: usize, min: u64, publish: impl Future<Output = ()>) -> Burst {
    let before = story.service().await["desired"].as_u64().unwrap();
    let already = story.processed().len();
    let t0 = Instant::now();
    publish.await;
    let published = t0.elapsed();
    let deadline = t0 + Duration::from_secs(45);
    let (mut first_scale_up, mut first_ready, mut drained) = (None, None, None);
    let (mut peak_desired, mut peak_ready, mut rate_per_replica) = (0, 0, None);
    let back_to_min = loop {
        let s = story.service().await;
        let (desired, ready) = (s["desired"].as_u64().unwrap(), s["ready"].as_u64().unwrap());
        peak_desired = peak_desired.max(desired);
        peak_ready = peak_ready.max(ready);
        if desired > before {
            first_scale_up.get_or_insert(t0.elapsed());
        }
        if ready > before {
            first_ready.get_or_insert(t0.elapsed());
        }
        if let Some(r) = s["autoscale"]["backlog"]["rate_per_replica"].as_f64() {
            rate_per_replica = Some(r);
        }
        if drained.is_none() && story.processed().len() >= already + n {
            drained = Some(t0.elapsed());
        }
        let settled = s["replicas"]
            .as_array()
            .is_some_and(|r| r.len() as u64 == min);
        if drained.is_some()
            && desired == min
            && ready == min
            && settled
            && s["autoscale"]["backlog"]["messages"] == 0
        {
            break t0.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "not back to {min} replicas with {n} messages processed within 45 s: {} processed; \
             status:\n{s:#}\nevents: {:#?}",
            story.processed().len() - already,
            story.events().await
        );
        sleep(Duration::from_millis(20)).await;
    };
    let b = Burst {
        published,
        first_scale_up: first_scale_up.expect("scaled up"),
        first_ready: first_ready.expect("a replica more became ready"),
        drained: drained.expect("drained"),
        back_to_min,
        peak_desired,
        peak_ready,
        rate_per_replica,
    };
    eprintln!(
        "burst of {n}: published in {:?}; first scale-up after {:?} (a replica more ready \
         after {:?}); {} replicas at most ({} ready); drained after {:?}; back to {min} after \
         {:?}; rate per replica {:?}/s",
        b.published,
        b.first_scale_up,
        b.first_ready,
        b.peak_desired,
        b.peak_ready,
        b.drained,
        b.back_to_min,
        b.rate_per_replica.map(|r| r.round())
    );
    // From the end of the publishing: the burst is there once published (to a debug-built
    // broker on a busy machine, publishing itself can take a while).
    assert!(
        b.first_scale_up.saturating_sub(b.published) < Duration::from_secs(2),
        "replicas must rise within 2 s of the burst: {b:?}"
    );
    b
}

/// `m-0`, `m-1`, … `m-{n-1}`, offset by `from`.
fn ids(from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("m-{i}")).collect()
}

/// Every id of `expected` processed exactly once, and nothing else.
fn assert_exactly_once(processed: &[String], expected: &[String]) {
    let counts = worker::counts(processed);
    let twice: Vec<(&str, usize)> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, n)| (*id, *n))
        .collect();
    assert!(twice.is_empty(), "processed more than once: {twice:?}");
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .collect();
    assert!(missing.is_empty(), "never processed: {missing:?}");
    assert_eq!(processed.len(), expected.len(), "unexpected ids processed");
}

/// The autoscaler's own events said why it scaled: the backlog. Each change is one event:
/// after the start's (`0 -> 1` at `min: 1`), every `scaled` event is the autoscaler's.
async fn assert_scaled_on_the_backlog(story: &Story) {
    let events = story.events().await;
    let scaled: Vec<&Value> = events.iter().filter(|e| e["kind"] == "scaled").collect();
    let first_autoscaled = scaled
        .iter()
        .position(|e| e["message"].as_str().unwrap().starts_with("autoscaler: "))
        .expect("an autoscaler event");
    assert!(first_autoscaled <= 1, "{scaled:#?}");
    assert!(
        scaled[first_autoscaled..]
            .iter()
            .all(|e| e["message"].as_str().unwrap().starts_with("autoscaler: ")),
        "one event per change, with its reason: {scaled:#?}"
    );
    assert!(
        scaled
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("backlog")),
        "{events:#?}"
    );
    assert!(
        !events.iter().any(|e| e["kind"] == "brokererror"),
        "{events:#?}"
    );
}

#[tokio::test]
async fn redis_a_burst_wakes_workers_from_zero_drains_once_and_they_go_back_to_zero() {
    let Some(binary) = RedisServer::binary() else {
        return;
    };
    let dir = temp_dir("shoal-workers-redis-");
    let password = "worker-s3cret-pw";
    let redis = RedisServer::start(
        &binary,
        free_port(),
        dir.path(),
        &["--requirepass", password],
    )
    .await;
    redis.create_group("jobs", "workers").await;
    // The password as a file, with the newline an editor leaves.
    let secret = dir.path().join("redis-password");
    std::fs::write(&secret, format!("{password}\n")).unwrap();
    let worker = Worker::new(
        Broker::Redis,
        &format!("redis://:{password}@127.0.0.1:{}", redis.port),
        "jobs",
        "workers",
        &dir.path().join("processed"),
    );
    let story = Story::start(
        &worker,
        dir,
        &format!(
            "  min: 0
  max: 4
  scale_to_zero_after: 3s
  backlog:
    redis: {{ url: '{}', stream: jobs, group: workers }}
    password_file: '{}'
    per_replica: 10
replicas: 0",
            redis.url(),
            secret.display()
        ),
    )
    .await;
    let s = story.service().await;
    assert_eq!(
        (s["desired"].as_u64(), s["worker"].as_bool()),
        (Some(0), Some(true))
    );

    let expected = ids(0, N);
    let b = burst(&story, N, 0, redis.publish("jobs", &expected)).await;
    assert_eq!(b.peak_desired, 4, "{b:?}");
    assert_exactly_once(&story.processed(), &expected);
    assert_scaled_on_the_backlog(&story).await;

    // The queue as status shows it; the password nowhere.
    let s = story.service().await;
    let backlog = &s["autoscale"]["backlog"];
    assert_eq!(
        backlog["source"],
        format!("redis 127.0.0.1:{} stream jobs group workers", redis.port)
    );
    assert_eq!(backlog["consumed"], N, "{s:#}");
    assert!(s["traffic"].is_null(), "a worker serves no requests: {s:#}");
    let metrics = story.admin("/metrics").await.text();
    assert!(
        metrics.contains("shoal_backlog_messages{service=\"jobs\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("shoal_backlog_read_errors_total{service=\"jobs\"} 0"),
        "{metrics}"
    );
    let everything = format!("{s}{metrics}{:?}", story.events().await);
    assert!(!everything.contains(password));
}

#[tokio::test]
async fn rabbitmq_a_burst_scales_workers_up_drains_once_and_back_to_min() {
    let Some((server, epmd)) = RabbitMq::binaries() else {
        return;
    };
    let rabbit = RabbitMq::start(server, epmd, false).await;
    rabbit.publish("jobs", Vec::<String>::new()).await; // declares the queue
    let dir = temp_dir("shoal-workers-rabbitmq-");
    std::fs::write(dir.path().join("rabbit-password"), "guest\n").unwrap();
    let worker = Worker::new(
        Broker::RabbitMq,
        &rabbit.client_url(),
        "jobs",
        "",
        &dir.path().join("processed"),
    );
    let secret = dir.path().join("rabbit-password");
    let story = Story::start(
        &worker,
        dir,
        &format!(
            "  min: 1
  max: 4
  scale_down: {{ stabilization: 2s, policies: [{{ percent: 100, period: 1s }}] }}
  backlog:
    rabbitmq: {{ url: '{}', queue: jobs }}
    password_file: '{}'
    per_replica: 10",
            rabbit.amqp_url(),
            secret.display()
        ),
    )
    .await;
    let expected = ids(0, N);
    let b = burst(&story, N, 1, rabbit.publish("jobs", &expected)).await;
    assert_eq!(b.peak_desired, 4, "{b:?}");
    assert_exactly_once(&story.processed(), &expected);
    assert_scaled_on_the_backlog(&story).await;
    let s = story.service().await;
    assert!(
        s["autoscale"]["backlog"]["source"]
            .as_str()
            .unwrap()
            .starts_with("rabbitmq 127.0.0.1:"),
        "{s:#}"
    );
}

#[tokio::test]
async fn kafka_a_burst_scales_workers_up_to_the_partitions_drains_once_and_back_to_min() {
    let Some(binary) = tansu_binary() else {
        return;
    };
    let dir = temp_dir("shoal-workers-kafka-");
    let port = free_port();
    let _tansu = start_tansu(&binary, port, dir.path()).await;
    let mut client = kafka::Client::connect(port).await.unwrap();
    let partitions = 4;
    client.create_topic("jobs", partitions).await.unwrap();
    // The group starts at the beginning of each partition (`--reset-offsets --to-earliest`):
    // a partition with no commit would count as a backlog of 1 (KEDA's rule).
    let start: Vec<(i32, i64)> = (0..partitions).map(|p| (p, 0)).collect();
    client.commit("workers", "jobs", &start).await.unwrap();
    let worker = Worker::new(
        Broker::Kafka,
        &format!("127.0.0.1:{port}"),
        "jobs",
        "workers",
        &dir.path().join("processed"),
    );
    let story = Story::start(
        &worker,
        dir,
        &format!(
            "  min: 1
  max: 6
  scale_down: {{ stabilization: 2s, policies: [{{ percent: 100, period: 1s }}] }}
  backlog:
    kafka: {{ brokers: '127.0.0.1:{port}', topic: jobs, group: workers }}
    per_replica: 10"
        ),
    )
    .await;
    let expected = ids(0, N);
    let publish = async {
        // Round robin over the partitions, one batch each.
        for p in 0..partitions {
            let part: Vec<String> = expected
                .iter()
                .skip(p as usize)
                .step_by(partitions as usize)
                .cloned()
                .collect();
            client.produce("jobs", p, part).await.unwrap();
        }
    };
    let b = burst(&story, N, 1, publish).await;
    // 300 messages at 10 per replica call for 30; 6 are allowed, but the topic has 4
    // partitions, and a fifth consumer would idle.
    assert_eq!(b.peak_desired, 4, "{b:?}");
    assert_exactly_once(&story.processed(), &expected);
    assert_scaled_on_the_backlog(&story).await;
    let s = story.service().await;
    let backlog = &s["autoscale"]["backlog"];
    assert_eq!(backlog["partitions"], 4, "{s:#}");
    assert_eq!(backlog["consumed"], N, "{s:#}");
    // Measured from the deltas of the committed offsets, but only over intervals that kept
    // the replicas busy (the backlog at an interval's start above what it consumed): a
    // burst drained in about three reads may leave none, so a rate is not always there.
    // When it is, it is a real one (20 ms a message is at most 50 a second per replica).
    if let Some(rate) = b.rate_per_replica {
        assert!(rate > 10.0, "{rate} messages/s per replica");
    }
}

#[tokio::test]
async fn redis_stopped_for_10s_never_scales_workers_to_zero_is_one_event_and_they_recover() {
    let Some(binary) = RedisServer::binary() else {
        return;
    };
    let dir = temp_dir("shoal-workers-outage-");
    let port = free_port();
    // Every write on disk before it is acknowledged: a killed server comes back with its
    // stream, group and pending entries.
    let durable = ["--appendonly", "yes", "--appendfsync", "always"];
    let redis = RedisServer::start(&binary, port, dir.path(), &durable).await;
    redis.create_group("jobs", "workers").await;
    let worker = Worker::new(
        Broker::Redis,
        &redis.url(),
        "jobs",
        "workers",
        &dir.path().join("processed"),
    );
    let broker_dir = dir.path().to_owned();
    let story = Story::start(
        &worker,
        dir,
        &format!(
            "  min: 0
  max: 2
  scale_to_zero_after: 5s
  backlog:
    redis: {{ url: '{}', stream: jobs, group: workers }}
    per_replica: 10
replicas: 0",
            redis.url()
        ),
    )
    .await;

    // Some work wakes the workers; the queue is empty again well before they would go idle.
    let first = ids(0, 20);
    redis.publish("jobs", &first).await;
    story
        .until("20 messages processed", Duration::from_secs(15), |_| {
            story.processed().len() >= first.len()
        })
        .await;
    let s = story.service().await;
    let running = s["desired"].as_u64().unwrap();
    assert!(running >= 1, "{s:#}");

    // The broker dies for 10 s: shoal cannot tell an empty queue, so it keeps the workers.
    redis.process.kill();
    let down_at = Instant::now();
    let mut lowest = running;
    while down_at.elapsed() < Duration::from_secs(10) {
        let s = story.service().await;
        lowest = lowest.min(s["desired"].as_u64().unwrap());
        assert!(
            lowest >= 1,
            "scaled to zero while the broker was down:\n{s:#}"
        );
        sleep(Duration::from_millis(50)).await;
    }
    let s = story.service().await;
    let backlog = &s["autoscale"]["backlog"];
    let failures = backlog["failures"].as_u64().unwrap();
    assert!(failures >= 8, "about one failed read a second: {s:#}");
    assert!(
        backlog["error"]
            .as_str()
            .unwrap()
            .contains("cannot reach the broker"),
        "{s:#}"
    );
    let errors: Vec<Value> = story
        .events()
        .await
        .into_iter()
        .filter(|e| e["kind"] == "brokererror")
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "one event for the whole outage: {errors:#?}"
    );
    eprintln!(
        "outage: {failures} failed reads, desired never below {lowest}; event: {}",
        errors[0]["message"]
    );
    let metrics = story.admin("/metrics").await.text();
    let counted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("shoal_backlog_read_errors_total{service=\"jobs\"} "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(counted.is_some_and(|n| n >= failures), "{metrics}");

    // Back on the same port with its data: read again, one event, and work goes on.
    let restarted = Instant::now();
    let redis = RedisServer::start(&binary, port, &broker_dir, &durable).await;
    story
        .until("a successful read", Duration::from_secs(5), |s| {
            s["autoscale"]["backlog"]["failures"] == 0
        })
        .await;
    let recovered = restarted.elapsed();
    let events = story.events().await;
    let ok: Vec<&Value> = events.iter().filter(|e| e["kind"] == "brokerok").collect();
    assert_eq!(ok.len(), 1, "{events:#?}");
    eprintln!(
        "read again {recovered:?} after the restart: {}",
        ok[0]["message"]
    );
    let more = ids(20, 30);
    redis.publish("jobs", &more).await;
    // Idle again, it may now go to zero.
    story
        .until(
            "all 50 processed, then zero replicas",
            Duration::from_secs(20),
            |s| story.processed().len() >= 50 && s["desired"] == 0 && s["ready"] == 0,
        )
        .await;
    let all: Vec<String> = first.iter().chain(&more).cloned().collect();
    assert_exactly_once(&story.processed(), &all);
}

/// A stack whose worker's password file is missing: failed reads with the reason, one
/// event, no crash; the service stays at its count.
#[tokio::test]
async fn a_missing_password_file_is_a_failed_read_not_a_crash() {
    let dir = temp_dir("shoal-workers-nopw-");
    let worker = Worker::new(
        Broker::Redis,
        "redis://127.0.0.1:1",
        "jobs",
        "workers",
        &dir.path().join("processed"),
    );
    let missing = dir.path().join("no-such-file");
    let service = Service::worker(&worker, WORKER_TEST).with(&format!(
        "autoscale:
  min: 1
  max: 2
  backlog:
    redis: {{ url: 'redis://127.0.0.1:1', stream: jobs, group: workers }}
    password_file: '{}'
    poll: 100ms",
        missing.display()
    ));
    let gw = StackBuilder::new()
        .service_with("jobs", service)
        .start()
        .await;
    let story = Story {
        gw,
        client: Client::http1(),
        log: worker.log.clone(),
        _dir: dir,
    };
    let s = story
        .until("three failed reads", Duration::from_secs(10), |s| {
            s["autoscale"]["backlog"]["failures"].as_u64() >= Some(3)
        })
        .await;
    let error = s["autoscale"]["backlog"]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "cannot read the password file {}",
            missing.display()
        )),
        "{error}"
    );
    assert_eq!(s["desired"], 1, "{s:#}");
    let errors: Vec<Value> = story
        .events()
        .await
        .into_iter()
        .filter(|e| e["kind"] == "brokererror")
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
}

/// A reload that names another queue moves the reader there (status says which), and one
/// that removes the service stops its reader: its connection to the broker closes.
#[tokio::test]
async fn a_reload_moves_the_reader_and_removing_the_service_stops_it() {
    let Some(binary) = RedisServer::binary() else {
        return;
    };
    let dir = temp_dir("shoal-workers-reload-");
    let redis = RedisServer::start(&binary, free_port(), dir.path(), &[]).await;
    redis.create_group("a", "workers").await;
    redis.create_group("b", "workers").await;
    redis.publish("b", ids(0, 7)).await;
    let stack = |stream: &str| {
        let worker = Worker::new(
            Broker::Redis,
            &redis.url(),
            stream,
            "workers",
            &dir.path().join("processed"),
        );
        // At zero with an activation above the backlog: nothing runs, only the reader reads.
        let service = Service::worker(&worker, WORKER_TEST).with(&format!(
            "replicas: 0
autoscale:
  min: 0
  max: 1
  backlog:
    redis: {{ url: '{}', stream: {stream}, group: workers }}
    activation: 100",
            redis.url()
        ));
        StackBuilder::new().service_with("jobs", service)
    };
    let gw = stack("a").start().await;
    let story = Story {
        gw,
        client: Client::http1(),
        log: dir.path().join("processed"),
        _dir: temp_dir("shoal-workers-reload-story-"),
    };
    let source = |stream: &str| {
        format!(
            "redis 127.0.0.1:{} stream {stream} group workers",
            redis.port
        )
    };
    story
        .until("reading stream a", Duration::from_secs(10), |s| {
            s["autoscale"]["backlog"]["source"] == source("a")
                && s["autoscale"]["backlog"]["messages"] == 0
        })
        .await;
    // shoal's reader is the one client of the server besides ours.
    assert_eq!(redis.clients().await, 1);

    story.gw.reload(&stack("b")).unwrap();
    story
        .until("reading stream b", Duration::from_secs(10), |s| {
            s["autoscale"]["backlog"]["source"] == source("b")
                && s["autoscale"]["backlog"]["messages"] == 7
        })
        .await;
    assert_eq!(
        story.service().await["desired"],
        0,
        "7 is below the activation"
    );

    story
        .gw
        .reload(&StackBuilder::new().service_with("other", Service::without_replicas()))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.clients().await > 0 {
        assert!(
            Instant::now() < deadline,
            "the reader still holds a connection"
        );
        sleep(Duration::from_millis(20)).await;
    }
    let metrics = story.admin("/metrics").await.text();
    assert!(!metrics.contains("shoal_backlog_messages{"), "{metrics}");
}
