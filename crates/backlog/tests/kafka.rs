//! The Kafka reader against a real Kafka-compatible broker on loopback: `tansu` (a Kafka
//! broker written in Rust, from crates.io: `cargo install tansu --features dynostore`; its
//! in-memory storage engine needs that feature), run with `--storage-engine memory://`.
//!
//! The test produces and commits offsets with `shoal-test-support`'s small client, built on
//! the same `kafka-protocol` codecs as the reader (CreateTopics, Produce, OffsetCommit).

use std::time::Duration;

use shoal_backlog::{BacklogError, Credentials, Reader, Reading, Source};
use shoal_test_support::brokers::kafka::Client;
use shoal_test_support::brokers::{free_port, start_tansu, tansu_binary, temp_dir};

/// `n` records, `sale 0` … on partition `partition`.
async fn produce(client: &mut Client, partition: i32, n: usize) {
    client
        .produce("sales", partition, (0..n).map(|i| format!("sale {i}")))
        .await
        .unwrap();
}

fn source(port: u16) -> Source {
    Source::Kafka {
        // A dead bootstrap broker first: the reader moves on to the next.
        brokers: vec![
            format!("127.0.0.1:{}", free_port()),
            format!("127.0.0.1:{port}"),
        ],
        topic: "sales".into(),
        group: "agg".into(),
    }
}

#[tokio::test]
async fn kafka_group_lag_over_partitions_against_tansu() {
    let Some(binary) = tansu_binary() else {
        return;
    };
    let dir = temp_dir("shoal-tansu-");
    let port = free_port();
    let tansu = start_tansu(&binary, port, dir.path()).await;
    let mut reader = Reader::new(source(port), Credentials::default());

    let error = reader.read().await.unwrap_err();
    assert!(matches!(error, BacklogError::NotFound { .. }), "{error:?}");
    eprintln!("before the topic exists: {error}");
    assert!(
        error.to_string().contains("UnknownTopicOrPartition"),
        "{error}"
    );

    let mut client = Client::connect(port).await.unwrap();
    client.create_topic("sales", 3).await.unwrap();

    // Nothing committed yet: 1 per partition, as KEDA counts with offsetResetPolicy latest.
    assert_eq!(
        reader.read().await.unwrap(),
        Reading {
            backlog: 3,
            consumed: Some(0),
            partitions: Some(3)
        }
    );

    produce(&mut client, 0, 5).await;
    produce(&mut client, 1, 3).await;
    client
        .commit("agg", "sales", &[(0, 2), (1, 3), (2, 0)])
        .await
        .unwrap();
    assert_eq!(
        reader.read().await.unwrap(),
        Reading {
            backlog: 3,
            consumed: Some(5),
            partitions: Some(3)
        }
    );

    produce(&mut client, 2, 4).await;
    client.commit("agg", "sales", &[(0, 5)]).await.unwrap();
    assert_eq!(
        reader.read().await.unwrap(),
        Reading {
            backlog: 4,
            consumed: Some(8),
            partitions: Some(3)
        }
    );

    // Another group has committed nothing.
    let mut other = Reader::new(
        Source::Kafka {
            brokers: vec![format!("127.0.0.1:{port}")],
            topic: "sales".into(),
            group: "nobody".into(),
        },
        Credentials::default(),
    );
    assert_eq!(other.read().await.unwrap().backlog, 3);

    // A frozen broker (SIGSTOP: its sockets stay open) is a timeout, not a hang; once it
    // runs again the reader reconnects.
    let mut quick =
        Reader::new(source(port), Credentials::default()).with_timeout(Duration::from_millis(300));
    assert_eq!(quick.read().await.unwrap().backlog, 4);
    tansu.freeze();
    let error = quick.read().await.unwrap_err();
    assert!(matches!(error, BacklogError::Timeout { .. }), "{error:?}");
    eprintln!("broker frozen: {error}");
    tansu.thaw();
    assert_eq!(quick.read().await.unwrap().backlog, 4);

    // The broker dies: an error; it comes back (empty: memory storage) and the same reader
    // reads again.
    tansu.kill();
    let error = reader.read().await.unwrap_err();
    assert!(
        matches!(error, BacklogError::Unreachable { .. }),
        "{error:?}"
    );
    eprintln!("broker down: {error}");
    let _tansu = start_tansu(&binary, port, dir.path()).await;
    let mut client = Client::connect(port).await.unwrap();
    client.create_topic("sales", 2).await.unwrap();
    produce(&mut client, 1, 7).await;
    client
        .commit("agg", "sales", &[(0, 0), (1, 1)])
        .await
        .unwrap();
    assert_eq!(
        reader.read().await.unwrap(),
        Reading {
            backlog: 6,
            consumed: Some(1),
            partitions: Some(2)
        }
    );
}
