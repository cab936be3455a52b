//! The process's one reader of the delivery topics and of the retained topic, handed to
//! every shard.
//!
//! Every shard with subscribers needs every record of the delivery topics (its
//! subscription index decides who gets it), and every shard needs the retained topic.
//! Fetching them once per shard multiplied the broker's fetch work, and the decoding of
//! each fetch response, by the shard count; so one task per partition set (one per topic,
//! [`TopicReader`]: one Fetch request per leader for all the topic's partitions) reads
//! them once per process and sends each response's records to every shard through a
//! channel. The records are `Bytes` slices of the one response, shared (`Arc<[Record]>`),
//! not copied; each shard matches them against its own index and decodes the MQTT 5
//! properties of a record that matched there itself, into an `Rc` its subscribers share
//! (so nothing per subscriber crosses a thread, and a shard without a match decodes
//! nothing).
//!
//! The readers live on shard 0 and are started by the first SUBSCRIBE of any shard (a
//! process without subscribers fetches nothing). Spreading the partitions over the shards
//! would spread the reading's CPU, but reading is the small part (one Fetch per topic per
//! `max_wait` when idle, one slice per record), the fan-out and the writes are the large
//! part and stay on each subscriber's own shard; one place also makes "every reader knows
//! its start offset" a single event ([`Update::Started`]) that every shard sees in order
//! with the records, which is what lets a SUBACK promise delivery of everything produced
//! after it.
//!
//! Order and gaps: each shard's channel is FIFO and every update is sent to every shard,
//! so a shard sees the retained topic loaded, then `Started` with every delivery
//! partition's start offset, then each partition's records in log order. The channels are
//! bounded: a shard that falls [`CHANNEL_UPDATES`] updates behind holds the readers up
//! (and with them the other shards) instead of letting a queue grow without limit; its
//! slow subscribers are cut off by their mailboxes' own limit.
//!
//! The delivery topics and the retained topic are fetched on two Kafka connections of
//! the reader's own: a broker answers one connection's requests in order, and a fetch of
//! the retained topic waiting for data must hold up neither the delivery fetches nor the
//! shard's other reads.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use kafka_wire::fetch::OffsetReset;
use kafka_wire::record::Record;
use kafka_wire::{Client, ClientConfig, FetchOptions, OffsetSpec, TopicReader};
use tracing::{debug, warn};

use crate::metrics::ShardMetrics;
use crate::per_shard::Receivers;
use crate::runtime;

/// Pause before retrying after a Kafka error.
const RETRY: Duration = Duration::from_secs(1);
/// Updates a shard's channel holds before the readers wait for that shard.
pub const CHANNEL_UPDATES: usize = 64;

/// What the readers send each shard.
#[derive(Debug, Clone)]
pub enum Update {
    /// Records of the retained topic, in log order per partition.
    Retained(Arc<[Record]>),
    /// The retained topic is loaded up to its end as of the readers' start, and every
    /// delivery partition's reader starts at the offset given (`(topic, partition,
    /// offset)`; [`Update::Records`] name a partition by its index in this list).
    Started(Arc<[(Arc<str>, i32, i64)]>),
    /// Records of one delivery partition, in log order, and the offset after them.
    Records {
        /// The partition's index in [`Update::Started`]'s list.
        slot: usize,
        /// The records (possibly none, when only the position moved).
        records: Arc<[Record]>,
        /// The offset the reader reads next.
        next: i64,
    },
}

/// A shard's end of the feed.
pub type Receiver = mpsc::Receiver<Update>;

/// The channels from the process's delivery readers to its shards.
#[derive(Debug)]
pub struct DeliveryFeed {
    senders: Vec<mpsc::Sender<Update>>,
    receivers: Receivers<Receiver>,
    /// Shards ask the readers to start (their first SUBSCRIBE).
    start: mpsc::UnboundedSender<()>,
    starts: Mutex<Option<mpsc::UnboundedReceiver<()>>>,
}

impl DeliveryFeed {
    /// A feed for `shards` shards.
    pub fn new(shards: usize) -> Arc<DeliveryFeed> {
        let (senders, receivers) = (0..shards).map(|_| mpsc::channel(CHANNEL_UPDATES)).unzip();
        let (start, starts) = mpsc::unbounded();
        Arc::new(DeliveryFeed {
            senders,
            receivers: Receivers::new(receivers),
            start,
            starts: Mutex::new(Some(starts)),
        })
    }

    /// Shard `shard`'s end of the feed (taken once).
    pub fn receiver(&self, shard: usize) -> Option<Receiver> {
        self.receivers.take(shard)
    }

    /// Asks the readers to start (they start once; later asks are ignored).
    pub fn request_start(&self) {
        // The readers' end only goes away with the process.
        let _ = self.start.unbounded_send(());
    }

