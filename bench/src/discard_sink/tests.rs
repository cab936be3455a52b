//! The sink's request handling without a network: requests encoded by `kafka-protocol`,
//! RecordBatches built by kafka-wire, responses decoded by `kafka-protocol`.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    FetchRequest, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    InitProducerIdRequest, InitProducerIdResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_wire::record::{BatchBuilder, Compression, ProducerFields};

use super::handler::{count_records, SUPPORTED};
use super::{split_frame, SinkState};

fn local() -> SocketAddr {
    "127.0.0.1:9092".parse().expect("an address")
}

/// A request frame as the driver hands it over: header and body, no size prefix.
fn frame<R: Request>(request: &R, version: i16, correlation_id: i32) -> Bytes {
    let mut buf = BytesMut::new();
    let mut header = RequestHeader::default();
    header.request_api_key = R::KEY;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str("test"));
    header
        .encode(&mut buf, R::header_version(version))
        .expect("header encodes");
    request.encode(&mut buf, version).expect("request encodes");
    buf.freeze()
}

/// Handles `request` and decodes the one response it must get.
fn call<R: Request>(sink: &SinkState, request: &R, version: i16) -> R::Response {
    let mut out = BytesMut::new();
    sink.handle(frame(request, version, 42), local(), &mut out)
        .expect("handled");
    let mut frame = split_frame(&mut out)
        .expect("a valid frame")
        .expect("a whole response");
    assert!(out.is_empty(), "exactly one response");
    let header = ResponseHeader::decode(
        &mut frame,
        <R::Response as HeaderVersion>::header_version(version),
    )
    .expect("response header decodes");
    assert_eq!(header.correlation_id, 42);
    let response = R::Response::decode(&mut frame, version).expect("response decodes");
    assert!(frame.is_empty(), "nothing after the response body");
    response
}

fn batch(records: u64) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None, 1024 * 1024);
    for i in 0..records {
        b.try_push(
            1_700_000_000_000 + i as i64,
            Some(b"key"),
            Some(&[b'v'; 100]),
            &[],
        )
        .expect("room in the batch");
    }
    b.finish(ProducerFields {
        producer_id: 1,
        producer_epoch: 0,
        base_sequence: 0,
        transactional: false,
    })
    .expect("batch encodes")
}

fn produce_request(acks: i16, partitions: &[(i32, Bytes)]) -> ProduceRequest {
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_static_str("t"));
    for (index, records) in partitions {
        let mut p = PartitionProduceData::default();
        p.index = *index;
        p.records = Some(records.clone());
        topic.partition_data.push(p);
    }
    let mut request = ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = 30_000;
    request.topic_data.push(topic);
    request
}

/// (partition, error code, base offset) of each partition in a response.
fn outcomes(response: &ProduceResponse) -> Vec<(i32, i16, i64)> {
    response
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter())
        .map(|p| (p.index, p.error_code, p.base_offset))
        .collect()
}

#[test]
fn produce_acknowledges_every_partition_with_advancing_offsets() {
    let sink = SinkState::new(3);
    // Two batches in partition 1 of one request: counted together.
    let two = [batch(3), batch(4)].concat();
    let request = produce_request(-1, &[(0, batch(5)), (1, Bytes::from(two))]);
    let first = call(&sink, &request, 9);
    assert_eq!(first.responses[0].name.as_str(), "t");
    assert_eq!(outcomes(&first), [(0, 0, 0), (1, 0, 0)]);
    let second = call(&sink, &request, 9);
    assert_eq!(outcomes(&second), [(0, 0, 5), (1, 0, 7)]);
    let counts = sink.counts();
    assert_eq!(counts.records, 24);
    assert_eq!(counts.batches, 6);
    assert_eq!(counts.produce_requests, 2);
    assert!(counts.record_bytes > 24 * 100);
}

#[test]
fn produce_with_acks_0_gets_no_response_but_is_counted() {
    let sink = SinkState::new(3);
    let mut out = BytesMut::new();
    let request = produce_request(0, &[(2, batch(10))]);
    sink.handle(frame(&request, 7, 1), local(), &mut out)
        .expect("handled");
    assert!(out.is_empty());
    assert_eq!(sink.counts().records, 10);
    // The offsets moved all the same.
    let response = call(&sink, &produce_request(1, &[(2, batch(1))]), 7);
    assert_eq!(outcomes(&response), [(2, 0, 10)]);
}

