//! Reading records from a partition, from an offset.
//!
//! [`Client::fetch`] sends one Fetch request to the partition's leader and returns its
//! records as [`Record`]s whose keys, values and headers are `Bytes` slices of the response
//! (or of the decompressed batch). [`PartitionReader`] keeps a position and handles what a
//! long-running reader meets: OFFSET_OUT_OF_RANGE (reset to earliest or latest, or report
//! it), leader changes and broken connections (refresh metadata and try again).
//!
//! With [`IsolationLevel::ReadCommitted`] the broker returns records only up to the last
//! stable offset, and records of aborted transactions are dropped here, using the response's
//! aborted-transaction list and the control batches, as the Java consumer does.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Buf;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::{AbortedTransaction, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::{Client, OffsetSpec};
use crate::error::{check, Context, Error, KafkaCode, Result};
use crate::record::{
    decode_batches_with_limit, Batch, Record, RecordError, DEFAULT_MAX_UNCOMPRESSED_BYTES,
};
use crate::rt;

/// Which records a fetch may return (`isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Everything up to the high watermark.
    #[default]
    ReadUncommitted,
    /// Only committed transactional records, up to the last stable offset.
    ReadCommitted,
}

/// Fetch settings; names in brackets follow the Kafka consumer's properties.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// How long the broker may hold the request waiting for `min_bytes` (`fetch.max.wait.ms`).
    pub max_wait: Duration,
    /// Bytes the broker waits for before answering (`fetch.min.bytes`).
    pub min_bytes: i32,
    /// Upper bound of the response size (`fetch.max.bytes`).
    pub max_bytes: i32,
    /// Upper bound per partition (`max.partition.fetch.bytes`).
    pub partition_max_bytes: i32,
    /// `isolation.level`.
    pub isolation: IsolationLevel,
    /// Upper bound of one batch's decompressed size (a guard against decompression bombs).
    pub max_uncompressed_bytes: usize,
    /// When a partition's answer starts with a batch after the offset asked for and
    /// reaches the end of the log, fetch that offset again, up to this many times in a
    /// row, before taking the gap. Kafka leaves gaps only where it compacted, which is
    /// never the end of the log, but tansu 0.6 can answer a reader tailing a partition
    /// that several producers append to with the batches after one that is not readable
    /// yet and comes a moment later. 0 (the default): take every gap at once.
    pub gap_retries: u32,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 50 * 1024 * 1024,
            partition_max_bytes: 1024 * 1024,
            isolation: IsolationLevel::ReadUncommitted,
            max_uncompressed_bytes: DEFAULT_MAX_UNCOMPRESSED_BYTES,
            gap_retries: 0,
        }
    }
}

/// What one fetch returned for a partition.
#[derive(Debug, Clone)]
pub struct FetchedPartition {
    /// Records at or after the requested offset, in offset order, without control records
    /// (and, for read_committed, without aborted ones).
    pub records: Vec<Record>,
    /// The offset to fetch next.
    pub next_offset: i64,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// The last stable offset (read_committed bound), or -1 if unknown.
    pub last_stable_offset: i64,
    /// The log start offset, or -1 if unknown.
    pub log_start_offset: i64,
    /// Where the answer's first batch starts (before control and aborted batches are
    /// dropped), if it had one: after the offset asked for means a gap.
    pub first_batch_offset: Option<i64>,
}

impl Client {
    /// Fetches records of `topic`/`partition` from `offset` with one request to its leader.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        options: &FetchOptions,
    ) -> Result<FetchedPartition> {
        let conn = self.leader(topic, partition).await?;
        let request = fetch_request(topic, &[(partition, offset)], options);
        let ctx = || Context::broker(conn.broker()).with_partition(topic, partition);
        let response = conn.request(&request).await.inspect_err(|e| {
            if e.invalidates_metadata() {
                self.invalidate(topic);
            }
        })?;
        check(response.error_code, None, ctx)?;
        let data = response
            .responses
            .into_iter()
            .filter(|t| t.topic.0.as_str() == topic)
            .flat_map(|t| t.partitions.into_iter())
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| {
                Error::protocol("the Fetch response does not mention our partition", ctx())
            })?;
        self.fetched(topic, data, offset, options, ctx)
    }

    /// One partition of a Fetch response, fetched from `offset`, as records.
    fn fetched(
        &self,
        topic: &str,
        data: PartitionData,
        offset: i64,
        options: &FetchOptions,
        ctx: impl Fn() -> Context,
    ) -> Result<FetchedPartition> {
        check(data.error_code, None, &ctx).inspect_err(|e| {
            if e.invalidates_metadata() {
                self.invalidate(topic);
            }
        })?;
        let aborted = match options.isolation {
            IsolationLevel::ReadCommitted => data.aborted_transactions.unwrap_or_default(),
            IsolationLevel::ReadUncommitted => Vec::new(),
        };
        let mut out = FetchedPartition {
            records: Vec::new(),
            next_offset: offset,
            high_watermark: data.high_watermark,
            last_stable_offset: data.last_stable_offset,
            log_start_offset: data.log_start_offset,
            first_batch_offset: None,
        };
        if let Some(bytes) = data.records {
            let (records, next, first) =
                records_from(bytes, offset, aborted, options.max_uncompressed_bytes).map_err(
                    |e| Error::Record {
                        source: Arc::new(e),
                        context: ctx(),
                    },
                )?;
            out.records = records;
            out.next_offset = next;
            out.first_batch_offset = first;
        }
        Ok(out)
    }
}

