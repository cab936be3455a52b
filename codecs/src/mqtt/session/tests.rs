//! Session state machine tests with a hand-driven clock (milliseconds).

use bytes::Bytes;

use super::*;
use crate::mqtt::{
    ConnectProperties, DisconnectProperties, PublishProperties, Subscription, SubscriptionOptions,
    TopicFilter,
};

fn s(text: &str) -> MqttString {
    MqttString::try_from(text).expect("test string")
}

fn connect(version: ProtocolVersion, keep_alive: u16, will: bool) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive,
        client_id: s("c1"),
        will: will.then(|| Will {
            topic: s("will/topic"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
        }),
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }))
}

fn publish(qos: QoS, packet_id: u16, topic: &str) -> Packet {
    Packet::Publish(Publish {
        qos,
        packet_id,
        topic: s(topic),
        payload: Bytes::from_static(b"x"),
        ..Publish::default()
    })
}

fn with_alias(mut packet: Packet, alias: u16) -> Packet {
    if let Packet::Publish(p) = &mut packet {
        p.properties = PublishProperties {
            topic_alias: Some(alias),
            ..Default::default()
        }
        .into();
    }
    packet
}

/// A session that accepted a CONNECT at t=0.
fn connected(
    version: ProtocolVersion,
    keep_alive: u16,
    will: bool,
    config: SessionConfig,
) -> Session {
    let mut session = Session::new(config, 0);
    let mut out = Vec::new();
    session.handle(0, connect(version, keep_alive, will), &mut out);
    assert!(
        matches!(out.as_slice(), [Effect::Authenticate(_)]),
        "{out:?}"
    );
    out.clear();
    session.accept(0, Accept::default(), &mut out);
    assert!(
        matches!(out.as_slice(), [Effect::Send(Packet::ConnAck(_))]),
        "{out:?}"
    );
    session
}

fn run(session: &mut Session, now: u64, packet: Packet) -> Vec<Effect> {
    let mut out = Vec::new();
    session.handle(now, packet, &mut out);
    out
}

fn close(code: u8) -> Effect {
    Effect::Close { reason_code: code }
}

fn disconnect(code: u8) -> Effect {
    Effect::Send(Packet::Disconnect(Disconnect::new(code)))
}

#[test]
fn accept_sends_v5_connack_with_limits() {
    let mut session = Session::new(SessionConfig::default(), 0);
    let mut out = Vec::new();
    session.handle(0, connect(ProtocolVersion::V5, 10, false), &mut out);
    out.clear();
    let accept = Accept {
        session_present: true,
        assigned_client_id: Some(s("auto-1")),
    };
    session.accept(5, accept, &mut out);
    let [Effect::Send(Packet::ConnAck(connack))] = out.as_slice() else {
        panic!("{out:?}");
    };
    assert!(connack.session_present);
    assert_eq!(connack.code, 0);
    assert_eq!(connack.properties.receive_maximum, Some(64));
    assert_eq!(connack.properties.topic_alias_maximum, Some(16));
    assert_eq!(connack.properties.maximum_packet_size, Some(1 << 20));
    assert_eq!(
        connack.properties.assigned_client_identifier,
        Some(s("auto-1"))
    );
    assert_eq!(session.deadline(), Some(5 + 15_000));
    assert!(session.is_connected());
}

#[test]
fn refuse_maps_reason_to_v3_return_code() {
    let mut session = Session::new(SessionConfig::default(), 0);
    let mut out = Vec::new();
    session.handle(0, connect(ProtocolVersion::V3_1_1, 10, true), &mut out);
    out.clear();
    session.refuse(reason::BAD_USER_NAME_OR_PASSWORD, &mut out);
    let refusal = ConnAck {
        code: 4,
        ..ConnAck::default()
    };
    // The will of a refused connection is never published.
    assert_eq!(
        out,
        vec![
            Effect::Send(Packet::ConnAck(Box::new(refusal))),
            close(0x86)
        ]
    );
    assert!(session.is_closed());
}

