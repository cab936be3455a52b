//! Building one RecordBatch v2, record by record, in a single buffer.

use bytes::{BufMut, Bytes, BytesMut};

use super::varint::{self, MAX_VARINT_LEN, MAX_VARLONG_LEN};
use super::{layout, Compression, Full, RecordError, BATCH_HEADER_LEN};

/// A record header to write. Kafka header keys are strings; values are bytes or null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Header key.
    pub key: &'a str,
    /// Header value; `None` is written as null.
    pub value: Option<&'a [u8]>,
}

/// The idempotence / transaction fields of a batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerFields {
    /// Producer id from `InitProducerId`, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the batch's first record, or -1.
    pub base_sequence: i32,
    /// Whether the batch is part of a transaction.
    pub transactional: bool,
}

impl ProducerFields {
    /// The fields of a producer that is neither idempotent nor transactional.
    pub const NONE: ProducerFields = ProducerFields {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        transactional: false,
    };
}

/// Initial buffer size of [`BatchBuilder::new`]; the buffer doubles as records arrive.
pub const DEFAULT_INITIAL_CAPACITY: usize = 1024;

/// Most bytes a batch can have: its length field is an `i32` that excludes the first 12 bytes.
const MAX_ENCODABLE_BATCH: usize = i32::MAX as usize + 12;

