//! The Kafka side of one HTTP subscriber: a [`PartitionReader`] per partition of its topic,
//! owned by the connection (unlike MQTT delivery, which reads each partition once per
//! process for every subscriber), and the subscriber's [`Position`].
//!
//! Reading follows the socket: each partition has at most one fetch in flight or one fetched
//! batch waiting, and fetches again only once the connection took that batch (wrote it to the
//! client). A subscriber therefore holds at most one fetch response per partition
//! ([`PARTITION_MAX_BYTES`], or one record batch if larger), however slow its client.
//!
//! Fetches do not wait at the broker (`max_wait` 0): a Kafka broker answers one request per
//! connection at a time, so a long-polling fetch would hold up the shard's produce requests
//! and every other subscriber's fetches on the same broker connection. A partition that had
//! nothing new is fetched again after [`IDLE_POLL`] instead.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt as _};
use kafka_wire::fetch::OffsetReset;
use kafka_wire::record::Record;
use kafka_wire::{Client, FetchOptions, FetchedPartition, KafkaCode, OffsetSpec, PartitionReader};

use super::position::{Position, PositionError};
use super::subscribe::{Start, Subscribe};
use crate::runtime;

/// How long a partition with nothing new waits before it is fetched again: the most an idle
/// subscriber adds to a record's latency.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Upper bound of one fetch response per partition (a larger record batch still comes whole).
const PARTITION_MAX_BYTES: i32 = 64 * 1024;

/// Why a subscription could not start.
#[derive(Debug, thiserror::Error)]
pub(super) enum OpenError {
    #[error(transparent)]
    Position(#[from] PositionError),
    #[error(transparent)]
    Kafka(#[from] kafka_wire::Error),
}

/// Records fetched from one partition.
#[derive(Debug)]
pub(super) struct Batch {
    pub partition: i32,
    /// In offset order; possibly none when only the position moved (control records,
    /// an offset reset).
    pub records: Vec<Record>,
    /// Where the partition's next fetch starts.
    pub next_offset: i64,
}

/// A fetch in flight: the reader and what its fetch brought.
type Fetch = Pin<Box<dyn Future<Output = (PartitionReader, kafka_wire::Result<FetchedPartition>)>>>;

/// One subscriber's readers and position.
pub(super) struct Feed {
    fetches: FuturesUnordered<Fetch>,
    /// The reader whose batch the connection is writing; it fetches on the next poll.
    parked: Option<PartitionReader>,
    position: Position,
    /// Per partition: records below this offset are before the start position (read only
    /// because the fetch had to start earlier, see [`resume_at`]).
    skip_below: Vec<i64>,
    keys: Vec<Vec<u8>>,
}

impl fmt::Debug for Feed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed")
            .field("position", &self.position)
            .field("fetching", &self.fetches.len())
            .finish()
    }
}

impl Feed {
    /// Finds the topic's partitions and where to start in each, and starts fetching.
    pub(super) async fn open(client: &Client, sub: &Subscribe) -> Result<Feed, OpenError> {
        let topic = sub.topic.as_str();
        let count = client.topic(topic).await?.partitions.len();
        let given = match &sub.start {
            Start::At(text) => text.offsets(topic, count)?,
            _ => vec![None; count],
        };
        let starts = given.iter().enumerate().map(|(p, given)| async move {
            let p = p as i32;
            match (given, &sub.start) {
                (Some(offset), _) => resume_at(client, topic, p, *offset).await,
                // A partition a position does not name was added since: all of it is new.
                (None, Start::At(_) | Start::Earliest) => {
                    let at = client.list_offset(topic, p, OffsetSpec::Earliest).await?;
                    Ok((at, at))
                }
                (None, Start::Latest) => {
                    let at = end_offset(client, topic, p).await?;
                    Ok((at, at))
                }
            }
        });
        let reads = futures::future::try_join_all(starts).await?;
        // Where each partition's reader starts, and where its stream position is: before
        // that, records are read only to reach the position, not delivered.
        let starts: Vec<i64> = reads.iter().map(|r| r.0).collect();
        let from: Vec<i64> = reads.iter().map(|r| r.1).collect();
        let options = FetchOptions {
            max_wait: Duration::ZERO,
            max_bytes: PARTITION_MAX_BYTES,
            partition_max_bytes: PARTITION_MAX_BYTES,
            ..FetchOptions::default()
        };
        let fetches = FuturesUnordered::new();
        for (p, &offset) in starts.iter().enumerate() {
            let reader = PartitionReader::at(
                client.clone(),
                topic,
                p as i32,
                offset,
                options.clone(),
                OffsetReset::Earliest,
            );
            fetches.push(fetch(reader, false));
        }
        Ok(Feed {
            fetches,
            parked: None,
            skip_below: from.clone(),
            position: Position::new(from),
            keys: sub.keys.clone(),
        })
    }

    /// Where a client that got everything delivered so far resumes.
    pub(super) fn position(&self) -> &Position {
        &self.position
    }

