//! PUBLISH and its acknowledgements (PUBACK, PUBREC, PUBREL, PUBCOMP).
//!
//! This is the hot path: decoding a PUBLISH slices the topic and payload out of the packet
//! and, without MQTT 5 properties, allocates nothing (with them, their struct is boxed
//! once, and user properties add a `Vec`). The topic is checked as a topic name
//! (UTF-8, no U+0000, no wildcards); MQTT 5 allows it to be empty only when a Topic Alias
//! stands in for it, which the session resolves.

use bytes::{BufMut, Bytes, BytesMut};

use super::connect::check_response_topic;
use super::error::{EncodeError, MqttError};
use super::packet::{Packet, PacketType};
use super::properties::{
    properties_len, property_struct, put_properties, read_properties, with_prefix, AckProperties,
    Props,
};
use super::reason;
use super::topic::check_topic_name;
use super::types::{check_utf8, is_plain_ascii, MqttString, ProtocolVersion, QoS, UserProperty};
use super::wire::{field_len, put_field, Reader};

property_struct! {
    /// MQTT 5 PUBLISH properties. Without user properties or subscription identifiers
    /// nothing here allocates.
    PublishProperties {
        /// 1: the payload is UTF-8.
        PAYLOAD_FORMAT_INDICATOR => payload_format_indicator: Option<u8>,
        /// Lifetime of the message in seconds.
        MESSAGE_EXPIRY_INTERVAL => message_expiry_interval: Option<u32>,
        /// MIME type of the payload.
        CONTENT_TYPE => content_type: Option<MqttString>,
        /// Topic for a response.
        RESPONSE_TOPIC => response_topic: Option<MqttString>,
        /// Correlation data for a response.
        CORRELATION_DATA => correlation_data: Option<Bytes>,
        /// Identifiers of the matching subscriptions (server → client only).
        SUBSCRIPTION_IDENTIFIER => subscription_identifiers: Vec<u32>,
        /// Topic alias standing for (or being set to) the topic name.
        TOPIC_ALIAS => topic_alias: Option<u16>,
        /// User properties.
        USER_PROPERTY => user_properties: Vec<UserProperty>,
    }
}

/// PUBLISH.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Publish {
    /// Re-delivery of an earlier attempt (QoS > 0 only).
    pub dup: bool,
    /// Quality of service.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Topic name; empty only on MQTT 5 with a topic alias.
    pub topic: MqttString,
    /// Packet identifier: non-zero for QoS 1 and 2, 0 for QoS 0.
    pub packet_id: u16,
    /// Application payload, a slice of the read buffer.
    pub payload: Bytes,
    /// MQTT 5 properties (empty on 3.1.1).
    pub properties: Props<PublishProperties>,
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP (the [`Packet`](super::Packet) variant says which).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PubAck {
    /// The packet identifier being acknowledged.
    pub packet_id: u16,
    /// MQTT 5 reason code; always 0 (success) on 3.1.1.
    pub reason_code: u8,
    /// MQTT 5 properties.
    pub properties: AckProperties,
}

impl PubAck {
    /// A success acknowledgement without properties.
    pub fn new(packet_id: u16) -> Self {
        Self {
            packet_id,
            ..Self::default()
        }
    }
}

#[inline]
pub(crate) fn read_packet_id(r: &mut Reader) -> Result<u16, MqttError> {
    match r.u16("packet identifier")? {
        0 => Err(MqttError::Protocol("packet identifier 0 is not allowed")),
        id => Ok(id),
    }
}

impl Publish {
    /// Decodes a PUBLISH body. It returns the decoder's own result type so that the packet
    /// is moved once on its way out rather than once per wrapper (`Publish`, `Packet`,
    /// `Option`, `Result`).
    #[inline]
    pub(crate) fn decode(
        r: &mut Reader,
        flags: u8,
        v: ProtocolVersion,
    ) -> Result<Option<Packet>, MqttError> {
        let dup = flags & 0x08 != 0;
        let qos = QoS::from_bits((flags >> 1) & 0x03).ok_or(MqttError::InvalidQos)?;
        if dup && qos == QoS::AtMostOnce {
            return Err(MqttError::InvalidFlags {
                packet: PacketType::Publish,
                flags,
            });
        }
        // One pass settles both the string rules and the topic name rules for the usual
        // ASCII topic; any other topic gets the precise checks, which name the broken rule.
        let topic = r.binary("topic name")?;
        let plain = !topic.is_empty() && is_plain_ascii(&topic, true);
        if !plain {
            check_utf8(&topic).map_err(|reason| MqttError::InvalidString {
                field: "topic name",
                reason,
            })?;
        }
        let packet_id = if qos == QoS::AtMostOnce {
            0
        } else {
            read_packet_id(r)?
        };
        let mut publish = Self {
            dup,
            qos,
            retain: flags & 0x01 != 0,
            topic: MqttString::from_checked(topic),
            packet_id,
            payload: Bytes::new(),
            properties: Props::none(),
        };
        if v.is_v5() {
            read_properties(r, &mut publish.properties)?;
            check_response_topic(publish.properties.response_topic.as_ref())?;
        }
        if publish.topic.is_empty() && v.is_v5() {
            if publish.properties.topic_alias.is_none() {
                return Err(MqttError::Protocol(
                    "an empty topic name needs a topic alias",
                ));
            }
        } else if !plain {
            check_topic_name(&publish.topic).map_err(MqttError::TopicNameInvalid)?;
        }
        publish.payload = r.rest();
        Ok(Some(Packet::Publish(publish)))
    }

