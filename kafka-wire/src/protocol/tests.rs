use super::*;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, ResponseHeader};
use kafka_protocol::protocol::decode_request_header_from_buffer;

fn client_id() -> StrBytes {
    StrBytes::from_static_str("test-client")
}

#[test]
fn request_frames_carry_size_header_and_body() {
    let mut buf = BytesMut::new();
    for version in [1i16, 4, 9, 12] {
        let mut req = MetadataRequest::default();
        // Only v4+ can say "do not auto-create"; earlier versions must leave the default.
        req.allow_auto_topic_creation = version < 4;
        buf.clear();
        encode_request(&mut buf, &req, version, 42, &client_id()).unwrap();
        let size = i32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        assert_eq!(size, buf.len() - 4, "v{version}");
        let mut body = buf.clone().freeze().slice(4..);
        let header = decode_request_header_from_buffer(&mut body).unwrap();
        assert_eq!(header.request_api_key, ApiKey::Metadata as i16);
        assert_eq!(header.request_api_version, version);
        assert_eq!(header.correlation_id, 42);
        assert_eq!(header.client_id.as_deref(), Some("test-client"));
        let decoded = MetadataRequest::decode(&mut body, version).unwrap();
        assert_eq!(decoded, req);
        assert!(body.is_empty());
    }
}

#[test]
fn split_frame_waits_for_whole_frames_and_consumes_nothing_before() {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&5i32.to_be_bytes());
    buf.extend_from_slice(b"abc");
    assert!(split_frame(&mut buf).unwrap().is_none());
    assert_eq!(buf.len(), 7);
    buf.extend_from_slice(b"de");
    buf.extend_from_slice(&1i32.to_be_bytes());
    assert_eq!(&split_frame(&mut buf).unwrap().unwrap()[..], b"abcde");
    assert!(split_frame(&mut buf).unwrap().is_none());
    buf.extend_from_slice(b"z");
    assert_eq!(&split_frame(&mut buf).unwrap().unwrap()[..], b"z");
    assert!(buf.is_empty());
}

#[test]
fn split_frame_rejects_negative_and_oversized_sizes() {
    let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
    assert!(matches!(
        split_frame(&mut buf),
        Err(WireError::NegativeSize(-1))
    ));
    let mut buf = BytesMut::from(&((MAX_RESPONSE_BYTES + 1) as i32).to_be_bytes()[..]);
    assert!(matches!(
        split_frame(&mut buf),
        Err(WireError::FrameTooLarge(_))
    ));
}

#[test]
fn responses_decode_with_their_header_version() {
    let mut response = MetadataResponse::default();
    response.throttle_time_ms = 7;
    for version in [3i16, 9, 12] {
        let mut buf = BytesMut::new();
        let mut header = ResponseHeader::default();
        header.correlation_id = 9;
        header
            .encode(&mut buf, MetadataResponse::header_version(version))
            .unwrap();
        response.encode(&mut buf, version).unwrap();
        let frame = buf.freeze();
        assert_eq!(peek_correlation_id(&frame).unwrap(), 9);
        let decoded = decode_response::<MetadataRequest>(frame, version).unwrap();
        assert_eq!(decoded.throttle_time_ms, 7);
    }
}

#[test]
fn in_flight_matches_responses_in_order() {
    let mut q: InFlight<&str> = InFlight::default();
    let a = q.next_correlation_id();
    let b = q.next_correlation_id();
    q.push(Pending {
        correlation_id: a,
        reply: "a",
    });
    q.push(Pending {
        correlation_id: b,
        reply: "b",
    });
    assert!(matches!(
        q.complete(b),
        Err(WireError::CorrelationMismatch { got, expected }) if got == b && expected == a
    ));
    assert_eq!(q.complete(a).unwrap().unwrap().reply, "a");
    assert_eq!(q.complete(b).unwrap().unwrap().reply, "b");
    assert!(matches!(q.complete(99), Err(WireError::Unsolicited(99))));
}

/// Kafka never answers an acks=0 Produce; tansu 0.6 does. Such an answer is dropped, with
/// the requests sent before it, and the connection goes on; anything else still breaks it.
#[test]
fn answers_to_requests_that_expect_none_are_dropped() {
    let mut q: InFlight<&str> = InFlight::default();
    let (one, two) = (q.next_correlation_id(), q.next_correlation_id());
    q.push_unanswered(one);
    q.push_unanswered(two);
    let waiting = q.next_correlation_id();
    q.push(Pending {
        correlation_id: waiting,
        reply: "metadata",
    });
    // `one` went unanswered (as Kafka does); `two` is answered (as tansu does).
    assert!(q.complete(two).unwrap().is_none());
    assert!(
        matches!(q.complete(one), Err(WireError::CorrelationMismatch { got, .. }) if got == one),
        "answered out of order"
    );
    assert_eq!(q.complete(waiting).unwrap().unwrap().reply, "metadata");
    assert!(
        matches!(q.complete(two), Err(WireError::Unsolicited(_))),
        "answered twice"
    );

    // Only the latest ones are remembered, so a broker that never answers costs nothing.
    for _ in 0..UNANSWERED_KEPT + 1 {
        let id = q.next_correlation_id();
        q.push_unanswered(id);
    }
    assert_eq!(q.unanswered.len(), UNANSWERED_KEPT);
    let oldest = waiting + 1;
    assert!(q.complete(oldest).is_err(), "forgotten");
    assert!(q.complete(oldest + 1).unwrap().is_none());
}

#[test]
fn correlation_ids_wrap_without_going_negative() {
    let mut q: InFlight<()> = InFlight {
        next_correlation_id: i32::MAX,
        ..InFlight::default()
    };
    assert_eq!(q.next_correlation_id(), i32::MAX);
    assert_eq!(q.next_correlation_id(), 0);
}

#[test]
fn drain_hands_back_every_waiting_request() {
    let mut q: InFlight<u8> = InFlight::default();
    for i in 0..3 {
        let id = q.next_correlation_id();
        q.push(Pending {
            correlation_id: id,
            reply: i,
        });
    }
    let replies: Vec<u8> = q.drain().map(|p| p.reply).collect();
    assert_eq!(replies, vec![0, 1, 2]);
    assert_eq!(q.len(), 0);
}

#[test]
fn versions_are_the_highest_both_sides_support() {
    let mut response = ApiVersionsResponse::default();
    let mut add = |key: ApiKey, min: i16, max: i16| {
        let mut v = ApiVersion::default();
        v.api_key = key as i16;
        v.min_version = min;
        v.max_version = max;
        response.api_keys.push(v);
    };
    add(ApiKey::Produce, 0, 11);
    add(ApiKey::Fetch, 0, 17);
    add(ApiKey::Metadata, 0, 0);
    add(ApiKey::InitProducerId, 0, 5);
    let v = ApiVersions::from_response(&response);
    assert_eq!(v.version(ApiKey::Produce), Some(11));
    assert_eq!(v.version(ApiKey::Fetch), Some(11));
    assert_eq!(v.version(ApiKey::Metadata), None, "below our minimum");
    assert_eq!(v.version(ApiKey::InitProducerId), Some(4));
    assert_eq!(v.version(ApiKey::ListOffsets), None, "not offered");
    assert_eq!(
        ApiVersions::unnegotiated().version(ApiKey::ApiVersions),
        Some(0)
    );
}
