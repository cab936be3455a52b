//! Length-prefixed records over TCP.
//!
//! # Layout
//!
//! ```text
//! frame      = length payload
//! length     = u16 or u32, big-endian: the size of `payload` in bytes (not counting itself)
//! payload    = value                       without a key header
//!            | key_len key value           with a key header
//! key_len    = u16, big-endian; 0 means the record has no key
//! value      = the rest of the payload, possibly empty
//! ```
//!
//! So `00 00 00 07 | 00 02 | 'i' 'd' | 'a' 'b' 'c'` is a u32-prefixed keyed frame with key
//! `id` and value `abc`. The prefix width and the key header are chosen per listener.
//!
//! Acknowledgements travel back in the same framing (same prefix width, never a key header):
//! a payload of one status byte, `0x00` accepted, `0x01` rejected followed by a UTF-8 reason.
//! They are sent in record order, so they carry no id.
//!
//! The declared length is checked against the limit, and the key length against the
//! declared length, as soon as they are readable, before the body is awaited.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::registry::Ack;
use crate::{Decoder, Encoder, ErrorAnswer, ProtocolError};

/// The width of the length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthPrefix {
    /// Two bytes, payloads up to 65,535 bytes.
    U16,
    /// Four bytes.
    U32,
}

impl LengthPrefix {
    /// The prefix size in bytes.
    pub fn width(self) -> usize {
        match self {
            LengthPrefix::U16 => 2,
            LengthPrefix::U32 => 4,
        }
    }

    /// The largest payload the prefix can express.
    pub fn max_payload(self) -> u64 {
        match self {
            LengthPrefix::U16 => u64::from(u16::MAX),
            LengthPrefix::U32 => u64::from(u32::MAX),
        }
    }
}

/// A listener's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramedConfig {
    /// The length prefix width.
    pub prefix: LengthPrefix,
    /// Whether each payload starts with a `[u16 key_len][key]` header.
    pub keyed: bool,
    /// The largest payload accepted, in bytes.
    pub max_frame_size: usize,
}

impl Default for FramedConfig {
    fn default() -> FramedConfig {
        FramedConfig {
            prefix: LengthPrefix::U32,
            keyed: false,
            max_frame_size: 1024 * 1024,
        }
    }
}

/// One record from a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramedRecord {
    /// The key, when the listener uses key headers and the frame carried a non-empty one.
    pub key: Option<Bytes>,
    /// The value, a slice of the read buffer.
    pub value: Bytes,
}

