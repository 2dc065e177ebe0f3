//! Kafka: a consumer group's lag, from the committed offsets (OffsetFetch, at the group's
//! coordinator) and the partitions' high watermarks (ListOffsets, at each leader).
//!
//! The messages are `kafka-protocol`'s codecs; ours is the framing: a request is a 4-byte
//! big-endian length, the request header and the body; an answer is a length (at most
//! [`MAX_FRAME`]), a header whose correlation id must be the request's, and the body.
//! Each connection first asks ApiVersions (v0, which every broker answers) and then uses,
//! per API, the highest version both sides support, up to a cap we have tested.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, BrokerId, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, ListOffsetsRequest, MetadataRequest, OffsetFetchRequest,
    OffsetFetchResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::Failure;
use crate::{Credentials, Reading, Source};

/// The largest answer read (a Metadata answer for one topic is a few KiB).
const MAX_FRAME: usize = 16 << 20;

/// The highest version used per API; each was checked against a broker in the tests.
const METADATA_MAX: i16 = 12;
const FIND_COORDINATOR_MAX: i16 = 4;
const OFFSET_FETCH_MAX: i16 = 8;
const LIST_OFFSETS_MAX: i16 = 7;

/// "Latest" for ListOffsets: the high watermark (with `isolation_level` 0).
const LATEST_TIMESTAMP: i64 = -1;

pub(crate) struct Reader {
    source: Source,
    brokers: Vec<String>,
    topic: String,
    group: String,
    credentials: Credentials,
    /// Open connections by `host:port`.
    connections: HashMap<String, Connection>,
    /// The broker that answered last, asked first next time.
    bootstrap: Option<String>,
}

impl Reader {
    pub(crate) fn new(
        brokers: Vec<String>,
        topic: String,
        group: String,
        credentials: Credentials,
    ) -> Reader {
        Reader {
            source: Source::Kafka {
                brokers: brokers.clone(),
                topic: topic.clone(),
                group: group.clone(),
            },
            brokers,
            topic,
            group,
            credentials,
            connections: HashMap::new(),
            bootstrap: None,
        }
    }

    pub(crate) fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    pub(crate) fn disconnect(&mut self) {
        self.connections.clear();
    }

