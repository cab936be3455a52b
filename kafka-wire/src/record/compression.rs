//! The codecs of a record batch's records section.
//!
//! Writers follow what Kafka's own clients put on the wire: gzip members, raw snappy blocks
//! (as librdkafka writes them), LZ4 frames with independent 64 KiB blocks and no checksums or
//! content size (as Kafka's `KafkaLZ4BlockOutputStream` writes them), and zstd frames.
//! Readers are lenient where Kafka is: snappy is accepted raw or in snappy-java's "xerial"
//! framing, gzip may hold several members. Every reader stops at a caller-given output limit.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use bytes::{BufMut, Bytes, BytesMut};

use super::RecordError;

/// The compression codec of a record batch (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Records are stored as they are.
    #[default]
    None,
    /// gzip (deflate in gzip members).
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard (Kafka 2.1 and later).
    Zstd,
}

const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;

/// snappy-java's stream header: magic, then format version 1 and minimum compatible version 1.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

impl Compression {
    /// Every codec, in attribute order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec's value in the low three bits of the batch attributes.
    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Reads the codec from batch attributes; other attribute bits are ignored.
    pub fn from_attributes(attrs: i16) -> Result<Self, RecordError> {
        match attrs & 0x7 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(RecordError::UnknownCodec(other)),
        }
    }

    /// The codec's name in Kafka's `compression.type` setting.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    fn error(self, source: io::Error) -> RecordError {
        RecordError::Compression {
            codec: self,
            source,
        }
    }

    /// Appends `input` compressed with this codec to `out`. `None` copies it.
    pub(crate) fn compress_into(self, input: &[u8], out: &mut BytesMut) -> Result<(), RecordError> {
        match self {
            Compression::None => out.extend_from_slice(input),
            Compression::Gzip => {
                let level = flate2::Compression::new(GZIP_LEVEL);
                let mut enc = flate2::write::GzEncoder::new(out.writer(), level);
                enc.write_all(input).map_err(|e| self.error(e))?;
                enc.finish().map_err(|e| self.error(e))?;
            }
            Compression::Snappy => {
                let start = out.len();
                out.resize(start + snap::raw::max_compress_len(input.len()), 0);
                let n = snap::raw::Encoder::new()
                    .compress(input, &mut out[start..])
                    .map_err(|e| self.error(e.into()))?;
                out.truncate(start + n);
            }
            Compression::Lz4 => {
                use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
                let info = FrameInfo::new()
                    .block_size(BlockSize::Max64KB)
                    .block_mode(BlockMode::Independent)
                    .block_checksums(false)
                    .content_checksum(false);
                let mut enc = FrameEncoder::with_frame_info(info, out.writer());
                enc.write_all(input).map_err(|e| self.error(e))?;
                enc.finish().map_err(|e| self.error(e.into()))?;
            }
            Compression::Zstd => {
                let start = out.len();
                out.resize(start + zstd::zstd_safe::compress_bound(input.len()), 0);
                let n = zstd::bulk::Compressor::new(ZSTD_LEVEL)
                    .and_then(|mut c| c.compress_to_buffer(input, &mut out[start..]))
                    .map_err(|e| self.error(e))?;
                out.truncate(start + n);
            }
        }
        Ok(())
    }

    /// Decompresses a records section, failing with [`RecordError::TooLarge`] as soon as the
    /// output would pass `limit` bytes. `None` returns the input slice itself.
    pub(crate) fn decompress(self, input: Bytes, limit: usize) -> Result<Bytes, RecordError> {
        let out = match self {
            Compression::None => {
                check_limit(input.len(), limit)?;
                return Ok(input);
            }
            Compression::Gzip => read_bounded(
                self,
                flate2::read::MultiGzDecoder::new(&input[..]),
                &input,
                limit,
            )?,
            Compression::Snappy if input.starts_with(XERIAL_MAGIC) => unxerial(&input, limit)?,
            Compression::Snappy => {
                let mut out = Vec::new();
                snappy_block(&input, &mut out, limit)?;
                out
            }
            Compression::Lz4 => {
                let dec = lz4_flex::frame::FrameDecoder::new(&input[..]);
                read_bounded(self, dec, &input, limit)?
            }
            Compression::Zstd => {
                let dec = zstd::stream::read::Decoder::with_buffer(&input[..])
                    .map_err(|e| self.error(e))?;
                read_bounded(self, dec, &input, limit)?
            }
        };
        Ok(Bytes::from(out))
    }
}

fn check_limit(size: usize, limit: usize) -> Result<(), RecordError> {
    if size > limit {
        return Err(RecordError::TooLarge {
            what: "the uncompressed records section",
            size,
            limit,
        });
    }
    Ok(())
}

/// Reads a decoder to its end, allowing one byte past `limit` to detect an overflow. The output
/// vector grows by doubling from a guess based on the input, so a bomb is cut off after at most
/// `2 * limit` bytes of allocation.
fn read_bounded(
    codec: Compression,
    dec: impl Read,
    input: &[u8],
    limit: usize,
) -> Result<Vec<u8>, RecordError> {
    let guess = input.len().saturating_mul(4).min(limit).max(64);
    let mut out = Vec::with_capacity(guess);
    dec.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| codec.error(e))?;
    check_limit(out.len(), limit)?;
    Ok(out)
}

/// Appends one raw snappy block to `out`, checking its declared length first.
fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), RecordError> {
    let codec = Compression::Snappy;
    let len = snap::raw::decompress_len(block).map_err(|e| codec.error(e.into()))?;
    let start = out.len();
    check_limit(start.saturating_add(len), limit)?;
    out.resize(start + len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| codec.error(e.into()))?;
    out.truncate(start + n);
    Ok(())
}

/// Decodes snappy-java's framing: a 16-byte header, then `[u32 big-endian length][raw block]`.
fn unxerial(input: &[u8], limit: usize) -> Result<Vec<u8>, RecordError> {
    let mut rest = input
        .get(XERIAL_HEADER_LEN..)
        .ok_or(RecordError::corrupt("the xerial snappy header is cut off"))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(RecordError::corrupt(
                "a xerial snappy block length is cut off",
            ));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len > tail.len() {
            return Err(RecordError::corrupt("a xerial snappy block is cut off"));
        }
        let (block, tail) = tail.split_at(len);
        snappy_block(block, &mut out, limit)?;
        rest = tail;
    }
    Ok(out)
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = RecordError;

    /// Parses Kafka's `compression.type` names, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| RecordError::UnknownCodecName(s.to_owned()))
    }
}
