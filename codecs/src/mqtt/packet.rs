//! The [`Packet`] enum over all fifteen MQTT control packets, and [`PacketType`].
//!
//! Packet structs live with their decoders and encoders: CONNECT / CONNACK in
//! [`connect`](super::connect), PUBLISH and its acknowledgements in
//! [`publish`](super::publish), SUBSCRIBE / UNSUBSCRIBE and their acknowledgements in
//! [`subscribe`](super::subscribe), DISCONNECT and AUTH in [`disconnect`](super::disconnect).

use std::fmt;

use super::connect::{ConnAck, Connect};
use super::disconnect::{Auth, Disconnect};
use super::publish::{PubAck, Publish};
use super::subscribe::{SubAck, Subscribe, UnsubAck, Unsubscribe};

/// The control packet type in the high nibble of the fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// CONNECT (1).
    Connect = 1,
    /// CONNACK (2).
    ConnAck = 2,
    /// PUBLISH (3).
    Publish = 3,
    /// PUBACK (4).
    PubAck = 4,
    /// PUBREC (5).
    PubRec = 5,
    /// PUBREL (6).
    PubRel = 6,
    /// PUBCOMP (7).
    PubComp = 7,
    /// SUBSCRIBE (8).
    Subscribe = 8,
    /// SUBACK (9).
    SubAck = 9,
    /// UNSUBSCRIBE (10).
    Unsubscribe = 10,
    /// UNSUBACK (11).
    UnsubAck = 11,
    /// PINGREQ (12).
    PingReq = 12,
    /// PINGRESP (13).
    PingResp = 13,
    /// DISCONNECT (14).
    Disconnect = 14,
    /// AUTH (15, MQTT 5 only).
    Auth = 15,
}

impl PacketType {
    /// The type for a fixed header's high nibble; 0 is reserved.
    #[inline]
    pub fn from_nibble(nibble: u8) -> Option<Self> {
        Some(match nibble {
            1 => Self::Connect,
            2 => Self::ConnAck,
            3 => Self::Publish,
            4 => Self::PubAck,
            5 => Self::PubRec,
            6 => Self::PubRel,
            7 => Self::PubComp,
            8 => Self::Subscribe,
            9 => Self::SubAck,
            10 => Self::Unsubscribe,
            11 => Self::UnsubAck,
            12 => Self::PingReq,
            13 => Self::PingResp,
            14 => Self::Disconnect,
            15 => Self::Auth,
            _ => return None,
        })
    }

    /// The flags the fixed header must carry, or `None` for PUBLISH (whose flags vary).
    #[inline]
    pub(crate) fn required_flags(self) -> Option<u8> {
        match self {
            Self::Publish => None,
            Self::PubRel | Self::Subscribe | Self::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "CONNECT",
            Self::ConnAck => "CONNACK",
            Self::Publish => "PUBLISH",
            Self::PubAck => "PUBACK",
            Self::PubRec => "PUBREC",
            Self::PubRel => "PUBREL",
            Self::PubComp => "PUBCOMP",
            Self::Subscribe => "SUBSCRIBE",
            Self::SubAck => "SUBACK",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::UnsubAck => "UNSUBACK",
            Self::PingReq => "PINGREQ",
            Self::PingResp => "PINGRESP",
            Self::Disconnect => "DISCONNECT",
            Self::Auth => "AUTH",
        })
    }
}

/// One MQTT control packet, in either direction.
///
/// Packets are moved by value several times on the way out of the decoder and through the
/// session, so a `Packet` is kept small (88 bytes): CONNECT and CONNACK are boxed because
/// they are large and rare, and the packets with large property structs (PUBLISH, SUBACK,
/// UNSUBACK, DISCONNECT, AUTH) keep them out of line ([`Props`](super::Props)), allocated
/// only when there are any. PUBLISH is inline because it is the hot path and, without
/// properties, must not allocate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Client → server: open a session.
    Connect(Box<Connect>),
    /// Server → client: the answer to CONNECT.
    ConnAck(Box<ConnAck>),
    /// Either direction: an application message.
    Publish(Publish),
    /// QoS 1 acknowledgement.
    PubAck(PubAck),
    /// QoS 2 step 1: received.
    PubRec(PubAck),
    /// QoS 2 step 2: release.
    PubRel(PubAck),
    /// QoS 2 step 3: complete.
    PubComp(PubAck),
    /// Client → server: add subscriptions.
    Subscribe(Subscribe),
    /// Server → client: the answer to SUBSCRIBE.
    SubAck(SubAck),
    /// Client → server: remove subscriptions.
    Unsubscribe(Unsubscribe),
    /// Server → client: the answer to UNSUBSCRIBE.
    UnsubAck(UnsubAck),
    /// Client → server keepalive probe.
    PingReq,
    /// Server → client keepalive answer.
    PingResp,
    /// Either direction (server → client only in MQTT 5): end the connection.
    Disconnect(Disconnect),
    /// MQTT 5 enhanced authentication exchange.
    Auth(Auth),
}

// Every move of a packet copies this much (see the type's documentation).
const _: () = assert!(std::mem::size_of::<Packet>() <= 88);

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect(_) => PacketType::Connect,
            Self::ConnAck(_) => PacketType::ConnAck,
            Self::Publish(_) => PacketType::Publish,
            Self::PubAck(_) => PacketType::PubAck,
            Self::PubRec(_) => PacketType::PubRec,
            Self::PubRel(_) => PacketType::PubRel,
            Self::PubComp(_) => PacketType::PubComp,
            Self::Subscribe(_) => PacketType::Subscribe,
            Self::SubAck(_) => PacketType::SubAck,
            Self::Unsubscribe(_) => PacketType::Unsubscribe,
            Self::UnsubAck(_) => PacketType::UnsubAck,
            Self::PingReq => PacketType::PingReq,
            Self::PingResp => PacketType::PingResp,
            Self::Disconnect(_) => PacketType::Disconnect,
            Self::Auth(_) => PacketType::Auth,
        }
    }
}
