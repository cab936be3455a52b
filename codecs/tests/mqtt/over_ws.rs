//! MQTT over WebSocket from MQTT.js 5.16 (Node 20, the `ws` package), captured by
//! `tests/fixtures/mqtt/capture.py` through a WebSocket bridge to mosquitto (see
//! `tests/fixtures/ws/README.md`). MQTT.js splits packets across many small frames, so these
//! exercise the whole path: frames are unmasked by [`FrameDecoder`], joined by [`ByteStream`]
//! and read by [`MqttCodec`]; packets re-encode to the stream's bytes and frames re-encode,
//! with the client's own masks, to the captured bytes.

use std::path::PathBuf;

use bytes::BytesMut;
use codecs::mqtt::{MqttCodec, Packet, PacketType, ProtocolVersion};
use codecs::ws::{
    ByteStream, Frame, FrameDecoder, FrameEncoder, HandshakeDecoder, MaskSource, Opcode, Role,
    Subprotocol,
};
use codecs::{Decoder, Encoder};

use super::{decode_all, encode_all};

fn read(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ws")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What one capture decodes to through the WebSocket → MQTT stack.
struct Decoded {
    frames: Vec<Frame>,
    packets: Vec<Packet>,
    /// The binary payloads joined: the MQTT byte stream the client meant.
    stream: Vec<u8>,
    /// Packets whose bytes arrived in more than one frame.
    split_packets: usize,
}

fn decode_capture(case: &str) -> Decoded {
    let mut raw = BytesMut::from(&read(&format!("{case}.frames"))[..]);
    let mut frames_dec = FrameDecoder::new(Role::Server, 1 << 20);
    let mut stream = ByteStream::new(1 << 20);
    let mut mqtt = MqttCodec::server(MqttCodec::DEFAULT_MAX_PACKET_SIZE);
    let mut out = Decoded {
        frames: Vec::new(),
        packets: Vec::new(),
        stream: Vec::new(),
        split_packets: 0,
    };
    while let Some(frame) = frames_dec
        .decode_mut(&mut raw)
        .unwrap_or_else(|e| panic!("{case}: {e}"))
    {
        let was_buffered = stream.buffered();
        out.frames.push(Frame {
            fin: frame.fin,
            opcode: frame.opcode,
            mask: frame.mask,
            payload: frame.payload.clone().freeze(),
        });
        if frame.opcode == Opcode::Binary || frame.opcode == Opcode::Continuation {
            out.stream.extend_from_slice(&frame.payload);
        }
        if let Some(control) = stream.push(frame).expect("binary frames") {
            assert_eq!(control.opcode, Opcode::Close, "{case}");
            continue;
        }
        let mut first = true;
        while let Some(packet) = mqtt
            .decode(stream.buffer_mut())
            .unwrap_or_else(|e| panic!("{case}: {e}"))
        {
            if first && was_buffered > 0 {
                out.split_packets += 1;
            }
            first = false;
            out.packets.push(packet);
        }
    }
    assert!(
        raw.is_empty(),
        "{case}: {} bytes after the frames",
        raw.len()
    );
    assert_eq!(stream.buffered(), 0, "{case}: a packet was left unfinished");
    out
}

fn check_case(case: &str, version: ProtocolVersion) -> Decoded {
    let handshake = read(&format!("{case}.handshake"));
    let mut hs = HandshakeDecoder::new(Subprotocol::Mqtt, 8192, 64);
    let req = hs
        .decode(&mut BytesMut::from(&handshake[..]))
        .expect("a valid upgrade")
        .expect("a whole request");
    assert_eq!(req.path, "/mqtt");
    assert_eq!(req.selected_protocol.as_deref(), Some("mqtt"));

    let decoded = decode_capture(case);
    assert!(
        decoded.frames.iter().all(|f| f.mask.is_some()),
        "{case}: unmasked client frame"
    );
    assert_eq!(
        decoded.frames.last().map(|f| f.opcode),
        Some(Opcode::Close),
        "{case}"
    );
    assert!(
        decoded.split_packets > 0,
        "{case}: no packet spanned frames, the capture no longer tests reassembly"
    );
    assert_eq!(
        decoded.packets.first().map(Packet::packet_type),
        Some(PacketType::Connect)
    );
    assert_eq!(
        decoded.packets.last().map(Packet::packet_type),
        Some(PacketType::Disconnect)
    );

    // The packets re-encode to exactly the MQTT stream MQTT.js wrote...
    assert_eq!(
        encode_all(&decoded.packets, version),
        decoded.stream,
        "{case}"
    );
    // ...which decodes the same as one TCP-like buffer.
    let whole = decode_all(
        &mut MqttCodec::server(MqttCodec::DEFAULT_MAX_PACKET_SIZE),
        &decoded.stream,
    )
    .expect("decodes");
    assert_eq!(whole, decoded.packets, "{case}");

    // And the frames re-encode byte for byte with the client's own masks.
    let mut enc = FrameEncoder::client(MaskSource::new(1));
    let mut out = BytesMut::new();
    for frame in &decoded.frames {
        enc.encode(frame, &mut out).expect("encodes");
    }
    assert_eq!(&out[..], &read(&format!("{case}.frames"))[..], "{case}");
    decoded
}

#[test]
fn mqttjs_v311_over_websocket() {
    let decoded = check_case("mqttjs-v311", ProtocolVersion::V3_1_1);
    let Packet::Connect(connect) = &decoded.packets[0] else {
        panic!("{:?}", decoded.packets)
    };
    assert_eq!(connect.client_id, "mqttjs-ws-311");
    assert_eq!(decoded.packets.len(), 8);
}

#[test]
fn mqttjs_v5_over_websocket() {
    let decoded = check_case("mqttjs-v5", ProtocolVersion::V5);
    let Packet::Connect(connect) = &decoded.packets[0] else {
        panic!("{:?}", decoded.packets)
    };
    assert_eq!(connect.client_id, "mqttjs-ws-5");
    assert_eq!(connect.properties.topic_alias_maximum, Some(4));
    let aliased = decoded.packets.iter().any(
        |p| matches!(p, Packet::Publish(p) if p.topic.is_empty() && p.properties.topic_alias == Some(1)),
    );
    assert!(aliased, "{:?}", decoded.packets);
    assert_eq!(decoded.packets.len(), 10);
}
