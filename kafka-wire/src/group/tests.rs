use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, ResponseHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::assign::{
    assignment_bytes, parse_assignment, parse_subscription, subscription_bytes, Assignor,
};
use crate::protocol::decode_response;

fn members(spec: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    spec.iter()
        .map(|(m, topics)| {
            (
                m.to_string(),
                topics.iter().map(|t| t.to_string()).collect(),
            )
        })
        .collect()
}

fn counts(spec: &[(&str, i32)]) -> BTreeMap<String, i32> {
    spec.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

fn of(out: &BTreeMap<String, BTreeMap<String, Vec<i32>>>, member: &str, topic: &str) -> Vec<i32> {
    out[member].get(topic).cloned().unwrap_or_default()
}

#[test]
fn range_gives_consecutive_ranges_the_first_members_one_more() {
    // Members are ordered by id, whatever order the coordinator listed them in.
    let m = members(&[("b", &["t"]), ("a", &["t"])]);
    let out = Assignor::Range.assign(&m, &counts(&[("t", 5)]));
    assert_eq!(of(&out, "a", "t"), [0, 1, 2]);
    assert_eq!(of(&out, "b", "t"), [3, 4]);

    // More members than partitions: the last ones get nothing, but are answered.
    let m = members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
    let out = Assignor::Range.assign(&m, &counts(&[("t", 2)]));
    assert_eq!(of(&out, "a", "t"), [0]);
    assert_eq!(of(&out, "b", "t"), [1]);
    assert!(out["c"].is_empty());
}

#[test]
fn roundrobin_deals_partitions_to_the_subscribers_of_each_topic() {
    let m = members(&[("a", &["t"]), ("b", &["t"])]);
    let out = Assignor::RoundRobin.assign(&m, &counts(&[("t", 5)]));
    assert_eq!(of(&out, "a", "t"), [0, 2, 4]);
    assert_eq!(of(&out, "b", "t"), [1, 3]);

    // Only "b" wants "u": it gets all of it, and "t" is still shared.
    let m = members(&[("a", &["t"]), ("b", &["t", "u"])]);
    let out = Assignor::RoundRobin.assign(&m, &counts(&[("t", 2), ("u", 2)]));
    assert_eq!(of(&out, "a", "t"), [0]);
    assert_eq!(of(&out, "b", "t"), [1]);
    assert_eq!(of(&out, "b", "u"), [0, 1]);
    assert!(!out["a"].contains_key("u"));
}

#[test]
fn every_partition_goes_to_exactly_one_subscriber() {
    for assignor in Assignor::ALL {
        for n_members in 1..6 {
            for partitions in 0..12 {
                let names: Vec<String> = (0..n_members).map(|i| format!("m{i}")).collect();
                let m: Vec<(String, Vec<String>)> = names
                    .iter()
                    .map(|n| (n.clone(), vec!["t".to_owned()]))
                    .collect();
                let out = assignor.assign(&m, &counts(&[("t", partitions)]));
                assert_eq!(out.len(), n_members);
                let mut all: Vec<i32> = out.values().flat_map(of_any).collect();
                all.sort();
                assert_eq!(all, (0..partitions).collect::<Vec<_>>(), "{assignor:?}");
                // Balanced: sizes differ by at most one.
                let sizes: Vec<usize> = out.values().map(|a| of_any(a).len()).collect();
                let (min, max) = (sizes.iter().min(), sizes.iter().max());
                assert!(max.unwrap() - min.unwrap() <= 1, "{assignor:?} {sizes:?}");
            }
        }
    }
}

fn of_any(a: &BTreeMap<String, Vec<i32>>) -> Vec<i32> {
    a.get("t").cloned().unwrap_or_default()
}

#[test]
fn assignor_names_are_the_java_ones() {
    assert_eq!(Assignor::from_name("range"), Some(Assignor::Range));
    assert_eq!(
        Assignor::from_name("roundrobin"),
        Some(Assignor::RoundRobin)
    );
    assert_eq!(Assignor::from_name("cooperative-sticky"), None);
}

/// ConsumerProtocolSubscription v0 for topic "mqtt", laid out by hand from the Kafka
/// protocol: version, topics array, nullable user data.
const SUBSCRIPTION_V0: &[u8] = &[
    0, 0, // version 0
    0, 0, 0, 1, // one topic
    0, 4, b'm', b'q', b't', b't', // "mqtt"
    0xff, 0xff, 0xff, 0xff, // user data: null
];

#[test]
fn subscription_is_written_as_v0_and_read_at_any_version() {
    assert_eq!(&subscription_bytes(&["mqtt".into()])[..], SUBSCRIPTION_V0);
    assert_eq!(
        parse_subscription(&Bytes::from_static(SUBSCRIPTION_V0)).unwrap(),
        ["mqtt"]
    );
    // A Java consumer writes v1+ (owned partitions, then generation and rack in v2/v3); a
    // version newer than we know is read as the newest we know (fields are appended).
    let mut v1 = SUBSCRIPTION_V0.to_vec();
    v1[1] = 1;
    v1.extend_from_slice(&[
        0, 0, 0, 1, 0, 4, b'm', b'q', b't', b't', 0, 0, 0, 1, 0, 0, 0, 7,
    ]);
    assert_eq!(
        parse_subscription(&Bytes::from(v1.clone())).unwrap(),
        ["mqtt"]
    );
    let mut v3 = v1;
    v3.extend_from_slice(&[0, 0, 0, 3, 0xff, 0xff]); // generation 3, rack null
    v3[1] = 9;
    assert_eq!(parse_subscription(&Bytes::from(v3)).unwrap(), ["mqtt"]);
    // Garbage is an error, not a panic.
    assert!(parse_subscription(&Bytes::from_static(&[0])).is_err());
    assert!(parse_subscription(&Bytes::from_static(&[0, 0, 0, 0, 0, 9])).is_err());
    assert!(parse_subscription(&Bytes::from_static(&[0xff, 0xff])).is_err());
}

#[test]
fn assignment_round_trips_and_matches_the_wire_layout() {
    let mut a = BTreeMap::new();
    a.insert("mqtt".to_owned(), vec![0, 2]);
    let bytes = assignment_bytes(&a);
    let expected: &[u8] = &[
        0, 0, // version 0
        0, 0, 0, 1, // one topic
        0, 4, b'm', b'q', b't', b't', // "mqtt"
        0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, // partitions [0, 2]
        0xff, 0xff, 0xff, 0xff, // user data: null
    ];
    assert_eq!(&bytes[..], expected);
    assert_eq!(parse_assignment(&bytes).unwrap(), a);
    // A leader that gives a member nothing may send no bytes at all.
    assert!(parse_assignment(&Bytes::new()).unwrap().is_empty());
}

#[test]
fn a_recorded_join_group_response_decodes_with_member_subscriptions() {
    // A JoinGroup v5 response as a coordinator sends it to the leader: header, then body.
    let mut response = JoinGroupResponse::default();
    response.generation_id = 7;
    response.protocol_name = Some(StrBytes::from_static_str("range"));
    response.leader = StrBytes::from_static_str("m-1");
    response.member_id = StrBytes::from_static_str("m-1");
    for id in ["m-1", "m-2"] {
        let mut m = JoinGroupResponseMember::default();
        m.member_id = StrBytes::from_static_str(id);
        m.metadata = Bytes::from_static(SUBSCRIPTION_V0);
        response.members.push(m);
    }
    let mut frame = bytes::BytesMut::new();
    let mut header = ResponseHeader::default();
    header.correlation_id = 3;
    header.encode(&mut frame, 0).unwrap();
    response.encode(&mut frame, 5).unwrap();

    let decoded = decode_response::<JoinGroupRequest>(frame.freeze(), 5).unwrap();
    assert_eq!(decoded.generation_id, 7);
    let subs: Vec<(String, Vec<String>)> = decoded
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                parse_subscription(&m.metadata).unwrap(),
            )
        })
        .collect();
    let out = Assignor::Range.assign(&subs, &counts(&[("mqtt", 3)]));
    assert_eq!(of(&out, "m-1", "mqtt"), [0, 1]);
    assert_eq!(of(&out, "m-2", "mqtt"), [2]);
}