#[test]
fn keepalive_deadline_is_one_and_a_half_keepalives_after_last_packet() {
    let mut session = connected(ProtocolVersion::V5, 10, true, SessionConfig::default());
    assert_eq!(session.deadline(), Some(15_000));
    assert_eq!(
        run(&mut session, 9_000, Packet::PingReq),
        vec![Effect::Send(Packet::PingResp)]
    );
    assert_eq!(session.deadline(), Some(24_000));
    let mut out = Vec::new();
    session.on_timeout(23_999, &mut out);
    assert!(out.is_empty());
    session.on_timeout(24_000, &mut out);
    assert!(matches!(
        out[0],
        Effect::Send(Packet::Disconnect(Disconnect {
            reason_code: 0x8D,
            ..
        }))
    ));
    assert!(matches!(out[1], Effect::PublishWill(_)));
    assert_eq!(out[2], close(0x8D));
    assert_eq!(out.len(), 3);
}

#[test]
fn keepalive_timeout_on_v3_closes_without_disconnect() {
    let mut session = connected(ProtocolVersion::V3_1_1, 2, false, SessionConfig::default());
    let mut out = Vec::new();
    session.on_timeout(3_000, &mut out);
    assert_eq!(out, vec![close(0x8D)]);
}

#[test]
fn keepalive_zero_has_no_deadline() {
    let session = connected(ProtocolVersion::V5, 0, false, SessionConfig::default());
    assert_eq!(session.deadline(), None);
}

#[test]
fn connect_timeout_closes() {
    let mut session = Session::new(SessionConfig::default(), 100);
    assert_eq!(session.deadline(), Some(10_100));
    let mut out = Vec::new();
    session.on_timeout(10_100, &mut out);
    assert_eq!(out, vec![close(0x8D)]);
}

#[test]
fn qos0_publishes_without_tracking() {
    let mut session = connected(ProtocolVersion::V5, 0, false, SessionConfig::default());
    let out = run(&mut session, 1, publish(QoS::AtMostOnce, 0, "a/b"));
    assert!(matches!(&out[..], [Effect::Publish(p)] if p.topic == "a/b"));
    assert_eq!(session.in_flight(), 0);
}

#[test]
fn qos1_puback_after_kafka_ack() {
    let mut session = connected(ProtocolVersion::V5, 0, false, SessionConfig::default());
    let out = run(&mut session, 1, publish(QoS::AtLeastOnce, 9, "a"));
    assert!(matches!(&out[..], [Effect::Publish(p)] if p.packet_id == 9));
    // A retransmission while Kafka still holds it is not published twice.
    assert!(run(&mut session, 2, publish(QoS::AtLeastOnce, 9, "a")).is_empty());
    let mut out = Vec::new();
    session.on_kafka_ack(9, KafkaAck::Written, &mut out);
    assert_eq!(out, vec![Effect::Send(Packet::PubAck(PubAck::new(9)))]);
    assert_eq!(session.in_flight(), 0);
    // A late second ack for the same id is ignored.
    out.clear();
    session.on_kafka_ack(9, KafkaAck::Written, &mut out);
    assert!(out.is_empty());
}

#[test]
fn qos1_kafka_failure_carries_reason_on_v5() {
    let mut session = connected(ProtocolVersion::V5, 0, false, SessionConfig::default());
    run(&mut session, 1, publish(QoS::AtLeastOnce, 3, "a"));
    let mut out = Vec::new();
    session.on_kafka_ack(3, KafkaAck::Failed { reason_code: 0x97 }, &mut out);
    let mut nack = PubAck::new(3);
    nack.reason_code = 0x97;
    assert_eq!(out, vec![Effect::Send(Packet::PubAck(nack))]);
}

#[test]
fn qos1_kafka_failure_closes_v3() {
    let mut session = connected(ProtocolVersion::V3_1_1, 0, true, SessionConfig::default());
    run(&mut session, 1, publish(QoS::AtLeastOnce, 3, "a"));
    let mut out = Vec::new();
    session.on_kafka_ack(3, KafkaAck::Failed { reason_code: 0x80 }, &mut out);
    assert!(matches!(out[0], Effect::PublishWill(_)));
    assert_eq!(out[1], close(0x80));
}

