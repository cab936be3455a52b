//! Golden byte streams captured from mosquitto 2.0.11 (clients and broker), paho-mqtt 2.2
//! and MQTT.js 5.16 by `tests/fixtures/mqtt/capture.py`: each must decode and re-encode to
//! exactly the same bytes. See `tests/fixtures/mqtt/README.md` for the commands.

use std::path::PathBuf;

use codecs::mqtt::{MqttCodec, Packet, PacketType, ProtocolVersion, QoS, RetainHandling};

use super::{decode_all, encode_all};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mqtt")
}

fn read(name: &str) -> Vec<u8> {
    let path = dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Decodes a capture's two directions; returns the version and both packet lists.
fn load(case: &str) -> (ProtocolVersion, Vec<Packet>, Vec<Packet>) {
    let c2s = read(&format!("{case}.c2s.bin"));
    let mut server = MqttCodec::server(MqttCodec::DEFAULT_MAX_PACKET_SIZE);
    let sent = decode_all(&mut server, &c2s).unwrap_or_else(|e| panic!("{case} c2s: {e}"));
    let version = server.version().expect("a CONNECT was decoded");
    let s2c = read(&format!("{case}.s2c.bin"));
    let mut client = MqttCodec::with_version(version, MqttCodec::DEFAULT_MAX_PACKET_SIZE);
    let received = decode_all(&mut client, &s2c).unwrap_or_else(|e| panic!("{case} s2c: {e}"));
    (version, sent, received)
}

fn cases() -> Vec<String> {
    let mut cases: Vec<String> = std::fs::read_dir(dir())
        .expect("fixture dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix(".c2s.bin")?.to_owned())
        })
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_fixture_reencodes_byte_for_byte() {
    let cases = cases();
    assert!(cases.len() >= 17, "fixtures missing: {cases:?}");
    for case in &cases {
        let (version, sent, received) = load(case);
        assert_eq!(
            encode_all(&sent, version),
            read(&format!("{case}.c2s.bin")),
            "{case} c2s"
        );
        assert_eq!(
            encode_all(&received, version),
            read(&format!("{case}.s2c.bin")),
            "{case} s2c"
        );
    }
}

#[test]
fn every_fixture_decodes_one_byte_at_a_time() {
    for case in cases() {
        let bytes = read(&format!("{case}.c2s.bin"));
        let mut codec = MqttCodec::server(MqttCodec::DEFAULT_MAX_PACKET_SIZE);
        let whole = decode_all(&mut codec.clone(), &bytes).expect("decodes");
        let mut buf = bytes::BytesMut::new();
        let mut packets = Vec::new();
        for &byte in &bytes {
            buf.extend_from_slice(&[byte]);
            if let Some(packet) = codecs::Decoder::decode(&mut codec, &mut buf).expect("decodes") {
                packets.push(packet);
            }
        }
        assert_eq!(packets, whole, "{case}");
    }
}

#[test]
fn mosquitto_v311_connect_with_credentials_and_will() {
    let (version, sent, received) = load("mosquitto-pub-v311-qos1");
    assert_eq!(version, ProtocolVersion::V3_1_1);
    let Packet::Connect(connect) = &sent[0] else {
        panic!("{sent:?}")
    };
    assert_eq!(connect.client_id, "pub-311-q1");
    assert_eq!(connect.username.as_deref(), Some("alice"));
    assert_eq!(connect.password.as_deref(), Some(&b"s3cret"[..]));
    assert_eq!(connect.keep_alive, 30);
    assert!(connect.clean_start);
    let will = connect.will.as_ref().expect("will");
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("status/pub-311", &b"offline"[..])
    );
    assert_eq!((will.qos, will.retain), (QoS::AtLeastOnce, true));
    let Packet::Publish(publish) = &sent[1] else {
        panic!("{sent:?}")
    };
    assert_eq!(
        (publish.qos, publish.retain, publish.packet_id),
        (QoS::AtLeastOnce, true, 1)
    );
    assert_eq!(
        (publish.topic.as_str(), &publish.payload[..]),
        ("sensors/room1/temp", &b"21.5"[..])
    );
    assert!(matches!(sent[2], Packet::Disconnect(_)));
    assert!(matches!(&received[1], Packet::PubAck(a) if a.packet_id == 1));
}

