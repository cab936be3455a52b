//! Codec micro-benchmarks: frames decoded (or encoded) per second, MB/s and allocations per
//! frame for the hot paths of every built-in codec. The issue's target is at least 10M small
//! MQTT PUBLISH frames decoded per second per core, with no allocation per PUBLISH.
//!
//! # Method
//!
//! A decoder reads from a `BytesMut` holding one round of frames back to back, about
//! 64 KiB, as a socket read buffer would after a large read. Each round refills it by cloning
//! a template built once, then takes an empty `split_to(0)`, which turns the clone's `Vec`
//! into the shared buffer every frame slices (what the first decoded frame of a fresh read
//! buffer pays). Both happen outside the timed region and the allocation count: only the
//! decode loop, including dropping each frame, is measured. Encoders append a round of
//! frames to a buffer whose capacity is kept (`clear`), so they allocate only if the codec
//! does.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use codecs::framed::{FramedCodec, FramedConfig};
use codecs::http::{RequestDecoder, SseEncoder, SseEvent};
use codecs::lines::LinesCodec;
use codecs::mqtt::{
    MqttCodec, MqttString, Packet, Props, ProtocolVersion, PubAck, Publish, PublishProperties, QoS,
};
use codecs::ws::{Frame, FrameDecoder, FrameEncoder, MaskSource, Role};
use codecs::{Decoder, Encoder};

use crate::alloc::allocations;
use crate::micro::{measure, result, Measure, MicroResult};

/// The size a decode round's buffer is filled to.
const ROUND_BYTES: usize = 64 * 1024;
/// A 20-byte topic and a 100-byte payload: the issue's "small PUBLISH".
const TOPIC: &[u8] = b"sensors/room-42/temp";
const PAYLOAD: [u8; 100] = [b'p'; 100];

/// Runs every codec micro-benchmark, each for `budget`.
pub fn run(budget: Duration) -> Vec<MicroResult> {
    let v311 =
        || MqttCodec::with_version(ProtocolVersion::V3_1_1, MqttCodec::DEFAULT_MAX_PACKET_SIZE);
    let v5 = || MqttCodec::with_version(ProtocolVersion::V5, MqttCodec::DEFAULT_MAX_PACKET_SIZE);
    vec![
        decode(
            budget,
            "mqtt_decode/publish_v311_qos1",
            v311(),
            &fill(|b, i| put_publish(b, i, None)),
        ),
        decode(
            budget,
            "mqtt_decode/publish_v5_qos1+props",
            v5(),
            &fill(|b, i| put_publish(b, i, Some(V5_PROPS))),
        ),
        decode(
            budget,
            "mqtt_decode/publish_v5_qos1+props+user_prop",
            v5(),
            &fill(|b, i| put_publish(b, i, Some(&[V5_PROPS, V5_USER_PROP].concat()))),
        ),
        encode_puback(budget),
        encode_publish_per_subscriber(budget, ProtocolVersion::V3_1_1, QoS::AtMostOnce),
        copy_shared_publish(budget, ProtocolVersion::V3_1_1, QoS::AtMostOnce),
        encode_publish_per_subscriber(budget, ProtocolVersion::V5, QoS::AtLeastOnce),
        copy_shared_publish(budget, ProtocolVersion::V5, QoS::AtLeastOnce),
        decode(
            budget,
            "ws_decode/masked_binary_100B",
            FrameDecoder::new(Role::Server, 1 << 20),
            &ws_frames(),
        ),
        decode(
            budget,
            "framed_decode/u32_100B",
            FramedCodec::new(FramedConfig::default()),
            &fill(put_framed),
        ),
        decode(
            budget,
            "lines_decode/100B",
            LinesCodec::new(64 * 1024),
            &fill(put_line),
        ),
        decode(
            budget,
            "http_decode/post_100B",
            RequestDecoder::default(),
            &fill(put_http_post),
        ),
        encode_sse(budget),
    ]
}

