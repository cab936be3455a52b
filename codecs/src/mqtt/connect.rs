//! CONNECT and CONNACK: the packets, their MQTT 5 properties, and their wire form.
//!
//! CONNECT is where a connection's protocol version is learned, so its decoder takes no
//! version: it reads the protocol name and level and answers Unsupported Protocol Version
//! (0x84, or 3.1.1 return code 1) to anything but `MQIsdp`/3, `MQTT`/4 and `MQTT`/5.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{EncodeError, MqttError};
use super::properties::{
    properties_len, property_struct, put_properties, read_properties, with_prefix, Props,
};
use super::reason;
use super::topic::check_topic_name;
use super::types::{MqttString, ProtocolVersion, QoS, UserProperty};
use super::wire::{field_len, put_field, Reader};

property_struct! {
    /// MQTT 5 CONNECT properties.
    ConnectProperties {
        /// Seconds the session outlives the connection.
        SESSION_EXPIRY_INTERVAL => session_expiry_interval: Option<u32>,
        /// Enhanced authentication method.
        AUTHENTICATION_METHOD => authentication_method: Option<MqttString>,
        /// Enhanced authentication data.
        AUTHENTICATION_DATA => authentication_data: Option<Bytes>,
        /// 0: the server may only send reason strings / user properties on PUBLISH,
        /// CONNACK and DISCONNECT.
        REQUEST_PROBLEM_INFORMATION => request_problem_information: Option<u8>,
        /// 1: the client asks for Response Information in CONNACK.
        REQUEST_RESPONSE_INFORMATION => request_response_information: Option<u8>,
        /// How many unacknowledged QoS > 0 PUBLISHes the client accepts from the server.
        RECEIVE_MAXIMUM => receive_maximum: Option<u16>,
        /// Highest topic alias the client accepts from the server.
        TOPIC_ALIAS_MAXIMUM => topic_alias_maximum: Option<u16>,
        /// User properties.
        USER_PROPERTY => user_properties: Vec<UserProperty>,
        /// Largest packet the client accepts.
        MAXIMUM_PACKET_SIZE => maximum_packet_size: Option<u32>,
    }
}

property_struct! {
    /// MQTT 5 will properties.
    WillProperties {
        /// 1: the will payload is UTF-8.
        PAYLOAD_FORMAT_INDICATOR => payload_format_indicator: Option<u8>,
        /// Lifetime of the will message in seconds.
        MESSAGE_EXPIRY_INTERVAL => message_expiry_interval: Option<u32>,
        /// MIME type of the payload.
        CONTENT_TYPE => content_type: Option<MqttString>,
        /// Topic for a response.
        RESPONSE_TOPIC => response_topic: Option<MqttString>,
        /// Correlation data for a response.
        CORRELATION_DATA => correlation_data: Option<Bytes>,
        /// Seconds to wait before publishing the will.
        WILL_DELAY_INTERVAL => will_delay_interval: Option<u32>,
        /// User properties.
        USER_PROPERTY => user_properties: Vec<UserProperty>,
    }
}

property_struct! {
    /// MQTT 5 CONNACK properties.
    ConnAckProperties {
        /// Session expiry the server uses, if it differs from the client's.
        SESSION_EXPIRY_INTERVAL => session_expiry_interval: Option<u32>,
        /// Client identifier assigned by the server to a client that sent an empty one.
        ASSIGNED_CLIENT_IDENTIFIER => assigned_client_identifier: Option<MqttString>,
        /// Keepalive the server imposes, in seconds.
        SERVER_KEEP_ALIVE => server_keep_alive: Option<u16>,
        /// Enhanced authentication method.
        AUTHENTICATION_METHOD => authentication_method: Option<MqttString>,
        /// Enhanced authentication data.
        AUTHENTICATION_DATA => authentication_data: Option<Bytes>,
        /// Basis for response topics.
        RESPONSE_INFORMATION => response_information: Option<MqttString>,
        /// Another server to use.
        SERVER_REFERENCE => server_reference: Option<MqttString>,
        /// A human-readable reason.
        REASON_STRING => reason_string: Option<MqttString>,
        /// How many unacknowledged QoS > 0 PUBLISHes the server accepts.
        RECEIVE_MAXIMUM => receive_maximum: Option<u16>,
        /// Highest topic alias the server accepts.
        TOPIC_ALIAS_MAXIMUM => topic_alias_maximum: Option<u16>,
        /// Highest QoS the server supports (0 or 1; absent means 2).
        MAXIMUM_QOS => maximum_qos: Option<u8>,
        /// 0 if retained messages are not supported.
        RETAIN_AVAILABLE => retain_available: Option<u8>,
        /// User properties.
        USER_PROPERTY => user_properties: Vec<UserProperty>,
        /// Largest packet the server accepts.
        MAXIMUM_PACKET_SIZE => maximum_packet_size: Option<u32>,
        /// 0 if wildcard subscriptions are not supported.
        WILDCARD_SUBSCRIPTION_AVAILABLE => wildcard_subscription_available: Option<u8>,
        /// 0 if subscription identifiers are not supported.
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => subscription_identifiers_available: Option<u8>,
        /// 0 if shared subscriptions are not supported.
        SHARED_SUBSCRIPTION_AVAILABLE => shared_subscription_available: Option<u8>,
    }
}