#[test]
fn qos2_exactly_once_flow() {
    let mut session = connected(ProtocolVersion::V5, 0, false, SessionConfig::default());
    let out = run(&mut session, 1, publish(QoS::ExactlyOnce, 7, "a"));
    assert!(matches!(&out[..], [Effect::Publish(p)] if p.packet_id == 7));
    assert!(run(&mut session, 2, publish(QoS::ExactlyOnce, 7, "a")).is_empty());
    let mut out = Vec::new();
    session.on_kafka_ack(7, KafkaAck::Written, &mut out);
    assert_eq!(out, vec![Effect::Send(Packet::PubRec(PubAck::new(7)))]);
    // Duplicate after PUBREC: PUBREC again, no second Kafka record.
    let out = run(&mut session, 3, publish(QoS::ExactlyOnce, 7, "a"));
    assert_eq!(out, vec![Effect::Send(Packet::PubRec(PubAck::new(7)))]);
    assert_eq!(session.in_flight(), 1);
    let out = run(&mut session, 4, Packet::PubRel(PubAck::new(7)));
    assert_eq!(out, vec![Effect::Send(Packet::PubComp(PubAck::new(7)))]);
    assert_eq!(session.in_flight(), 0);
    // A retransmitted PUBREL is completed with Packet Identifier not found.
    let out = run(&mut session, 5, Packet::PubRel(PubAck::new(7)));
    let mut comp = PubAck::new(7);
    comp.reason_code = 0x92;
    assert_eq!(out, vec![Effect::Send(Packet::PubComp(comp))]);
    // After completion the id is free: a new PUBLISH with it is a new message.
    let out = run(&mut session, 6, publish(QoS::ExactlyOnce, 7, "a"));
    assert!(matches!(&out[..], [Effect::Publish(_)]));
}

#[test]
fn qos2_failure_frees_the_id() {
    let mut session = connected(ProtocolVersion::V5, 0, false, SessionConfig::default());
    run(&mut session, 1, publish(QoS::ExactlyOnce, 7, "a"));
    let mut out = Vec::new();
    session.on_kafka_ack(7, KafkaAck::Failed { reason_code: 0x80 }, &mut out);
    let mut rec = PubAck::new(7);
    rec.reason_code = 0x80;
    assert_eq!(out, vec![Effect::Send(Packet::PubRec(rec))]);
    assert_eq!(session.in_flight(), 0);
}

#[test]
fn receive_maximum_exceeded_disconnects() {
    let config = SessionConfig {
        receive_maximum: 2,
        ..SessionConfig::default()
    };
    let mut session = connected(ProtocolVersion::V5, 0, true, config);
    run(&mut session, 1, publish(QoS::AtLeastOnce, 1, "a"));
    run(&mut session, 1, publish(QoS::ExactlyOnce, 2, "a"));
    // QoS 0 does not count.
    assert_eq!(
        run(&mut session, 1, publish(QoS::AtMostOnce, 0, "a")).len(),
        1
    );
    let out = run(&mut session, 1, publish(QoS::AtLeastOnce, 3, "a"));
    assert_eq!(out[0], disconnect(0x93));
    assert!(matches!(out[1], Effect::PublishWill(_)));
    assert_eq!(out[2], close(0x93));
}

#[test]
fn packet_id_reused_across_qos_is_in_use() {
    let mut session = connected(ProtocolVersion::V5, 0, false, SessionConfig::default());
    run(&mut session, 1, publish(QoS::AtLeastOnce, 1, "a"));
    let out = run(&mut session, 1, publish(QoS::ExactlyOnce, 1, "a"));
    assert_eq!(out, vec![disconnect(0x91), close(0x91)]);
}

