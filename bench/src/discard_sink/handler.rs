//! The discard sink's request handling, sans-IO: one request frame in, its response frame
//! (if it gets one) appended to an output buffer. Requests and responses are decoded and
//! encoded with the `kafka-protocol` crate; of a Produce request's records only the
//! RecordBatch v2 headers are read (their record counts), nothing is stored.
//!
//! The other APIs' answers are in `answers.rs`. Fetch is answered, with no records, only
//! because librdkafka decides from the advertised versions which message format to
//! produce: without Fetch v4 it falls back to the pre-v2 message sets, which the sink
//! refuses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::{anyhow, bail, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateTopicsRequest, FetchRequest, FindCoordinatorRequest,
    InitProducerIdRequest, MetadataRequest, ProduceRequest, ProduceResponse, RequestHeader,
    ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use serde::{Deserialize, Serialize};

use super::answers::{api_versions, find_coordinator, topic_entry};

/// The largest request frame accepted (Kafka's default `socket.request.max.bytes`).
pub const MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;

/// The sink's broker id in Metadata and FindCoordinator answers.
pub const NODE_ID: i32 = 1;

/// The APIs and versions the sink implements, and advertises in ApiVersions: what
/// kafka-wire's and librdkafka's producers need. Produce stops at v12, the last that names
/// topics (v13 addresses them by id); Fetch at v11, the last before flexible versions.
pub const SUPPORTED: [(ApiKey, i16, i16); 7] = [
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 11),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::InitProducerId, 0, 4),
];

// Kafka error codes the sink answers with.
pub(super) const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const CORRUPT_MESSAGE: i16 = 2;
pub(super) const INVALID_TOPIC: i16 = 17;
const UNSUPPORTED_VERSION: i16 = 35;

// RecordBatch v2 header: baseOffset i64, batchLength i32, partitionLeaderEpoch i32,
// magic i8, crc u32, attributes i16, lastOffsetDelta i32, baseTimestamp i64,
// maxTimestamp i64, producerId i64, producerEpoch i16, baseSequence i32, recordCount i32.
const BATCH_LENGTH_AT: usize = 8;
const MAGIC_AT: usize = 16;
const RECORD_COUNT_AT: usize = 57;
const BATCH_HEADER_LEN: usize = 61;
/// baseOffset and batchLength are not counted in batchLength.
const BATCH_LOG_OVERHEAD: usize = 12;

/// Counts since the sink started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Requests of any kind answered (or, for acks=0 Produce, taken).
    pub requests: u64,
    pub produce_requests: u64,
    /// Records acknowledged (the sum of the batches' record counts).
    pub records: u64,
    /// RecordBatches acknowledged.
    pub batches: u64,
    /// Bytes of the acknowledged RecordBatches.
    pub record_bytes: u64,
    /// Partitions of Produce requests answered with an error (unknown partition, records
    /// that are not RecordBatch v2).
    pub refused_partitions: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    produce_requests: AtomicU64,
    records: AtomicU64,
    batches: AtomicU64,
    record_bytes: AtomicU64,
    refused_partitions: AtomicU64,
}

#[derive(Debug)]
pub(super) struct Topic {
    pub(super) id: uuid::Uuid,
    /// The next offset of each partition.
    pub(super) next_offsets: Vec<i64>,
}

/// The sink's state, shared by every connection: topics (which exist as soon as anyone
/// names them), their partitions' next offsets, producer ids and the counts.
#[derive(Debug)]
pub struct SinkState {
    pub(super) default_partitions: i32,
    pub(super) topics: Mutex<HashMap<String, Topic>>,
    pub(super) next_producer_id: AtomicI64,
    counters: Counters,
    /// Why the first refused partition was refused.
    first_refusal: OnceLock<String>,
}

/// The record count and size of one partition's records in a Produce request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchCount {
    pub records: u64,
    pub batches: u64,
    pub bytes: u64,
}

