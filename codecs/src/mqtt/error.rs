//! Typed errors of the MQTT codec.
//!
//! [`MqttError`] is what decoding refuses; every variant maps to the MQTT 5 reason code the
//! spec prescribes (Malformed Packet, Protocol Error, Packet too large, …) through
//! [`ProtocolError::answer`]. [`EncodeError`] is what encoding refuses: a packet this side
//! built that cannot go on the wire.

use crate::{ErrorAnswer, ProtocolError};

use super::packet::PacketType;
use super::reason;
use super::types::{InvalidString, ProtocolVersion};

/// Why a received MQTT packet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MqttError {
    /// The Remaining Length or another Variable Byte Integer is not a valid encoding.
    #[error("a variable byte integer is longer than four bytes or not minimally encoded")]
    BadVarInt,
    /// The declared packet size exceeds the configured maximum.
    #[error("the packet is {size} bytes, more than the maximum of {max} bytes")]
    PacketTooLarge {
        /// Declared size of the whole packet.
        size: u64,
        /// Configured maximum.
        max: u32,
    },
    /// Packet type 0, or AUTH on an MQTT 3 connection.
    #[error("packet type {0} is reserved")]
    ReservedPacketType(u8),
    /// The fixed header flags are not the ones the packet type requires.
    #[error("the fixed header flags {flags:#06b} are invalid for {packet}")]
    InvalidFlags {
        /// Packet type.
        packet: PacketType,
        /// The four flag bits.
        flags: u8,
    },
    /// The packet ends before a field it must contain.
    #[error("the {packet} packet ends inside its {field}")]
    Truncated {
        /// Packet type.
        packet: PacketType,
        /// The field being read.
        field: &'static str,
    },
    /// Bytes remain after the last field of a packet.
    #[error("the {packet} packet has {extra} bytes after its last field")]
    TrailingBytes {
        /// Packet type.
        packet: PacketType,
        /// Number of unread bytes.
        extra: usize,
    },
    /// A string field breaks the MQTT UTF-8 rules.
    #[error("the {field} is not a valid MQTT string: {reason}")]
    InvalidString {
        /// The field.
        field: &'static str,
        /// Why.
        reason: InvalidString,
    },
    /// CONNECT names a protocol or level this codec does not speak.
    #[error("protocol {name:?} level {level} is not MQTT 3.1, 3.1.1 or 5.0")]
    UnsupportedProtocolVersion {
        /// Protocol name, lossily decoded.
        name: String,
        /// Protocol level.
        level: u8,
    },
    /// A reserved bit or an invalid combination in the CONNECT flags.
    #[error("the CONNECT flags {0:#010b} are invalid")]
    InvalidConnectFlags(u8),
    /// The client identifier breaks a MUST of the connection's version.
    #[error("the client identifier is not valid: {0}")]
    ClientIdNotValid(&'static str),
    /// A QoS field holds 3.
    #[error("QoS 3 is not a valid quality of service")]
    InvalidQos,
    /// The topic name of a PUBLISH or will message is invalid.
    #[error("the topic name is invalid: {0}")]
    TopicNameInvalid(&'static str),
    /// A topic filter of a SUBSCRIBE or UNSUBSCRIBE is invalid.
    #[error("the topic filter is invalid: {0}")]
    TopicFilterInvalid(&'static str),
    /// A topic alias of 0, or above the maximum this side announced.
    #[error("topic alias {alias} is invalid (the maximum is {max})")]
    TopicAliasInvalid {
        /// The alias received.
        alias: u16,
        /// The announced maximum.
        max: u16,
    },
    /// A property identifier that does not exist, or is not allowed in this packet.
    #[error("property {id:#04x} is not allowed in {packet}")]
    PropertyNotAllowed {
        /// Packet type.
        packet: PacketType,
        /// Property identifier.
        id: u32,
    },
    /// A property that may appear once appears twice.
    #[error("property {id:#04x} appears more than once")]
    DuplicateProperty {
        /// Property identifier.
        id: u8,
    },
    /// A property value outside its allowed range.
    #[error("property {id:#04x} has the invalid value {value}")]
    InvalidPropertyValue {
        /// Property identifier.
        id: u8,
        /// The value received.
        value: u32,
    },
    /// A reason code the packet type does not allow.
    #[error("reason code {code:#04x} is not valid in {packet}")]
    InvalidReasonCode {
        /// Packet type.
        packet: PacketType,
        /// The code received.
        code: u8,
    },
    /// Reserved bits of SUBSCRIBE options or CONNACK flags are set.
    #[error("reserved bits are set in the {0}")]
    ReservedBits(&'static str),
    /// A rule of the protocol is broken by an otherwise well-formed packet.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// The first packet of a connection is not CONNECT.
    #[error("the first packet is {0}, not CONNECT")]
    ExpectedConnect(PacketType),
}

impl MqttError {
    /// The MQTT 5 reason code that answers this error.
    pub fn reason_code(&self) -> u8 {
        match self {
            Self::BadVarInt
            | Self::ReservedPacketType(_)
            | Self::InvalidFlags { .. }
            | Self::Truncated { .. }
            | Self::TrailingBytes { .. }
            | Self::InvalidString { .. }
            | Self::InvalidConnectFlags(_)
            | Self::InvalidQos
            | Self::PropertyNotAllowed { .. }
            | Self::InvalidReasonCode { .. }
            | Self::ReservedBits(_) => reason::MALFORMED_PACKET,
            Self::PacketTooLarge { .. } => reason::PACKET_TOO_LARGE,
            Self::UnsupportedProtocolVersion { .. } => reason::UNSUPPORTED_PROTOCOL_VERSION,
            Self::ClientIdNotValid(_) => reason::CLIENT_IDENTIFIER_NOT_VALID,
            Self::TopicNameInvalid(_) => reason::TOPIC_NAME_INVALID,
            Self::TopicFilterInvalid(_) => reason::TOPIC_FILTER_INVALID,
            Self::TopicAliasInvalid { .. } => reason::TOPIC_ALIAS_INVALID,
            Self::DuplicateProperty { .. }
            | Self::InvalidPropertyValue { .. }
            | Self::Protocol(_)
            | Self::ExpectedConnect(_) => reason::PROTOCOL_ERROR,
        }
    }
}

impl ProtocolError for MqttError {
    fn answer(&self) -> ErrorAnswer {
        match self {
            // Before CONNECT there is no session to answer in: the spec says close.
            Self::ExpectedConnect(_) => ErrorAnswer::Close,
            _ => ErrorAnswer::MqttReason(self.reason_code()),
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A string or binary field is longer than the 65,535 bytes its length prefix allows.
    #[error("the {field} is {len} bytes, more than the 65535 an MQTT field can hold")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// The packet is larger than the peer accepts (its Maximum Packet Size) or than the
    /// 268,435,455-byte Remaining Length limit.
    #[error("the packet is {size} bytes, more than the peer's maximum of {max} bytes")]
    PacketTooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        max: u32,
    },
    /// A property value outside the range the wire can carry (Variable Byte Integer).
    #[error("the {0} value does not fit a variable byte integer")]
    ValueOutOfRange(&'static str),
    /// The packet cannot be expressed in this protocol version (for example a failure
    /// reason code on an MQTT 3.1.1 PUBACK, which would read as success).
    #[error("the packet cannot be expressed in {version}: {what}")]
    NotRepresentable {
        /// The connection's version.
        version: ProtocolVersion,
        /// What does not fit.
        what: &'static str,
    },
    /// The packet breaks a rule this side must keep (packet id 0 on QoS > 0, empty lists).
    #[error("the packet is invalid: {0}")]
    Invalid(&'static str),
    /// The codec does not know the protocol version yet (no CONNECT seen).
    #[error("the protocol version is not known before CONNECT")]
    VersionUnknown,
}