#[test]
fn mosquitto_v31_uses_mqisdp() {
    let (version, sent, _) = load("mosquitto-pub-v31-qos1");
    assert_eq!(version, ProtocolVersion::V3_1);
    assert!(matches!(&sent[0], Packet::Connect(c) if c.username.as_deref() == Some("alice")));
}

#[test]
fn mosquitto_v5_publish_properties() {
    let (_, sent, received) = load("mosquitto-pub-v5-qos2");
    let Packet::Connect(connect) = &sent[0] else {
        panic!("{sent:?}")
    };
    assert_eq!(connect.properties.session_expiry_interval, Some(120));
    assert_eq!(connect.properties.receive_maximum, Some(20));
    let will = connect.will.as_ref().expect("will");
    assert_eq!(will.properties.will_delay_interval, Some(5));
    assert_eq!(will.properties.content_type.as_deref(), Some("text/plain"));
    let Packet::Publish(publish) = &sent[1] else {
        panic!("{sent:?}")
    };
    assert_eq!(publish.qos, QoS::ExactlyOnce);
    let props = &publish.properties;
    assert_eq!(props.payload_format_indicator, Some(1));
    assert_eq!(props.message_expiry_interval, Some(60));
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(props.response_topic.as_deref(), Some("replies/pub-5"));
    assert_eq!(props.correlation_data.as_deref(), Some(&b"req-42"[..]));
    let users: Vec<(&str, &str)> = props
        .user_properties
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(users, [("source", "sensor-7"), ("unit", "celsius")]);
    assert!(matches!(&sent[2], Packet::PubRel(r) if r.packet_id == 1));
    assert!(matches!(&received[1], Packet::PubRec(r) if r.packet_id == 1));
    assert!(matches!(&received[2], Packet::PubComp(r) if r.packet_id == 1));
}

#[test]
fn mosquitto_v5_subscribe_and_delivery() {
    let (_, sent, received) = load("mosquitto-sub-v5");
    let Packet::Subscribe(subscribe) = &sent[1] else {
        panic!("{sent:?}")
    };
    assert_eq!(subscribe.properties.subscription_identifier, Some(7));
    let shared = &subscribe.subscriptions[1].filter;
    assert_eq!(shared.shared(), Some(("workers", "jobs/#")));
    let Packet::Publish(delivery) = &received[2] else {
        panic!("{received:?}")
    };
    assert_eq!(delivery.properties.subscription_identifiers, [7]);
    assert!(delivery.retain);
}

#[test]
fn paho_v5_subscription_options() {
    let (_, sent, _) = load("paho-v5");
    let Packet::Connect(connect) = &sent[0] else {
        panic!("{sent:?}")
    };
    assert_eq!(connect.client_id, "paho-5");
    assert_eq!(connect.properties.session_expiry_interval, Some(60));
    let Packet::Subscribe(subscribe) = &sent[1] else {
        panic!("{sent:?}")
    };
    let options = subscribe.subscriptions[0].options;
    assert_eq!(options.qos, QoS::ExactlyOnce);
    assert!(options.no_local && options.retain_as_published);
    assert_eq!(options.retain_handling, RetainHandling::OnNewSubscribe);
    assert!(sent.iter().any(|p| matches!(p, Packet::Unsubscribe(_))));
}

#[test]
fn keepalive_ping_captures() {
    let (_, sent, received) = load("mosquitto-ping-v5");
    assert!(sent.contains(&Packet::PingReq));
    assert!(received.contains(&Packet::PingResp));
    assert!(matches!(sent.last(), Some(Packet::Disconnect(d)) if d.reason_code == 4));
}

