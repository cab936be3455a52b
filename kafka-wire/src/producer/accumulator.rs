//! Per-partition record accumulation: the open batch records are appended to, and the closed
//! batches waiting to be sent (or sent again), in sequence order.
//!
//! Sans-IO: the producer calls in with `now`; nothing here touches a connection.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::delivery::{Completion, DeliveryFuture};
use crate::record::{
    rewrite_producer_fields, BatchBuilder, Compression, Header, ProducerFields,
    DEFAULT_INITIAL_CAPACITY,
};

/// The batch records are being appended to.
#[derive(Debug)]
pub(crate) struct OpenBatch {
    id: u64,
    builder: BatchBuilder,
    /// Record bytes counted against `buffer.memory`.
    accounted: usize,
    created: Instant,
    completion: Rc<Completion>,
}

/// A closed batch: encoded, sequenced, waiting to be sent or retried.
#[derive(Debug)]
pub(crate) struct ReadyBatch {
    /// Unique per producer, in order of opening (for flush).
    pub id: u64,
    pub data: Bytes,
    pub records: u32,
    /// Record bytes counted against `buffer.memory`.
    pub accounted: usize,
    pub base_sequence: i32,
    pub created: Instant,
    pub attempts: u32,
    /// Not before this instant (backoff after a failed attempt).
    pub retry_at: Option<Instant>,
    pub completion: Rc<Completion>,
}

/// One partition's batches.
#[derive(Debug, Default)]
pub(crate) struct PartitionQueue {
    open: Option<OpenBatch>,
    /// Closed batches in sequence order.
    pub ready: VecDeque<ReadyBatch>,
    /// Batches of this partition currently sent and unanswered.
    pub in_flight: usize,
    /// The sequence number of the next record (idempotent producer).
    pub next_sequence: i32,
    /// A batch failed and waits to be sent again: nothing newer may overtake it, so sending
    /// holds until every in-flight batch of the partition has answered.
    pub retrying: bool,
    /// Batches that could not be encoded (already completed with the error): their ids and
    /// accounted bytes, for the producer's bookkeeping.
    pub failed: Vec<(u64, usize)>,
    /// The uncompressed size of the partition's last closed batch: the next batch's buffer
    /// starts about this large instead of doubling its way up from 1 KiB, which copied
    /// each batch's bytes about once more (~1 % of the closed loop's CPU). After a burst
    /// the next batch may reserve more than it fills, up to `batch.size`, once: the part
    /// never written is address space, not resident memory, unless the allocator reuses
    /// pages that were. `buffer.memory` counts records, not this reserve.
    last_batch_bytes: usize,
}

/// What an append did, for the producer to decide whether to wake its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    /// A new batch was opened, with this id (its linger timer starts now).
    pub opened: Option<u64>,
    /// A full batch was closed and is ready to send.
    pub closed: bool,
}

/// One record to append.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordRef<'a> {
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [Header<'a>],
}

impl RecordRef<'_> {
    /// Bytes the record occupies in a batch, near enough for memory accounting.
    pub(crate) fn approx_size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len) + 4)
            .sum();
        self.key.map_or(0, <[u8]>::len) + self.value.map_or(0, <[u8]>::len) + headers + 16
    }
}

/// Batch limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub batch_size: usize,
    pub compression: Compression,
}

impl PartitionQueue {
    /// Appends a record, closing the open batch first when the record does not fit. `now`
    /// is read only when a batch is opened (a clock read per record shows in profiles).
    pub(crate) fn append(
        &mut self,
        partition: i32,
        record: RecordRef<'_>,
        limits: Limits,
        producer: &mut SequenceSource<'_>,
        now: impl FnOnce() -> Instant,
    ) -> (DeliveryFuture, Appended) {
        let mut appended = Appended {
            opened: None,
            closed: false,
        };
        if let Some(open) = &mut self.open {
            if let Ok(delta) =
                open.builder
                    .try_push(record.timestamp, record.key, record.value, record.headers)
            {
                open.accounted += record.approx_size();
                return (
                    DeliveryFuture::new(open.completion.clone(), delta),
                    appended,
                );
            }
            self.close(producer);
            appended.closed = true;
        }
        let id = producer.next_batch_id();
        let mut open = OpenBatch {
            id,
            builder: BatchBuilder::with_capacity(
                limits.compression,
                limits.batch_size,
                // An eighth more, so a batch slightly larger than the last does not double.
                (self.last_batch_bytes + self.last_batch_bytes / 8).max(DEFAULT_INITIAL_CAPACITY),
            ),
            accounted: record.approx_size(),
            created: now(),
            completion: Completion::new(partition),
        };
        let delta = open
            .builder
            .try_push(record.timestamp, record.key, record.value, record.headers)
            .expect("an empty batch accepts its first record");
        let future = DeliveryFuture::new(open.completion.clone(), delta);
        self.open = Some(open);
        appended.opened = Some(id);
        (future, appended)
    }