/// Counts the records in a run of RecordBatch v2 (only the headers are read; CRCs are not
/// checked). An error names what is wrong.
pub fn count_records(mut data: &[u8]) -> Result<BatchCount, String> {
    let mut count = BatchCount {
        records: 0,
        batches: 0,
        bytes: 0,
    };
    if data.is_empty() {
        return Err("no record batch".into());
    }
    while !data.is_empty() {
        if data.len() < BATCH_HEADER_LEN {
            return Err(format!(
                "a record batch is cut short ({} bytes, the header alone is {BATCH_HEADER_LEN})",
                data.len()
            ));
        }
        let length = i32::from_be_bytes(array(data, BATCH_LENGTH_AT));
        let total = usize::try_from(length)
            .ok()
            .map(|l| l + BATCH_LOG_OVERHEAD)
            .filter(|&t| t >= BATCH_HEADER_LEN)
            .ok_or_else(|| format!("a record batch declares a length of {length}"))?;
        if total > data.len() {
            return Err(format!(
                "a record batch declares {total} bytes but {} are left",
                data.len()
            ));
        }
        if data[MAGIC_AT] != 2 {
            return Err(format!(
                "record batch magic {} (only v2 is supported)",
                data[MAGIC_AT]
            ));
        }
        let records = i32::from_be_bytes(array(data, RECORD_COUNT_AT));
        let records = u64::try_from(records)
            .map_err(|_| format!("a record batch declares {records} records"))?;
        count.records += records;
        count.batches += 1;
        count.bytes += total as u64;
        data = &data[total..];
    }
    Ok(count)
}

fn array(data: &[u8], at: usize) -> [u8; 4] {
    [data[at], data[at + 1], data[at + 2], data[at + 3]]
}