    pub(crate) async fn read(&mut self) -> Result<Reading, Failure> {
        self.source.check()?;
        if self.credentials.username.is_some() || self.credentials.password.is_some() {
            return Err(Failure::Unsupported(
                "Kafka SASL authentication is not implemented: the reader speaks PLAINTEXT"
                    .to_owned(),
            ));
        }
        let bootstrap = self.bootstrap().await?;

        // The topic's partitions and their leaders.
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(&self.topic))),
            ]))
            .with_allow_auto_topic_creation(false);
        let (metadata, _) = self
            .connection(&bootstrap)
            .await?
            .call(&request, METADATA_MAX)
            .await?;
        let brokers: HashMap<BrokerId, String> = metadata
            .brokers
            .iter()
            .map(|b| (b.node_id, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        let Some(topic) = metadata
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == self.topic))
        else {
            return Err(Failure::Protocol(format!(
                "Metadata: no entry for topic '{}' in the answer",
                self.topic
            )));
        };
        check(
            "Metadata",
            &format!("topic '{}'", self.topic),
            topic.error_code,
            None,
        )?;
        let mut leaders: HashMap<String, Vec<i32>> = HashMap::new();
        for partition in &topic.partitions {
            let what = format!(
                "topic '{}' partition {}",
                self.topic, partition.partition_index
            );
            check("Metadata", &what, partition.error_code, None)?;
            let Some(leader) = brokers.get(&partition.leader_id) else {
                return Err(Failure::Protocol(format!(
                    "Metadata: {what} has leader {} which is not among the brokers",
                    partition.leader_id.0
                )));
            };
            leaders
                .entry(leader.clone())
                .or_default()
                .push(partition.partition_index);
        }
        let mut indexes: Vec<i32> = topic.partitions.iter().map(|p| p.partition_index).collect();
        indexes.sort_unstable();
        if indexes.is_empty() {
            return Err(Failure::Protocol(format!(
                "Metadata: topic '{}' has no partitions",
                self.topic
            )));
        }

        // The group's coordinator, and its committed offsets there.
        let coordinator = self.coordinator(&bootstrap).await?;
        let committed = self.committed(&coordinator, &indexes).await?;

        // The high watermarks, from each partition's leader.
        let mut high_watermarks = HashMap::new();
        for (leader, partitions) in leaders {
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(0)
                .with_topics(vec![
                    ListOffsetsTopic::default()
                        .with_name(topic_name(&self.topic))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|&index| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(index)
                                        .with_current_leader_epoch(-1)
                                        .with_timestamp(LATEST_TIMESTAMP)
                                })
                                .collect(),
                        ),
                ]);
            let (offsets, _) = self
                .connection(&leader)
                .await?
                .call(&request, LIST_OFFSETS_MAX)
                .await?;
            for topic in offsets.topics {
                for partition in topic.partitions {
                    let what = format!(
                        "topic '{}' partition {}",
                        self.topic, partition.partition_index
                    );
                    check("ListOffsets", &what, partition.error_code, None)?;
                    high_watermarks.insert(partition.partition_index, partition.offset);
                }
            }
        }

        let mut offsets = Vec::with_capacity(indexes.len());
        for index in indexes {
            let Some(&high_watermark) = high_watermarks.get(&index) else {
                return Err(Failure::Protocol(format!(
                    "ListOffsets: no offset for topic '{}' partition {index}",
                    self.topic
                )));
            };
            offsets.push(PartitionOffsets {
                high_watermark,
                committed: committed.get(&index).copied().unwrap_or(-1),
            });
        }
        Ok(lag(&offsets))
    }

    /// An open connection to one of the bootstrap brokers, the last one that worked first.
    async fn bootstrap(&mut self) -> Result<String, Failure> {
        let mut candidates = self.brokers.clone();
        if let Some(last) = &self.bootstrap {
            candidates.retain(|b| b != last);
            candidates.insert(0, last.clone());
        }
        let mut failures = Vec::new();
        for broker in candidates {
            match self.connection(&broker).await {
                Ok(_) => {
                    self.bootstrap = Some(broker.clone());
                    return Ok(broker);
                }
                Err(Failure::Unreachable(message)) => failures.push(message),
                Err(other) => return Err(other),
            }
        }
        Err(Failure::Unreachable(failures.join("; ")))
    }

    async fn connection(&mut self, address: &str) -> Result<&mut Connection, Failure> {
        if !self.connections.contains_key(address) {
            let connection = Connection::open(address).await?;
            self.connections.insert(address.to_owned(), connection);
        }
        Ok(self
            .connections
            .get_mut(address)
            .expect("inserted just above"))
    }

    async fn coordinator(&mut self, bootstrap: &str) -> Result<String, Failure> {
        let group = self.group.clone();
        let connection = self.connection(bootstrap).await?;
        let version = connection.version::<FindCoordinatorRequest>(FIND_COORDINATOR_MAX)?;
        let answer = connection
            .call_at(&find_coordinator_request(&group, version), version)
            .await?;
        coordinator_address(&group, &answer, version)
    }

    /// The group's committed offset per partition index (-1: none).
    async fn committed(
        &mut self,
        coordinator: &str,
        indexes: &[i32],
    ) -> Result<HashMap<i32, i64>, Failure> {
        let (group, topic) = (self.group.clone(), self.topic.clone());
        let connection = self.connection(coordinator).await?;
        let version = connection.version::<OffsetFetchRequest>(OFFSET_FETCH_MAX)?;
        let request = offset_fetch_request(&group, &topic, indexes, version);
        let answer = connection.call_at(&request, version).await?;
        committed_offsets(&group, &topic, answer, version)
    }
}