/// The will message a CONNECT registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Topic name (validated: non-empty, no wildcards).
    pub topic: MqttString,
    /// Message body.
    pub payload: Bytes,
    /// QoS to publish it with.
    pub qos: QoS,
    /// Whether to retain it.
    pub retain: bool,
    /// MQTT 5 will properties (empty on 3.1.1).
    pub properties: Props<WillProperties>,
}

/// CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The version the client speaks; it fixes the connection's version.
    pub protocol: ProtocolVersion,
    /// Clean Session (3.1.1) / Clean Start (5).
    pub clean_start: bool,
    /// Keepalive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// Client identifier, possibly empty.
    pub client_id: MqttString,
    /// Will message.
    pub will: Option<Will>,
    /// User name.
    pub username: Option<MqttString>,
    /// Password (binary data).
    pub password: Option<Bytes>,
    /// MQTT 5 properties (empty on 3.1.1).
    pub properties: ConnectProperties,
}

/// CONNACK.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server resumed a stored session.
    pub session_present: bool,
    /// The 3.1.1 return code (0–5) or the MQTT 5 reason code, per the connection's version.
    /// [`ConnAck::refusal`] picks the right one.
    pub code: u8,
    /// MQTT 5 properties (empty on 3.1.1).
    pub properties: ConnAckProperties,
}

impl ConnAck {
    /// A refusal carrying `reason` (an MQTT 5 reason code) in the form `version` uses, or
    /// `None` when MQTT 3.1.1 has no return code for it (then the server just closes).
    pub fn refusal(version: ProtocolVersion, reason: u8) -> Option<Self> {
        let code = if version.is_v5() {
            reason
        } else {
            reason::v3_connack_code(reason)?
        };
        Some(Self {
            session_present: false,
            code,
            properties: ConnAckProperties::default(),
        })
    }
}

fn v3_no_properties(
    version: ProtocolVersion,
    empty: bool,
    what: &'static str,
) -> Result<(), EncodeError> {
    if version.is_v5() || empty {
        Ok(())
    } else {
        Err(EncodeError::NotRepresentable { version, what })
    }
}