    pub(crate) fn first_byte(&self) -> u8 {
        0x30 | u8::from(self.dup) << 3 | (self.qos as u8) << 1 | u8::from(self.retain)
    }

    pub(crate) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        if (self.qos == QoS::AtMostOnce) != (self.packet_id == 0) {
            return Err(EncodeError::Invalid(
                "QoS 0 has no packet identifier and QoS 1 and 2 need a non-zero one",
            ));
        }
        if self.dup && self.qos == QoS::AtMostOnce {
            return Err(EncodeError::Invalid("DUP is set on a QoS 0 PUBLISH"));
        }
        if self.topic.is_empty() && !(v.is_v5() && self.properties.topic_alias.is_some()) {
            return Err(EncodeError::Invalid("the topic name is empty"));
        }
        let mut len = field_len("topic name", self.topic.len())? + self.payload.len();
        if self.qos != QoS::AtMostOnce {
            len += 2;
        }
        if v.is_v5() {
            len += with_prefix(properties_len(&self.properties)?);
        } else if !self.properties.is_empty() {
            return Err(EncodeError::NotRepresentable {
                version: v,
                what: "PUBLISH properties",
            });
        }
        Ok(len)
    }

    pub(crate) fn write_body(&self, v: ProtocolVersion, dst: &mut BytesMut) {
        put_field(dst, self.topic.as_bytes());
        if self.qos != QoS::AtMostOnce {
            dst.put_u16(self.packet_id);
        }
        if v.is_v5() {
            put_properties(
                dst,
                properties_len(&self.properties).unwrap_or(0),
                &self.properties,
            );
        }
        dst.put_slice(&self.payload);
    }
}

impl PubAck {
    pub(crate) fn decode(r: &mut Reader, v: ProtocolVersion) -> Result<Self, MqttError> {
        let packet_id = read_packet_id(r)?;
        let mut ack = Self::new(packet_id);
        // MQTT 5 may omit the reason code (success) and the properties (none).
        if v.is_v5() && !r.is_empty() {
            ack.reason_code = r.u8("reason code")?;
            let valid = match r.packet() {
                PacketType::PubAck | PacketType::PubRec => {
                    reason::valid_for_puback(ack.reason_code)
                }
                _ => reason::valid_for_pubrel(ack.reason_code),
            };
            if !valid {
                return Err(MqttError::InvalidReasonCode {
                    packet: r.packet(),
                    code: ack.reason_code,
                });
            }
            if !r.is_empty() {
                read_properties(r, &mut ack.properties)?;
                ack.properties.order.explicit_empty = ack.properties.is_empty();
            }
        }
        r.finish()?;
        Ok(ack)
    }

    pub(crate) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.packet_id == 0 {
            return Err(EncodeError::Invalid("packet identifier 0"));
        }
        if !v.is_v5() {
            if self.reason_code != reason::SUCCESS || !self.properties.is_empty() {
                return Err(EncodeError::NotRepresentable {
                    version: v,
                    what: "an acknowledgement with a reason code or properties",
                });
            }
            return Ok(2);
        }
        Ok(match (self.reason_code, self.omit_properties()) {
            (reason::SUCCESS, true) => 2,
            (_, true) => 3,
            (_, false) => 3 + with_prefix(properties_len(&self.properties)?),
        })
    }

    /// Whether the Property Length is left out: no properties, and none was on the wire.
    fn omit_properties(&self) -> bool {
        self.properties.is_empty() && !self.properties.order.explicit_empty
    }

    pub(crate) fn write_body(&self, v: ProtocolVersion, dst: &mut BytesMut) {
        dst.put_u16(self.packet_id);
        if !v.is_v5() || (self.reason_code == reason::SUCCESS && self.omit_properties()) {
            return;
        }
        dst.put_u8(self.reason_code);
        if !self.omit_properties() {
            put_properties(
                dst,
                properties_len(&self.properties).unwrap_or(0),
                &self.properties,
            );
        }
    }
}
