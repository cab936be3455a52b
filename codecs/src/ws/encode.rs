//! The frame encoder: unmasked frames from a server, masked frames from a client.

use bytes::{BufMut, BytesMut};

use super::error::WsError;
use super::frame::{unmask, Frame, Opcode, Role};
use crate::Encoder;

/// A frame header on its own, so a payload shared by many subscribers can be written once
/// and sent after a per-connection header (vectored write) instead of being copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The FIN bit.
    pub fin: bool,
    /// The opcode.
    pub opcode: Opcode,
    /// The masking key, for frames sent by a client.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

impl FrameHeader {
    /// The header's size on the wire: 2 to 14 bytes.
    pub fn encoded_len(&self) -> usize {
        let ext = match self.payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Appends the header, always with the minimal length encoding.
    pub fn write(&self, dst: &mut BytesMut) {
        let b0 = (u8::from(self.fin) << 7) | self.opcode.bits();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        dst.reserve(self.encoded_len());
        dst.put_u8(b0);
        match self.payload_len {
            // The match arm bounds the value, so the narrowing casts are exact.
            n @ 0..=125 => dst.put_u8(mask_bit | n as u8),
            n @ 126..=0xFFFF => {
                dst.put_u8(mask_bit | 126);
                dst.put_u16(n as u16);
            }
            n => {
                dst.put_u8(mask_bit | 127);
                dst.put_u64(n);
            }
        }
        if let Some(mask) = self.mask {
            dst.put_slice(&mask);
        }
    }
}

/// Where a client's masking keys come from.
///
/// RFC 6455 wants keys an intermediary cannot predict; this xorshift generator is enough for
/// the load generator and tests, which is all the client role is used for. A real client
/// facing untrusted proxies should seed it from the OS.
#[derive(Debug, Clone)]
pub struct MaskSource {
    state: u64,
}

impl MaskSource {
    /// A generator from `seed` (zero is replaced, xorshift would stay at zero forever).
    pub fn new(seed: u64) -> MaskSource {
        MaskSource {
            state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
        }
    }

    /// The next masking key.
    pub fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        let [a, b, c, d, ..] = x.to_le_bytes();
        [a, b, c, d]
    }
}

/// Encodes frames for one side of a connection.
#[derive(Debug, Clone)]
pub struct FrameEncoder {
    role: Role,
    masks: MaskSource,
}

impl FrameEncoder {
    /// A server-side encoder: frames go out unmasked.
    pub fn server() -> FrameEncoder {
        FrameEncoder {
            role: Role::Server,
            masks: MaskSource::new(0),
        }
    }

    /// A client-side encoder masking with keys from `masks`; a frame that already carries a
    /// key (a captured frame being replayed) keeps it.
    pub fn client(masks: MaskSource) -> FrameEncoder {
        FrameEncoder {
            role: Role::Client,
            masks,
        }
    }

    /// The header this encoder would write for `frame`.
    pub fn header_for(&mut self, frame: &Frame) -> Result<FrameHeader, WsError> {
        let len = frame.payload.len() as u64;
        if frame.opcode.is_control() && (!frame.fin || len > 125) {
            return Err(WsError::BadControlFrame {
                len,
                fin: frame.fin,
            });
        }
        let mask = match self.role {
            Role::Server => None,
            Role::Client => Some(frame.mask.unwrap_or_else(|| self.masks.next_mask())),
        };
        Ok(FrameHeader {
            fin: frame.fin,
            opcode: frame.opcode,
            mask,
            payload_len: len,
        })
    }
}

impl Encoder<&Frame> for FrameEncoder {
    type Error = WsError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), WsError> {
        let header = self.header_for(frame)?;
        header.write(dst);
        let start = dst.len();
        dst.extend_from_slice(&frame.payload);
        if let Some(mask) = header.mask {
            unmask(&mut dst[start..], mask);
        }
        Ok(())
    }
}

impl Encoder<Frame> for FrameEncoder {
    type Error = WsError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), WsError> {
        self.encode(&frame, dst)
    }
}
