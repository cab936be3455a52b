//! Errors of the record layer.

use std::borrow::Cow;

use super::varint::VarintError;
use super::Compression;

/// A record batch could not be built, decoded or (de)compressed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The batch's CRC-32C does not match its contents.
    #[error(
        "the record batch at offset {base_offset} is damaged: its CRC-32C is {actual:#010x} \
         but its header says {expected:#010x}"
    )]
    CrcMismatch {
        /// CRC stored in the batch header.
        expected: u32,
        /// CRC computed over the batch.
        actual: u32,
        /// Base offset of the damaged batch.
        base_offset: i64,
    },
    /// The batch is not a RecordBatch v2.
    #[error(
        "record format magic {0} is not supported: only RecordBatch v2 (magic 2, Kafka 0.11 and \
         later) is, not the legacy v0/v1 message sets"
    )]
    UnsupportedMagic(i8),
    /// The attributes name a compression codec Kafka does not define.
    #[error("the record batch attributes name compression codec {0}, which does not exist")]
    UnknownCodec(i16),
    /// A `compression.type` name is not one Kafka knows.
    #[error("{0:?} is not a compression type; use none, gzip, snappy, lz4 or zstd")]
    UnknownCodecName(String),
    /// The codec failed to compress or decompress the records section.
    #[error("the {codec} codec failed on the records section: {source}")]
    Compression {
        /// Codec that failed.
        codec: Compression,
        /// What it reported.
        #[source]
        source: std::io::Error,
    },
    /// The bytes do not follow the record format.
    #[error("the record batch is malformed: {0}")]
    Corrupt(Cow<'static, str>),
    /// A varint inside a record is malformed.
    #[error("the record batch is malformed: {0}")]
    Varint(#[from] VarintError),
    /// Something is bigger than a limit allows.
    #[error("{what} is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size, or a lower bound of it when the rest was not read.
        size: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// `finish` was called on a builder without records.
    #[error("a record batch needs at least one record")]
    EmptyBatch,
}

impl RecordError {
    pub(crate) fn corrupt(msg: &'static str) -> Self {
        Self::Corrupt(Cow::Borrowed(msg))
    }

    /// Whether fetching the same data again may succeed: only a CRC mismatch (which can come
    /// from damage in transit) is, matching Kafka's retriable `CORRUPT_MESSAGE`.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::CrcMismatch { .. })
    }
}

/// The record does not fit in the batch: finish this batch and push it into a new one.
///
/// An empty builder only refuses a record whose encoding cannot be represented in a batch at all
/// (more than 2 GiB); such a record can never be sent and must be rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the record batch is full")]
pub struct Full;
