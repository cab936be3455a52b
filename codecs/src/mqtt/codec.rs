//! [`MqttCodec`]: the [`Decoder`] and [`Encoder`] for MQTT control packets.
//!
//! Decoding is check-then-parse. From the fixed header alone the codec rejects a reserved
//! packet type, wrong flags, a first packet that is not CONNECT, and a declared size above
//! the configured maximum (Packet too large, before any of the body has arrived). Only when
//! the whole packet is buffered is it split off the read buffer, frozen, and parsed from
//! that [`Bytes`] slice, so every string and payload in the result shares the read buffer.

use bytes::{Buf, BufMut, BytesMut};

use crate::{Decoder, Encoder};

use super::connect::{ConnAck, Connect};
use super::disconnect::{Auth, Disconnect};
use super::error::{EncodeError, MqttError};
use super::packet::{Packet, PacketType};
use super::publish::{PubAck, Publish};
use super::reason;
use super::subscribe::{SubAck, Subscribe, UnsubAck, Unsubscribe};
use super::types::ProtocolVersion;
use super::wire::{peek_varint, put_varint, varint_len, Reader, VARINT_MAX};

/// Sans-IO MQTT codec for one connection, usable on either side.
///
/// A server-side codec ([`MqttCodec::server`]) accepts only CONNECT first and learns the
/// protocol version from it. A codec built [`with_version`](MqttCodec::with_version) (a
/// client, a test) starts with the version known.
#[derive(Debug, Clone)]
pub struct MqttCodec {
    version: Option<ProtocolVersion>,
    /// Version to answer a failed CONNECT with (read from its header before the failure).
    connect_hint: Option<ProtocolVersion>,
    connect_seen: bool,
    max_packet_size: u32,
    peer_max_packet_size: u32,
}

impl MqttCodec {
    /// Default limit on the size of a received packet: 1 MiB.
    pub const DEFAULT_MAX_PACKET_SIZE: u32 = 1 << 20;

    /// A codec for the server side of a connection: the first packet must be CONNECT.
    pub fn server(max_packet_size: u32) -> Self {
        Self {
            version: None,
            connect_hint: None,
            connect_seen: false,
            max_packet_size,
            peer_max_packet_size: u32::MAX,
        }
    }

    /// A codec whose protocol version is already known (the client side, tests, tools).
    pub fn with_version(version: ProtocolVersion, max_packet_size: u32) -> Self {
        Self {
            version: Some(version),
            ..Self::server(max_packet_size)
        }
    }

    /// The connection's protocol version, once known.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// The largest packet this side accepts.
    pub fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    /// The largest packet the peer accepts (its MQTT 5 Maximum Packet Size; unlimited
    /// until it said so).
    pub fn peer_max_packet_size(&self) -> u32 {
        self.peer_max_packet_size
    }

    /// Limits encoded packets to the peer's MQTT 5 Maximum Packet Size.
    pub fn set_peer_max_packet_size(&mut self, max: u32) {
        self.peer_max_packet_size = max;
    }

    /// The packet that tells the peer about `error` before the connection is closed, with the
    /// version to encode it in (see [`encode_packet`]): a CONNACK refusal while the CONNECT
    /// is being decoded, a DISCONNECT on MQTT 5 afterwards, and nothing on MQTT 3.1.1 after
    /// CONNECT (which has no way to say it: the connection is just closed).
    pub fn error_reply(&self, error: &MqttError) -> Option<(ProtocolVersion, Packet)> {
        if let MqttError::ExpectedConnect(_) = error {
            return None;
        }
        let code = error.reason_code();
        if let (Some(version), None) = (self.version, self.connect_hint) {
            if !version.is_v5() {
                return None;
            }
            let code = if reason::valid_for_disconnect(code) {
                code
            } else {
                reason::PROTOCOL_ERROR
            };
            return Some((version, Packet::Disconnect(Disconnect::new(code))));
        }
        // Refusing a CONNECT: answer in the format of the level the client asked for.
        let version = match error {
            MqttError::UnsupportedProtocolVersion { level: 5, .. } => ProtocolVersion::V5,
            MqttError::UnsupportedProtocolVersion { .. } => ProtocolVersion::V3_1_1,
            _ => self.connect_hint.unwrap_or(ProtocolVersion::V3_1_1),
        };
        let code = if reason::valid_for_connack(code) {
            code
        } else {
            reason::PROTOCOL_ERROR
        };
        let connack = ConnAck::refusal(version, code)?;
        Some((version, Packet::ConnAck(Box::new(connack))))
    }

