//! The record layer: building and decoding Kafka RecordBatch v2 (magic 2), the on-disk and
//! on-wire format of Kafka 0.11 and later.
//!
//! Pure and sans-IO. A producer pushes records into a [`BatchBuilder`], which encodes them
//! straight into the buffer that becomes the batch (one copy per payload byte) and writes the
//! header, CRC-32C and compression on [`finish`](BatchBuilder::finish). A consumer hands the
//! `records` bytes of a fetch response to [`decode_batches`]; uncompressed records, keys,
//! values and headers come back as [`Bytes`](bytes::Bytes) slices of that input, compressed
//! ones as slices of one bounded decompression buffer per batch.
//!
//! Batch layout (big-endian; the CRC covers everything from the attributes on):
//!
//! ```text
//! 0  base offset        i64    27 first timestamp  i64    53 base sequence  i32
//! 8  batch length       i32    35 max timestamp    i64    57 record count   i32
//! 12 leader epoch       i32    43 producer id      i64    61 records...
//! 16 magic (2)          i8     51 producer epoch   i16
//! 17 CRC-32C            u32
//! 21 attributes         i16    (bits 0-2 codec, 3 log-append time, 4 transactional, 5 control)
//! 23 last offset delta  i32
//! ```
//!
//! See `docs/kafka-wire.md`, "Record batches", for codecs, limits and zero-copy rules.

mod builder;
mod compression;
mod decode;
mod error;
pub mod varint;

#[cfg(test)]
mod tests;

pub use builder::{
    rewrite_producer_fields, BatchBuilder, Header, ProducerFields, DEFAULT_INITIAL_CAPACITY,
};
pub use compression::Compression;
pub use decode::{
    decode_batches, decode_batches_with_limit, Batch, BatchIter, HeaderIter, Headers, Record,
    RecordIter, TimestampType, DEFAULT_MAX_UNCOMPRESSED_BYTES,
};
pub use error::{Full, RecordError};

/// Size of the RecordBatch v2 header that precedes the records.
pub const BATCH_HEADER_LEN: usize = 61;

/// Field offsets of the batch header.
mod layout {
    pub const BASE_OFFSET: usize = 0;
    pub const LENGTH: usize = 8;
    /// Base offset and length: the bytes the length field does not count.
    pub const LOG_OVERHEAD: usize = 12;
    pub const LEADER_EPOCH: usize = 12;
    pub const MAGIC: usize = 16;
    pub const CRC: usize = 17;
    pub const ATTRIBUTES: usize = 21;
    pub const LAST_OFFSET_DELTA: usize = 23;
    pub const FIRST_TIMESTAMP: usize = 27;
    pub const MAX_TIMESTAMP: usize = 35;
    pub const PRODUCER_ID: usize = 43;
    pub const PRODUCER_EPOCH: usize = 51;
    pub const BASE_SEQUENCE: usize = 53;
    pub const RECORD_COUNT: usize = 57;

    pub const LOG_APPEND_TIME_BIT: i16 = 1 << 3;
    pub const TRANSACTIONAL_BIT: i16 = 1 << 4;
    pub const CONTROL_BIT: i16 = 1 << 5;
}
