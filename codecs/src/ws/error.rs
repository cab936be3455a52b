//! The WebSocket decode error and the close codes it maps to.

use crate::{ErrorAnswer, ProtocolError};

/// Close status codes from RFC 6455 §7.4.1 that sluice sends or checks.
pub mod close_code {
    /// The purpose for which the connection was established has been fulfilled.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// The peer sent a data type this endpoint does not accept (text on an MQTT transport).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Reserved: no status code was present. Must never be sent on the wire.
    pub const NO_STATUS: u16 = 1005;
    /// Reserved: the connection closed without a close frame. Must never be sent.
    pub const ABNORMAL: u16 = 1006;
    /// A text message was not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A generic policy violation.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A frame or message is larger than this endpoint accepts.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The server hit an unexpected condition.
    pub const INTERNAL_ERROR: u16 = 1011;

    /// Whether `code` may appear in a close frame on the wire (RFC 6455 §7.4).
    ///
    /// 1004, 1005, 1006 and 1015 are reserved for local use; 1012-1014 are registered with
    /// IANA since the RFC and are accepted; 3000-4999 belong to libraries and applications.
    pub fn is_sendable(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// Why a WebSocket frame or message was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WsError {
    /// RSV1-3 were set although no extension was negotiated.
    #[error("The frame sets reserved bits {bits:#05b} but no extension was negotiated.")]
    ReservedBits {
        /// The three RSV bits, RSV1 highest.
        bits: u8,
    },
    /// The opcode is one of the reserved values.
    #[error("The frame uses reserved opcode {0:#x}.")]
    ReservedOpcode(u8),
    /// A control frame was fragmented or longer than 125 bytes.
    #[error("A control frame must be final and at most 125 bytes, this one was {len} bytes and final={fin}.")]
    BadControlFrame {
        /// The declared payload length.
        len: u64,
        /// The FIN bit.
        fin: bool,
    },
    /// A client frame was not masked, or a server frame was.
    #[error("The frame's mask bit is {masked} but frames from this peer must have it {expected}.")]
    Masking {
        /// Whether the frame was masked.
        masked: bool,
        /// What the direction requires.
        expected: bool,
    },
    /// The payload length used more bytes than needed or set the top bit of a 64-bit length.
    #[error("The payload length {len} is not in its minimal encoding.")]
    NonMinimalLength {
        /// The decoded length.
        len: u64,
    },
    /// A frame declared a payload over the frame size limit.
    #[error("The frame declares {len} payload bytes, over the limit of {max}.")]
    FrameTooLarge {
        /// The declared payload length.
        len: u64,
        /// The configured limit.
        max: usize,
    },
    /// The fragments of a message add up to more than the message size limit.
    #[error("The message grows to {len} bytes, over the limit of {max}.")]
    MessageTooLarge {
        /// The size the message would reach.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// A continuation frame arrived with no fragmented message in progress.
    #[error("A continuation frame arrived without a message to continue.")]
    UnexpectedContinuation,
    /// A new text or binary frame arrived while a fragmented message was incomplete.
    #[error("A new data frame arrived before the fragmented message in progress was finished.")]
    UnfinishedMessage,
    /// A text message or close reason was not valid UTF-8.
    #[error("The text payload is not valid UTF-8.")]
    InvalidUtf8,
    /// A close frame had a one-byte payload or a status code that may not be sent.
    #[error("The close frame is malformed: {0}.")]
    BadClose(&'static str),
    /// The peer sent a data type this transport does not carry (text to MQTT).
    #[error("This connection carries binary messages only, the peer sent text.")]
    UnsupportedData,
    /// Data arrived after the peer's close frame.
    #[error("The peer sent a frame after its close frame.")]
    FrameAfterClose,
}

impl WsError {
    /// The close code this error is answered with.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::FrameTooLarge { .. } | WsError::MessageTooLarge { .. } => {
                close_code::MESSAGE_TOO_BIG
            }
            WsError::InvalidUtf8 => close_code::INVALID_PAYLOAD,
            WsError::UnsupportedData => close_code::UNSUPPORTED_DATA,
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

impl ProtocolError for WsError {
    fn answer(&self) -> ErrorAnswer {
        ErrorAnswer::WebSocketClose(self.close_code())
    }
}