    fn decode_connect(&mut self, r: &mut Reader) -> Result<Packet, MqttError> {
        if self.connect_seen {
            return Err(MqttError::Protocol("a second CONNECT is not allowed"));
        }
        self.connect_hint = connect_version_hint(r);
        let connect = Connect::decode(r)?;
        self.connect_hint = None;
        self.connect_seen = true;
        self.version = Some(connect.protocol);
        Ok(Packet::Connect(Box::new(connect)))
    }

    #[inline]
    fn decode_body(
        &mut self,
        packet: PacketType,
        flags: u8,
        r: &mut Reader,
    ) -> Result<Option<Packet>, MqttError> {
        // `decode` lets packets other than CONNECT through only once the version is known.
        let v = self.version.unwrap_or(ProtocolVersion::V3_1_1);
        Ok(Some(match packet {
            PacketType::Connect => self.decode_connect(r)?,
            PacketType::ConnAck => Packet::ConnAck(Box::new(ConnAck::decode(r, v)?)),
            // Returned as is: see `Publish::decode`.
            PacketType::Publish => return Publish::decode(r, flags, v),
            PacketType::PubAck => Packet::PubAck(PubAck::decode(r, v)?),
            PacketType::PubRec => Packet::PubRec(PubAck::decode(r, v)?),
            PacketType::PubRel => Packet::PubRel(PubAck::decode(r, v)?),
            PacketType::PubComp => Packet::PubComp(PubAck::decode(r, v)?),
            PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(r, v)?),
            PacketType::SubAck => Packet::SubAck(SubAck::decode(r, v)?),
            PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(r, v)?),
            PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(r, v)?),
            PacketType::PingReq => {
                r.finish()?;
                Packet::PingReq
            }
            PacketType::PingResp => {
                r.finish()?;
                Packet::PingResp
            }
            PacketType::Disconnect => Packet::Disconnect(Disconnect::decode(r, v)?),
            PacketType::Auth => Packet::Auth(Auth::decode(r)?),
        }))
    }
}

/// Reads the protocol level of a CONNECT body without consuming it, so that a CONNECT that
/// fails later can still be refused in the client's own CONNACK format.
fn connect_version_hint(r: &Reader) -> Option<ProtocolVersion> {
    let body = r.peek();
    let name_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    match body.get(2 + name_len)? {
        5 => Some(ProtocolVersion::V5),
        3 => Some(ProtocolVersion::V3_1),
        _ => Some(ProtocolVersion::V3_1_1),
    }
}

impl Decoder for MqttCodec {
    type Frame = Packet;
    type Error = MqttError;

    #[inline]
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, MqttError> {
        let Some(&first) = src.first() else {
            return Ok(None);
        };
        let nibble = first >> 4;
        let packet =
            PacketType::from_nibble(nibble).ok_or(MqttError::ReservedPacketType(nibble))?;
        let flags = first & 0x0F;
        if packet
            .required_flags()
            .is_some_and(|required| required != flags)
        {
            return Err(MqttError::InvalidFlags { packet, flags });
        }
        if self.version.is_none() && packet != PacketType::Connect {
            return Err(MqttError::ExpectedConnect(packet));
        }
        if packet == PacketType::Auth && self.version.is_some_and(|v| !v.is_v5()) {
            return Err(MqttError::ReservedPacketType(nibble));
        }
        let Some((remaining, len_bytes)) = peek_varint(&src[1..])? else {
            return Ok(None);
        };
        let header = 1 + len_bytes;
        let size = header as u64 + u64::from(remaining);
        if size > u64::from(self.max_packet_size) {
            return Err(MqttError::PacketTooLarge {
                size,
                max: self.max_packet_size,
            });
        }
        // size <= max_packet_size <= u32::MAX, so it fits in usize on every supported target.
        let size = header + remaining as usize;
        if src.len() < size {
            return Ok(None);
        }
        let mut frame = src.split_to(size).freeze();
        frame.advance(header);
        let mut r = Reader::new(frame, packet);
        self.decode_body(packet, flags, &mut r)
    }
}