/// FindCoordinator for a group: v4 and later ask for a batch of keys.
fn find_coordinator_request(group: &str, version: i16) -> FindCoordinatorRequest {
    let group = StrBytes::from_string(group.to_owned());
    let request = if version >= 4 {
        FindCoordinatorRequest::default().with_coordinator_keys(vec![group])
    } else {
        FindCoordinatorRequest::default().with_key(group)
    };
    request.with_key_type(0)
}

fn coordinator_address(
    group: &str,
    answer: &FindCoordinatorResponse,
    version: i16,
) -> Result<String, Failure> {
    let what = format!("group '{group}'");
    if version >= 4 {
        let Some(coordinator) = answer.coordinators.first() else {
            return Err(Failure::Protocol(format!(
                "FindCoordinator: no coordinator for {what}"
            )));
        };
        let message = coordinator.error_message.as_ref();
        check("FindCoordinator", &what, coordinator.error_code, message)?;
        Ok(format!(
            "{}:{}",
            coordinator.host.as_str(),
            coordinator.port
        ))
    } else {
        let message = answer.error_message.as_ref();
        check("FindCoordinator", &what, answer.error_code, message)?;
        Ok(format!("{}:{}", answer.host.as_str(), answer.port))
    }
}

/// OffsetFetch for one group and topic: v8 and later ask for a batch of groups.
fn offset_fetch_request(
    group: &str,
    topic: &str,
    indexes: &[i32],
    version: i16,
) -> OffsetFetchRequest {
    let group = GroupId(StrBytes::from_string(group.to_owned()));
    if version >= 8 {
        OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group)
                .with_topics(Some(vec![
                    OffsetFetchRequestTopics::default()
                        .with_name(topic_name(topic))
                        .with_partition_indexes(indexes.to_vec()),
                ])),
        ])
    } else {
        OffsetFetchRequest::default()
            .with_group_id(group)
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partition_indexes(indexes.to_vec()),
            ]))
    }
}

/// The committed offset per partition index from an OffsetFetch answer (-1: none).
fn committed_offsets(
    group: &str,
    topic: &str,
    answer: OffsetFetchResponse,
    version: i16,
) -> Result<HashMap<i32, i64>, Failure> {
    let what = format!("group '{group}'");
    let mut committed = HashMap::new();
    let mut record = |index: i32, error_code: i16, offset: i64| {
        check_partition(topic, index, error_code)?;
        committed.insert(index, offset);
        Ok::<(), Failure>(())
    };
    if version >= 8 {
        for group in answer.groups {
            check("OffsetFetch", &what, group.error_code, None)?;
            for answered in group
                .topics
                .into_iter()
                .filter(|t| t.name.0.as_str() == topic)
            {
                for p in answered.partitions {
                    record(p.partition_index, p.error_code, p.committed_offset)?;
                }
            }
        }
    } else {
        check("OffsetFetch", &what, answer.error_code, None)?;
        for answered in answer
            .topics
            .into_iter()
            .filter(|t| t.name.0.as_str() == topic)
        {
            for p in answered.partitions {
                record(p.partition_index, p.error_code, p.committed_offset)?;
            }
        }
    }
    Ok(committed)
}

