//! The Kafka reader against a real Kafka-compatible broker on loopback: `tansu` (a Kafka
//! broker written in Rust, from crates.io: `cargo install tansu --features dynostore`; its
//! in-memory storage engine needs that feature), run with `--storage-engine memory://`.
//!
//! The test produces and commits offsets with a small client of its own, built on the same
//! `kafka-protocol` codecs as the reader (CreateTopics, Produce, OffsetCommit).

mod brokers;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use brokers::{Process, free_port, require, temp_dir};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, CreateTopicsRequest, GroupId, OffsetCommitRequest, ProduceRequest,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use shoal_backlog::{BacklogError, Credentials, Reader, Reading, Source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const START_WITHIN: Duration = Duration::from_secs(30);

async fn start_tansu(binary: &Path, port: u16, dir: &Path) -> Process {
    let url = format!("tcp://127.0.0.1:{port}");
    let mut command = Command::new(binary);
    command
        .arg("broker")
        .args(["--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"]);
    let mut process = Process::spawn("tansu", command, &dir.join("tansu.log"));
    let took = process.wait_for_port(port, START_WITHIN).await;
    eprintln!("tansu on 127.0.0.1:{port} accepted connections after {took:?}");
    process
}

/// Just enough of a Kafka client to set the scene.
struct Client {
    stream: TcpStream,
    correlation_id: i32,
    versions: Vec<(i16, i16, i16)>,
}

impl Client {
    async fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut client = Client {
            stream,
            correlation_id: 0,
            versions: Vec::new(),
        };
        let versions = client.call_at(&ApiVersionsRequest::default(), 0).await;
        assert_eq!(versions.error_code, 0);
        client.versions = versions
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        client
    }

    async fn call<R: Request>(&mut self, request: &R, cap: i16) -> R::Response {
        let &(_, min, max) = self
            .versions
            .iter()
            .find(|(key, ..)| *key == R::KEY)
            .unwrap_or_else(|| panic!("the broker has no API {}", R::KEY));
        let version = cap.min(max).min(<R as Message>::VERSIONS.max);
        assert!(
            version >= min,
            "API {}: broker {min}..={max}, cap {cap}",
            R::KEY
        );
        self.call_at(request, version).await
    }

    async fn call_at<R: Request>(&mut self, request: &R, version: i16) -> R::Response {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("shoal-test")));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header
            .encode(&mut frame, R::header_version(version))
            .unwrap();
        request.encode(&mut frame, version).unwrap();
        let length = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        self.stream.write_all(&frame).await.unwrap();
        let length = self.stream.read_i32().await.unwrap();
        assert!((0..16 << 20).contains(&length));
        let mut body = vec![0; length as usize];
        self.stream.read_exact(&mut body).await.unwrap();
        let mut body = Bytes::from(body);
        let header =
            ResponseHeader::decode(&mut body, R::Response::header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation_id);
        R::Response::decode(&mut body, version).unwrap()
    }

    async fn create_topic(&mut self, name: &str, partitions: i32) {
        let request = CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(topic(name))
                    .with_num_partitions(partitions)
                    .with_replication_factor(1),
            ])
            .with_timeout_ms(5000);
        let answer = self.call(&request, 5).await;
        assert_eq!(answer.topics[0].error_code, 0, "{answer:?}");
    }

    async fn produce(&mut self, name: &str, partition: i32, n: usize) {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(Bytes::from(format!("sale {i}"))),
                headers: Default::default(),
            })
            .collect();
        let mut batch = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut batch, &records, &options).unwrap();
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic(name))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(batch.freeze())),
                    ]),
            ]);
        let answer = self.call(&request, 8).await;
        let partition = &answer.responses[0].partition_responses[0];
        assert_eq!(partition.error_code, 0, "{answer:?}");
    }

    /// Commits as a standalone consumer (generation -1, no member), as `kafka-consumer-groups
    /// --reset-offsets` does.
    async fn commit(&mut self, group: &str, name: &str, offsets: &[(i32, i64)]) {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::default())
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(topic(name))
                    .with_partitions(
                        offsets
                            .iter()
                            .map(|&(index, offset)| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(index)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(-1)
                            })
                            .collect(),
                    ),
            ]);
        let answer = self.call(&request, 7).await;
        for partition in &answer.topics[0].partitions {
            assert_eq!(partition.error_code, 0, "{answer:?}");
        }
    }
}

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
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
    let Some(binary) = require(
        "tansu",
        "SHOAL_TANSU",
        &[],
        "cargo install --locked tansu --features dynostore",
    ) else {
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

    let mut client = Client::connect(port).await;
    client.create_topic("sales", 3).await;

    // Nothing committed yet: 1 per partition, as KEDA counts with offsetResetPolicy latest.
    assert_eq!(
        reader.read().await.unwrap(),
        Reading {
            backlog: 3,
            consumed: Some(0),
            partitions: Some(3)
        }
    );

    client.produce("sales", 0, 5).await;
    client.produce("sales", 1, 3).await;
    client
        .commit("agg", "sales", &[(0, 2), (1, 3), (2, 0)])
        .await;
    assert_eq!(
        reader.read().await.unwrap(),
        Reading {
            backlog: 3,
            consumed: Some(5),
            partitions: Some(3)
        }
    );

    client.produce("sales", 2, 4).await;
    client.commit("agg", "sales", &[(0, 5)]).await;
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
    let mut client = Client::connect(port).await;
    client.create_topic("sales", 2).await;
    client.produce("sales", 1, 7).await;
    client.commit("agg", "sales", &[(0, 0), (1, 1)]).await;
    assert_eq!(
        reader.read().await.unwrap(),
        Reading {
            backlog: 6,
            consumed: Some(1),
            partitions: Some(2)
        }
    );
}
