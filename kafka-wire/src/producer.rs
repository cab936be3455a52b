//! The producer: per-partition batching, the idempotent sequence protocol, retries and
//! per-record delivery reports.
//!
//! `send` copies a record's bytes once, into its partition's open RecordBatch, and returns a
//! [`DeliveryFuture`]. A sender task closes batches when they are full or their linger time
//! is up, groups them into one Produce request per leader broker, and keeps at most
//! `max_in_flight` requests per broker outstanding.
//!
//! # Idempotence and retries
//!
//! By default the producer is idempotent (`enable.idempotence`): it gets a producer id and
//! epoch with InitProducerId, and every batch carries the sequence number of its first
//! record. A batch that fails with a retriable error (a broken connection, a timeout, a
//! leader change) is sent again with the same sequence numbers, after a backoff, ahead of
//! anything newer for its partition, and nothing newer is sent for that partition until
//! every earlier batch has been answered. The broker drops a batch it already has, so a retry
//! never duplicates a record, and sequence checking stops reordering. If the broker loses our
//! sequence state (UNKNOWN_PRODUCER_ID, or a batch expired with sequence numbers assigned),
//! the producer waits for in-flight requests, takes a new producer id, and renumbers what it
//! still holds.

mod accumulator;
mod delivery;
mod sender;

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use delivery::{DeliveryFuture, RecordMetadata};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::metadata::TopicInfo;
use crate::partitioner::{Partitioning, TopicPartitioner};
use crate::record::{Compression, Header};
use accumulator::{Limits, PartitionQueue, RecordRef, SequenceSource};

/// Which acknowledgement the producer waits for (`acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Fire and forget: no response (`acks=0`). Records report offset -1.
    None,
    /// The leader has written the record (`acks=1`).
    Leader,
    /// Every in-sync replica has it (`acks=all`, the default; required for idempotence).
    #[default]
    All,
}

impl Acks {
    pub(crate) fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            other => Err(format!("acks must be 0, 1, all or -1, not {other:?}")),
        }
    }
}

/// Producer settings; names in brackets are the Kafka client properties they follow.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `acks`; default all.
    pub acks: Acks,
    /// How long a batch waits for more records before it is sent (`linger.ms`); default 5 ms.
    pub linger: Duration,
    /// Upper bound of one batch's uncompressed size in bytes (`batch.size`); default 1 MiB.
    pub batch_size: usize,
    /// Upper bound of one Produce request's size (`max.request.size`); default 1 MiB... plus
    /// one batch: a batch is never split, so one larger batch goes alone.
    pub max_request_size: usize,
    /// Requests in flight per broker connection
    /// (`max.in.flight.requests.per.connection`); default 5, at most 5 when idempotent.
    pub max_in_flight: usize,
    /// `compression.type`; default none.
    pub compression: Compression,
    /// `enable.idempotence`; default true.
    pub idempotent: bool,
    /// Time from `send` to a definite answer, retries included (`delivery.timeout.ms`);
    /// default 120 s.
    pub delivery_timeout: Duration,
    /// Bytes of records the producer may hold unacknowledged before `send` waits
    /// (`buffer.memory`); default 32 MiB.
    pub buffer_memory: usize,
    /// How partitions are chosen when a record names none (`partitioner`): Java's default is
    /// murmur2 of the key, sticky for keyless records.
    pub partitioning: Partitioning,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 1024 * 1024,
            max_request_size: 1024 * 1024,
            max_in_flight: 5,
            compression: Compression::None,
            idempotent: true,
            delivery_timeout: Duration::from_secs(120),
            buffer_memory: 32 * 1024 * 1024,
            partitioning: Partitioning::Key,
        }
    }
}

impl ProducerConfig {
    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(Arc::from(m)));
        if self.idempotent && self.acks != Acks::All {
            return bad("enable.idempotence requires acks=all");
        }
        if self.idempotent && !(1..=5).contains(&self.max_in_flight) {
            return bad(
                "enable.idempotence requires max.in.flight.requests.per.connection between 1 and 5",
            );
        }
        if self.max_in_flight == 0 {
            return bad("max.in.flight.requests.per.connection must be at least 1");
        }
        if self.batch_size < 1024 {
            return bad("batch.size must be at least 1024 bytes");
        }
        Ok(())
    }
}

/// One record to produce. Its bytes are copied into a batch during `send`; nothing is kept.
#[derive(Debug, Clone, Copy)]
pub struct ProducerRecord<'a> {
    /// Target topic.
    pub topic: &'a str,
    /// Target partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    /// The key (also what the default partitioner hashes).
    pub key: Option<&'a [u8]>,
    /// The value; `None` is a tombstone.
    pub value: Option<&'a [u8]>,
    /// Record headers.
    pub headers: &'a [Header<'a>],
    /// Create time in milliseconds since the epoch; `None` for now.
    pub timestamp: Option<i64>,
    /// How the partition is chosen when `partition` is `None`; `None`: the producer's
    /// [`ProducerConfig::partitioning`].
    pub partitioning: Option<Partitioning>,
}