    /// When the open batch was created, if there is one.
    pub(crate) fn open_since(&self) -> Option<Instant> {
        self.open.as_ref().map(|o| o.created)
    }

    /// Closes the open batch (if any): assigns its sequence numbers, compresses and encodes
    /// it, and queues it for sending. A batch that cannot be encoded is completed with the
    /// error and noted in `failed`.
    pub(crate) fn close(&mut self, producer: &mut SequenceSource<'_>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let records = open.builder.len();
        self.last_batch_bytes = open.builder.size_bytes();
        let fields = producer.fields(self.next_sequence);
        let data = match open.builder.finish(fields) {
            Ok(d) => d,
            Err(e) => {
                open.completion.complete(Err(crate::error::Error::Record {
                    source: std::sync::Arc::new(e),
                    context: Default::default(),
                }));
                self.failed.push((open.id, open.accounted));
                return;
            }
        };
        let base_sequence = self.next_sequence;
        if producer.idempotent {
            self.next_sequence = next_sequence(self.next_sequence, records);
        }
        self.ready.push_back(ReadyBatch {
            id: open.id,
            data,
            records,
            accounted: open.accounted,
            base_sequence,
            created: open.created,
            attempts: 0,
            retry_at: None,
            completion: open.completion,
        });
    }

    /// Puts a batch that failed back in its place (sequence order) to be sent again.
    pub(crate) fn requeue(&mut self, mut batch: ReadyBatch, retry_at: Instant) {
        batch.retry_at = Some(retry_at);
        batch.attempts += 1;
        let pos = self
            .ready
            .iter()
            .position(|b| b.base_sequence > batch.base_sequence || b.id > batch.id)
            .unwrap_or(self.ready.len());
        self.ready.insert(pos, batch);
        self.retrying = true;
    }

    /// Whether the partition may send another batch now.
    pub(crate) fn can_send(&self, max_in_flight: usize, now: Instant) -> bool {
        let Some(front) = self.ready.front() else {
            return false;
        };
        if self.retrying && self.in_flight > 0 {
            return false;
        }
        self.in_flight < max_in_flight && front.retry_at.is_none_or(|t| t <= now)
    }

    /// Takes the next batch to send.
    pub(crate) fn take_next(&mut self) -> Option<ReadyBatch> {
        let batch = self.ready.pop_front()?;
        self.in_flight += 1;
        if self.ready.iter().all(|b| b.attempts == 0) {
            self.retrying = false;
        }
        Some(batch)
    }

    /// Removes batches older than `timeout` that are not in flight, for failing them.
    pub(crate) fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<ReadyBatch> {
        let mut expired = Vec::new();
        while self
            .ready
            .front()
            .is_some_and(|b| now.duration_since(b.created) >= timeout)
        {
            expired.extend(self.ready.pop_front());
        }
        expired
    }

    /// Renumbers every queued batch from sequence 0 under a new producer id or epoch (after
    /// the broker lost or fenced our sequence state). Only valid with nothing in flight.
    pub(crate) fn resequence(&mut self, producer: &mut SequenceSource<'_>) {
        debug_assert_eq!(self.in_flight, 0);
        let mut sequence = 0;
        for batch in &mut self.ready {
            let mut data = BytesMut::from(&batch.data[..]);
            rewrite_producer_fields(&mut data, producer.fields(sequence));
            batch.data = data.freeze();
            batch.base_sequence = sequence;
            sequence = next_sequence(sequence, batch.records);
        }
        self.next_sequence = sequence;
        self.retrying = false;
    }

    /// Whether nothing is open, queued or in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.open.is_none() && self.ready.is_empty() && self.in_flight == 0
    }

    /// Completes every queued and open batch with `error` (the producer is closing).
    pub(crate) fn fail_all(&mut self, error: &crate::error::Error) -> usize {
        let mut n = 0;
        if let Some(open) = self.open.take() {
            open.completion.complete(Err(error.clone()));
            n += 1;
        }
        for b in self.ready.drain(..) {
            b.completion.complete(Err(error.clone()));
            n += 1;
        }
        n
    }
}

/// Kafka sequence numbers wrap from i32::MAX to 0.
fn next_sequence(sequence: i32, records: u32) -> i32 {
    ((i64::from(sequence) + i64::from(records)) % (i64::from(i32::MAX) + 1)) as i32
}

/// The producer identity batches are stamped with, and the batch id counter.
#[derive(Debug)]
pub(crate) struct SequenceSource<'a> {
    pub idempotent: bool,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub next_batch_id: &'a mut u64,
}

impl SequenceSource<'_> {
    fn fields(&self, base_sequence: i32) -> ProducerFields {
        if self.idempotent {
            ProducerFields {
                producer_id: self.producer_id,
                producer_epoch: self.producer_epoch,
                base_sequence,
                transactional: false,
            }
        } else {
            ProducerFields::NONE
        }
    }

    fn next_batch_id(&mut self) -> u64 {
        let id = *self.next_batch_id;
        *self.next_batch_id += 1;
        id
    }
}

#[cfg(test)]
mod tests;