#[test]
fn mqttjs_v311_session() {
    let (version, sent, received) = load("mqttjs-tcp-v311");
    assert_eq!(version, ProtocolVersion::V3_1_1);
    let Packet::Connect(connect) = &sent[0] else {
        panic!("{sent:?}")
    };
    assert_eq!(connect.client_id, "mqttjs-tcp-311");
    assert_eq!(connect.username.as_deref(), Some("carol"));
    assert_eq!(connect.keep_alive, 40);
    let will = connect.will.as_ref().expect("will");
    assert_eq!(will.topic, "status/mqttjs-tcp-311");
    let kinds: Vec<PacketType> = sent.iter().map(Packet::packet_type).collect();
    use PacketType::*;
    assert_eq!(
        kinds,
        [
            Connect,
            Subscribe,
            Publish,
            Publish,
            Publish,
            PubRel,
            Unsubscribe,
            Disconnect
        ]
    );
    let qos: Vec<QoS> = sent
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.qos),
            _ => None,
        })
        .collect();
    assert_eq!(qos, [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]);
    assert!(matches!(&received[0], Packet::ConnAck(_)));
}

#[test]
fn mqttjs_v5_properties_alias_and_long_acks() {
    let (version, sent, _) = load("mqttjs-tcp-v5");
    assert_eq!(version, ProtocolVersion::V5);
    let Packet::Connect(connect) = &sent[0] else {
        panic!("{sent:?}")
    };
    let props = &connect.properties;
    assert_eq!(props.session_expiry_interval, Some(30));
    assert_eq!(props.receive_maximum, Some(16));
    assert_eq!(props.maximum_packet_size, Some(131_072));
    assert_eq!(props.topic_alias_maximum, Some(4));
    let will = connect.will.as_ref().expect("will");
    assert_eq!(will.properties.will_delay_interval, Some(2));

    let Packet::Subscribe(subscribe) = &sent[1] else {
        panic!("{sent:?}")
    };
    assert_eq!(subscribe.properties.subscription_identifier, Some(9));
    let options = subscribe.subscriptions[0].options;
    assert_eq!(options.qos, QoS::ExactlyOnce);
    assert!(options.no_local && options.retain_as_published);
    assert_eq!(options.retain_handling, RetainHandling::OnNewSubscribe);

    let publishes: Vec<_> = sent
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(publishes.len(), 5);
    let props = &publishes[2].properties;
    assert_eq!(props.message_expiry_interval, Some(90));
    assert_eq!(props.content_type.as_deref(), Some("application/json"));
    assert_eq!(props.correlation_data.as_deref(), Some(&b"corr-7"[..]));
    assert_eq!(props.user_properties.len(), 2);
    // MQTT.js sets topic alias 1, then publishes through it with an empty topic name.
    assert_eq!(publishes[3].properties.topic_alias, Some(1));
    assert_eq!(publishes[3].topic, "sensors/mqttjs-tcp-5/temp");
    assert_eq!(
        (
            publishes[4].topic.as_str(),
            publishes[4].properties.topic_alias
        ),
        ("", Some(1))
    );
    // MQTT.js writes PUBREL as `id 00 00` (reason code and an empty property length); it
    // decodes to a plain success PUBREL and re-encodes in the same long form.
    let Some(Packet::PubRel(rel)) = sent.iter().find(|p| matches!(p, Packet::PubRel(_))) else {
        panic!("{sent:?}")
    };
    assert_eq!(rel, &codecs::mqtt::PubAck::new(rel.packet_id));
    let Some(Packet::Disconnect(disconnect)) = sent.last() else {
        panic!("{sent:?}")
    };
    assert_eq!(disconnect.properties.reason_string.as_deref(), Some("bye"));
}
