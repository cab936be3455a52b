//! WebSocket frames and the frame decoder (RFC 6455 §5).

use bytes::{Buf, Bytes, BytesMut};

use super::error::WsError;
use crate::Decoder;

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// Continues a fragmented text or binary message.
    Continuation,
    /// Starts a text message (UTF-8).
    Text,
    /// Starts a binary message.
    Binary,
    /// Starts or answers the close handshake.
    Close,
    /// Asks the peer for a pong.
    Ping,
    /// Answers a ping, or a one-way heartbeat.
    Pong,
}

impl Opcode {
    /// Decodes the four opcode bits; `None` for reserved values.
    pub fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    /// The four opcode bits.
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Close, ping and pong are control frames: never fragmented, at most 125 bytes.
    pub fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

/// Which end of the connection this codec is: it decides the masking direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receives masked frames from clients, sends unmasked frames.
    Server,
    /// Receives unmasked frames from a server, sends masked frames.
    Client,
}

/// A decoded frame whose payload is a slice of the read buffer, already unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The FIN bit: this is the last fragment of its message.
    pub fin: bool,
    /// The opcode.
    pub opcode: Opcode,
    /// The masking key the peer used, kept so a captured frame can be re-encoded exactly.
    pub mask: Option<[u8; 4]>,
    /// The unmasked payload.
    pub payload: Bytes,
}

impl Frame {
    /// A final, unmasked frame.
    pub fn new(opcode: Opcode, payload: impl Into<Bytes>) -> Frame {
        Frame {
            fin: true,
            opcode,
            mask: None,
            payload: payload.into(),
        }
    }

    /// A final binary frame.
    pub fn binary(payload: impl Into<Bytes>) -> Frame {
        Frame::new(Opcode::Binary, payload)
    }

    /// A final text frame. The caller vouches that `payload` is UTF-8.
    pub fn text(payload: impl Into<Bytes>) -> Frame {
        Frame::new(Opcode::Text, payload)
    }

    /// A close frame with a status code and a reason (at most 123 bytes, else truncated at a
    /// character boundary so the frame stays a valid control frame).
    pub fn close(code: u16, reason: &str) -> Frame {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut payload = BytesMut::with_capacity(2 + end);
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(&reason.as_bytes()[..end]);
        Frame::new(Opcode::Close, payload.freeze())
    }
}

/// A decoded frame whose payload is still mutable, for the byte-stream transport which
/// appends payloads to its stream buffer without copying when it can.
#[derive(Debug)]
pub struct FrameMut {
    /// The FIN bit.
    pub fin: bool,
    /// The opcode.
    pub opcode: Opcode,
    /// The masking key the peer used.
    pub mask: Option<[u8; 4]>,
    /// The unmasked payload, split off the read buffer.
    pub payload: BytesMut,
}

impl FrameMut {
    /// Freezes the payload into an immutable frame.
    pub fn freeze(self) -> Frame {
        Frame {
            fin: self.fin,
            opcode: self.opcode,
            mask: self.mask,
            payload: self.payload.freeze(),
        }
    }
}

/// XORs `buf` with the 4-byte masking key (masking and unmasking are the same operation).
pub fn unmask(buf: &mut [u8], mask: [u8; 4]) {
    // Eight bytes at a time: the mask repeats every four bytes, so a doubled key lines up
    // with every 8-byte chunk and the remainder starts on a key boundary again.
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word) ^ wide;
        chunk.copy_from_slice(&x.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// The parsed fixed part of a frame.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    opcode: Opcode,
    mask: Option<[u8; 4]>,
    header_len: usize,
    payload_len: usize,
}

/// Decodes frames from a read buffer, checking every header rule before the payload arrives.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    role: Role,
    max_frame_size: usize,
}

impl FrameDecoder {
    /// A decoder for `role` that refuses frames with payloads over `max_frame_size` (1009).
    pub fn new(role: Role, max_frame_size: usize) -> FrameDecoder {
        FrameDecoder {
            role,
            max_frame_size,
        }
    }

    /// The configured frame payload limit.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Decodes the next frame, leaving its payload mutable.
    ///
    /// Returns `Ok(None)` and consumes nothing until the whole frame is buffered. The payload
    /// is unmasked in place and split off the read buffer: no copy, no allocation beyond the
    /// buffer's one-time shared header.
    pub fn decode_mut(&mut self, src: &mut BytesMut) -> Result<Option<FrameMut>, WsError> {
        let Some(h) = self.parse_header(src)? else {
            return Ok(None);
        };
        // Both lengths are bounded (14 bytes and the frame limit), so the sum cannot overflow
        // on any platform where the limit fits in usize.
        if src.len() - h.header_len < h.payload_len {
            return Ok(None);
        }
        src.advance(h.header_len);
        let mut payload = src.split_to(h.payload_len);
        if let Some(mask) = h.mask {
            unmask(&mut payload, mask);
        }
        Ok(Some(FrameMut {
            fin: h.fin,
            opcode: h.opcode,
            mask: h.mask,
            payload,
        }))
    }

    fn parse_header(&self, src: &[u8]) -> Result<Option<Header>, WsError> {
        let [b0, b1, ..] = *src else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0x7;
        if rsv != 0 {
            return Err(WsError::ReservedBits { bits: rsv });
        }
        let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(WsError::ReservedOpcode(b0 & 0x0F))?;
        let masked = b1 & 0x80 != 0;
        let expected = self.role == Role::Server;
        if masked != expected {
            return Err(WsError::Masking { masked, expected });
        }
        let len7 = b1 & 0x7F;
        let (len, mut pos) = match len7 {
            126 => {
                let Some(b) = src.get(2..4) else {
                    return Ok(None);
                };
                let len = u64::from(u16::from_be_bytes([b[0], b[1]]));
                if len < 126 {
                    return Err(WsError::NonMinimalLength { len });
                }
                (len, 4)
            }
            127 => {
                let Some(b) = src.get(2..10) else {
                    return Ok(None);
                };
                let mut w = [0u8; 8];
                w.copy_from_slice(b);
                let len = u64::from_be_bytes(w);
                if len <= u64::from(u16::MAX) || len >> 63 != 0 {
                    return Err(WsError::NonMinimalLength { len });
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        if opcode.is_control() && (!fin || len > 125) {
            return Err(WsError::BadControlFrame { len, fin });
        }
        let payload_len = match usize::try_from(len) {
            Ok(n) if n <= self.max_frame_size => n,
            _ => {
                return Err(WsError::FrameTooLarge {
                    len,
                    max: self.max_frame_size,
                })
            }
        };
        let mask = if masked {
            let Some(b) = src.get(pos..pos + 4) else {
                return Ok(None);
            };
            pos += 4;
            Some([b[0], b[1], b[2], b[3]])
        } else {
            None
        };
        Ok(Some(Header {
            fin,
            opcode,
            mask,
            header_len: pos,
            payload_len,
        }))
    }
}

impl Decoder for FrameDecoder {
    type Frame = Frame;
    type Error = WsError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, WsError> {
        Ok(self.decode_mut(src)?.map(FrameMut::freeze))
    }
}