fn check_partition(topic: &str, index: i32, code: i16) -> Result<(), Failure> {
    check(
        "OffsetFetch",
        &format!("topic '{topic}' partition {index}"),
        code,
        None,
    )
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

/// Turns a Kafka error code into a failure, named as Kafka names it.
fn check(api: &str, what: &str, code: i16, message: Option<&StrBytes>) -> Result<(), Failure> {
    let Some(error) = ResponseError::try_from_code(code) else {
        return Ok(());
    };
    let detail = match message {
        Some(message) if !message.is_empty() => format!(" ({})", message.as_str()),
        _ => String::new(),
    };
    let text = format!("{api} {what}: {error} (error {code}){detail}");
    Err(match error {
        ResponseError::UnknownTopicOrPartition | ResponseError::GroupIdNotFound => {
            Failure::NotFound(text)
        }
        ResponseError::TopicAuthorizationFailed
        | ResponseError::GroupAuthorizationFailed
        | ResponseError::ClusterAuthorizationFailed
        | ResponseError::SaslAuthenticationFailed => Failure::Auth(text),
        _ => Failure::Protocol(text),
    })
}

/// One partition's offsets.
#[derive(Debug, Clone, Copy)]
struct PartitionOffsets {
    high_watermark: i64,
    /// -1 when the group has committed nothing on this partition.
    committed: i64,
}

/// The backlog over a topic's partitions, KEDA's way (see the crate doc): high watermark −
/// committed offset, 1 for a partition without a committed offset, never negative.
fn lag(partitions: &[PartitionOffsets]) -> Reading {
    let mut backlog: u64 = 0;
    let mut consumed: u64 = 0;
    for partition in partitions {
        let lag = if partition.committed < 0 {
            1
        } else {
            consumed = consumed.saturating_add(partition.committed.unsigned_abs());
            u64::try_from(partition.high_watermark.saturating_sub(partition.committed)).unwrap_or(0)
        };
        backlog = backlog.saturating_add(lag);
    }
    Reading {
        backlog,
        consumed: Some(consumed),
        partitions: Some(u32::try_from(partitions.len()).unwrap_or(u32::MAX)),
    }
}

/// One connection to one broker.
struct Connection {
    address: String,
    stream: TcpStream,
    correlation_id: i32,
    /// The broker's (min, max) version per API key.
    versions: HashMap<i16, (i16, i16)>,
}

impl Connection {
    async fn open(address: &str) -> Result<Connection, Failure> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|e| Failure::Unreachable(format!("{address}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let mut connection = Connection {
            address: address.to_owned(),
            stream,
            correlation_id: 0,
            versions: HashMap::new(),
        };
        let answer: ApiVersionsResponse = connection
            .call_at(&ApiVersionsRequest::default(), 0)
            .await?;
        check("ApiVersions", address, answer.error_code, None)?;
        connection.versions = answer
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(connection)
    }

    /// The highest version of `R` both sides support, at most `cap`.
    fn version<R: Request>(&self, cap: i16) -> Result<i16, Failure> {
        let Some(&(broker_min, broker_max)) = self.versions.get(&R::KEY) else {
            return Err(Failure::Unsupported(format!(
                "broker {} does not offer API {} (ApiVersions)",
                self.address,
                R::KEY
            )));
        };
        let ours = <R as Message>::VERSIONS;
        let version = cap.min(broker_max).min(ours.max);
        if version < broker_min.max(ours.min) {
            return Err(Failure::Unsupported(format!(
                "broker {} speaks API {} versions {broker_min}..={broker_max}, this reader \
                 {}..={cap}",
                self.address,
                R::KEY,
                ours.min
            )));
        }
        Ok(version)
    }

    async fn call<R: Request>(
        &mut self,
        request: &R,
        cap: i16,
    ) -> Result<(R::Response, i16), Failure> {
        let version = self.version::<R>(cap)?;
        Ok((self.call_at(request, version).await?, version))
    }

    async fn call_at<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, Failure> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("shoal")));
        let frame = encode_frame(&header, request, version)
            .map_err(|e| Failure::Protocol(format!("encoding API {} v{version}: {e}", R::KEY)))?;
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| Failure::Unreachable(format!("{}: connection lost: {e}", self.address)))?;

        let length =
            self.stream.read_i32().await.map_err(|e| {
                Failure::Unreachable(format!("{}: connection lost: {e}", self.address))
            })?;
        let length = usize::try_from(length)
            .ok()
            .filter(|&n| n <= MAX_FRAME)
            .ok_or_else(|| {
                Failure::Protocol(format!("{}: answer of {length} bytes", self.address))
            })?;
        let mut body = vec![0; length];
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(|e| Failure::Unreachable(format!("{}: connection lost: {e}", self.address)))?;
        decode_answer::<R>(Bytes::from(body), version, self.correlation_id).map_err(|e| {
            Failure::Protocol(format!("{}: API {} v{version}: {e}", self.address, R::KEY))
        })
    }
}