/// Why a frame was refused. Raw TCP has no way to say so: the connection is closed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FramedError {
    /// The declared payload is over the limit.
    #[error("The frame declares {len} bytes, over the limit of {max}.")]
    FrameTooLarge {
        /// The declared or attempted length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A keyed frame is too short to hold the two-byte key length.
    #[error("The frame is {len} bytes, too short for its key header.")]
    MissingKeyHeader {
        /// The payload length.
        len: usize,
    },
    /// The key length runs past the end of the frame.
    #[error("The key length {key_len} runs past the end of a {len}-byte frame.")]
    KeyOverrun {
        /// The declared key length.
        key_len: usize,
        /// The payload length.
        len: usize,
    },
    /// A key was given to an encoder for a listener without key headers, or is too long.
    #[error("This record's key cannot be encoded: {0}.")]
    KeyNotEncodable(&'static str),
}

impl ProtocolError for FramedError {
    fn answer(&self) -> ErrorAnswer {
        ErrorAnswer::Close
    }
}

/// Decodes and encodes length-prefixed frames.
#[derive(Debug, Clone)]
pub struct FramedCodec {
    config: FramedConfig,
}

impl FramedCodec {
    /// A codec with this framing.
    pub fn new(config: FramedConfig) -> FramedCodec {
        FramedCodec { config }
    }

    /// The framing in use.
    pub fn config(&self) -> &FramedConfig {
        &self.config
    }

    /// Appends an acknowledgement frame (see the module docs for its layout).
    pub fn encode_ack(&self, ack: Ack<'_>, dst: &mut BytesMut) -> Result<(), FramedError> {
        let (status, reason) = match ack {
            Ack::Accepted => (0u8, ""),
            Ack::Rejected { reason } => (1u8, reason),
        };
        // A reason too long for the prefix is cut at a character boundary: it is advice.
        let room = usize::try_from(self.config.prefix.max_payload() - 1).unwrap_or(usize::MAX);
        let mut end = reason.len().min(room);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.put_len(1 + end, dst)?;
        dst.put_u8(status);
        dst.extend_from_slice(&reason.as_bytes()[..end]);
        Ok(())
    }

    fn put_len(&self, len: usize, dst: &mut BytesMut) -> Result<(), FramedError> {
        let too_large = FramedError::FrameTooLarge {
            len: len as u64,
            max: self.config.prefix.max_payload(),
        };
        match self.config.prefix {
            LengthPrefix::U16 => dst.put_u16(u16::try_from(len).map_err(|_| too_large)?),
            LengthPrefix::U32 => dst.put_u32(u32::try_from(len).map_err(|_| too_large)?),
        }
        Ok(())
    }
}

impl Decoder for FramedCodec {
    type Frame = FramedRecord;
    type Error = FramedError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<FramedRecord>, FramedError> {
        let p = self.config.prefix.width();
        let len = match (self.config.prefix, src.get(..p)) {
            (_, None) => return Ok(None),
            (LengthPrefix::U16, Some(b)) => u64::from(u16::from_be_bytes([b[0], b[1]])),
            (LengthPrefix::U32, Some(b)) => u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        };
        let len = match usize::try_from(len) {
            Ok(n) if n <= self.config.max_frame_size => n,
            _ => {
                return Err(FramedError::FrameTooLarge {
                    len,
                    max: self.config.max_frame_size as u64,
                })
            }
        };
        let key_len = if self.config.keyed {
            if len < 2 {
                return Err(FramedError::MissingKeyHeader { len });
            }
            let Some(b) = src.get(p..p + 2) else {
                return Ok(None);
            };
            let key_len = usize::from(u16::from_be_bytes([b[0], b[1]]));
            if key_len > len - 2 {
                return Err(FramedError::KeyOverrun { key_len, len });
            }
            Some(key_len)
        } else {
            None
        };
        if src.len() - p < len {
            return Ok(None);
        }
        src.advance(p);
        let mut value = src.split_to(len).freeze();
        let key = match key_len {
            None => None,
            Some(k) => {
                value.advance(2);
                let key = value.split_to(k);
                (k > 0).then_some(key)
            }
        };
        Ok(Some(FramedRecord { key, value }))
    }
}

impl Encoder<&FramedRecord> for FramedCodec {
    type Error = FramedError;

    fn encode(&mut self, rec: &FramedRecord, dst: &mut BytesMut) -> Result<(), FramedError> {
        let key = rec.key.as_deref().unwrap_or_default();
        if !self.config.keyed && !key.is_empty() {
            return Err(FramedError::KeyNotEncodable(
                "this listener has no key headers",
            ));
        }
        let key_len = u16::try_from(key.len())
            .map_err(|_| FramedError::KeyNotEncodable("it is longer than 65535 bytes"))?;
        let header = if self.config.keyed { 2 + key.len() } else { 0 };
        let len = header + rec.value.len();
        let max = (self.config.max_frame_size as u64).min(self.config.prefix.max_payload());
        if len as u64 > max {
            return Err(FramedError::FrameTooLarge {
                len: len as u64,
                max,
            });
        }
        dst.reserve(self.config.prefix.width() + len);
        self.put_len(len, dst)?;
        if self.config.keyed {
            dst.put_u16(key_len);
            dst.extend_from_slice(key);
        }
        dst.extend_from_slice(&rec.value);
        Ok(())
    }
}

impl Encoder<FramedRecord> for FramedCodec {
    type Error = FramedError;

    fn encode(&mut self, rec: FramedRecord, dst: &mut BytesMut) -> Result<(), FramedError> {
        self.encode(&rec, dst)
    }
}