/// A Fetch request for `topic` at each `(partition, offset)`.
fn fetch_request(topic: &str, at: &[(i32, i64)], options: &FetchOptions) -> FetchRequest {
    let mut t = FetchTopic::default();
    t.topic = TopicName(StrBytes::from_string(topic.to_owned()));
    for &(partition, offset) in at {
        let mut p = FetchPartition::default();
        p.partition = partition;
        p.fetch_offset = offset;
        p.current_leader_epoch = -1;
        p.log_start_offset = -1;
        p.partition_max_bytes = options.partition_max_bytes;
        t.partitions.push(p);
    }
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.max_wait_ms = i32::try_from(options.max_wait.as_millis()).unwrap_or(i32::MAX);
    request.min_bytes = options.min_bytes;
    request.max_bytes = options.max_bytes;
    request.isolation_level = match options.isolation {
        IsolationLevel::ReadUncommitted => 0,
        IsolationLevel::ReadCommitted => 1,
    };
    request.session_id = 0;
    request.session_epoch = -1;
    request.topics.push(t);
    request
}

/// Keeps the records of `fetched` at or after `position`, each offset once and in order (a
/// fetch from inside a batch returns the whole batch, Kafka's rule, and a broker may repeat
/// a batch in one response, as tansu 0.6 does); returns the position after them. An answer
/// that starts after `position` and reaches the high watermark is dropped, and `position`
/// kept, while `gap_tries` (the partition's count of such answers in a row) is below
/// `options.gap_retries`.
fn keep_new(
    position: i64,
    fetched: &mut FetchedPartition,
    gap_tries: &mut u32,
    options: &FetchOptions,
) -> i64 {
    let gap = fetched
        .first_batch_offset
        .is_some_and(|first| first > position)
        && fetched.next_offset >= fetched.high_watermark;
    if gap && *gap_tries < options.gap_retries {
        *gap_tries += 1;
        tracing::debug!(position, first = ?fetched.first_batch_offset, "a gap in a fetch answer; fetching again");
        fetched.records.clear();
        return position;
    }
    *gap_tries = 0;
    let mut next = position;
    fetched.records.retain(|r| {
        let keep = r.offset >= next;
        if keep {
            next = r.offset + 1;
        }
        keep
    });
    fetched.next_offset.max(next)
}

/// The records at or after `offset` in a fetch response's record set, without control
/// records and without those of `aborted` transactions, the offset to fetch next, and where
/// the first batch started.
fn records_from(
    bytes: bytes::Bytes,
    offset: i64,
    aborted: Vec<AbortedTransaction>,
    max_uncompressed_bytes: usize,
) -> Result<(Vec<Record>, i64, Option<i64>), RecordError> {
    let mut records = Vec::new();
    let mut next = offset;
    let mut first = None;
    let mut filter = AbortFilter::new(aborted);
    for batch in decode_batches_with_limit(bytes, max_uncompressed_bytes) {
        let batch = batch?;
        first.get_or_insert(batch.base_offset);
        // Even a batch that is skipped moves the position past it.
        next = next.max(batch.last_offset() + 1);
        if !filter.keep(&batch) {
            continue;
        }
        for record in batch.records() {
            let record = record?;
            // A batch may start before the offset asked for (brokers return whole batches);
            // skip what the caller has seen.
            if record.offset >= offset {
                records.push(record);
            }
        }
    }
    Ok((records, next, first))
}

/// Drops control batches, and batches of aborted transactions (read_committed).
struct AbortFilter {
    /// Aborted transactions not yet reached, by first offset (ascending).
    pending: Vec<AbortedTransaction>,
    /// Producers whose transaction in progress is aborted.
    aborted: HashSet<i64>,
}

impl AbortFilter {
    fn new(mut aborted: Vec<AbortedTransaction>) -> Self {
        aborted.sort_by_key(|a| std::cmp::Reverse(a.first_offset));
        AbortFilter {
            pending: aborted,
            aborted: HashSet::new(),
        }
    }