fn encode_frame<R: Request>(
    header: &RequestHeader,
    request: &R,
    version: i16,
) -> anyhow::Result<BytesMut> {
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    header.encode(&mut frame, R::header_version(version))?;
    request.encode(&mut frame, version)?;
    let length = i32::try_from(frame.len() - 4)?;
    frame[..4].copy_from_slice(&length.to_be_bytes());
    Ok(frame)
}

fn decode_answer<R: Request>(
    mut body: Bytes,
    version: i16,
    correlation_id: i32,
) -> anyhow::Result<R::Response> {
    let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))?;
    anyhow::ensure!(
        header.correlation_id == correlation_id,
        "answer to request {} where {correlation_id} was expected",
        header.correlation_id
    );
    R::Response::decode(&mut body, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(high_watermark: i64, committed: i64) -> PartitionOffsets {
        PartitionOffsets {
            high_watermark,
            committed,
        }
    }

    #[test]
    fn lag_sums_high_watermark_minus_committed() {
        let reading = lag(&[p(10, 4), p(7, 7), p(100, 0)]);
        assert_eq!(
            reading,
            Reading {
                backlog: 6 + 100,
                consumed: Some(4 + 7),
                partitions: Some(3)
            }
        );
    }

    #[test]
    fn a_partition_without_a_commit_counts_one_like_keda_latest() {
        let reading = lag(&[p(50, -1), p(0, -1), p(5, 2)]);
        assert_eq!(reading.backlog, 1 + 1 + 3);
        assert_eq!(reading.consumed, Some(2));
        assert_eq!(reading.partitions, Some(3));
    }

    #[test]
    fn a_commit_past_the_high_watermark_is_no_backlog() {
        assert_eq!(lag(&[p(5, 9)]).backlog, 0);
        assert_eq!(
            lag(&[p(i64::MAX, 0), p(i64::MAX, 0)]).backlog,
            2 * (i64::MAX as u64)
        );
    }

    #[test]
    fn frames_carry_their_length_and_answers_their_correlation_id() {
        let header = RequestHeader::default()
            .with_request_api_key(ApiVersionsRequest::KEY)
            .with_request_api_version(0)
            .with_correlation_id(7);
        let frame = encode_frame(&header, &ApiVersionsRequest::default(), 0).unwrap();
        let length = i32::from_be_bytes(frame[..4].try_into().unwrap());
        assert_eq!(length as usize, frame.len() - 4);
        // api key 18, version 0, correlation 7, client id "" (the header's default)
        assert_eq!(&frame[4..], &[0, 18, 0, 0, 0, 0, 0, 7, 0, 0]);

        let mut answer = BytesMut::new();
        answer.put_i32(8); // correlation id
        ApiVersionsResponse::default()
            .encode(&mut answer, 0)
            .unwrap();
        let wrong = decode_answer::<ApiVersionsRequest>(answer.clone().freeze(), 0, 7);
        assert!(
            wrong
                .unwrap_err()
                .to_string()
                .contains("answer to request 8")
        );
        let right = decode_answer::<ApiVersionsRequest>(answer.freeze(), 0, 8);
        assert!(right.is_ok());
    }

    /// Both shapes of FindCoordinator and OffsetFetch (before and after batching) encode at
    /// their versions, and their answers, encoded as a broker would, read back. tansu
    /// negotiates the batched ones (FindCoordinator v4, OffsetFetch v8); Kafka 2.x brokers
    /// the others.
    #[test]
    fn both_shapes_of_the_group_requests_round_trip() {
        use kafka_protocol::messages::find_coordinator_response::Coordinator;
        use kafka_protocol::messages::offset_fetch_response::{
            OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
            OffsetFetchResponseTopic, OffsetFetchResponseTopics,
        };

        fn round_trip<R: Request>(request: &R, version: i16) -> R {
            let mut buf = BytesMut::new();
            request.encode(&mut buf, version).unwrap();
            R::decode(&mut buf.freeze(), version).unwrap()
        }
        fn answer<M: Encodable + Decodable>(answer: &M, version: i16) -> M {
            let mut buf = BytesMut::new();
            answer.encode(&mut buf, version).unwrap();
            M::decode(&mut buf.freeze(), version).unwrap()
        }

        for version in [1, 3] {
            let request = round_trip(&find_coordinator_request("agg", version), version);
            assert_eq!(request.key.as_str(), "agg");
            let found = FindCoordinatorResponse::default()
                .with_host(StrBytes::from_static_str("h"))
                .with_port(9);
            let found = answer(&found, version);
            assert_eq!(coordinator_address("agg", &found, version).unwrap(), "h:9");
        }
        for version in [4, 6] {
            let request = round_trip(&find_coordinator_request("agg", version), version);
            assert_eq!(request.coordinator_keys[0].as_str(), "agg");
            let found = FindCoordinatorResponse::default().with_coordinators(vec![
                Coordinator::default()
                    .with_key(StrBytes::from_static_str("agg"))
                    .with_host(StrBytes::from_static_str("h"))
                    .with_port(9),
            ]);
            let found = answer(&found, version);
            assert_eq!(coordinator_address("agg", &found, version).unwrap(), "h:9");
            let refused = FindCoordinatorResponse::default().with_coordinators(vec![
                Coordinator::default()
                    .with_error_code(30)
                    .with_error_message(Some(StrBytes::from_static_str("denied"))),
            ]);
            let refused = coordinator_address("agg", &answer(&refused, version), version);
            assert!(matches!(refused, Err(Failure::Auth(m)) if m.ends_with("(denied)")));
        }

        for version in [1, 7] {
            let request = round_trip(
                &offset_fetch_request("agg", "sales", &[0, 1], version),
                version,
            );
            assert_eq!(request.group_id.0.as_str(), "agg");
            assert_eq!(
                request.topics.as_ref().unwrap()[0].partition_indexes,
                vec![0, 1]
            );
            let fetched = OffsetFetchResponse::default().with_topics(vec![
                OffsetFetchResponseTopic::default()
                    .with_name(topic_name("sales"))
                    .with_partitions(vec![
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(5),
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(1)
                            .with_committed_offset(-1),
                    ]),
            ]);
            let committed =
                committed_offsets("agg", "sales", answer(&fetched, version), version).unwrap();
            assert_eq!(committed, HashMap::from([(0, 5), (1, -1)]));
        }
        for version in [8, 9] {
            let request = round_trip(
                &offset_fetch_request("agg", "sales", &[0, 1], version),
                version,
            );
            assert_eq!(request.groups[0].group_id.0.as_str(), "agg");
            let fetched = OffsetFetchResponse::default().with_groups(vec![
                OffsetFetchResponseGroup::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("agg")))
                    .with_topics(vec![
                        OffsetFetchResponseTopics::default()
                            .with_name(topic_name("sales"))
                            .with_partitions(vec![
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(1)
                                    .with_committed_offset(3),
                            ]),
                    ]),
            ]);
            let committed =
                committed_offsets("agg", "sales", answer(&fetched, version), version).unwrap();
            assert_eq!(committed, HashMap::from([(1, 3)]));
            let refused = OffsetFetchResponse::default().with_groups(vec![
                OffsetFetchResponseGroup::default().with_error_code(30),
            ]);
            let refused = committed_offsets("agg", "sales", answer(&refused, version), version);
            assert!(matches!(refused, Err(Failure::Auth(_))));
        }
    }

    #[test]
    fn error_codes_are_sorted_by_origin() {
        assert!(check("Metadata", "t", 0, None).is_ok());
        assert!(
            matches!(check("Metadata", "t", 3, None), Err(Failure::NotFound(m)) if m.contains("UnknownTopicOrPartition (error 3)"))
        );
        assert!(matches!(
            check("OffsetFetch", "g", 30, None),
            Err(Failure::Auth(_))
        ));
        assert!(matches!(
            check("FindCoordinator", "g", 15, None),
            Err(Failure::Protocol(_))
        ));
    }
}
