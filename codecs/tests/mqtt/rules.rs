//! One row per spec rule the codec enforces, with the exact MQTT 5 reason code it answers.

use bytes::BytesMut;
use codecs::mqtt::{MqttCodec, Packet, ProtocolVersion};
use codecs::{Decoder, ErrorAnswer, ProtocolError};

const V3: Option<ProtocolVersion> = Some(ProtocolVersion::V3_1_1);
const V5: Option<ProtocolVersion> = Some(ProtocolVersion::V5);
/// A server codec that has not seen CONNECT yet.
const NEW: Option<ProtocolVersion> = None;

/// Fixed header + Remaining Length + body.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A length-prefixed field.
fn s(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// CONNECT with a protocol name, level, flags, v5 properties (if level 5) and payload.
fn connect(name: &[u8], level: u8, flags: u8, props: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = cat(&[&s(name), &[level, flags, 0, 60]]);
    if level == 5 {
        body.push(props.len() as u8);
        body.extend_from_slice(props);
    }
    body.extend_from_slice(payload);
    frame(0x10, &body)
}

/// A v5 PUBLISH QoS 0 on topic `t` with properties `props`.
fn publish5(t: &[u8], props: &[u8]) -> Vec<u8> {
    frame(0x30, &cat(&[&s(t), &[props.len() as u8], props, b"x"]))
}

/// A SUBSCRIBE (packet id 1) for filter `f` with options `opt`; `props` only for v5.
fn subscribe(props: Option<&[u8]>, f: &[u8], opt: u8) -> Vec<u8> {
    let mut body = vec![0, 1];
    if let Some(props) = props {
        body.push(props.len() as u8);
        body.extend_from_slice(props);
    }
    body.extend_from_slice(&s(f));
    body.push(opt);
    frame(0x82, &body)
}

fn answer(
    version: Option<ProtocolVersion>,
    max: u32,
    bytes: &[u8],
) -> Result<Option<Packet>, ErrorAnswer> {
    let mut codec = match version {
        Some(v) => MqttCodec::with_version(v, max),
        None => MqttCodec::server(max),
    };
    let mut buf = BytesMut::from(bytes);
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(_)) if !buf.is_empty() => continue,
            Ok(packet) => return Ok(packet),
            Err(e) => return Err(e.answer()),
        }
    }
}

