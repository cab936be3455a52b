//! The process's one reader of the session topic, handed to every shard.
//!
//! Every claim waits until its own record has been read back, and every shard needs every
//! record (its cache decides takeovers and resumes), but reading the topic once per shard
//! multiplies the broker's work by the shard count: a broker that answers a fetch at a cost
//! that grows with the partition's length (tansu's memory engine lists every batch of the
//! partition on each fetch that returns data) stops keeping up past a few tens of
//! thousands of sessions. So one task per process reads the topic, with one Fetch request
//! for all its partitions on a Kafka connection of its own (not queued behind delivery
//! fetches), and sends each response's records to every shard through a channel; the
//! records are `Bytes` slices of the one response, shared, not copied.

use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use kafka_wire::fetch::OffsetReset;
use kafka_wire::record::Record;
use kafka_wire::{Client, FetchOptions, OffsetSpec, TopicReader};
use tracing::{debug, warn};

use crate::per_shard::Receivers;
use crate::runtime;

/// How long a fetch waits at the broker when no partition has anything new.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// Pause before retrying after a Kafka error.
const RETRY: Duration = Duration::from_secs(1);
/// Records of the topic the reader may make the broker go through per second (see
/// [`pace`]).
const SCAN_BUDGET: u64 = 30_000;
/// The longest pause between two fetches that return records.
const MAX_INTERVAL: Duration = Duration::from_secs(2);

/// How long after the start of a fetch that returned records the next one may start: the
/// topic's length (records up to `ends`) over [`SCAN_BUDGET`], at most [`MAX_INTERVAL`].
/// A fetch that returns records costs a broker that lists the partition's batches on each
/// such fetch (tansu's memory engine) work proportional to the partition's length, and
/// every process reads the whole topic; unpaced, the processes' readers together outrun
/// the broker past a few tens of thousands of sessions and every claim waits seconds.
/// Paced, a claim waits about one interval more at most; a topic with nothing new is
/// asked again at once (such a fetch waits at the broker, and costs it little).
fn pace(records: u64) -> Duration {
    Duration::from_millis(records.saturating_mul(1000) / SCAN_BUDGET).min(MAX_INTERVAL)
}

/// What the reader sends each shard.
#[derive(Debug, Clone)]
pub enum Update {
    /// Records of one partition, in log order.
    Records(Arc<[Record]>),
    /// Everything up to the topic's end as of the reader's start has been sent.
    Loaded,
}

/// A shard's end of the feed.
pub type Receiver = mpsc::UnboundedReceiver<Update>;

/// The channels from the process's reader to its shards.
#[derive(Debug)]
pub struct SessionFeed {
    senders: Vec<mpsc::UnboundedSender<Update>>,
    receivers: Receivers<Receiver>,
}

impl SessionFeed {
    /// A feed for `shards` shards.
    pub fn new(shards: usize) -> Arc<SessionFeed> {
        let (senders, receivers) = (0..shards).map(|_| mpsc::unbounded()).unzip();
        Arc::new(SessionFeed {
            senders,
            receivers: Receivers::new(receivers),
        })
    }

    /// Shard `shard`'s end of the feed (taken once).
    pub fn receiver(&self, shard: usize) -> Option<Receiver> {
        self.receivers.take(shard)
    }

    fn send(&self, update: Update) {
        for tx in &self.senders {
            // A shard that stopped has dropped its receiver; the others still want it.
            let _ = tx.unbounded_send(update.clone());
        }
    }

    /// Reads `topic` from its beginning and keeps tailing it, for the process's life (run
    /// it on one shard): sends what it reads to every shard, and `Loaded` once it has
    /// reached the end the topic had when it started.
    pub async fn run(self: Arc<Self>, client: Client, topic: String) {
        let options = FetchOptions {
            max_wait: MAX_WAIT,
            gap_retries: crate::delivery::GAP_RETRIES,
            ..FetchOptions::default()
        };
        let mut reader = loop {
            let opened = TopicReader::new(
                client.clone(),
                &topic,
                OffsetSpec::Earliest,
                options.clone(),
                OffsetReset::Earliest,
            )
            .await;
            match opened {
                Ok(r) => break r,
                Err(e) => {
                    warn!(%topic, error = %e, "cannot open the session topic; retrying");
                    runtime::sleep(RETRY).await;
                }
            }
        };
        let mut ends = Vec::with_capacity(reader.positions().len());
        for &(partition, _) in reader.positions() {
            let end = loop {
                match client
                    .list_offset(&topic, partition, OffsetSpec::Latest)
                    .await
                {
                    Ok(end) => break end,
                    Err(e) => {
                        warn!(%topic, partition, error = %e, "cannot read the topic's end; retrying");
                        runtime::sleep(RETRY).await;
                    }
                }
            };
            ends.push(end);
        }
        let mut loaded = false;
        loop {
            if !loaded && reader.positions().iter().zip(&ends).all(|(p, &e)| p.1 >= e) {
                loaded = true;
                self.send(Update::Loaded);
            }
            let started = std::time::Instant::now();
            match reader.poll().await {
                Ok(partitions) => {
                    let got = !partitions.is_empty();
                    for (_, records) in partitions {
                        self.send(Update::Records(records.into()));
                    }
                    if got && loaded {
                        let length = reader.positions().iter().map(|p| p.1.max(0) as u64).sum();
                        let next = started + pace(length);
                        runtime::sleep(next.saturating_duration_since(std::time::Instant::now()))
                            .await;
                    }
                }
                Err(e) => {
                    debug!(%topic, error = %e, "session topic fetch failed; retrying");
                    runtime::sleep(RETRY).await;
                }
            }
        }
    }
}
