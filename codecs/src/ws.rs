//! RFC 6455 WebSocket, server side first: the HTTP/1.1 upgrade handshake, frames, message
//! reassembly, the ping/close session, and the byte-stream transport that carries MQTT.
//!
//! # Layers
//!
//! - [`handshake`]: parses the client's upgrade request ([`HandshakeDecoder`]) and writes the
//!   `101 Switching Protocols` answer or the refusal (400, 405, 426, 431).
//! - [`FrameDecoder`] turns the read buffer into [`Frame`]s. It checks the header (RSV bits,
//!   opcode, control-frame rules, masking direction, minimal length encoding, the frame size
//!   limit) before waiting for the payload, unmasks the payload in place and hands it out as a
//!   `Bytes` slice of the read buffer.
//! - [`FrameEncoder`] writes frames: unmasked from a server, masked from a client (our load
//!   generator and tests act as clients).
//! - [`MessageAssembler`] joins fragments into [`Message`]s for raw-message mode (one message
//!   is one record). A message that arrives in a single frame is passed through without a
//!   copy; fragments are copied into one buffer bounded by the message size limit.
//! - [`ByteStream`] is the MQTT-over-WebSocket transport: binary payloads are appended to a
//!   byte stream that an MQTT decoder reads, because MQTT packets may span frames and a frame
//!   may hold several packets.
//! - [`WsSession`] answers pings, runs the close handshake and its timeout, and emits
//!   [`Effect`]s; `now` is passed in, it never reads the clock.
//!
//! Every decode error is a [`WsError`] whose [`ProtocolError::answer`](crate::ProtocolError)
//! is the close code to send: 1002 for protocol violations, 1003 for a data type the mode
//! does not accept, 1007 for invalid UTF-8 in text, 1009 for over-limit frames or messages.

pub mod handshake;

mod encode;
mod error;
mod frame;
mod message;
mod session;
mod stream;

pub use encode::{FrameEncoder, FrameHeader, MaskSource};
pub use error::{close_code, WsError};
pub use frame::{unmask, Frame, FrameDecoder, FrameMut, Opcode, Role};
pub use handshake::{HandshakeDecoder, HandshakeError, Subprotocol, UpgradeRequest};
pub use message::{CloseFrame, FragmentTracker, Message, MessageAssembler};
pub use session::{Effect, SessionConfig, WsSession};
pub use stream::ByteStream;