    /// Runs the readers for the process's life, from the first start request on (run it
    /// on one shard): loads the retained topic, opens every delivery partition at its end,
    /// sends [`Update::Started`], then tails them all.
    pub async fn run(
        self: Arc<Self>,
        config: ClientConfig,
        topics: Vec<String>,
        retained_topic: String,
        max_wait: Duration,
        metrics: Arc<ShardMetrics>,
    ) {
        let starts = self
            .starts
            .lock()
            .expect("the feed's lock is never held across a panic")
            .take();
        let Some(mut starts) = starts else { return };
        if starts.next().await.is_none() {
            return;
        }
        let mut senders = self.senders.clone();
        let messages_client = connect(&config).await;
        let retained_client = connect(&config).await;
        let mut retained = open(
            &retained_client,
            &retained_topic,
            OffsetSpec::Earliest,
            max_wait,
        )
        .await;
        load(&mut retained, &retained_client, &mut senders, &metrics).await;
        let mut readers = Vec::with_capacity(topics.len());
        let mut started = Vec::new();
        for topic in &topics {
            let reader = open(&messages_client, topic, OffsetSpec::Latest, max_wait).await;
            let name: Arc<str> = Arc::from(topic.as_str());
            let first = started.len();
            for &(partition, offset) in reader.positions() {
                started.push((name.clone(), partition, offset));
            }
            readers.push((reader, first));
        }
        metrics
            .delivery_partitions
            .store(started.len() as u64, Ordering::Relaxed);
        send_all(&mut senders, Update::Started(started.into())).await;
        drop(starts);
        for (reader, first) in readers {
            runtime::spawn(tail(
                reader,
                Some(first),
                self.senders.clone(),
                metrics.clone(),
            ));
        }
        tail(retained, None, senders, metrics).await;
    }
}

async fn connect(config: &ClientConfig) -> Client {
    loop {
        match Client::connect(config.clone()).await {
            Ok(c) => return c,
            Err(e) => {
                warn!(error = %e, "cannot connect the delivery reader; retrying");
                runtime::sleep(RETRY).await;
            }
        }
    }
}

/// A reader of every partition of `topic` from `start`, whose fetches wait at most
/// `max_wait` for records. A position deleted by retention moves to the log's start when
/// it started there, else to its end.
async fn open(client: &Client, topic: &str, start: OffsetSpec, max_wait: Duration) -> TopicReader {
    let options = FetchOptions {
        max_wait,
        gap_retries: super::GAP_RETRIES,
        ..FetchOptions::default()
    };
    let reset = match start {
        OffsetSpec::Earliest => OffsetReset::Earliest,
        _ => OffsetReset::Latest,
    };
    loop {
        match TopicReader::new(client.clone(), topic, start, options.clone(), reset).await {
            Ok(r) => return r,
            Err(e) => {
                warn!(%topic, error = %e, "cannot open a delivery reader; retrying");
                runtime::sleep(RETRY).await;
            }
        }
    }
}

/// Reads the retained topic up to its end as of now, sending what it reads.
async fn load(
    reader: &mut TopicReader,
    client: &Client,
    senders: &mut [mpsc::Sender<Update>],
    metrics: &ShardMetrics,
) {
    let mut ends = Vec::with_capacity(reader.positions().len());
    for &(partition, _) in reader.positions() {
        let end = loop {
            match client
                .list_offset(reader.topic(), partition, OffsetSpec::Latest)
                .await
            {
                Ok(end) => break end,
                Err(e) => {
                    warn!(topic = reader.topic(), partition, error = %e, "cannot read the topic's end; retrying");
                    runtime::sleep(RETRY).await;
                }
            }
        };
        ends.push(end);
    }
    while reader.positions().iter().zip(&ends).any(|(p, &e)| p.1 < e) {
        metrics.delivery_fetches.fetch_add(1, Ordering::Relaxed);
        match reader.poll().await {
            Ok(partitions) => {
                for (_, records) in partitions {
                    send_all(senders, Update::Retained(records.into())).await;
                }
            }
            Err(e) => {
                warn!(topic = reader.topic(), error = %e, "cannot load the retained messages; retrying");
                runtime::sleep(RETRY).await;
            }
        }
    }
}

/// Tails `reader` for the process's life, sending what it reads: as [`Update::Records`]
/// of the partitions from `slot` on, or (`None`) as [`Update::Retained`].
async fn tail(
    mut reader: TopicReader,
    slot: Option<usize>,
    mut senders: Vec<mpsc::Sender<Update>>,
    metrics: Arc<ShardMetrics>,
) {
    let mut before: Vec<i64> = reader.positions().iter().map(|p| p.1).collect();
    loop {
        metrics.delivery_fetches.fetch_add(1, Ordering::Relaxed);
        match reader.poll().await {
            Ok(partitions) => {
                let mut partitions = partitions.into_iter().peekable();
                for (i, &(partition, next)) in reader.positions().iter().enumerate() {
                    let records: Arc<[Record]> = match partitions.next_if(|(p, _)| *p == partition)
                    {
                        Some((_, records)) => records.into(),
                        // Only the position moved (control records, a reset): the
                        // shards' cursors follow it.
                        None if next != before[i] => Arc::from([]),
                        None => continue,
                    };
                    before[i] = next;
                    let update = match slot {
                        Some(first) => Update::Records {
                            slot: first + i,
                            records,
                            next,
                        },
                        None => Update::Retained(records),
                    };
                    send_all(&mut senders, update).await;
                }
            }
            Err(e) => {
                debug!(topic = reader.topic(), error = %e, "delivery fetch failed; retrying");
                runtime::sleep(RETRY).await;
            }
        }
    }
}

/// Sends `update` to every shard, waiting for room in each channel.
async fn send_all(senders: &mut [mpsc::Sender<Update>], update: Update) {
    for tx in senders {
        // A shard that stopped has dropped its receiver; the others still want it.
        let _ = tx.send(update.clone()).await;
    }
}