#[test]
fn topic_alias_is_resolved() {
    let mut session = connected(ProtocolVersion::V5, 0, false, SessionConfig::default());
    let out = run(
        &mut session,
        1,
        with_alias(publish(QoS::AtMostOnce, 0, "long/topic"), 3),
    );
    assert!(
        matches!(&out[..], [Effect::Publish(p)] if p.topic == "long/topic" && p.properties.topic_alias.is_none())
    );
    let out = run(
        &mut session,
        2,
        with_alias(publish(QoS::AtMostOnce, 0, ""), 3),
    );
    assert!(matches!(&out[..], [Effect::Publish(p)] if p.topic == "long/topic"));
    // Re-binding an alias replaces the topic.
    run(
        &mut session,
        3,
        with_alias(publish(QoS::AtMostOnce, 0, "other"), 3),
    );
    let out = run(
        &mut session,
        4,
        with_alias(publish(QoS::AtMostOnce, 0, ""), 3),
    );
    assert!(matches!(&out[..], [Effect::Publish(p)] if p.topic == "other"));
}

#[test]
fn topic_alias_above_maximum_is_invalid() {
    let mut session = connected(ProtocolVersion::V5, 0, false, SessionConfig::default());
    let out = run(
        &mut session,
        1,
        with_alias(publish(QoS::AtMostOnce, 0, "a"), 17),
    );
    assert_eq!(out, vec![disconnect(0x94), close(0x94)]);
}

#[test]
fn unknown_topic_alias_is_protocol_error() {
    let mut session = connected(ProtocolVersion::V5, 0, false, SessionConfig::default());
    let out = run(
        &mut session,
        1,
        with_alias(publish(QoS::AtMostOnce, 0, ""), 2),
    );
    assert_eq!(out, vec![disconnect(0x82), close(0x82)]);
}

#[test]
fn normal_disconnect_discards_will() {
    let mut session = connected(ProtocolVersion::V5, 0, true, SessionConfig::default());
    let out = run(&mut session, 1, Packet::Disconnect(Disconnect::new(0)));
    assert_eq!(out, vec![close(0)]);
    assert!(session.is_closed());
    // Nothing happens after close.
    assert!(run(&mut session, 2, Packet::PingReq).is_empty());
}

#[test]
fn disconnect_with_will_publishes_it() {
    let mut session = connected(ProtocolVersion::V5, 0, true, SessionConfig::default());
    let out = run(&mut session, 1, Packet::Disconnect(Disconnect::new(0x04)));
    assert!(
        matches!(&out[..], [Effect::PublishWill(w), Effect::Close { reason_code: 4 }] if w.topic == "will/topic")
    );
}

#[test]
fn connection_lost_publishes_will() {
    let mut session = connected(ProtocolVersion::V3_1_1, 0, true, SessionConfig::default());
    let mut out = Vec::new();
    session.connection_lost(reason::MALFORMED_PACKET, &mut out);
    assert!(matches!(
        &out[..],
        [Effect::PublishWill(_), Effect::Close { reason_code: 0x81 }]
    ));
}

#[test]
fn disconnect_cannot_set_session_expiry_from_zero() {
    let mut session = connected(ProtocolVersion::V5, 0, false, SessionConfig::default());
    let packet = Packet::Disconnect(Disconnect {
        reason_code: 0,
        properties: DisconnectProperties {
            session_expiry_interval: Some(60),
            ..Default::default()
        }
        .into(),
    });
    assert_eq!(
        run(&mut session, 1, packet),
        vec![disconnect(0x82), close(0x82)]
    );
}

#[test]
fn subscribe_then_suback() {
    let mut session = connected(ProtocolVersion::V3_1_1, 0, false, SessionConfig::default());
    let subscribe = Subscribe {
        packet_id: 5,
        subscriptions: vec![Subscription {
            filter: TopicFilter::new(s("a/+")).expect("filter"),
            options: SubscriptionOptions::default(),
        }],
        properties: Default::default(),
    };
    let out = run(&mut session, 1, Packet::Subscribe(subscribe.clone()));
    assert_eq!(out, vec![Effect::Subscribe(subscribe)]);
    let mut out = Vec::new();
    session.suback(5, vec![1], &mut out);
    assert!(
        matches!(&out[..], [Effect::Send(Packet::SubAck(a))] if a.packet_id == 5 && a.reason_codes == [1])
    );
    out.clear();
    session.unsuback(6, vec![0], &mut out);
    assert!(matches!(&out[..], [Effect::Send(Packet::UnsubAck(a))] if a.reason_codes.is_empty()));
}