impl SinkState {
    /// A sink whose topics get `default_partitions` partitions unless CreateTopics says
    /// otherwise.
    pub fn new(default_partitions: i32) -> SinkState {
        SinkState {
            default_partitions: default_partitions.max(1),
            topics: Mutex::new(HashMap::new()),
            next_producer_id: AtomicI64::new(1),
            counters: Counters::default(),
            first_refusal: OnceLock::new(),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        let c = &self.counters;
        Counts {
            requests: c.requests.load(Ordering::Relaxed),
            produce_requests: c.produce_requests.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            record_bytes: c.record_bytes.load(Ordering::Relaxed),
            refused_partitions: c.refused_partitions.load(Ordering::Relaxed),
        }
    }

    /// Why the first refused Produce partition was refused, if one was.
    pub fn first_refusal(&self) -> Option<&str> {
        self.first_refusal.get().map(String::as_str)
    }

    /// Handles one request frame (without its size prefix) that arrived on a connection to
    /// `local`, appending the size-prefixed response to `out` unless the request gets none
    /// (Produce with acks=0). An error means the connection should be closed: the frame is
    /// malformed or asks for an API or version the sink does not implement.
    pub fn handle(&self, frame: Bytes, local: SocketAddr, out: &mut BytesMut) -> Result<()> {
        if frame.len() < 8 {
            bail!(
                "a request frame of {} bytes is shorter than its header",
                frame.len()
            );
        }
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let api = ApiKey::try_from(key).map_err(|_| anyhow!("unknown API key {key}"))?;
        let mut body = frame;
        let header = RequestHeader::decode(&mut body, api.request_header_version(version))
            .map_err(|e| anyhow!("cannot decode a {api:?} request header: {e}"))?;
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let id = header.correlation_id;
        if api == ApiKey::ApiVersions && version > 3 {
            // The client tries a newer ApiVersions first; say which versions exist, in v0.
            let mut response = api_versions();
            response.error_code = UNSUPPORTED_VERSION;
            return write_response(out, id, 0, &response);
        }
        let (min, max) = SUPPORTED
            .iter()
            .find(|(k, _, _)| *k == api)
            .map(|(_, min, max)| (*min, *max))
            .ok_or_else(|| anyhow!("{api:?} is not implemented by the discard sink"))?;
        if !(min..=max).contains(&version) {
            bail!("{api:?} v{version} was asked for; the discard sink implements v{min}-v{max}");
        }
        let decode_error = |e| anyhow!("cannot decode a {api:?} v{version} request: {e}");
        match api {
            ApiKey::Produce => {
                let request = ProduceRequest::decode(&mut body, version).map_err(decode_error)?;
                match self.produce(&request, version) {
                    Some(response) => write_response(out, id, version, &response),
                    None => Ok(()),
                }
            }
            ApiKey::Fetch => {
                let request = FetchRequest::decode(&mut body, version).map_err(decode_error)?;
                write_response(out, id, version, &self.fetch(&request, version))
            }
            ApiKey::ApiVersions => {
                ApiVersionsRequest::decode(&mut body, version).map_err(decode_error)?;
                write_response(out, id, version, &api_versions())
            }
            ApiKey::Metadata => {
                let request = MetadataRequest::decode(&mut body, version).map_err(decode_error)?;
                let response = self.metadata(&request, version, local);
                write_response(out, id, version, &response)
            }
            ApiKey::InitProducerId => {
                let request =
                    InitProducerIdRequest::decode(&mut body, version).map_err(decode_error)?;
                write_response(out, id, version, &self.init_producer_id(&request, version))
            }
            ApiKey::FindCoordinator => {
                let request =
                    FindCoordinatorRequest::decode(&mut body, version).map_err(decode_error)?;
                let response = find_coordinator(&request, version, local);
                write_response(out, id, version, &response)
            }
            ApiKey::CreateTopics => {
                let request =
                    CreateTopicsRequest::decode(&mut body, version).map_err(decode_error)?;
                write_response(out, id, version, &self.create_topics(&request, version))
            }
            _ => unreachable!("every API in SUPPORTED has a branch"),
        }
    }

    /// Acknowledges every partition's records with the next offsets of that partition, or
    /// `None` for acks=0 (counted all the same).
    pub fn produce(&self, request: &ProduceRequest, version: i16) -> Option<ProduceResponse> {
        self.counters
            .produce_requests
            .fetch_add(1, Ordering::Relaxed);
        let mut total = BatchCount {
            records: 0,
            batches: 0,
            bytes: 0,
        };
        let mut refused = 0;
        let mut response = ProduceResponse::default();
        let mut topics = self.topics.lock().expect("no panics while locked");
        for data in &request.topic_data {
            let mut topic_response = TopicProduceResponse::default();
            topic_response.name = data.name.clone();
            let topic = topic_entry(&mut topics, data.name.as_str(), self.default_partitions);
            for p in &data.partition_data {
                let mut r = PartitionProduceResponse::default();
                r.index = p.index;
                r.log_append_time_ms = -1;
                if version >= 5 {
                    r.log_start_offset = 0;
                }
                let next = usize::try_from(p.index)
                    .ok()
                    .and_then(|i| topic.next_offsets.get_mut(i));
                let count = count_records(p.records.as_deref().unwrap_or_default());
                let refusal = match (next, count) {
                    (None, _) => Some((
                        UNKNOWN_TOPIC_OR_PARTITION,
                        format!("{}-{} does not exist", data.name.as_str(), p.index),
                    )),
                    (Some(_), Err(why)) => Some((CORRUPT_MESSAGE, why)),
                    (Some(next), Ok(count)) => {
                        r.base_offset = *next;
                        *next += count.records as i64;
                        total.records += count.records;
                        total.batches += count.batches;
                        total.bytes += count.bytes;
                        None
                    }
                };
                if let Some((code, why)) = refusal {
                    r.error_code = code;
                    r.base_offset = -1;
                    refused += 1;
                    if version >= 8 {
                        r.error_message = Some(StrBytes::from_string(why.clone()));
                    }
                    let _ = self.first_refusal.set(why);
                }
                topic_response.partition_responses.push(r);
            }
            response.responses.push(topic_response);
        }
        drop(topics);
        let c = &self.counters;
        c.records.fetch_add(total.records, Ordering::Relaxed);
        c.batches.fetch_add(total.batches, Ordering::Relaxed);
        c.record_bytes.fetch_add(total.bytes, Ordering::Relaxed);
        c.refused_partitions.fetch_add(refused, Ordering::Relaxed);
        (request.acks != 0).then_some(response)
    }
}

/// Appends a size-prefixed response frame (header and body) to `out`; on an error `out` is
/// left as it was.
pub fn write_response<R: Encodable + HeaderVersion>(
    out: &mut BytesMut,
    correlation_id: i32,
    version: i16,
    response: &R,
) -> Result<()> {
    let start = out.len();
    out.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let encoded = header
        .encode(out, R::header_version(version))
        .and_then(|()| response.encode(out, version));
    if let Err(e) = encoded {
        out.truncate(start);
        bail!("cannot encode a v{version} response: {e}");
    }
    let size = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}
