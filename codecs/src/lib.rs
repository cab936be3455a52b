//! sluice's codecs: sans-IO decoders and encoders for every protocol a client may speak,
//! and the session state machines that sit beside them.
//!
//! # Contract
//!
//! A codec turns bytes into frames and frames into bytes, and never touches a socket:
//!
//! - [`Decoder::decode`] takes the connection's read buffer. `Ok(None)` means "need more
//!   bytes" and consumes nothing; `Ok(Some(frame))` consumes exactly one frame. A codec checks
//!   that a whole frame is present, and that its declared size is within the configured
//!   limits, before it allocates anything.
//! - Payloads in frames are [`bytes::Bytes`] slices of the read buffer
//!   (`split_to(n).freeze()`), never copies. Decoding a message, or a PUBLISH without MQTT 5
//!   properties, allocates nothing; a PUBLISH with properties allocates their struct once.
//! - Errors are typed per codec and implement [`ProtocolError`], which says how the peer must
//!   be answered (an MQTT reason code, a WebSocket close code, an HTTP status) before the
//!   connection is closed. A decode error affects only its own connection.
//! - [`Encoder::encode`] appends a reply to the write buffer.
//!
//! Protocol logic (handshakes, keepalive, QoS flows, ping/close) lives in plain session
//! structs beside each codec: frames and `now` in, effects out. Only the proxy's connection
//! driver performs I/O.
//!
//! # Layout
//!
//! - [`mqtt`]: MQTT 3.1, 3.1.1 and 5.0 packets, properties, topic validation, session.
//! - [`ws`]: RFC 6455 WebSocket handshake, frames, and the MQTT-over-WebSocket transport.
//! - [`framed`]: length-prefixed records (u16 / u32 big-endian, optional key header).
//! - [`lines`]: newline-delimited records.
//! - [`http`]: HTTP/1.1 produce requests, JSON responses and the Server-Sent Events encoder.
//! - [`registry`]: codecs chosen by name in the config, including user-supplied ones.

pub mod framed;
pub mod http;
pub mod lines;
pub mod mqtt;
pub mod registry;
pub mod ws;

use bytes::BytesMut;

/// Decodes one frame at a time from a connection's read buffer.
pub trait Decoder {
    /// The decoded unit: a packet, a WebSocket frame, a record.
    type Frame;
    /// The typed error for malformed or over-limit input.
    type Error: ProtocolError;

    /// Decodes the next frame from the front of `src`.
    ///
    /// Returns `Ok(None)` without consuming anything when `src` does not yet hold a whole
    /// frame. Implementations must reject a declared length above their limit as soon as the
    /// length is known, without waiting for (or allocating) the body.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Frame>, Self::Error>;
}

/// Encodes an item (usually a reply) onto the end of a write buffer.
pub trait Encoder<Item> {
    /// The typed error for an item that cannot be encoded (for example over a size limit).
    type Error: std::error::Error;

    /// Appends the wire form of `item` to `dst`.
    fn encode(&mut self, item: Item, dst: &mut BytesMut) -> Result<(), Self::Error>;
}

/// How a protocol answers a peer that sent something it must refuse.
///
/// Every decode error maps to the protocol's own error so the connection driver can tell the
/// client what went wrong before closing.
pub trait ProtocolError: std::error::Error {
    /// The protocol's answer to this error.
    fn answer(&self) -> ErrorAnswer;
}

/// The protocol-level answer to a refused input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorAnswer {
    /// Send an MQTT reason code (CONNACK before a session exists, DISCONNECT for v5 after),
    /// then close. MQTT 3.1.1 connections have no DISCONNECT from the server: they are closed.
    MqttReason(u8),
    /// Send a WebSocket close frame with this status code, then close.
    WebSocketClose(u16),
    /// Send an HTTP response with this status, then close.
    HttpStatus(u16),
    /// Close without a reply (the protocol has no way to say it).
    Close,
}
