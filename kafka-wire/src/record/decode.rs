//! Zero-copy decoding of the RecordBatch v2 sequences found in fetch responses.

use std::ops::Range;

use bytes::Bytes;

use super::varint::{read_varint, read_varlong};
use super::{layout, Compression, RecordError, BATCH_HEADER_LEN};

/// Default bound on one batch's uncompressed records section: 64 MiB, well above Kafka's
/// default `message.max.bytes` (1 MiB) and `fetch.max.bytes` (50 MiB), so that only
/// decompression bombs and misconfigured brokers hit it.
pub const DEFAULT_MAX_UNCOMPRESSED_BYTES: usize = 64 * 1024 * 1024;

/// What a record's timestamp means, from attribute bit 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker when it appended the batch; every record then has the batch's
    /// max timestamp.
    LogAppendTime,
}

/// Iterates over the batches of a fetch response's `records` field with the default limit,
/// [`DEFAULT_MAX_UNCOMPRESSED_BYTES`].
pub fn decode_batches(data: Bytes) -> BatchIter {
    decode_batches_with_limit(data, DEFAULT_MAX_UNCOMPRESSED_BYTES)
}

/// Iterates over the batches in `data`. A batch whose records section is (or decompresses to)
/// more than `max_uncompressed_bytes` is an error; a batch cut off by the end of `data` ends the
/// iteration cleanly, as brokers may return a partial batch at the end of a fetch.
pub fn decode_batches_with_limit(data: Bytes, max_uncompressed_bytes: usize) -> BatchIter {
    BatchIter {
        data,
        pos: 0,
        limit: max_uncompressed_bytes,
        done: false,
    }
}

/// Iterator over record batches; it stops after the first error.
#[derive(Debug)]
pub struct BatchIter {
    data: Bytes,
    pos: usize,
    limit: usize,
    done: bool,
}

impl BatchIter {
    /// Bytes not yet decoded: after the iteration ended, the partial batch at the end (if any).
    pub fn remaining_bytes(&self) -> usize {
        self.data.len() - self.pos
    }

    fn next_batch(&mut self) -> Result<Option<Batch>, RecordError> {
        let rest = &self.data[self.pos..];
        if rest.len() < layout::LOG_OVERHEAD {
            return Ok(None);
        }
        let length = be_i32(rest, layout::LENGTH);
        if length < 0 {
            return Err(RecordError::corrupt("a batch has a negative length"));
        }
        if let Some(&magic) = rest.get(layout::MAGIC) {
            if magic != 2 {
                return Err(RecordError::UnsupportedMagic(magic as i8));
            }
        }
        let length = length as usize;
        if length < BATCH_HEADER_LEN - layout::LOG_OVERHEAD {
            return Err(RecordError::corrupt("a batch is shorter than its header"));
        }
        let max = self.limit.saturating_add(BATCH_HEADER_LEN);
        let size = length + layout::LOG_OVERHEAD;
        if size > max {
            return Err(RecordError::TooLarge {
                what: "a record batch",
                size,
                limit: max,
            });
        }
        if rest.len() < size {
            return Ok(None);
        }
        let b = &rest[..size];
        let base_offset = be_i64(b, layout::BASE_OFFSET);
        let expected = be_i32(b, layout::CRC) as u32;
        let actual = crc32c::crc32c(&b[layout::ATTRIBUTES..]);
        if expected != actual {
            return Err(RecordError::CrcMismatch {
                expected,
                actual,
                base_offset,
            });
        }
        let attrs = be_i16(b, layout::ATTRIBUTES);
        let compression = Compression::from_attributes(attrs)?;
        let record_count = be_i32(b, layout::RECORD_COUNT);
        if record_count < 0 {
            return Err(RecordError::corrupt("a batch has a negative record count"));
        }
        let batch = Batch {
            base_offset,
            partition_leader_epoch: be_i32(b, layout::LEADER_EPOCH),
            compression,
            transactional: attrs & layout::TRANSACTIONAL_BIT != 0,
            control: attrs & layout::CONTROL_BIT != 0,
            timestamp_type: if attrs & layout::LOG_APPEND_TIME_BIT != 0 {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            last_offset_delta: be_i32(b, layout::LAST_OFFSET_DELTA),
            first_timestamp: be_i64(b, layout::FIRST_TIMESTAMP),
            max_timestamp: be_i64(b, layout::MAX_TIMESTAMP),
            producer_id: be_i64(b, layout::PRODUCER_ID),
            producer_epoch: be_i16(b, layout::PRODUCER_EPOCH),
            base_sequence: be_i32(b, layout::BASE_SEQUENCE),
            record_count,
            records: Bytes::new(),
        };
        let start = self.pos;
        self.pos += size;
        let section = self.data.slice(start + BATCH_HEADER_LEN..start + size);
        let records = compression.decompress(section, self.limit)?;
        Ok(Some(Batch { records, ..batch }))
    }
}

impl Iterator for BatchIter {
    type Item = Result<Batch, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_batch() {
            Ok(Some(batch)) => Some(Ok(batch)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// One decoded RecordBatch v2 header plus its (decompressed) records section.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Leader epoch of the broker that appended the batch.
    pub partition_leader_epoch: i32,
    /// Codec the records section was compressed with.
    pub compression: Compression,
    /// Part of a transaction.
    pub transactional: bool,
    /// Holds control records (transaction markers), not user data.
    pub control: bool,
    /// Meaning of the timestamps.
    pub timestamp_type: TimestampType,
    /// Offset of the last record minus the base offset.
    pub last_offset_delta: i32,
    /// Base timestamp of the records' deltas.
    pub first_timestamp: i64,
    /// Largest record timestamp (or the log append time).
    pub max_timestamp: i64,
    /// Producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records the header announces.
    pub record_count: i32,
    records: Bytes,
}

impl Batch {
    /// Iterates over the records; it stops after the first error.
    pub fn records(&self) -> RecordIter {
        RecordIter {
            data: self.records.clone(),
            pos: 0,
            remaining: self.record_count,
            base_offset: self.base_offset,
            first_timestamp: self.first_timestamp,
            log_append_time: (self.timestamp_type == TimestampType::LogAppendTime)
                .then_some(self.max_timestamp),
            done: false,
        }
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The uncompressed records section: a slice of the decoded data or the decompressed copy.
    pub fn records_bytes(&self) -> &Bytes {
        &self.records
    }
}

/// One record. Key, value and headers are slices of the batch's records section.
#[derive(Debug, Clone)]
pub struct Record {
    /// Absolute offset.
    pub offset: i64,
    /// Absolute timestamp (the batch's max timestamp for log-append-time batches).
    pub timestamp: i64,
    /// Key, `None` when null.
    pub key: Option<Bytes>,
    /// Value, `None` when null (a tombstone).
    pub value: Option<Bytes>,
    /// Headers, decoded lazily.
    pub headers: Headers,
}

/// Iterator over the records of a [`Batch`].
#[derive(Debug)]
pub struct RecordIter {
    data: Bytes,
    pos: usize,
    remaining: i32,
    base_offset: i64,
    first_timestamp: i64,
    log_append_time: Option<i64>,
    done: bool,
}

impl RecordIter {
    fn next_record(&mut self) -> Result<Record, RecordError> {
        let buf = &self.data[..];
        let mut p = self.pos;
        let len = read_varint(buf, &mut p)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| p.checked_add(len))
            .filter(|&end| end <= buf.len())
            .ok_or(RecordError::corrupt(
                "a record's length runs past the end of its batch",
            ))?;
        let rec = &buf[..end];
        if p >= end {
            return Err(RecordError::corrupt("a record is empty"));
        }
        p += 1; // attributes: unused
        let ts_delta = read_varlong(rec, &mut p)?;
        let offset_delta = read_varint(rec, &mut p)?;
        let key = bytes_field(rec, &mut p)?;
        let value = bytes_field(rec, &mut p)?;
        let count = read_varint(rec, &mut p)?;
        // Every header takes at least two bytes (two lengths).
        if count < 0 || count as usize > (end - p) / 2 {
            return Err(RecordError::corrupt(
                "a record's header count does not fit it",
            ));
        }
        self.pos = end;
        Ok(Record {
            offset: self.base_offset + i64::from(offset_delta),
            timestamp: self
                .log_append_time
                .unwrap_or(self.first_timestamp.wrapping_add(ts_delta)),
            key: key.map(|r| self.data.slice(r)),
            value: value.map(|r| self.data.slice(r)),
            headers: Headers {
                data: self.data.slice(p..end),
                count: count as u32,
            },
        })
    }
}

impl Iterator for RecordIter {
    type Item = Result<Record, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.remaining == 0 {
            self.done = true;
            return (self.pos != self.data.len()).then(|| {
                Err(RecordError::corrupt(
                    "the records section goes on after its last record",
                ))
            });
        }
        let result = self.next_record();
        self.remaining -= 1;
        self.done = result.is_err();
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize + 1))
    }
}