#[test]
fn produce_to_a_missing_partition_or_with_bad_records_is_refused_per_partition() {
    let sink = SinkState::new(2);
    let cut = batch(2).slice(..40);
    let request = produce_request(-1, &[(5, batch(1)), (0, cut), (1, batch(2))]);
    let response = call(&sink, &request, 8);
    let o = outcomes(&response);
    assert_eq!(o[0].1, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    assert_eq!(o[1].1, 2, "CORRUPT_MESSAGE");
    assert_eq!(o[2], (1, 0, 0));
    let message = &response.responses[0].partition_responses[1].error_message;
    assert!(message.as_deref().is_some_and(|m| m.contains("cut short")));
    assert_eq!(o[0].2, -1);
    assert_eq!(sink.counts().records, 2);
    assert_eq!(sink.counts().refused_partitions, 2);
    assert!(sink.first_refusal().is_some_and(|w| w.contains("t-5")));
}

#[test]
fn record_counts_come_from_the_batch_headers() {
    let b = batch(17);
    let count = count_records(&b).expect("a valid batch");
    assert_eq!(
        (count.records, count.batches, count.bytes),
        (17, 1, b.len() as u64)
    );
    assert!(count_records(&[]).is_err());
    assert!(count_records(&b[..b.len() - 1]).is_err());
    let mut old = b.to_vec();
    old[16] = 1;
    assert!(count_records(&old).unwrap_err().contains("magic"));
}

#[test]
fn every_advertised_version_round_trips() {
    let sink = SinkState::new(3);
    for (api, min, max) in SUPPORTED {
        for v in min..=max {
            match api {
                ApiKey::Produce => {
                    let r = call(&sink, &produce_request(-1, &[(0, batch(1))]), v);
                    assert_eq!(outcomes(&r)[0].1, 0, "Produce v{v}");
                }
                ApiKey::Fetch => {
                    let mut request = FetchRequest::default();
                    request.max_wait_ms = 500;
                    request.max_bytes = 1 << 20;
                    let mut t = FetchTopic::default();
                    t.topic = TopicName(StrBytes::from_static_str("t"));
                    let mut p = FetchPartition::default();
                    p.partition = 0;
                    p.partition_max_bytes = 1 << 20;
                    t.partitions.push(p);
                    request.topics.push(t);
                    let r: FetchResponse = call(&sink, &request, v);
                    let p = &r.responses[0].partitions[0];
                    assert_eq!(p.error_code, 0, "Fetch v{v}");
                    assert!(
                        p.high_watermark > 0,
                        "Fetch v{v}: the records produced above"
                    );
                    assert!(p.records.as_ref().is_none_or(|r| r.is_empty()));
                }
                ApiKey::Metadata => {
                    let mut request = MetadataRequest::default();
                    let mut t = MetadataRequestTopic::default();
                    t.name = Some(TopicName(StrBytes::from_static_str("meta")));
                    request.topics = Some(vec![t]);
                    let r: MetadataResponse = call(&sink, &request, v);
                    assert_eq!(r.brokers[0].port, 9092, "Metadata v{v}");
                    assert_eq!(r.topics[0].partitions.len(), 3, "Metadata v{v}");
                    assert_eq!(r.topics[0].partitions[2].leader_id.0, 1, "Metadata v{v}");
                }
                ApiKey::ApiVersions => {
                    let mut request = ApiVersionsRequest::default();
                    if v >= 3 {
                        request.client_software_name = StrBytes::from_static_str("test");
                        request.client_software_version = StrBytes::from_static_str("1");
                    }
                    let r: ApiVersionsResponse = call(&sink, &request, v);
                    assert_eq!(r.error_code, 0);
                    assert_eq!(r.api_keys.len(), SUPPORTED.len(), "ApiVersions v{v}");
                }
                ApiKey::InitProducerId => {
                    let mut request = InitProducerIdRequest::default();
                    request.transaction_timeout_ms = 60_000;
                    let r: InitProducerIdResponse = call(&sink, &request, v);
                    assert!(r.producer_id.0 > 0, "InitProducerId v{v}");
                    assert_eq!(r.producer_epoch, 0);
                }
                ApiKey::FindCoordinator => {
                    let mut request = FindCoordinatorRequest::default();
                    if v >= 4 {
                        request.coordinator_keys = vec![StrBytes::from_static_str("g")];
                    } else {
                        request.key = StrBytes::from_static_str("g");
                    }
                    let r: FindCoordinatorResponse = call(&sink, &request, v);
                    let port = if v >= 4 {
                        r.coordinators[0].port
                    } else {
                        r.port
                    };
                    assert_eq!(port, 9092, "FindCoordinator v{v}");
                }
                ApiKey::CreateTopics => {
                    let mut request = CreateTopicsRequest::default();
                    let mut t = CreatableTopic::default();
                    t.name = TopicName(StrBytes::from_string(format!("created-{v}")));
                    t.num_partitions = 6;
                    t.replication_factor = 1;
                    request.topics.push(t);
                    let r: CreateTopicsResponse = call(&sink, &request, v);
                    assert_eq!(r.topics[0].error_code, 0, "CreateTopics v{v}");
                }
                other => panic!("no test for {other:?}"),
            }
        }
    }
}

#[test]
fn created_topics_keep_their_partition_count() {
    let sink = SinkState::new(3);
    let mut request = CreateTopicsRequest::default();
    let mut t = CreatableTopic::default();
    t.name = TopicName(StrBytes::from_static_str("six"));
    t.num_partitions = 6;
    request.topics.push(t);
    let created: CreateTopicsResponse = call(&sink, &request, 7);
    assert_eq!(created.topics[0].num_partitions, 6);
    let mut metadata = MetadataRequest::default();
    let mut t = MetadataRequestTopic::default();
    t.name = Some(TopicName(StrBytes::from_static_str("six")));
    metadata.topics = Some(vec![t]);
    let r: MetadataResponse = call(&sink, &metadata, 12);
    assert_eq!(r.topics[0].partitions.len(), 6);
    assert_eq!(r.topics[0].topic_id, created.topics[0].topic_id);
    assert!(!r.topics[0].topic_id.is_nil());
}

#[test]
fn a_newer_api_versions_request_gets_the_list_in_v0() {
    let sink = SinkState::new(3);
    let mut out = BytesMut::new();
    // A v4 request header is v2 (flexible); the body is empty apart from tagged fields.
    let mut request = ApiVersionsRequest::default();
    request.client_software_name = StrBytes::from_static_str("test");
    request.client_software_version = StrBytes::from_static_str("1");
    sink.handle(frame(&request, 4, 7), local(), &mut out)
        .expect("handled");
    let mut response = split_frame(&mut out).expect("valid").expect("whole");
    let header = ResponseHeader::decode(&mut response, 0).expect("header");
    assert_eq!(header.correlation_id, 7);
    let body = ApiVersionsResponse::decode(&mut response, 0).expect("v0 body");
    assert_eq!(body.error_code, 35, "UNSUPPORTED_VERSION");
    assert_eq!(body.api_keys.len(), SUPPORTED.len());
}

#[test]
fn unsupported_apis_and_versions_are_errors() {
    let sink = SinkState::new(3);
    let mut out = BytesMut::new();
    let list = kafka_protocol::messages::ListOffsetsRequest::default();
    let err = sink
        .handle(frame(&list, 5, 1), local(), &mut out)
        .unwrap_err();
    assert!(err.to_string().contains("ListOffsets"), "{err}");
    let err = sink
        .handle(frame(&produce_request(1, &[]), 13, 1), local(), &mut out)
        .unwrap_err();
    assert!(err.to_string().contains("v3-v12"), "{err}");
    assert!(out.is_empty());
}

#[test]
fn frames_are_split_only_when_whole() {
    let mut buf = BytesMut::from(&[0, 0, 0, 3, 1, 2][..]);
    assert!(split_frame(&mut buf).expect("valid").is_none());
    assert_eq!(buf.len(), 6, "nothing consumed");
    buf.extend_from_slice(&[3, 0, 0, 0, 1, 9]);
    assert_eq!(&split_frame(&mut buf).unwrap().unwrap()[..], [1, 2, 3]);
    assert_eq!(&split_frame(&mut buf).unwrap().unwrap()[..], [9]);
    assert!(split_frame(&mut buf).unwrap().is_none());
    let mut huge = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
    assert!(split_frame(&mut huge).is_err());
    let mut negative = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
    assert!(split_frame(&mut negative).is_err());
}
