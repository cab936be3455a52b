//! MQTT codec tests against the public API: golden fixtures from real peers, round-trip
//! property tests, and one table of spec rules with their reason codes.

mod fixtures;
mod over_ws;
mod roundtrip;
mod rules;

use bytes::BytesMut;
use codecs::mqtt::{encode_packet, MqttCodec, MqttError, Packet, ProtocolVersion};
use codecs::Decoder;

/// Decodes every packet in `bytes`; fails if anything is left over.
pub fn decode_all(codec: &mut MqttCodec, bytes: &[u8]) -> Result<Vec<Packet>, MqttError> {
    let mut buf = BytesMut::from(bytes);
    let mut packets = Vec::new();
    while !buf.is_empty() {
        match codec.decode(&mut buf)? {
            Some(packet) => packets.push(packet),
            None => panic!("{} trailing bytes do not form a packet", buf.len()),
        }
    }
    Ok(packets)
}

/// Encodes `packets` back to back.
pub fn encode_all(packets: &[Packet], version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for packet in packets {
        encode_packet(packet, version, u32::MAX, &mut buf).expect("encodes");
    }
    buf.to_vec()
}