/// A record's headers, kept as one slice and decoded on iteration.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    data: Bytes,
    count: u32,
}

impl Headers {
    /// Number of headers the record announces.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the record has no headers.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Iterates over `(key, value)` pairs; keys are checked to be UTF-8.
    pub fn iter(&self) -> HeaderIter<'_> {
        HeaderIter {
            headers: self,
            pos: 0,
            remaining: self.count,
            done: false,
        }
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = Result<(Bytes, Option<Bytes>), RecordError>;
    type IntoIter = HeaderIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over [`Headers`]; it stops after the first error.
#[derive(Debug)]
pub struct HeaderIter<'a> {
    headers: &'a Headers,
    pos: usize,
    remaining: u32,
    done: bool,
}

impl HeaderIter<'_> {
    fn next_header(&mut self) -> Result<(Bytes, Option<Bytes>), RecordError> {
        let data = &self.headers.data;
        let mut p = self.pos;
        let key = bytes_field(data, &mut p)?.ok_or(RecordError::corrupt("a header key is null"))?;
        if std::str::from_utf8(&data[key.clone()]).is_err() {
            return Err(RecordError::corrupt("a header key is not UTF-8"));
        }
        let value = bytes_field(data, &mut p)?;
        self.pos = p;
        Ok((data.slice(key), value.map(|r| data.slice(r))))
    }
}

impl Iterator for HeaderIter<'_> {
    type Item = Result<(Bytes, Option<Bytes>), RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.remaining == 0 {
            self.done = true;
            return (self.pos != self.headers.data.len()).then(|| {
                Err(RecordError::corrupt(
                    "a record goes on after its last header",
                ))
            });
        }
        let result = self.next_header();
        self.remaining -= 1;
        self.done = result.is_err();
        Some(result)
    }
}

/// Reads a varint length and that many bytes (-1 is null) and returns their range.
#[inline]
fn bytes_field(buf: &[u8], p: &mut usize) -> Result<Option<Range<usize>>, RecordError> {
    let len = read_varint(buf, p)?;
    if len == -1 {
        return Ok(None);
    }
    let start = *p;
    match usize::try_from(len) {
        Ok(len) if len <= buf.len() - start => {
            *p = start + len;
            Ok(Some(start..start + len))
        }
        _ => Err(RecordError::corrupt(
            "a key, value or header length does not fit its record",
        )),
    }
}

#[inline]
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(x)
}
