//! One Kafka record as an MQTT message, shared by every subscriber of the shard it matched,
//! with its PUBLISH encoded once per variant.
//!
//! A PUBLISH differs between subscribers only in its QoS, retain flag, protocol version
//! (MQTT 3.1.1 has no properties), packet identifier, DUP flag and subscription
//! identifiers. The common case, a fresh delivery without subscription identifiers, is
//! encoded the first time a subscriber needs its (version, QoS, retain) variant and the
//! bytes are kept here; every other subscriber of that variant copies them into its write
//! buffer and writes its own packet identifier over the two bytes that hold it. That
//! replaces, per subscriber, a clone of the MQTT 5 properties (their user-property vector),
//! the length computations and the field-by-field encoding with one `memcpy` (the write
//! buffer needs the bytes in any case: it is written to the socket, or framed for a
//! WebSocket, as one buffer). Redeliveries (DUP) and messages with subscription
//! identifiers are encoded per subscriber, as before.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use codecs::mqtt::{
    encode_packet, EncodeError, MqttString, Packet, ProtocolVersion, Publish, PublishProperties,
    QoS,
};

/// A message for subscribers: topic, payload and MQTT 5 properties (all shared), and its
/// encodings.
#[derive(Debug)]
pub struct Message {
    /// The MQTT topic (the record's key), checked once for all subscribers.
    pub topic: MqttString,
    /// The payload (the record's value).
    pub payload: Bytes,
    /// MQTT 5 properties from the record's headers.
    pub properties: Rc<PublishProperties>,
    /// The variants encoded so far (usually one).
    encoded: RefCell<Vec<Encoded>>,
}

/// One encoded variant.
#[derive(Debug)]
struct Encoded {
    variant: Variant,
    bytes: Bytes,
    /// Where the packet identifier is (QoS 1 and 2).
    packet_id_at: usize,
}

/// What makes two subscribers' PUBLISHes of one message differ, packet identifier aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Variant {
    v5: bool,
    qos: QoS,
    retain: bool,
}

impl Message {
    /// A message not yet encoded.
    pub fn new(topic: MqttString, payload: Bytes, properties: Rc<PublishProperties>) -> Message {
        Message {
            topic,
            payload,
            properties,
            encoded: RefCell::new(Vec::new()),
        }
    }

    /// Appends this message's PUBLISH to `out` for a fresh delivery (no DUP, no
    /// subscription identifiers) at `qos` with `retain`, numbered `packet_id` (0 for QoS
    /// 0), refusing it when larger than `max_size` (the client's Maximum Packet Size).
    /// Nothing is written on error.
    pub fn write(
        &self,
        version: ProtocolVersion,
        qos: QoS,
        retain: bool,
        packet_id: u16,
        max_size: u32,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let variant = Variant {
            v5: version.is_v5(),
            qos,
            retain,
        };
        let mut encoded = self.encoded.borrow_mut();
        let e = match encoded.iter().position(|e| e.variant == variant) {
            Some(i) => &encoded[i],
            None => {
                encoded.push(self.encode(version, variant)?);
                encoded.last().expect("just pushed")
            }
        };
        if e.bytes.len() > max_size as usize {
            return Err(EncodeError::PacketTooLarge {
                size: e.bytes.len(),
                max: max_size,
            });
        }
        let start = out.len();
        out.extend_from_slice(&e.bytes);
        if qos != QoS::AtMostOnce {
            let at = start + e.packet_id_at;
            out[at..at + 2].copy_from_slice(&packet_id.to_be_bytes());
        }
        Ok(())
    }

    fn encode(&self, version: ProtocolVersion, variant: Variant) -> Result<Encoded, EncodeError> {
        let packet = Packet::Publish(Publish {
            dup: false,
            qos: variant.qos,
            retain: variant.retain,
            topic: self.topic.clone(),
            // A placeholder (QoS 1 and 2 need a non-zero one): each subscriber writes its own.
            packet_id: u16::from(variant.qos != QoS::AtMostOnce),
            payload: self.payload.clone(),
            // MQTT 3.1.1 has no properties.
            properties: if variant.v5 {
                (*self.properties).clone()
            } else {
                PublishProperties::default()
            },
        });
        let mut buf = BytesMut::new();
        encode_packet(&packet, version, u32::MAX, &mut buf)?;
        // Fixed header (type byte, Remaining Length of 1–4 bytes), then the topic with its
        // 2-byte length, then the packet identifier.
        let length_bytes = buf[1..].iter().take_while(|b| **b & 0x80 != 0).count() + 1;
        let packet_id_at = 1 + length_bytes + 2 + self.topic.as_str().len();
        Ok(Encoded {
            variant,
            bytes: buf.freeze(),
            packet_id_at,
        })
    }
}

/// Appends `message` encoded the way each subscriber did before it was shared (for tests
/// and the cost comparison): the reference the shared encoding must match byte for byte.
#[cfg(test)]
fn encode_per_subscriber(
    message: &Message,
    version: ProtocolVersion,
    qos: QoS,
    retain: bool,
    packet_id: u16,
    out: &mut BytesMut,
) {
    let packet = Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: message.topic.clone(),
        packet_id,
        payload: message.payload.clone(),
        properties: if version.is_v5() {
            (*message.properties).clone()
        } else {
            PublishProperties::default()
        },
    });
    encode_packet(&packet, version, u32::MAX, out).expect("encodable");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload_len: usize) -> Message {
        let mut props = PublishProperties::default();
        props.content_type = Some(MqttString::try_from("text/plain").unwrap());
        props.user_properties.push((
            MqttString::try_from("trace").unwrap(),
            MqttString::try_from("abc").unwrap(),
        ));
        Message::new(
            MqttString::try_from("sensors/room-1/temperature").unwrap(),
            Bytes::from(vec![7u8; payload_len]),
            Rc::new(props),
        )
    }

    #[test]
    fn shared_bytes_equal_a_per_subscriber_encoding() {
        // 100 and 200 bytes: Remaining Length of one and of two bytes.
        for len in [0, 100, 200, 70_000] {
            let m = message(len);
            for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
                for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                    for retain in [false, true] {
                        for id in [1u16, 0x1234, u16::MAX] {
                            let id = if qos == QoS::AtMostOnce { 0 } else { id };
                            let mut shared = BytesMut::from(&b"before"[..]);
                            m.write(version, qos, retain, id, u32::MAX, &mut shared)
                                .unwrap();
                            let mut own = BytesMut::from(&b"before"[..]);
                            encode_per_subscriber(&m, version, qos, retain, id, &mut own);
                            assert_eq!(shared, own, "{len} {version:?} {qos:?} {retain} {id}");
                        }
                    }
                }
            }
            assert_eq!(m.encoded.borrow().len(), 12, "one encoding per variant");
        }
    }

    #[test]
    fn larger_than_the_clients_maximum_is_refused_and_nothing_written() {
        let m = message(100);
        let mut out = BytesMut::new();
        let e = m
            .write(
                ProtocolVersion::V5,
                QoS::AtLeastOnce,
                false,
                9,
                50,
                &mut out,
            )
            .unwrap_err();
        assert!(matches!(e, EncodeError::PacketTooLarge { max: 50, .. }));
        assert!(out.is_empty());
    }
}
