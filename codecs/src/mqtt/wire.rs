//! Wire primitives: the bounds-checked [`Reader`] every packet body is parsed with, Variable
//! Byte Integers, and the writers for MQTT's length-prefixed strings and binary data.
//!
//! The reader owns a [`Bytes`] slice of the read buffer, so strings and binary fields it
//! returns are reference-counted sub-slices, never copies.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::{EncodeError, MqttError};
use super::packet::PacketType;
use super::types::{check_utf8, MqttString};

/// The largest value a Variable Byte Integer can hold (four bytes of seven bits).
pub(crate) const VARINT_MAX: u32 = 268_435_455;

/// Decodes a Variable Byte Integer from the front of `src`.
///
/// Returns `Ok(None)` when `src` ends before the last byte, otherwise the value and how many
/// bytes it took. Encodings over four bytes and non-minimal encodings (a trailing zero
/// byte, such as `80 00`) are malformed.
#[inline]
pub(crate) fn peek_varint(src: &[u8]) -> Result<Option<(u32, usize)>, MqttError> {
    // Most lengths (small packets, property lengths) fit in one byte.
    if let Some(&byte) = src.first() {
        if byte & 0x80 == 0 {
            return Ok(Some((u32::from(byte), 1)));
        }
    }
    let mut value: u32 = 0;
    for (i, &byte) in src.iter().enumerate().take(4) {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(MqttError::BadVarInt);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if src.len() >= 4 {
        return Err(MqttError::BadVarInt);
    }
    Ok(None)
}

/// The number of bytes `value` takes as a Variable Byte Integer.
pub(crate) fn varint_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Appends `value` as a Variable Byte Integer; callers keep `value <= VARINT_MAX`.
pub(crate) fn put_varint(dst: &mut BytesMut, mut value: u32) {
    debug_assert!(value <= VARINT_MAX);
    loop {
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        dst.put_u8(byte);
        if value == 0 {
            break;
        }
    }
}

/// The encoded size of a length-prefixed field, or an error above 65,535 bytes.
pub(crate) fn field_len(field: &'static str, len: usize) -> Result<usize, EncodeError> {
    if len > usize::from(u16::MAX) {
        return Err(EncodeError::FieldTooLong { field, len });
    }
    Ok(2 + len)
}

/// Appends a length-prefixed string or binary field whose length was checked by
/// [`field_len`].
pub(crate) fn put_field(dst: &mut BytesMut, bytes: &[u8]) {
    // field_len ran first, so the length fits; saturate rather than wrap if it did not.
    dst.put_u16(u16::try_from(bytes.len()).unwrap_or(u16::MAX));
    dst.put_slice(bytes);
}

/// A bounds-checked cursor over one packet body.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
    packet: PacketType,
}

impl Reader {
    #[inline]
    pub(crate) fn new(buf: Bytes, packet: PacketType) -> Self {
        Self { buf, packet }
    }

    pub(crate) fn packet(&self) -> PacketType {
        self.packet
    }

    /// The unread bytes, without consuming them.
    pub(crate) fn peek(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn truncated(&self, field: &'static str) -> MqttError {
        MqttError::Truncated {
            packet: self.packet,
            field,
        }
    }

    #[inline]
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, MqttError> {
        if self.buf.is_empty() {
            return Err(self.truncated(field));
        }
        Ok(self.buf.get_u8())
    }

    #[inline]
    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, MqttError> {
        if self.buf.len() < 2 {
            return Err(self.truncated(field));
        }
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, MqttError> {
        if self.buf.len() < 4 {
            return Err(self.truncated(field));
        }
        Ok(self.buf.get_u32())
    }

    #[inline]
    pub(crate) fn varint(&mut self, field: &'static str) -> Result<u32, MqttError> {
        match peek_varint(&self.buf)? {
            Some((value, len)) => {
                self.buf.advance(len);
                Ok(value)
            }
            None => Err(self.truncated(field)),
        }
    }

    /// Takes the next `len` bytes as a slice of the packet.
    #[inline]
    pub(crate) fn take(&mut self, len: usize, field: &'static str) -> Result<Bytes, MqttError> {
        if self.buf.len() < len {
            return Err(self.truncated(field));
        }
        Ok(self.buf.split_to(len))
    }

    /// Binary Data: a two-byte length and that many bytes.
    #[inline]
    pub(crate) fn binary(&mut self, field: &'static str) -> Result<Bytes, MqttError> {
        let len = self.u16(field)?;
        self.take(usize::from(len), field)
    }

    /// UTF-8 Encoded String: Binary Data that must pass the MQTT string rules.
    #[inline]
    pub(crate) fn string(&mut self, field: &'static str) -> Result<MqttString, MqttError> {
        let bytes = self.binary(field)?;
        check_utf8(&bytes).map_err(|reason| MqttError::InvalidString { field, reason })?;
        Ok(MqttString::from_checked(bytes))
    }

    /// Takes everything left (a PUBLISH payload).
    #[inline]
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Fails if any byte is left unread.
    #[inline]
    pub(crate) fn finish(&self) -> Result<(), MqttError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(MqttError::TrailingBytes {
                packet: self.packet,
                extra: self.buf.len(),
            })
        }
    }
}
