//! Just enough of a Kafka client to set a scene and to consume: create a topic, produce,
//! commit and read a group's offsets as a standalone consumer (no group membership, as
//! `kafka-consumer-groups --reset-offsets` does), fetch. Built on the `kafka-protocol`
//! codecs shoal's reader uses; one connection, to one broker (tests run one).
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, CreateTopicsRequest, FetchRequest, GroupId, OffsetCommitRequest,
    OffsetFetchRequest, ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A failed call: the connection broke, or the broker answered with an error code.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// One connection to a broker.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    correlation_id: i32,
    versions: Vec<(i16, i16, i16)>,
}

/// A topic's name as the codecs want it.
pub fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

fn group(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_owned()))
}

fn check(what: &str, code: i16) -> Result<(), Error> {
    if code == 0 {
        return Ok(());
    }
    let error = kafka_protocol::error::ResponseError::try_from_code(code).map_or_else(
        || format!("error code {code}"),
        |e| format!("{e} (error {code})"),
    );
    Err(format!("{what}: {error}").into())
}

impl Client {
    /// Connects to `127.0.0.1:port` and asks which API versions the broker speaks.
    pub async fn connect(port: u16) -> Result<Client, Error> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut client = Client {
            stream,
            correlation_id: 0,
            versions: Vec::new(),
        };
        let versions = client.call_at(&ApiVersionsRequest::default(), 0).await?;
        check("ApiVersions", versions.error_code)?;
        client.versions = versions
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        Ok(client)
    }

    /// `request` at the highest version both sides speak, at most `cap`.
    pub async fn call<R: Request>(&mut self, request: &R, cap: i16) -> Result<R::Response, Error> {
        let &(_, min, max) = self
            .versions
            .iter()
            .find(|(key, ..)| *key == R::KEY)
            .ok_or_else(|| format!("the broker has no API {}", R::KEY))?;
        let version = cap.min(max).min(<R as Message>::VERSIONS.max);
        if version < min {
            return Err(format!("API {}: broker {min}..={max}, cap {cap}", R::KEY).into());
        }
        self.call_at(request, version).await
    }

    /// `request` at `version`.
    pub async fn call_at<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, Error> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("shoal-test")));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header.encode(&mut frame, R::header_version(version))?;
        request.encode(&mut frame, version)?;
        let length = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        self.stream.write_all(&frame).await?;
        let length = self.stream.read_i32().await?;
        if !(0..16 << 20).contains(&length) {
            return Err(format!("an answer of {length} bytes").into());
        }
        let mut body = vec![0; length as usize];
        self.stream.read_exact(&mut body).await?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))?;
        if header.correlation_id != self.correlation_id {
            return Err("an answer to another request".into());
        }
        Ok(R::Response::decode(&mut body, version)?)
    }

    /// Creates `name` with `partitions` partitions.
    pub async fn create_topic(&mut self, name: &str, partitions: i32) -> Result<(), Error> {
        let request = CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(topic(name))
                    .with_num_partitions(partitions)
                    .with_replication_factor(1),
            ])
            .with_timeout_ms(5000);
        let answer = self.call(&request, 5).await?;
        check("CreateTopics", answer.topics[0].error_code)
    }

    /// Appends one record per value to partition `partition` of `name`, in one batch,
    /// acknowledged by the broker.
    pub async fn produce<V: Into<Bytes>>(
        &mut self,
        name: &str,
        partition: i32,
        values: impl IntoIterator<Item = V>,
    ) -> Result<(), Error> {
        let records: Vec<Record> = values
            .into_iter()
            .enumerate()
            .map(|(i, value)| Record {
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
                value: Some(value.into()),
                headers: Default::default(),
            })
            .collect();
        let mut batch = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut batch, &records, &options)?;
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
        let answer = self.call(&request, 8).await?;
        check(
            "Produce",
            answer.responses[0].partition_responses[0].error_code,
        )
    }

    /// Commits `offsets` (partition, next offset to read) of `name` for `group`, as a
    /// standalone consumer (generation -1, no member).
    pub async fn commit(
        &mut self,
        group_name: &str,
        name: &str,
        offsets: &[(i32, i64)],
    ) -> Result<(), Error> {
        let request = OffsetCommitRequest::default()
            .with_group_id(group(group_name))
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
        let answer = self.call(&request, 7).await?;
        for partition in &answer.topics[0].partitions {
            check("OffsetCommit", partition.error_code)?;
        }
        Ok(())
    }

    /// The offset `group` committed on partition `partition` of `name`; -1 if none.
    pub async fn committed(
        &mut self,
        group_name: &str,
        name: &str,
        partition: i32,
    ) -> Result<i64, Error> {
        let request = OffsetFetchRequest::default()
            .with_group_id(group(group_name))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(topic(name))
                    .with_partition_indexes(vec![partition]),
            ]));
        let answer = self.call(&request, 7).await?;
        check("OffsetFetch", answer.error_code)?;
        answer
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == partition)
            .map_or(Ok(-1), |p| {
                check("OffsetFetch", p.error_code).map(|()| p.committed_offset)
            })
    }

    /// The records of partition `partition` of `name` from `offset` on, as (offset, value),
    /// waiting up to `max_wait_ms` for the first.
    pub async fn fetch(
        &mut self,
        name: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> Result<Vec<(i64, Bytes)>, Error> {
        let request = FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(topic(name))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]);
        // v11: topics by name (v13 on use ids), and not yet a flexible version: tansu 0.6
        // answers v12 with a tagged field (0) that v12 does not define.
        let answer = self.call(&request, 11).await?;
        check("Fetch", answer.error_code)?;
        let mut out = Vec::new();
        for data in answer.responses.iter().flat_map(|t| &t.partitions) {
            check("Fetch", data.error_code)?;
            let Some(mut records) = data.records.clone() else {
                continue;
            };
            for set in RecordBatchDecoder::decode_all(&mut records)? {
                for record in set.records {
                    if record.offset >= offset && !record.control {
                        out.push((record.offset, record.value.unwrap_or_default()));
                    }
                }
            }
        }
        Ok(out)
    }
}