/// Decodes a copy of `template` per round until `budget` is spent; see the module docs.
fn decode<D: Decoder>(
    budget: Duration,
    name: &str,
    mut decoder: D,
    template: &BytesMut,
) -> MicroResult {
    let round = |decoder: &mut D, elapsed: &mut Duration, allocs: &mut u64| {
        let mut buf = template.clone();
        drop(buf.split_to(0));
        let (t0, a0) = (Instant::now(), allocations());
        let n = decode_round(decoder, &mut buf);
        *elapsed += t0.elapsed();
        *allocs += allocations() - a0;
        assert!(buf.is_empty(), "{name}: {} bytes left undecoded", buf.len());
        n
    };
    // Warm up once so lazy initialisation is not counted.
    let (mut warm_up, mut warm_up_allocs) = (Duration::ZERO, 0);
    round(&mut decoder, &mut warm_up, &mut warm_up_allocs);
    let mut m = Measure::default();
    let start = Instant::now();
    while start.elapsed() < budget {
        m.ops += round(&mut decoder, &mut m.elapsed, &mut m.allocs);
        m.bytes += template.len() as u64;
    }
    result(name, m)
}

/// Decodes every frame in `buf`, dropping each; returns how many there were.
#[inline(never)]
fn decode_round<D: Decoder>(decoder: &mut D, buf: &mut BytesMut) -> u64 {
    let mut n = 0;
    while let Some(frame) = decoder.decode(buf).expect("the template decodes") {
        black_box(frame);
        n += 1;
    }
    n
}

/// Builds a template of frames `put(buf, i)` up to [`ROUND_BYTES`].
fn fill(mut put: impl FnMut(&mut BytesMut, u16)) -> BytesMut {
    let mut buf = BytesMut::with_capacity(ROUND_BYTES + 1024);
    let mut i = 0u16;
    while buf.len() < ROUND_BYTES {
        i = i.wrapping_add(1).max(1);
        put(&mut buf, i);
    }
    buf
}

/// MQTT 5 PUBLISH properties as mosquitto_pub sends them, without user properties: payload
/// format, message expiry, content type, response topic and correlation data.
const V5_PROPS: &[u8] = b"\x01\x01\x02\x00\x00\x00\x3c\x03\x00\x10application/json\
\x08\x00\x0freplies/room-42\x09\x00\x06req-42";
/// One user property, which costs the `Vec` that holds user properties.
const V5_USER_PROP: &[u8] = b"\x26\x00\x06source\x00\x08sensor-7";

/// A QoS 1 PUBLISH of [`PAYLOAD`] to [`TOPIC`]; `props` makes it MQTT 5.
fn put_publish(buf: &mut BytesMut, packet_id: u16, props: Option<&[u8]>) {
    let props_len = props.map_or(0, |p| 1 + p.len());
    let remaining = 2 + TOPIC.len() + 2 + props_len + PAYLOAD.len();
    buf.put_u8(0x32);
    if remaining < 128 {
        buf.put_u8(remaining as u8);
    } else {
        buf.put_u8(0x80 | (remaining % 128) as u8);
        buf.put_u8((remaining / 128) as u8);
    }
    buf.put_u16(TOPIC.len() as u16);
    buf.put_slice(TOPIC);
    buf.put_u16(packet_id);
    if let Some(p) = props {
        buf.put_u8(p.len() as u8);
        buf.put_slice(p);
    }
    buf.put_slice(&PAYLOAD);
}

fn put_framed(buf: &mut BytesMut, _: u16) {
    buf.put_u32(PAYLOAD.len() as u32);
    buf.put_slice(&PAYLOAD);
}

fn put_line(buf: &mut BytesMut, _: u16) {
    buf.put_slice(&PAYLOAD);
    buf.put_u8(b'\n');
}

fn put_http_post(buf: &mut BytesMut, _: u16) {
    buf.put_slice(
        b"POST /topics/orders HTTP/1.1\r\nHost: sluice.example:8080\r\nUser-Agent: curl/7.88.1\r\n\
Accept: */*\r\nSluice-Key: order-42\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
    );
    buf.put_slice(&PAYLOAD);
}

/// Masked 100-byte binary frames, as a browser sends them (a new mask per frame).
fn ws_frames() -> BytesMut {
    let mut enc = FrameEncoder::client(MaskSource::new(42));
    let frame = Frame::binary(Bytes::from_static(&PAYLOAD));
    fill(|buf, _| enc.encode(&frame, buf).expect("encodes"))
}

/// Frames encoded per round by the encoder benchmarks.
const ENCODE_ROUND: u64 = 1024;

fn encode_puback(budget: Duration) -> MicroResult {
    let mut codec =
        MqttCodec::with_version(ProtocolVersion::V3_1_1, MqttCodec::DEFAULT_MAX_PACKET_SIZE);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let m = measure(budget, || {
        buf.clear();
        for id in 1..=ENCODE_ROUND as u16 {
            let ack = Packet::PubAck(PubAck::new(id));
            codec.encode(black_box(&ack), &mut buf).expect("encodes");
        }
        black_box(&buf);
        (ENCODE_ROUND, buf.len() as u64)
    });
    result("mqtt_encode/puback_v311", m)
}

