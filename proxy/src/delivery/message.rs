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
//!
//! A message with an MQTT 5 Message Expiry Interval is sent with what is left of it, in
//! whole seconds (MQTT 5 §3.3.2.3.3), so that number is part of the variant: subscribers
//! served within the same second share the bytes, a later second encodes the variant anew
//! and replaces the earlier one. An expired message is not sent at all.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use codecs::mqtt::{
    encode_packet, EncodeError, MqttString, Packet, Props, ProtocolVersion, Publish,
    PublishProperties, QoS,
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
    /// When it expires (MQTT 5 Message Expiry Interval), in milliseconds since the Unix
    /// epoch.
    pub expires_at: Option<u64>,
    /// The variants encoded so far (usually one).
    encoded: RefCell<Vec<Encoded>>,
}

/// Whether a message expiring at `expires_at` (milliseconds since the Unix epoch) has
/// expired at `now_ms`.
pub fn expired(expires_at: Option<u64>, now_ms: u64) -> bool {
    expires_at.is_some_and(|at| at <= now_ms)
}

/// What a subscriber's connection says about the PUBLISHes it takes.
#[derive(Debug, Clone, Copy)]
pub struct Recipient {
    /// Its protocol version (MQTT 3.1.1 gets no properties).
    pub version: ProtocolVersion,
    /// Its Maximum Packet Size.
    pub max_packet_size: u32,
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
    /// The Message Expiry Interval left, seconds (MQTT 5 only).
    expiry: Option<u32>,
}

impl Message {
    /// A message not yet encoded, expiring at `expires_at` (milliseconds since the Unix
    /// epoch), if ever.
    pub fn new(
        topic: MqttString,
        payload: Bytes,
        properties: Rc<PublishProperties>,
        expires_at: Option<u64>,
    ) -> Message {
        Message {
            topic,
            payload,
            properties,
            expires_at,
            encoded: RefCell::new(Vec::new()),
        }
    }

    /// Whether it has expired at `now_ms` (milliseconds since the Unix epoch): it is no
    /// longer sent to anyone.
    pub fn expired(&self, now_ms: u64) -> bool {
        expired(self.expires_at, now_ms)
    }

    /// What is left of its Message Expiry Interval at `now_ms`, in seconds rounded up.
    pub fn expiry_left(&self, now_ms: u64) -> Option<u32> {
        let left = self.expires_at?.saturating_sub(now_ms).div_ceil(1000);
        Some(u32::try_from(left).unwrap_or(u32::MAX).max(1))
    }

    /// Appends this message's PUBLISH to `out` for a fresh delivery (no DUP, no
    /// subscription identifiers) to `to` at `qos` with `retain`, numbered `packet_id` (0
    /// for QoS 0), with what is left of its expiry at `now_ms` (milliseconds since the Unix
    /// epoch; only read for a message that expires), refusing it when larger than the
    /// recipient's Maximum Packet Size. Nothing is written on error.
    pub fn write(
        &self,
        to: Recipient,
        qos: QoS,
        retain: bool,
        packet_id: u16,
        now_ms: u64,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let (version, max_size) = (to.version, to.max_packet_size);
        let v5 = version.is_v5();
        let variant = Variant {
            v5,
            qos,
            retain,
            expiry: if v5 { self.expiry_left(now_ms) } else { None },
        };
        let mut encoded = self.encoded.borrow_mut();
        let i = match encoded.iter().position(|e| e.variant == variant) {
            Some(i) => i,
            None => {
                let fresh = self.encode(version, variant)?;
                // Only the expiry left differs: the earlier second is not needed again.
                let stale = encoded.iter().position(|e| {
                    Variant {
                        expiry: variant.expiry,
                        ..e.variant
                    } == variant
                });
                match stale {
                    Some(i) => {
                        encoded[i] = fresh;
                        i
                    }
                    None => {
                        encoded.push(fresh);
                        encoded.len() - 1
                    }
                }
            }
        };
        let e = &encoded[i];
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
                let mut p = (*self.properties).clone();
                p.message_expiry_interval = variant.expiry;
                p.into()
            } else {
                Props::none()
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
    now_ms: u64,
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
            let mut p = (*message.properties).clone();
            p.message_expiry_interval = message.expiry_left(now_ms);
            p.into()
        } else {
            Props::none()
        },
    });
    encode_packet(&packet, version, u32::MAX, out).expect("encodable");
}

#[cfg(test)]
mod tests {
    use codecs::Decoder;

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
            None,
        )
    }

    fn to(version: ProtocolVersion) -> Recipient {
        Recipient {
            version,
            max_packet_size: u32::MAX,
        }
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
                            m.write(to(version), qos, retain, id, 0, &mut shared)
                                .unwrap();
                            let mut own = BytesMut::from(&b"before"[..]);
                            encode_per_subscriber(&m, version, qos, retain, id, 0, &mut own);
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
        let small = Recipient {
            version: ProtocolVersion::V5,
            max_packet_size: 50,
        };
        let e = m
            .write(small, QoS::AtLeastOnce, false, 9, 0, &mut out)
            .unwrap_err();
        assert!(matches!(e, EncodeError::PacketTooLarge { max: 50, .. }));
        assert!(out.is_empty());
    }

    #[test]
    fn an_expiring_message_carries_what_is_left_of_its_interval() {
        let mut m = message(10);
        // Published with 60 s at t = 100 s.
        m.expires_at = Some(160_000);
        assert_eq!(m.expiry_left(100_000), Some(60));
        assert_eq!(m.expiry_left(100_001), Some(60), "rounded up");
        assert_eq!(m.expiry_left(159_999), Some(1));
        assert!(!m.expired(159_999) && m.expired(160_000));
        for (now, left) in [(100_000, 60), (100_500, 60), (130_000, 30), (159_000, 1)] {
            for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
                let mut shared = BytesMut::new();
                m.write(to(version), QoS::AtLeastOnce, false, 7, now, &mut shared)
                    .unwrap();
                let mut own = BytesMut::new();
                encode_per_subscriber(&m, version, QoS::AtLeastOnce, false, 7, now, &mut own);
                assert_eq!(shared, own, "{now} {version:?}");
                let mut codec = codecs::mqtt::MqttCodec::with_version(version, u32::MAX);
                let Ok(Some(Packet::Publish(p))) = codec.decode(&mut shared) else {
                    panic!("a PUBLISH");
                };
                let expected = version.is_v5().then_some(left);
                assert_eq!(p.properties.message_expiry_interval, expected);
            }
        }
        // A later second replaced the earlier one: one entry per (version, QoS, retain).
        assert_eq!(m.encoded.borrow().len(), 2);
    }
}