impl<'a> ProducerRecord<'a> {
    /// A record with a value and nothing else.
    pub fn new(topic: &'a str, value: &'a [u8]) -> Self {
        ProducerRecord {
            topic,
            partition: None,
            key: None,
            value: Some(value),
            headers: &[],
            timestamp: None,
            partitioning: None,
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: &'a [u8]) -> Self {
        self.key = Some(key);
        self
    }

    /// Sets the partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the headers.
    pub fn headers(mut self, headers: &'a [Header<'a>]) -> Self {
        self.headers = headers;
        self
    }
}

/// A topic's partitions and their queues.
#[derive(Debug)]
struct TopicQueues {
    info: Rc<TopicInfo>,
    partitions: Vec<PartitionQueue>,
    partitioner: TopicPartitioner,
    /// A metadata refresh was asked for (a leader moved, a broker went away).
    stale: bool,
}

/// Counters a caller can export as metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStats {
    /// Records appended.
    pub records: u64,
    /// Batches sent (first attempts).
    pub batches: u64,
    /// Produce requests sent.
    pub requests: u64,
    /// Batch attempts retried.
    pub retries: u64,
    /// Batches that ended in an error.
    pub failed_batches: u64,
    /// Record bytes held, not yet acknowledged.
    pub buffered_bytes: u64,
    /// Produce requests sent and not yet answered, over all brokers.
    pub in_flight_requests: u64,
}

/// The counters of several producers together (a process's per-shard or per-acks ones).
impl std::ops::Add for ProducerStats {
    type Output = ProducerStats;

    fn add(self, other: ProducerStats) -> ProducerStats {
        ProducerStats {
            records: self.records + other.records,
            batches: self.batches + other.batches,
            requests: self.requests + other.requests,
            retries: self.retries + other.retries,
            failed_batches: self.failed_batches + other.failed_batches,
            buffered_bytes: self.buffered_bytes + other.buffered_bytes,
            in_flight_requests: self.in_flight_requests + other.in_flight_requests,
        }
    }
}

#[derive(Debug)]
struct State {
    topics: HashMap<Arc<str>, TopicQueues>,
    producer_id: i64,
    producer_epoch: i16,
    /// The broker lost or fenced our sequence state: get a new id once nothing is in flight.
    needs_new_id: bool,
    next_batch_id: u64,
    /// Ids of batches not yet answered, for flush.
    outstanding: BTreeSet<u64>,
    buffered_bytes: usize,
    memory_waiters: Vec<Waker>,
    flush_waiters: Vec<(u64, Waker)>,
    sender_waker: Option<Waker>,
    /// The sender was woken while it was not waiting (it runs one more step).
    sender_poked: bool,
    /// An InitProducerId to renew the id is under way.
    renewing_id: bool,
    /// Produce requests in flight per broker id.
    broker_in_flight: HashMap<i32, usize>,
    /// Close every open batch now, regardless of linger (flush or close).
    flush_requested: bool,
    closed: bool,
    stats: ProducerStats,
}

struct Inner {
    client: Client,
    config: ProducerConfig,
    state: RefCell<State>,
}

/// A shard-local Kafka producer. Cheap to clone; clones share batches and connections.
#[derive(Clone)]
pub struct Producer {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("config", &self.inner.config)
            .field("stats", &self.inner.state.borrow().stats)
            .finish()
    }
}

impl Producer {
    /// Starts a producer on `client`; with idempotence it first obtains a producer id.
    pub async fn new(client: Client, config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let producer = Producer {
            inner: Rc::new(Inner {
                client,
                config,
                state: RefCell::new(State {
                    topics: HashMap::new(),
                    producer_id: -1,
                    producer_epoch: -1,
                    needs_new_id: false,
                    next_batch_id: 0,
                    outstanding: BTreeSet::new(),
                    buffered_bytes: 0,
                    memory_waiters: Vec::new(),
                    flush_waiters: Vec::new(),
                    sender_waker: None,
                    sender_poked: false,
                    renewing_id: false,
                    broker_in_flight: HashMap::new(),
                    flush_requested: false,
                    closed: false,
                    stats: ProducerStats::default(),
                }),
            }),
        };
        if producer.inner.config.idempotent {
            sender::init_producer_id(&producer.inner).await?;
        }
        crate::rt::spawn(sender::run(Rc::downgrade(&producer.inner)));
        Ok(producer)
    }

    /// The settings of this producer.
    pub fn config(&self) -> &ProducerConfig {
        &self.inner.config
    }

    /// Counters since start.
    pub fn stats(&self) -> ProducerStats {
        let s = self.inner.state.borrow();
        ProducerStats {
            buffered_bytes: s.buffered_bytes as u64,
            in_flight_requests: s.broker_in_flight.values().sum::<usize>() as u64,
            ..s.stats
        }
    }