/// Appends `packet` encoded for `version` to `dst`, refusing packets over `max_size` bytes.
/// Nothing is written on error.
pub fn encode_packet(
    packet: &Packet,
    version: ProtocolVersion,
    max_size: u32,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let v = version;
    let (first, body_len) = match packet {
        Packet::Connect(p) => (0x10, p.body_len()?),
        Packet::ConnAck(p) => (0x20, p.body_len(v)?),
        Packet::Publish(p) => (p.first_byte(), p.body_len(v)?),
        Packet::PubAck(p) => (0x40, p.body_len(v)?),
        Packet::PubRec(p) => (0x50, p.body_len(v)?),
        Packet::PubRel(p) => (0x62, p.body_len(v)?),
        Packet::PubComp(p) => (0x70, p.body_len(v)?),
        Packet::Subscribe(p) => (0x82, p.body_len(v)?),
        Packet::SubAck(p) => (0x90, p.body_len(v)?),
        Packet::Unsubscribe(p) => (0xA2, p.body_len(v)?),
        Packet::UnsubAck(p) => (0xB0, p.body_len(v)?),
        Packet::PingReq => (0xC0, 0),
        Packet::PingResp => (0xD0, 0),
        Packet::Disconnect(p) => (0xE0, p.body_len(v)?),
        Packet::Auth(p) => (0xF0, p.body_len(v)?),
    };
    let body = u32::try_from(body_len)
        .ok()
        .filter(|&len| len <= VARINT_MAX)
        .ok_or(EncodeError::PacketTooLarge {
            size: body_len,
            max: VARINT_MAX,
        })?;
    let size = 1 + varint_len(body) + body_len;
    if size > max_size as usize {
        return Err(EncodeError::PacketTooLarge {
            size,
            max: max_size,
        });
    }
    dst.reserve(size);
    let start = dst.len();
    dst.put_u8(first);
    put_varint(dst, body);
    match packet {
        Packet::Connect(p) => p.write_body(dst),
        Packet::ConnAck(p) => p.write_body(v, dst),
        Packet::Publish(p) => p.write_body(v, dst),
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
            p.write_body(v, dst)
        }
        Packet::Subscribe(p) => p.write_body(v, dst),
        Packet::SubAck(p) => p.write_body(v, dst),
        Packet::Unsubscribe(p) => p.write_body(v, dst),
        Packet::UnsubAck(p) => p.write_body(v, dst),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(p) => p.write_body(v, dst),
        Packet::Auth(p) => p.write_body(dst),
    }
    debug_assert_eq!(dst.len() - start, size, "MQTT length and body disagree");
    Ok(())
}

impl Encoder<&Packet> for MqttCodec {
    type Error = EncodeError;

    /// Encodes in the connection's version; encoding a CONNECT fixes the version (client
    /// side).
    fn encode(&mut self, packet: &Packet, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let version = match packet {
            Packet::Connect(connect) => connect.protocol,
            _ => self.version.ok_or(EncodeError::VersionUnknown)?,
        };
        encode_packet(packet, version, self.peer_max_packet_size, dst)?;
        if self.version.is_none() {
            self.version = Some(version);
        }
        Ok(())
    }
}

impl Encoder<Packet> for MqttCodec {
    type Error = EncodeError;

    fn encode(&mut self, packet: Packet, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode(&packet, dst)
    }
}
