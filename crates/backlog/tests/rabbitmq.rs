//! The RabbitMQ reader against a real `rabbitmq-server` on loopback, through AMQP and
//! through the management API.
//!
//! RabbitMQ takes seconds to start (an Erlang VM, Mnesia), so one broker serves the whole
//! story below, in one test.

use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use shoal_backlog::{BacklogError, Credentials, Reader, Reading, Secret, Source};
use shoal_test_support::brokers::RabbitMq;
use tokio::time::Instant;

fn guest() -> Credentials {
    Credentials {
        username: None,
        password: Some(Secret::new("guest".into())),
    }
}

fn reader(url: String, queue: &str, include_unacked: bool, credentials: Credentials) -> Reader {
    Reader::new(
        Source::RabbitMq {
            url,
            queue: queue.into(),
            include_unacked,
        },
        credentials,
    )
}

/// Reads until `want` holds (the management API's figures lag by up to its statistics
/// interval), or panics at the deadline with the last reading.
async fn read_until(reader: &mut Reader, what: &str, want: impl Fn(&Reading) -> bool) -> Reading {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reading = reader.read().await;
        match &reading {
            Ok(reading) if want(reading) => return *reading,
            other => assert!(Instant::now() < deadline, "{what}: last reading {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rabbitmq_ready_unacked_missing_refused_and_down() {
    let Some((server, epmd)) = RabbitMq::binaries() else {
        return;
    };
    let t0 = Instant::now();
    let rabbit = RabbitMq::start(server, epmd, true).await;
    let phase = |name: &str| eprintln!("{:>8.3?} {name}", t0.elapsed());

    // A producer publishes 25 messages, each confirmed by the broker.
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", rabbit.amqp_port);
    let producer = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = producer.create_channel().await.unwrap();
    channel
        .queue_declare(
            "orders".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for i in 0..25 {
        channel
            .basic_publish(
                "".into(),
                "orders".into(),
                BasicPublishOptions::default(),
                format!("order {i}").as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    phase("AMQP");
    // AMQP: ready messages, nothing else to tell.
    let mut amqp = reader(rabbit.amqp_url(), "orders", false, guest());
    assert_eq!(
        amqp.read().await.unwrap(),
        Reading {
            backlog: 25,
            consumed: None,
            partitions: None
        }
    );

    phase("A consumer holds");
    // A consumer holds 10 messages unacknowledged (prefetch 10).
    let consumer_connection = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let consumer_channel = consumer_connection.create_channel().await.unwrap();
    consumer_channel
        .basic_qos(10, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consumer_channel
        .basic_consume(
            "orders".into(),
            "worker".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut held = Vec::new();
    while held.len() < 10 {
        let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .expect("a delivery within 5 s")
            .expect("the consumer is open")
            .unwrap();
        held.push(delivery);
    }
    let reading = read_until(&mut amqp, "AMQP: 15 ready", |r| r.backlog == 15).await;
    assert_eq!(reading.consumed, None);

    phase("The management API");
    // The management API: ready only, then ready + unacked.
    let mut ready = reader(rabbit.management_url(), "orders", false, guest());
    read_until(&mut ready, "management: 15 ready", |r| r.backlog == 15).await;
    let mut all = reader(rabbit.management_url(), "orders", true, guest());
    read_until(&mut all, "management: 25 ready+unacked", |r| {
        r.backlog == 25
    })
    .await;

    phase("Four acknowledged");
    // Four acknowledged: consumed counts them, the backlog shrinks (the consumer's prefetch
    // takes 4 more ready ones, so ready+unacked is 21).
    for delivery in held.drain(..4) {
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    let reading = read_until(&mut all, "management: 4 acked", |r| r.consumed == Some(4)).await;
    assert_eq!(reading.backlog, 21, "{reading:?}");
    read_until(&mut amqp, "AMQP: 11 ready", |r| r.backlog == 11).await;

    phase("A queue that does not exist");
    // A queue that does not exist: the broker's words, through either door; the same
    // reader reads once the queue is created (AMQP closed the channel: it reconnects).
    let mut missing = reader(rabbit.amqp_url(), "invoices", false, guest());
    let error = missing.read().await.unwrap_err();
    assert!(matches!(error, BacklogError::NotFound { .. }), "{error:?}");
    let port = rabbit.amqp_port;
    assert_eq!(
        error.to_string(),
        format!(
            "rabbitmq 127.0.0.1:{port}/%2f queue invoices: not found: \
             NOT_FOUND - no queue 'invoices' in vhost '/'"
        )
    );
    let mut missing_http = reader(rabbit.management_url(), "invoices", false, guest());
    let error = missing_http.read().await.unwrap_err();
    assert!(matches!(error, BacklogError::NotFound { .. }), "{error:?}");
    assert!(error.to_string().contains("HTTP 404"), "{error}");
    channel
        .queue_declare(
            "invoices".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(missing.read().await.unwrap().backlog, 0);

    phase("Wrong password");
    // Wrong password: refused, and the password is nowhere in the error.
    let wrong = Credentials {
        username: Some("guest".into()),
        password: Some(Secret::new("wrong-password-1234".into())),
    };
    for url in [rabbit.amqp_url(), rabbit.management_url()] {
        let mut refused = reader(url, "orders", false, wrong.clone());
        let error = refused.read().await.unwrap_err();
        assert!(matches!(error, BacklogError::Auth { .. }), "{error:?}");
        assert!(
            !error.to_string().contains("wrong-password-1234"),
            "{error}"
        );
        assert!(
            !format!("{error:?}").contains("wrong-password-1234"),
            "{error:?}"
        );
        eprintln!("refused: {error}");
    }

    phase("Unacknowledged messages cannot");
    // Unacknowledged messages cannot be counted over AMQP.
    let mut unsupported = reader(rabbit.amqp_url(), "orders", true, guest());
    let error = unsupported.read().await.unwrap_err();
    assert!(
        matches!(error, BacklogError::Unsupported { .. }),
        "{error:?}"
    );
    assert!(!error.is_transient());

    phase("The broker goes away");
    // The broker goes away: an error, not a hang, through both doors.
    let started = Instant::now();
    rabbit.broker.kill();
    for reader in [&mut amqp, &mut all] {
        let error = reader.read().await.unwrap_err();
        assert!(
            matches!(
                error,
                BacklogError::Unreachable { .. } | BacklogError::Timeout { .. }
            ),
            "{error:?}"
        );
        eprintln!("broker down: {error}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    phase("end");
}