    fn keep(&mut self, batch: &Batch) -> bool {
        while self
            .pending
            .last()
            .is_some_and(|a| a.first_offset <= batch.last_offset())
        {
            let a = self.pending.pop().expect("checked");
            self.aborted.insert(a.producer_id.0);
        }
        if batch.control {
            // An ABORT marker (control record type 0) ends that producer's aborted
            // transaction; COMMIT markers need nothing.
            if is_abort_marker(batch) {
                self.aborted.remove(&batch.producer_id);
            }
            return false;
        }
        !(batch.transactional && self.aborted.contains(&batch.producer_id))
    }
}

fn is_abort_marker(batch: &Batch) -> bool {
    batch
        .records()
        .next()
        .and_then(|r| r.ok())
        .and_then(|r| r.key)
        .filter(|k| k.len() >= 4)
        .is_some_and(|mut k| {
            let _version = k.get_i16();
            k.get_i16() == 0
        })
}

/// Where a reader whose `(partition, position)` is outside the log (`error`, an
/// OFFSET_OUT_OF_RANGE) goes on, by `reset`; `error` itself when `reset` says fail.
async fn reset_position(
    client: &Client,
    topic: &str,
    (partition, position): (i32, i64),
    reset: OffsetReset,
    error: Error,
) -> Result<i64> {
    let spec = match reset {
        OffsetReset::Earliest => OffsetSpec::Earliest,
        OffsetReset::Latest => OffsetSpec::Latest,
        OffsetReset::Fail => return Err(error),
    };
    let to = client.list_offset(topic, partition, spec).await?;
    tracing::info!(%topic, partition, from = position, to, "offset out of range; position reset");
    Ok(to)
}

/// What a [`PartitionReader`] does when its position is outside the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// Jump to the log start (`auto.offset.reset=earliest`).
    Earliest,
    /// Jump to the end (`auto.offset.reset=latest`).
    Latest,
    /// Report OFFSET_OUT_OF_RANGE to the caller (`auto.offset.reset=none`).
    Fail,
}

/// Reads one partition from a position onwards, riding out leader changes and reconnects.
#[derive(Debug)]
pub struct PartitionReader {
    client: Client,
    topic: Arc<str>,
    partition: i32,
    position: i64,
    /// Answers in a row that started after `position` (`FetchOptions::gap_retries`).
    gap_tries: u32,
    options: FetchOptions,
    reset: OffsetReset,
    /// How long transient errors are retried before being returned.
    retry_for: Duration,
}

impl PartitionReader {
    /// A reader starting at `start` (an offset spec resolved with ListOffsets now).
    pub async fn new(
        client: Client,
        topic: &str,
        partition: i32,
        start: OffsetSpec,
        options: FetchOptions,
        reset: OffsetReset,
    ) -> Result<Self> {
        let position = client.list_offset(topic, partition, start).await?;
        Ok(Self::at(client, topic, partition, position, options, reset))
    }

    /// A reader starting at a known offset.
    pub fn at(
        client: Client,
        topic: &str,
        partition: i32,
        offset: i64,
        options: FetchOptions,
        reset: OffsetReset,
    ) -> Self {
        PartitionReader {
            client,
            topic: Arc::from(topic),
            partition,
            position: offset,
            gap_tries: 0,
            options,
            reset,
            retry_for: Duration::from_secs(30),
        }
    }

    /// Sets how long transient errors (leader moves, broken connections) are retried.
    pub fn retry_for(mut self, duration: Duration) -> Self {
        self.retry_for = duration;
        self
    }

    /// The topic it reads.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition it reads.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The offset of the next record to read.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// Moves the position.
    pub fn seek(&mut self, offset: i64) {
        self.position = offset;
    }

    /// The next records (possibly none, after the fetch's max wait) and the high watermark.
    pub async fn poll(&mut self) -> Result<FetchedPartition> {
        let deadline = Instant::now() + self.retry_for;
        let backoff = self.client.config().retry_backoff;
        loop {
            match self
                .client
                .fetch(&self.topic, self.partition, self.position, &self.options)
                .await
            {
                Ok(mut fetched) => {
                    self.position = keep_new(
                        self.position,
                        &mut fetched,
                        &mut self.gap_tries,
                        &self.options,
                    );
                    return Ok(fetched);
                }
                Err(e) if e.kafka_code() == Some(KafkaCode::OffsetOutOfRange) => {
                    self.position = reset_position(
                        &self.client,
                        &self.topic,
                        (self.partition, self.position),
                        self.reset,
                        e,
                    )
                    .await?;
                }
                Err(e) if e.is_retriable() && Instant::now() + backoff < deadline => {
                    tracing::debug!(topic = %self.topic, partition = self.partition, error = %e, "fetch failed; retrying");
                    rt::sleep(backoff).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

mod many;
#[cfg(test)]
mod tests;

pub use many::TopicReader;