    /// Appends a record to its partition's batch. Waits only when the topic's metadata is
    /// not known yet or `buffer.memory` is used up. The returned future reports the record's
    /// offset once Kafka acknowledged it, or the error that ended it.
    pub async fn send(&self, record: ProducerRecord<'_>) -> Result<DeliveryFuture> {
        let rec = RecordRef {
            timestamp: record.timestamp.unwrap_or_else(now_ms),
            key: record.key,
            value: record.value,
            headers: record.headers,
        };
        let size = rec.approx_size();
        self.wait_for_memory(size).await?;
        if !self.inner.state.borrow().topics.contains_key(record.topic) {
            let info = self.inner.client.topic(record.topic).await?;
            self.add_topic(info);
        }
        self.append(&record, rec, size)
    }

    fn add_topic(&self, info: Rc<TopicInfo>) {
        let mut state = self.inner.state.borrow_mut();
        state
            .topics
            .entry(info.name.clone())
            .or_insert_with(|| TopicQueues {
                partitions: (0..info.partitions.len())
                    .map(|_| PartitionQueue::default())
                    .collect(),
                info,
                partitioner: TopicPartitioner::new(),
                stale: false,
            });
    }

    fn append(
        &self,
        record: &ProducerRecord<'_>,
        rec: RecordRef<'_>,
        size: usize,
    ) -> Result<DeliveryFuture> {
        let inner = &*self.inner;
        let mut guard = inner.state.borrow_mut();
        let state = &mut *guard;
        if state.closed {
            return Err(Error::Closed);
        }
        let topic = state
            .topics
            .get_mut(record.topic)
            .expect("topic added before append");
        let count = topic.partitions.len() as u32;
        let partition = match record.partition {
            Some(p) if p >= 0 && (p as u32) < count => p as u32,
            Some(p) => {
                return Err(Error::UnknownPartition {
                    topic: topic.info.name.clone(),
                    partition: p,
                    count,
                })
            }
            None => topic.partitioner.partition(
                record.partitioning.unwrap_or(inner.config.partitioning),
                record.key,
                count,
            ),
        };
        let limits = Limits {
            batch_size: inner.config.batch_size,
            compression: inner.config.compression,
        };
        let mut source = SequenceSource {
            idempotent: inner.config.idempotent,
            producer_id: state.producer_id,
            producer_epoch: state.producer_epoch,
            next_batch_id: &mut state.next_batch_id,
        };
        let queue = &mut topic.partitions[partition as usize];
        let (future, appended) =
            queue.append(partition as i32, rec, limits, &mut source, Instant::now);
        if let Some(id) = appended.opened {
            state.outstanding.insert(id);
        }
        if appended.closed {
            topic.partitioner.on_new_batch(count, partition);
        }
        state.buffered_bytes += size;
        state.stats.records += 1;
        if appended.opened.is_some() || appended.closed {
            sender::poke(state);
        }
        Ok(future)
    }

    async fn wait_for_memory(&self, size: usize) -> Result<()> {
        let limit = self.inner.config.buffer_memory;
        futures::future::poll_fn(|cx| {
            let mut state = self.inner.state.borrow_mut();
            if state.closed {
                return Poll::Ready(Err(Error::Closed));
            }
            // One record larger than the whole budget still goes, alone.
            if state.buffered_bytes == 0 || state.buffered_bytes + size <= limit {
                Poll::Ready(Ok(()))
            } else {
                state.memory_waiters.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Sends every batch now and waits until each record sent before this call has been
    /// answered (acknowledged or failed).
    pub async fn flush(&self) {
        let target = {
            let mut state = self.inner.state.borrow_mut();
            state.flush_requested = true;
            sender::poke(&mut state);
            // Batch ids are given in order of opening: every batch holding a record sent
            // before this call has an id below the counter's current value.
            state.next_batch_id
        };
        futures::future::poll_fn(|cx| {
            let mut state = self.inner.state.borrow_mut();
            let done = state
                .outstanding
                .first()
                .is_none_or(|&first| first >= target);
            if done {
                Poll::Ready(())
            } else {
                state.flush_waiters.push((target, cx.waker().clone()));
                sender::poke(&mut state);
                Poll::Pending
            }
        })
        .await
    }

    /// Flushes, then refuses further records. Records still unanswered after `timeout` are
    /// failed with [`Error::Closed`].
    pub async fn close(&self, timeout: Duration) {
        let _ = crate::rt::timeout(timeout, self.flush()).await;
        let mut state = self.inner.state.borrow_mut();
        state.closed = true;
        let mut failed = 0;
        for topic in state.topics.values_mut() {
            for q in &mut topic.partitions {
                failed += q.fail_all(&Error::Closed);
            }
        }
        if failed > 0 {
            tracing::warn!(
                batches = failed,
                "producer closed with unacknowledged batches"
            );
        }
        for w in state.memory_waiters.drain(..) {
            w.wake();
        }
        state.outstanding.clear();
        for (_, w) in state.flush_waiters.drain(..) {
            w.wake();
        }
        sender::poke(&mut state);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Records still held would otherwise wait forever.
        let state = self.state.get_mut();
        for topic in state.topics.values_mut() {
            for q in &mut topic.partitions {
                q.fail_all(&Error::Closed);
            }
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