/// Builds one RecordBatch v2.
///
/// Records are encoded straight into a buffer that starts with room for the 61-byte header, so
/// each payload byte is copied once. [`finish`](Self::finish) writes the header in place
/// (uncompressed) or compresses the records section into a second buffer.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    compression: Compression,
    max_batch_bytes: usize,
    count: u32,
    first_timestamp: i64,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// A builder whose uncompressed size stays within `max_batch_bytes` (header included),
    /// except that its first record is always accepted.
    pub fn new(compression: Compression, max_batch_bytes: usize) -> Self {
        Self::with_capacity(compression, max_batch_bytes, DEFAULT_INITIAL_CAPACITY)
    }

    /// Like [`new`](Self::new) with an initial buffer of `capacity` bytes (at most
    /// `max_batch_bytes`), for callers that know their typical batch size.
    pub fn with_capacity(
        compression: Compression,
        max_batch_bytes: usize,
        capacity: usize,
    ) -> Self {
        let capacity = capacity.min(max_batch_bytes).max(BATCH_HEADER_LEN + 64);
        let mut buf = BytesMut::with_capacity(capacity);
        buf.put_bytes(0, BATCH_HEADER_LEN);
        Self {
            buf,
            compression,
            max_batch_bytes,
            count: 0,
            first_timestamp: 0,
            max_timestamp: i64::MIN,
        }
    }

    /// Appends a record and returns its offset delta, or [`Full`] when it would take the
    /// uncompressed batch past its size limit. The first record is always accepted unless it
    /// cannot be encoded at all (see [`Full`]).
    pub fn try_push(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> Result<u32, Full> {
        let offset_delta = self.count;
        if offset_delta == i32::MAX as u32 {
            return Err(Full);
        }
        let ts_delta = if offset_delta == 0 {
            0
        } else {
            timestamp_ms.wrapping_sub(self.first_timestamp)
        };

        let mut body = 1 + varint::varlong_len(ts_delta) + varint::varint_len(offset_delta as i32);
        body += bytes_field_len(key) + bytes_field_len(value);
        body += varint::uvarint_len(headers.len() as u64 * 2);
        for h in headers {
            body += bytes_field_len(Some(h.key.as_bytes())) + bytes_field_len(h.value);
        }
        if body > i32::MAX as usize {
            return Err(Full);
        }
        let total = varint::varint_len(body as i32) + body;
        let new_size = self.buf.len().saturating_add(total);
        if new_size > MAX_ENCODABLE_BATCH || (offset_delta > 0 && new_size > self.max_batch_bytes) {
            return Err(Full);
        }

        self.buf.reserve(total);
        // The small fields before the key (and before the value when the key is null) go out
        // as one slice: fewer copies of a few bytes each is most of this function's cost.
        let mut head = [0u8; 2 * MAX_VARINT_LEN + 1 + MAX_VARLONG_LEN + 2 * MAX_VARINT_LEN];
        let mut n = varint::write_varint(&mut head, 0, body as i32);
        head[n] = 0; // record attributes: unused
        n = varint::write_varlong(&mut head, n + 1, ts_delta);
        n = varint::write_varint(&mut head, n, offset_delta as i32);
        n = varint::write_varint(&mut head, n, len_or_null(key));
        if let Some(key) = key {
            self.buf.put_slice(&head[..n]);
            self.buf.put_slice(key);
            n = 0;
        }
        n = varint::write_varint(&mut head, n, len_or_null(value));
        self.buf.put_slice(&head[..n]);
        if let Some(value) = value {
            self.buf.put_slice(value);
        }
        if headers.is_empty() {
            self.buf.put_u8(0);
        } else {
            varint::put_varint(&mut self.buf, headers.len() as i32);
            for h in headers {
                put_bytes_field(&mut self.buf, Some(h.key.as_bytes()));
                put_bytes_field(&mut self.buf, h.value);
            }
        }

        if offset_delta == 0 {
            self.first_timestamp = timestamp_ms;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        self.count += 1;
        Ok(offset_delta)
    }

    /// Number of records pushed.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether no record was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Current encoded size of the uncompressed batch, header included.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Bytes the buffer holds before it must grow.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Timestamp of the first record (the batch's base timestamp), if any.
    pub fn first_timestamp(&self) -> Option<i64> {
        (self.count > 0).then_some(self.first_timestamp)
    }

    /// Largest record timestamp so far, if any.
    pub fn max_timestamp(&self) -> Option<i64> {
        (self.count > 0).then_some(self.max_timestamp)
    }

    /// Codec the batch will be compressed with.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Compresses the records if the codec asks for it, writes the batch header (base offset 0,
    /// partition leader epoch -1, CRC-32C) and returns the whole batch.
    pub fn finish(self, producer: ProducerFields) -> Result<Bytes, RecordError> {
        if self.count == 0 {
            return Err(RecordError::EmptyBatch);
        }
        let mut batch = match self.compression {
            Compression::None => self.buf,
            codec => {
                let records = &self.buf[BATCH_HEADER_LEN..];
                let mut out = BytesMut::with_capacity(BATCH_HEADER_LEN + records.len() / 2);
                out.put_bytes(0, BATCH_HEADER_LEN);
                codec.compress_into(records, &mut out)?;
                out
            }
        };
        if batch.len() > MAX_ENCODABLE_BATCH {
            return Err(RecordError::TooLarge {
                what: "the record batch",
                size: batch.len(),
                limit: MAX_ENCODABLE_BATCH,
            });
        }
        let length = (batch.len() - 12) as i32;
        let h = &mut batch[..BATCH_HEADER_LEN];
        h[layout::BASE_OFFSET..][..8].copy_from_slice(&0i64.to_be_bytes());
        h[layout::LENGTH..][..4].copy_from_slice(&length.to_be_bytes());
        h[layout::LEADER_EPOCH..][..4].copy_from_slice(&(-1i32).to_be_bytes());
        h[layout::MAGIC] = 2;
        let last_delta = self.count as i32 - 1;
        h[layout::LAST_OFFSET_DELTA..][..4].copy_from_slice(&last_delta.to_be_bytes());
        h[layout::FIRST_TIMESTAMP..][..8].copy_from_slice(&self.first_timestamp.to_be_bytes());
        h[layout::MAX_TIMESTAMP..][..8].copy_from_slice(&self.max_timestamp.to_be_bytes());
        h[layout::RECORD_COUNT..][..4].copy_from_slice(&(self.count as i32).to_be_bytes());
        write_producer_fields(&mut batch, self.compression.attribute_bits(), producer);
        Ok(batch.freeze())
    }
}

/// Rewrites producer id, epoch, base sequence and the transactional bit of a finished batch
/// and recomputes its CRC, e.g. to re-sequence a batch after an epoch bump.
///
/// # Panics
///
/// If `batch` does not start with a whole RecordBatch v2, which cannot happen for the output
/// of [`BatchBuilder::finish`].
pub fn rewrite_producer_fields(batch: &mut BytesMut, producer: ProducerFields) {
    assert!(
        batch.len() >= BATCH_HEADER_LEN && batch[layout::MAGIC] == 2,
        "rewrite_producer_fields needs a RecordBatch v2"
    );
    let attrs = i16::from_be_bytes([batch[layout::ATTRIBUTES], batch[layout::ATTRIBUTES + 1]]);
    let length = i32::from_be_bytes(batch[layout::LENGTH..][..4].try_into().unwrap_or_default());
    let end = 12 + usize::try_from(length).unwrap_or(0);
    assert!(
        end >= BATCH_HEADER_LEN && end <= batch.len(),
        "rewrite_producer_fields needs a whole batch"
    );
    write_producer_fields(
        &mut batch[..end],
        attrs & !layout::TRANSACTIONAL_BIT,
        producer,
    );
}

/// Writes attributes (`attrs` plus the transactional bit) and producer fields into a whole
/// batch, then its CRC.
fn write_producer_fields(batch: &mut [u8], attrs: i16, p: ProducerFields) {
    let attrs = if p.transactional {
        attrs | layout::TRANSACTIONAL_BIT
    } else {
        attrs
    };
    batch[layout::ATTRIBUTES..][..2].copy_from_slice(&attrs.to_be_bytes());
    batch[layout::PRODUCER_ID..][..8].copy_from_slice(&p.producer_id.to_be_bytes());
    batch[layout::PRODUCER_EPOCH..][..2].copy_from_slice(&p.producer_epoch.to_be_bytes());
    batch[layout::BASE_SEQUENCE..][..4].copy_from_slice(&p.base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[layout::ATTRIBUTES..]);
    batch[layout::CRC..][..4].copy_from_slice(&crc.to_be_bytes());
}

#[inline]
fn len_or_null(field: Option<&[u8]>) -> i32 {
    field.map_or(-1, |f| f.len() as i32)
}

#[inline]
fn bytes_field_len(field: Option<&[u8]>) -> usize {
    // A field over 2 GiB gets a wrong prefix length here, but its own length already takes
    // the record past the i32 check of the caller.
    field.map_or(1, |f| varint::varint_len(f.len() as i32) + f.len())
}

#[inline]
fn put_bytes_field(buf: &mut BytesMut, field: Option<&[u8]>) {
    varint::put_varint(buf, len_or_null(field));
    if let Some(f) = field {
        buf.put_slice(f);
    }
}