#[test]
fn every_rule_gets_its_reason_code() {
    let m = ErrorAnswer::MqttReason;
    let client = s(b"c1");
    let v311_connect = connect(b"MQTT", 4, 0x02, &[], &client);
    #[rustfmt::skip]
    let table: Vec<(&str, Option<ProtocolVersion>, Vec<u8>, ErrorAnswer)> = vec![
        // Fixed header.
        ("packet type 0 is reserved", V5, vec![0x00, 0x00], m(0x81)),
        ("PUBACK flags must be 0", V5, vec![0x41, 2, 0, 1], m(0x81)),
        ("PUBREL flags must be 0010", V5, vec![0x60, 2, 0, 1], m(0x81)),
        ("SUBSCRIBE flags must be 0010", V5, frame(0x80, &cat(&[&[0, 1, 0], &s(b"a"), &[0]])), m(0x81)),
        ("remaining length over 4 bytes", V5, vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], m(0x81)),
        ("non-minimal remaining length", V5, vec![0xC0, 0x80, 0x00], m(0x81)),
        ("PINGREQ has no body", V3, vec![0xC0, 1, 0], m(0x81)),
        ("AUTH does not exist in 3.1.1", V3, vec![0xF0, 0], m(0x81)),
        ("first packet must be CONNECT", NEW, vec![0xC0, 0], ErrorAnswer::Close),
        // PUBLISH.
        ("PUBLISH QoS 3", V3, frame(0x36, &cat(&[&s(b"a"), &[0, 1]])), m(0x81)),
        ("DUP on QoS 0", V3, frame(0x38, &s(b"a")), m(0x81)),
        ("packet identifier 0", V3, frame(0x32, &cat(&[&s(b"a"), &[0, 0]])), m(0x82)),
        ("topic is not UTF-8", V3, frame(0x30, &s(&[0xC3, 0x28])), m(0x81)),
        ("topic contains U+0000", V3, frame(0x30, &s(b"a\0b")), m(0x81)),
        ("topic contains an encoded surrogate", V3, frame(0x30, &s(&[0xED, 0xA0, 0x80])), m(0x81)),
        ("overlong UTF-8", V3, frame(0x30, &s(&[0xC0, 0xAF])), m(0x81)),
        ("topic name with +", V3, frame(0x30, &s(b"a/+")), m(0x90)),
        ("topic name with #", V5, publish5(b"a/#", &[]), m(0x90)),
        ("empty topic on 3.1.1", V3, frame(0x30, &s(b"")), m(0x90)),
        ("empty topic without alias", V5, publish5(b"", &[]), m(0x82)),
        ("topic alias 0", V5, publish5(b"a", &[0x23, 0, 0]), m(0x94)),
        ("publish truncated in topic", V3, frame(0x30, &[0, 5, b'a']), m(0x81)),
        // CONNECT.
        ("unknown protocol level", NEW, connect(b"MQTT", 6, 0x02, &[], &client), m(0x84)),
        ("unknown protocol name", NEW, connect(b"MQTX", 4, 0x02, &[], &client), m(0x84)),
        ("reserved CONNECT flag", NEW, connect(b"MQTT", 4, 0x03, &[], &client), m(0x81)),
        ("will QoS without will flag", NEW, connect(b"MQTT", 4, 0x0A, &[], &client), m(0x81)),
        ("will retain without will flag", NEW, connect(b"MQTT", 4, 0x22, &[], &client), m(0x81)),
        ("will QoS 3", NEW, connect(b"MQTT", 4, 0x1E, &[], &cat(&[&client, &s(b"w"), &s(b"p")])), m(0x81)),
        ("3.1.1 password without user name", NEW, connect(b"MQTT", 4, 0x42, &[], &cat(&[&client, &s(b"pw")])), m(0x81)),
        ("3.1.1 empty client id without clean session", NEW, connect(b"MQTT", 4, 0x00, &[], &s(b"")), m(0x85)),
        ("3.1 client id over 23 characters", NEW, connect(b"MQIsdp", 3, 0x02, &[], &s(&[b'a'; 24])), m(0x85)),
        ("will topic with wildcard", NEW, connect(b"MQTT", 4, 0x06, &[], &cat(&[&client, &s(b"w/#"), &s(b"p")])), m(0x90)),
        ("bytes after the last CONNECT field", NEW, connect(b"MQTT", 4, 0x02, &[], &cat(&[&client, &[0]])), m(0x81)),
        ("second CONNECT", NEW, cat(&[&v311_connect, &v311_connect]), m(0x82)),
        ("receive maximum 0", NEW, connect(b"MQTT", 5, 0x02, &[0x21, 0, 0], &client), m(0x82)),
        ("maximum packet size 0", NEW, connect(b"MQTT", 5, 0x02, &[0x27, 0, 0, 0, 0], &client), m(0x82)),
        ("request problem information 2", NEW, connect(b"MQTT", 5, 0x02, &[0x17, 2], &client), m(0x82)),
        // Properties.
        ("property not allowed in PUBLISH", V5, publish5(b"a", &[0x11, 0, 0, 0, 1]), m(0x81)),
        ("unknown property", V5, publish5(b"a", &[0x7F, 0]), m(0x81)),
        ("property appears twice", V5, publish5(b"a", &[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 1]), m(0x82)),
        ("payload format indicator 2", V5, publish5(b"a", &[0x01, 2]), m(0x82)),
        ("response topic with wildcard", V5, publish5(b"a", &cat(&[&[0x08], &s(b"r/+")])), m(0x82)),
        ("property length beyond packet", V5, frame(0x30, &cat(&[&s(b"a"), &[9, 0x01]])), m(0x81)),
        ("property value truncated", V5, frame(0x30, &cat(&[&s(b"a"), &[2, 0x02, 0]])), m(0x81)),
        ("user property value not UTF-8", V5, publish5(b"a", &cat(&[&[0x26], &s(b"k"), &s(&[0xFF])])), m(0x81)),
        // SUBSCRIBE / UNSUBSCRIBE.
        ("SUBSCRIBE without filters", V3, frame(0x82, &[0, 1]), m(0x82)),
        ("# not last", V3, subscribe(None, b"a/#/b", 0), m(0x8F)),
        ("+ not a whole level", V3, subscribe(None, b"a+", 0), m(0x8F)),
        ("empty filter", V3, subscribe(None, b"", 0), m(0x8F)),
        ("shared subscription without filter", V5, subscribe(Some(&[]), b"$share/g", 0), m(0x8F)),
        ("share name with +", V5, subscribe(Some(&[]), b"$share/g+/a", 0), m(0x8F)),
        ("empty share name", V5, subscribe(Some(&[]), b"$share//a", 0), m(0x8F)),
        ("subscription QoS 3", V5, subscribe(Some(&[]), b"a", 3), m(0x81)),
        ("reserved option bits (5.0)", V5, subscribe(Some(&[]), b"a", 0x40), m(0x81)),
        ("reserved option bits (3.1.1)", V3, subscribe(None, b"a", 0x04), m(0x81)),
        ("retain handling 3", V5, subscribe(Some(&[]), b"a", 0x30), m(0x82)),
        ("No Local on a shared subscription", V5, subscribe(Some(&[]), b"$share/g/a", 0x04), m(0x82)),
        ("subscription identifier 0", V5, subscribe(Some(&[0x0B, 0]), b"a", 0), m(0x82)),
        ("UNSUBSCRIBE without filters", V5, frame(0xA2, &[0, 1, 0]), m(0x82)),
        ("UNSUBSCRIBE invalid filter", V3, frame(0xA2, &cat(&[&[0, 1], &s(b"#/a")])), m(0x8F)),
        // Acknowledgements and the rest.
        ("PUBACK reason not allowed", V5, vec![0x40, 3, 0, 1, 0x05], m(0x81)),
        ("PUBREL reason not allowed", V5, vec![0x62, 3, 0, 1, 0x10], m(0x81)),
        ("3.1.1 PUBACK with a reason byte", V3, vec![0x40, 3, 0, 1, 0], m(0x81)),
        ("CONNACK reserved flags", V5, vec![0x20, 3, 0x02, 0, 0], m(0x81)),
        ("CONNACK session present on refusal", V5, vec![0x20, 3, 0x01, 0x80, 0], m(0x82)),
        ("3.1.1 CONNACK return code 6", V3, vec![0x20, 2, 0, 6], m(0x81)),
        ("3.1.1 SUBACK code 3", V3, vec![0x90, 3, 0, 1, 3], m(0x81)),
        ("SUBACK without codes", V5, vec![0x90, 3, 0, 1, 0], m(0x82)),
        ("DISCONNECT reason not allowed", V5, vec![0xE0, 1, 0x91], m(0x81)),
        ("3.1.1 DISCONNECT with a body", V3, vec![0xE0, 1, 0], m(0x81)),
        ("AUTH reason not allowed", V5, vec![0xF0, 2, 0x01, 0], m(0x81)),
    ];
    let mut failures = Vec::new();
    for (rule, version, bytes, expected) in &table {
        let got = answer(*version, 1 << 20, bytes);
        if got != Err(*expected) {
            failures.push(format!("{rule}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rules broken:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn oversize_packet_is_refused_before_its_body_arrives() {
    // Only the fixed header of a 1000-byte PUBLISH is buffered.
    let got = answer(V5, 100, &[0x30, 0xE8, 0x07]);
    assert_eq!(got, Err(ErrorAnswer::MqttReason(0x95)));
    // A CONNECT too, before the protocol version is known.
    assert_eq!(
        answer(NEW, 100, &[0x10, 0xE8, 0x07]),
        Err(ErrorAnswer::MqttReason(0x95))
    );
    // Exactly at the limit is fine: 1 + 1 + 98 bytes.
    let mut body = s(b"t");
    body.resize(98, b'x');
    assert!(answer(V3, 100, &frame(0x30, &body)).is_ok());
}

#[test]
fn error_replies_follow_the_connection_state() {
    use codecs::mqtt::{ConnAck, Disconnect};
    let reply = |version: Option<ProtocolVersion>, bytes: &[u8]| {
        let mut codec = match version {
            Some(v) => MqttCodec::with_version(v, 1 << 20),
            None => MqttCodec::server(1 << 20),
        };
        let mut buf = BytesMut::from(bytes);
        loop {
            match codec.decode(&mut buf) {
                Ok(_) => continue,
                Err(e) => return codec.error_reply(&e),
            }
        }
    };
    let refusal = |v, code| {
        Some((
            v,
            Packet::ConnAck(Box::new(ConnAck {
                code,
                ..ConnAck::default()
            })),
        ))
    };
    // Unsupported level: a 3.1.1-format CONNACK with return code 1 …
    let bad_level = connect(b"MQTT", 6, 0x02, &[], &s(b"c"));
    assert_eq!(reply(NEW, &bad_level), refusal(ProtocolVersion::V3_1_1, 1));
    // … and an MQTT 5 CONNACK with 0x84 for a level-5 client with the wrong name.
    let bad_name = connect(b"MQTX", 5, 0x02, &[], &s(b"c"));
    assert_eq!(reply(NEW, &bad_name), refusal(ProtocolVersion::V5, 0x84));
    // A malformed MQTT 5 CONNECT is refused in MQTT 5 form.
    let malformed = connect(b"MQTT", 5, 0x02, &[0x7F], &s(b"c"));
    assert_eq!(reply(NEW, &malformed), refusal(ProtocolVersion::V5, 0x81));
    // 3.1.1 identifier rejected → return code 2.
    let no_id = connect(b"MQTT", 4, 0x00, &[], &s(b""));
    assert_eq!(reply(NEW, &no_id), refusal(ProtocolVersion::V3_1_1, 2));
    // After CONNECT: DISCONNECT on MQTT 5, nothing on 3.1.1.
    let bad_topic = frame(0x30, &cat(&[&s(b"a/+"), &[0], b"x"]));
    let v5_then_bad = cat(&[&connect(b"MQTT", 5, 0x02, &[], &s(b"c")), &bad_topic]);
    assert_eq!(
        reply(NEW, &v5_then_bad),
        Some((
            ProtocolVersion::V5,
            Packet::Disconnect(Disconnect::new(0x90))
        ))
    );
    assert_eq!(reply(V3, &frame(0x30, &s(b"a/+"))), None);
    // Not CONNECT first: just close.
    assert_eq!(reply(NEW, &[0xC0, 0]), None);
}