#[test]
fn outbound_acks_report_delivery() {
    let mut session = connected(ProtocolVersion::V5, 0, false, SessionConfig::default());
    let out = run(&mut session, 1, Packet::PubAck(PubAck::new(4)));
    assert_eq!(
        out,
        vec![Effect::Delivered {
            packet_id: 4,
            reason_code: 0
        }]
    );
    let out = run(&mut session, 1, Packet::PubRec(PubAck::new(5)));
    assert_eq!(out, vec![Effect::Send(Packet::PubRel(PubAck::new(5)))]);
    let out = run(&mut session, 1, Packet::PubComp(PubAck::new(5)));
    assert_eq!(
        out,
        vec![Effect::Delivered {
            packet_id: 5,
            reason_code: 0
        }]
    );
}

#[test]
fn packets_before_connack_are_refused() {
    let mut session = Session::new(SessionConfig::default(), 0);
    let mut out = Vec::new();
    session.handle(0, connect(ProtocolVersion::V5, 0, true), &mut out);
    out.clear();
    session.handle(1, Packet::PingReq, &mut out);
    // Not connected yet: no DISCONNECT, no will.
    assert_eq!(out, vec![close(0x82)]);
}

#[test]
fn server_packets_from_client_are_protocol_errors() {
    let mut session = connected(ProtocolVersion::V5, 0, false, SessionConfig::default());
    assert_eq!(
        run(&mut session, 1, Packet::PingResp),
        vec![disconnect(0x82), close(0x82)]
    );
}

#[test]
fn auth_without_method_is_protocol_error() {
    let mut session = connected(ProtocolVersion::V5, 0, false, SessionConfig::default());
    let out = run(&mut session, 1, Packet::Auth(Auth::default()));
    assert_eq!(out, vec![disconnect(0x82), close(0x82)]);
}

#[test]
fn shrink_keeps_what_is_in_flight_and_the_aliases() {
    let mut session = connected(ProtocolVersion::V5, 0, false, SessionConfig::default());
    run(&mut session, 1, publish(QoS::ExactlyOnce, 7, "a"));
    run(
        &mut session,
        2,
        with_alias(publish(QoS::AtMostOnce, 0, "long/topic"), 3),
    );
    session.shrink();
    assert_eq!(session.in_flight(), 1);
    // The QoS 2 message is still tracked: a duplicate is not published again.
    assert!(run(&mut session, 3, publish(QoS::ExactlyOnce, 7, "a")).is_empty());
    let out = run(
        &mut session,
        4,
        with_alias(publish(QoS::AtMostOnce, 0, ""), 3),
    );
    assert!(matches!(&out[..], [Effect::Publish(p)] if p.topic == "long/topic"));
}

#[test]
fn shrink_of_an_idle_session_frees_its_bookkeeping_and_grows_it_again() {
    let mut session = connected(ProtocolVersion::V5, 0, false, SessionConfig::default());
    run(&mut session, 1, publish(QoS::AtLeastOnce, 9, "a"));
    let mut out = Vec::new();
    session.on_kafka_ack(9, KafkaAck::Written, &mut out);
    session.shrink();
    assert!(session.rare.is_none());
    // The next message is tracked as before.
    let out = run(&mut session, 2, publish(QoS::AtLeastOnce, 9, "a"));
    assert!(matches!(&out[..], [Effect::Publish(p)] if p.packet_id == 9));
    assert!(run(&mut session, 3, publish(QoS::AtLeastOnce, 9, "a")).is_empty());
    assert_eq!(session.in_flight(), 1);
}

#[test]
fn shrink_keeps_the_will() {
    let mut session = connected(ProtocolVersion::V3_1_1, 0, true, SessionConfig::default());
    session.shrink();
    let mut out = Vec::new();
    session.connection_lost(0x80, &mut out);
    assert!(matches!(&out[..], [Effect::PublishWill(w), _] if w.topic == "will/topic"));
}