impl Connect {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, MqttError> {
        let name = r.binary("protocol name")?;
        let level = r.u8("protocol level")?;
        let protocol = match (&name[..], level) {
            (b"MQTT", 4) => ProtocolVersion::V3_1_1,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (b"MQIsdp", 3) => ProtocolVersion::V3_1,
            _ => {
                return Err(MqttError::UnsupportedProtocolVersion {
                    name: String::from_utf8_lossy(&name).into_owned(),
                    level,
                })
            }
        };
        let flags = r.u8("connect flags")?;
        let will_flag = flags & 0x04 != 0;
        let will_qos = QoS::from_bits((flags >> 3) & 0x03).ok_or(MqttError::InvalidQos)?;
        let will_retain = flags & 0x20 != 0;
        let has_password = flags & 0x40 != 0;
        let has_username = flags & 0x80 != 0;
        if flags & 0x01 != 0
            || (!will_flag && (will_qos != QoS::AtMostOnce || will_retain))
            || (!protocol.is_v5() && has_password && !has_username)
        {
            return Err(MqttError::InvalidConnectFlags(flags));
        }
        let keep_alive = r.u16("keep alive")?;
        let mut properties = ConnectProperties::default();
        if protocol.is_v5() {
            read_properties(r, &mut properties)?;
        }
        let client_id = r.string("client identifier")?;
        let clean_start = flags & 0x02 != 0;
        match protocol {
            ProtocolVersion::V3_1 if client_id.is_empty() || client_id.len() > 23 => {
                return Err(MqttError::ClientIdNotValid(
                    "MQTT 3.1 client identifiers are 1 to 23 characters",
                ));
            }
            ProtocolVersion::V3_1_1 if client_id.is_empty() && !clean_start => {
                return Err(MqttError::ClientIdNotValid(
                    "an empty client identifier requires Clean Session",
                ));
            }
            _ => {}
        }
        let will = if will_flag {
            let mut will_properties = Props::<WillProperties>::none();
            if protocol.is_v5() {
                read_properties(r, &mut will_properties)?;
                check_response_topic(will_properties.response_topic.as_ref())?;
            }
            let topic = r.string("will topic")?;
            check_topic_name(&topic).map_err(MqttError::TopicNameInvalid)?;
            Some(Will {
                topic,
                payload: r.binary("will payload")?,
                qos: will_qos,
                retain: will_retain,
                properties: will_properties,
            })
        } else {
            None
        };
        let username = has_username.then(|| r.string("user name")).transpose()?;
        let password = has_password.then(|| r.binary("password")).transpose()?;
        r.finish()?;
        Ok(Self {
            protocol,
            clean_start,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    pub(crate) fn body_len(&self) -> Result<usize, EncodeError> {
        let v = self.protocol;
        v3_no_properties(v, self.properties.is_empty(), "CONNECT properties")?;
        if !v.is_v5() && self.password.is_some() && self.username.is_none() {
            return Err(EncodeError::NotRepresentable {
                version: v,
                what: "a password without a user name",
            });
        }
        let mut len = field_len("protocol name", v.protocol_name().len())? + 1 + 1 + 2;
        if v.is_v5() {
            len += with_prefix(properties_len(&self.properties)?);
        }
        len += field_len("client identifier", self.client_id.len())?;
        if let Some(will) = &self.will {
            v3_no_properties(v, will.properties.is_empty(), "will properties")?;
            if v.is_v5() {
                len += with_prefix(properties_len(&will.properties)?);
            }
            len += field_len("will topic", will.topic.len())?;
            len += field_len("will payload", will.payload.len())?;
        }
        if let Some(username) = &self.username {
            len += field_len("user name", username.len())?;
        }
        if let Some(password) = &self.password {
            len += field_len("password", password.len())?;
        }
        Ok(len)
    }

    pub(crate) fn write_body(&self, dst: &mut BytesMut) {
        let v = self.protocol;
        put_field(dst, v.protocol_name().as_bytes());
        dst.put_u8(v.level());
        let mut flags = u8::from(self.clean_start) << 1;
        if let Some(will) = &self.will {
            flags |= 0x04 | (will.qos as u8) << 3 | u8::from(will.retain) << 5;
        }
        flags |= u8::from(self.password.is_some()) << 6 | u8::from(self.username.is_some()) << 7;
        dst.put_u8(flags);
        dst.put_u16(self.keep_alive);
        if v.is_v5() {
            put_properties(
                dst,
                properties_len(&self.properties).unwrap_or(0),
                &self.properties,
            );
        }
        put_field(dst, self.client_id.as_bytes());
        if let Some(will) = &self.will {
            if v.is_v5() {
                put_properties(
                    dst,
                    properties_len(&will.properties).unwrap_or(0),
                    &will.properties,
                );
            }
            put_field(dst, will.topic.as_bytes());
            put_field(dst, &will.payload);
        }
        if let Some(username) = &self.username {
            put_field(dst, username.as_bytes());
        }
        if let Some(password) = &self.password {
            put_field(dst, password);
        }
    }
}

/// A Response Topic is a topic name: no wildcards.
pub(crate) fn check_response_topic(topic: Option<&MqttString>) -> Result<(), MqttError> {
    match topic {
        Some(t) if check_topic_name(t).is_err() => Err(MqttError::Protocol(
            "a response topic must be a topic name without wildcards",
        )),
        _ => Ok(()),
    }
}

impl ConnAck {
    pub(crate) fn decode(r: &mut Reader, v: ProtocolVersion) -> Result<Self, MqttError> {
        let flags = r.u8("acknowledge flags")?;
        if flags & 0xFE != 0 {
            return Err(MqttError::ReservedBits("CONNACK acknowledge flags"));
        }
        let code = r.u8("reason code")?;
        let valid = if v.is_v5() {
            reason::valid_for_connack(code)
        } else {
            code <= 5
        };
        if !valid {
            return Err(MqttError::InvalidReasonCode {
                packet: r.packet(),
                code,
            });
        }
        let session_present = flags & 0x01 != 0;
        if session_present && code != 0 {
            return Err(MqttError::Protocol(
                "a refusing CONNACK must not set Session Present",
            ));
        }
        let mut properties = ConnAckProperties::default();
        if v.is_v5() {
            read_properties(r, &mut properties)?;
        }
        r.finish()?;
        Ok(Self {
            session_present,
            code,
            properties,
        })
    }

    pub(crate) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        v3_no_properties(v, self.properties.is_empty(), "CONNACK properties")?;
        if !v.is_v5() && self.code > 5 {
            return Err(EncodeError::NotRepresentable {
                version: v,
                what: "a CONNACK return code above 5",
            });
        }
        if self.session_present && self.code != 0 {
            return Err(EncodeError::Invalid(
                "a refusing CONNACK sets Session Present",
            ));
        }
        let props = if v.is_v5() {
            with_prefix(properties_len(&self.properties)?)
        } else {
            0
        };
        Ok(2 + props)
    }

    pub(crate) fn write_body(&self, v: ProtocolVersion, dst: &mut BytesMut) {
        dst.put_u8(u8::from(self.session_present));
        dst.put_u8(self.code);
        if v.is_v5() {
            put_properties(
                dst,
                properties_len(&self.properties).unwrap_or(0),
                &self.properties,
            );
        }
    }
}