    /// Records that `record` was delivered or skipped; true when it is to be delivered
    /// (its key passes the filter).
    pub(super) fn pass(&mut self, partition: i32, record: &Record) -> bool {
        if record.offset < self.skip_below[partition as usize] {
            return false;
        }
        self.position.set(partition, record.offset + 1);
        self.keys.is_empty()
            || record
                .key
                .as_deref()
                .is_some_and(|k| self.keys.iter().any(|want| want[..] == *k))
    }

    /// Records that a batch was written in full.
    pub(super) fn done(&mut self, batch: &Batch) {
        let skip = &mut self.skip_below[batch.partition as usize];
        if batch.next_offset < *skip {
            return;
        }
        *skip = 0;
        self.position.set(batch.partition, batch.next_offset);
    }

    /// The next batch from any partition. The previous batch's partition fetches again
    /// from here on: call this only once that batch was written.
    pub(super) fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<kafka_wire::Result<Batch>> {
        if let Some(reader) = self.parked.take() {
            self.fetches.push(fetch(reader, false));
        }
        loop {
            let Poll::Ready(Some((reader, result))) = self.fetches.poll_next_unpin(cx) else {
                return Poll::Pending;
            };
            let partition = reader.partition();
            let mut fetched = match result {
                Ok(f) => f,
                Err(e) => return Poll::Ready(Err(e)),
            };
            // Offsets only grow within a partition; a broker that sends a batch twice in one
            // response (tansu 0.6 does after a fetch from inside a batch) must not make us
            // deliver it twice.
            fetched.records.dedup_by(|r, kept| r.offset <= kept.offset);
            let moved = self.position.get(partition) != Some(fetched.next_offset);
            if fetched.records.is_empty() && !moved {
                self.fetches.push(fetch(reader, true));
                continue;
            }
            self.parked = Some(reader);
            return Poll::Ready(Ok(Batch {
                partition,
                records: fetched.records,
                next_offset: fetched.next_offset,
            }));
        }
    }
}

/// One fetch, after [`IDLE_POLL`] when the partition's last fetch brought nothing.
fn fetch(mut reader: PartitionReader, idle: bool) -> Fetch {
    Box::pin(async move {
        if idle {
            runtime::sleep(IDLE_POLL).await;
        }
        let result = reader.poll().await;
        (reader, result)
    })
}

/// Where to start fetching so that a stream resumes at `offset` (the record there, or the
/// first after it), and `offset` itself, which is where the stream's position is.
///
/// A fetch from inside a record batch must return that batch (records before `offset` are
/// then dropped). tansu 0.6 instead skips the batch and answers with the next one, which
/// would lose the rest of the batch. When the first record fetched is not at `offset`
/// (a gap: compaction, or that defect), earlier offsets are tried, stepping back 1, 2, 4, ...
/// until a fetch brings a record at or before `offset`; reading starts there. A real gap
/// costs those few probes once, at the start of the stream.
async fn resume_at(
    client: &Client,
    topic: &str,
    partition: i32,
    offset: i64,
) -> kafka_wire::Result<(i64, i64)> {
    let probe = FetchOptions {
        max_wait: Duration::ZERO,
        max_bytes: 1,
        partition_max_bytes: 1,
        ..FetchOptions::default()
    };
    let first = |f: &FetchedPartition| f.records.first().map(|r| r.offset);
    let fetched = match client.fetch(topic, partition, offset, &probe).await {
        Ok(f) => f,
        // Deleted by retention, or the topic was recreated: from the log start.
        Err(e) if e.kafka_code() == Some(KafkaCode::OffsetOutOfRange) => {
            let at = client
                .list_offset(topic, partition, OffsetSpec::Earliest)
                .await?;
            return Ok((at, at));
        }
        Err(e) => return Err(e),
    };
    let found = first(&fetched).unwrap_or(fetched.high_watermark);
    if found <= offset {
        return Ok((offset, offset));
    }
    let floor = fetched.log_start_offset.max(0);
    let mut step = 1;
    loop {
        let at = offset.saturating_sub(step).max(floor);
        let earlier = client.fetch(topic, partition, at, &probe).await?;
        if first(&earlier).is_some_and(|o| o <= offset) {
            return Ok((at, offset));
        }
        if at == floor {
            return Ok((offset, offset));
        }
        step = step.saturating_mul(2);
    }
}

/// The offset the partition's next record will get. ListOffsets alone is not trusted (some
/// brokers, the tansu test broker among them, can report too low a latest offset); the high
/// watermark of a fetch from there is exact.
async fn end_offset(client: &Client, topic: &str, partition: i32) -> kafka_wire::Result<i64> {
    let listed = client
        .list_offset(topic, partition, OffsetSpec::Latest)
        .await?;
    let probe = FetchOptions {
        max_wait: Duration::ZERO,
        max_bytes: 1,
        partition_max_bytes: 1,
        ..FetchOptions::default()
    };
    let fetched = client.fetch(topic, partition, listed, &probe).await?;
    Ok(fetched.high_watermark.max(listed))
}