fn encode_sse(budget: Duration) -> MicroResult {
    let data = br#"{"device":"sensor-7","room":42,"temp":21.5,"humidity":40,"battery":97,"ts":1700000000000,"ok":true}"#;
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut enc = SseEncoder;
    let m = measure(budget, || {
        buf.clear();
        for _ in 0..ENCODE_ROUND {
            let event = SseEvent {
                id: Some("7:1234567"),
                event: None,
                data: black_box(data),
                retry: None,
            };
            enc.encode(&event, &mut buf).expect("encodes");
        }
        black_box(&buf);
        (ENCODE_ROUND, buf.len() as u64)
    });
    result("sse_encode/event_100B", m)
}

/// The PUBLISH a Kafka record becomes for a subscriber: the 20-byte topic, the 100-byte
/// payload, and (MQTT 5) a content type and one user property from the record's headers.
fn delivery(
    version: ProtocolVersion,
    qos: QoS,
    packet_id: u16,
    props: &PublishProperties,
) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: MqttString::from_bytes(Bytes::from_static(TOPIC)).expect("a topic"),
        packet_id: if qos == QoS::AtMostOnce { 0 } else { packet_id },
        payload: Bytes::from_static(&PAYLOAD),
        properties: if version.is_v5() {
            props.clone().into()
        } else {
            Props::none()
        },
    })
}

fn delivery_properties() -> PublishProperties {
    let mut props = PublishProperties::default();
    props.content_type = Some(MqttString::try_from("application/json").expect("valid"));
    props.user_properties.push((
        MqttString::try_from("source").expect("valid"),
        MqttString::try_from("sensor-7").expect("valid"),
    ));
    props
}

fn variant_name(version: ProtocolVersion, qos: QoS) -> String {
    match version {
        ProtocolVersion::V5 => format!("v5_qos{}+props", qos as u8),
        _ => format!("v311_qos{}", qos as u8),
    }
}

/// One fan-out delivery as each subscriber's task encoded it before encodings were shared
/// (proxy `delivery::message`): the message's properties cloned, the PUBLISH built and
/// encoded field by field into the write buffer.
fn encode_publish_per_subscriber(
    budget: Duration,
    version: ProtocolVersion,
    qos: QoS,
) -> MicroResult {
    let mut codec = MqttCodec::with_version(version, MqttCodec::DEFAULT_MAX_PACKET_SIZE);
    let props = delivery_properties();
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let m = measure(budget, || {
        buf.clear();
        for id in 1..=ENCODE_ROUND as u16 {
            let packet = delivery(version, qos, id, black_box(&props));
            codec.encode(&packet, &mut buf).expect("encodes");
        }
        black_box(&buf);
        (ENCODE_ROUND, buf.len() as u64)
    });
    result(
        &format!(
            "mqtt_fanout/publish_{}_per_subscriber",
            variant_name(version, qos)
        ),
        m,
    )
}

/// The same deliveries from shared bytes: the PUBLISH encoded once, then per subscriber
/// copied into the write buffer with its packet identifier written over the placeholder.
fn copy_shared_publish(budget: Duration, version: ProtocolVersion, qos: QoS) -> MicroResult {
    let mut shared = BytesMut::new();
    codecs::mqtt::encode_packet(
        &delivery(version, qos, 1, &delivery_properties()),
        version,
        u32::MAX,
        &mut shared,
    )
    .expect("encodes");
    let shared = shared.freeze();
    let length_bytes = shared[1..].iter().take_while(|b| **b & 0x80 != 0).count() + 1;
    let id_at = 1 + length_bytes + 2 + TOPIC.len();
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let m = measure(budget, || {
        buf.clear();
        for id in 1..=ENCODE_ROUND as u16 {
            let start = buf.len();
            buf.extend_from_slice(black_box(&shared));
            if qos != QoS::AtMostOnce {
                buf[start + id_at..start + id_at + 2].copy_from_slice(&id.to_be_bytes());
            }
        }
        black_box(&buf);
        (ENCODE_ROUND, buf.len() as u64)
    });
    result(
        &format!(
            "mqtt_fanout/publish_{}_shared_copy",
            variant_name(version, qos)
        ),
        m,
    )
}
