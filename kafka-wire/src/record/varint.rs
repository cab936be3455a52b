//! Kafka's variable-length integers: zigzag-encoded signed values written as unsigned LEB128
//! (protobuf style), as used by the fields of the v2 record format.
//!
//! Encoders never fail. Decoders read from a slice at a cursor, advance it only on success, and
//! reject both truncated input and encodings that overflow the target width (more than 5 bytes
//! for a 32-bit varint, more than 10 for a 64-bit one, or set bits beyond the width).

use bytes::BufMut;

/// Longest encoding of a 32-bit varint.
pub const MAX_VARINT_LEN: usize = 5;
/// Longest encoding of a 64-bit varint (a "varlong").
pub const MAX_VARLONG_LEN: usize = 10;

/// Why a varint could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VarintError {
    /// The input ended in the middle of a varint.
    #[error("a varint is cut off by the end of its buffer")]
    Truncated,
    /// The encoding is longer than the target width allows.
    #[error("a varint does not fit in {0} bits")]
    Overflow(u32),
}

/// Zigzag-maps a signed 32-bit value so that small magnitudes get small codes.
#[inline]
pub const fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

/// Inverse of [`zigzag32`].
#[inline]
pub const fn unzigzag32(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

/// Zigzag-maps a signed 64-bit value.
#[inline]
pub const fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag64`].
#[inline]
pub const fn unzigzag64(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Encoded length of an unsigned LEB128 value.
#[inline]
pub const fn uvarint_len(v: u64) -> usize {
    // 1 for 0..=127, 2 for 128..=16383, ...; `| 1` keeps zero at one byte.
    (64 - (v | 1).leading_zeros()).div_ceil(7) as usize
}

/// Encoded length of a zigzag 32-bit varint.
#[inline]
pub const fn varint_len(v: i32) -> usize {
    uvarint_len(zigzag32(v) as u64)
}

/// Encoded length of a zigzag 64-bit varint.
#[inline]
pub const fn varlong_len(v: i64) -> usize {
    uvarint_len(zigzag64(v))
}

/// Writes an unsigned LEB128 value into `out` at `pos` and returns the position after it.
///
/// Panics if `out` is too short; callers size their scratch arrays with [`MAX_VARLONG_LEN`].
#[inline]
pub fn write_uvarint(out: &mut [u8], mut pos: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        out[pos] = (v as u8) | 0x80;
        v >>= 7;
        pos += 1;
    }
    out[pos] = v as u8;
    pos + 1
}

/// Writes a zigzag 32-bit varint into `out` at `pos`; see [`write_uvarint`].
#[inline]
pub fn write_varint(out: &mut [u8], pos: usize, v: i32) -> usize {
    write_uvarint(out, pos, zigzag32(v) as u64)
}

/// Writes a zigzag 64-bit varint into `out` at `pos`; see [`write_uvarint`].
#[inline]
pub fn write_varlong(out: &mut [u8], pos: usize, v: i64) -> usize {
    write_uvarint(out, pos, zigzag64(v))
}

/// Appends a zigzag 32-bit varint to a buffer.
#[inline]
pub fn put_varint(buf: &mut impl BufMut, v: i32) {
    let mut tmp = [0u8; MAX_VARINT_LEN];
    let n = write_varint(&mut tmp, 0, v);
    buf.put_slice(&tmp[..n]);
}

/// Appends a zigzag 64-bit varint to a buffer.
#[inline]
pub fn put_varlong(buf: &mut impl BufMut, v: i64) {
    let mut tmp = [0u8; MAX_VARLONG_LEN];
    let n = write_varlong(&mut tmp, 0, v);
    buf.put_slice(&tmp[..n]);
}

/// Reads an unsigned LEB128 value of at most `bits` bits (32 or 64) from `buf` at `*pos`.
#[inline]
fn read_uvarint(buf: &[u8], pos: &mut usize, bits: u32) -> Result<u64, VarintError> {
    let max_len = bits.div_ceil(7) as usize;
    let mut value = 0u64;
    let mut i = *pos;
    for n in 0..max_len {
        let Some(&b) = buf.get(i) else {
            return Err(VarintError::Truncated);
        };
        i += 1;
        let shift = 7 * n as u32;
        value |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            // The last byte may only carry the bits left in the width.
            if n + 1 == max_len && u32::from(b) >> (bits - shift) != 0 {
                return Err(VarintError::Overflow(bits));
            }
            *pos = i;
            return Ok(value);
        }
    }
    Err(VarintError::Overflow(bits))
}

/// Reads a zigzag 32-bit varint from `buf` at `*pos`, advancing `*pos` past it.
#[inline]
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, VarintError> {
    read_uvarint(buf, pos, 32).map(|v| unzigzag32(v as u32))
}

/// Reads a zigzag 64-bit varint from `buf` at `*pos`, advancing `*pos` past it.
#[inline]
pub fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, VarintError> {
    read_uvarint(buf, pos, 64).map(unzigzag64)
}
