//! An independent Kafka consumer for the `publish` and `compare` scenarios: librdkafka (the
//! rdkafka crate, not sluice's kafka-wire) reads a topic and times every record from the
//! send time stamped at the start of its payload (by the MQTT load generator, or by the
//! rdkafka producer of `compare`'s baseline). So the latency covers the whole way from a
//! client's scheduled send to a Kafka consumer (MQTT client → sluice → Kafka → consumer),
//! and the count is what Kafka really holds, read by a client that shares no code with
//! sluice.
//!
//! The consumer assigns itself every partition (no consumer group: one reader, nothing to
//! coordinate), from the beginning or from where an earlier consumer of the same topic
//! stopped ([`Consumed::positions`]: a scenario that runs many times against one broker
//! does not read the earlier runs again), and reads to the end before the run starts, so
//! records of earlier runs are behind it; it still skips any record stamped before it
//! started. tansu's "latest offset" can be too low (environment.md), which is why it does
//! not start from there.
//!
//! Each offset counts once, in order. tansu 0.6.0 answers a fetch from inside a record
//! batch with the batches after it (docs/testing.md, "tansu 0.6.0: quirks"), and a
//! librdkafka consumer tailing a partition that two producers (sluice's shards) append to
//! meets that: measured here, 13–25 offsets skipped once or twice per 200,000 records,
//! also by kafka-python in the same run, while a read of the partition afterwards has
//! every offset. So when a record arrives past the next expected offset, the consumer
//! seeks back before it, further each time (1, 2, 4, … offsets), until that offset comes,
//! and drops what it already had; `refetches` counts those seeks. A skipped record's
//! latency is counted when it finally arrives, as a consumer would see it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::loadgen::{histogram, wall_ns};

/// A consumer thread, running.
pub struct LatencyConsumer {
    thread: JoinHandle<Result<(Histogram<u64>, Vec<i64>)>>,
    state: Arc<State>,
}

/// What the thread shares with the scenario.
struct State {
    stop: AtomicBool,
    /// Records of this run read so far.
    records: AtomicU64,
    /// Records that were too short to carry a stamp, or stamped in the future.
    malformed: AtomicU64,
    /// Seeks back to an offset the broker skipped.
    refetches: AtomicU64,
    /// Set once every partition was read to its end.
    caught_up: Mutex<bool>,
    caught_up_cv: Condvar,
}

/// What the consumer read.
#[derive(Debug)]
pub struct Consumed {
    /// Records of this run (stamped after the consumer started).
    pub records: u64,
    /// Records without a readable stamp.
    pub malformed: u64,
    /// Seeks back to an offset the broker skipped.
    pub refetches: u64,
    /// Scheduled send → read by the consumer, nanoseconds.
    pub latency: Histogram<u64>,
    /// Per partition, the offset after the last record read: where the next consumer of
    /// the topic can start.
    pub positions: Vec<i64>,
}

impl LatencyConsumer {
    /// Starts reading every partition of `topic` at `bootstrap`, from its beginning or, with
    /// `from`, at these offsets (an earlier consumer's [`Consumed::positions`]). A Fetch waits
    /// at most `max_wait_ms` for records (`fetch.wait.max.ms`): a bound on what the
    /// consumer's own polling adds to the latency.
    pub fn start(
        bootstrap: &str,
        topic: &str,
        max_wait_ms: u32,
        from: Option<&[i64]>,
    ) -> Result<LatencyConsumer> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "sluice-bench-latency")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", max_wait_ms.to_string())
            .set("fetch.error.backoff.ms", "10")
            .create()
            .context("creating the rdkafka consumer")?;
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .context("reading the topic's metadata")?;
        let partitions = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len() as i32);
        if partitions == 0 {
            bail!("topic {topic} has no partitions");
        }
        let starts: Vec<i64> = (0..partitions as usize)
            .map(|p| from.and_then(|f| f.get(p)).copied().unwrap_or(0))
            .collect();
        let mut assignment = TopicPartitionList::new();
        for (p, &at) in starts.iter().enumerate() {
            let offset = if at == 0 {
                Offset::Beginning
            } else {
                Offset::Offset(at)
            };
            assignment.add_partition_offset(topic, p as i32, offset)?;
        }
        consumer.assign(&assignment)?;
        let state = Arc::new(State {
            stop: AtomicBool::new(false),
            records: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            refetches: AtomicU64::new(0),
            caught_up: Mutex::new(false),
            caught_up_cv: Condvar::new(),
        });
        let since = wall_ns();
        let shared = state.clone();
        let topic_name = topic.to_owned();
        let thread = std::thread::Builder::new()
            .name("latency-consumer".into())
            .spawn(move || read(consumer, topic_name, starts, since, &shared))?;
        Ok(LatencyConsumer { thread, state })
    }

    /// Waits until the consumer has read every partition to its end once.
    pub fn wait_caught_up(&self, deadline: Instant) -> Result<()> {
        let mut done = self.state.caught_up.lock().expect("not poisoned");
        while !*done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.thread.is_finished() {
                bail!("the Kafka consumer did not reach the end of the topic");
            }
            done = self
                .state
                .caught_up_cv
                .wait_timeout(done, left.min(Duration::from_millis(200)))
                .expect("not poisoned")
                .0;
        }
        Ok(())
    }

    /// Reads until `expected` records of this run are in or `deadline` passes, then stops.
    pub fn finish(self, expected: u64, deadline: Instant) -> Result<Consumed> {
        while self.state.records.load(Ordering::Relaxed) < expected
            && Instant::now() < deadline
            && !self.thread.is_finished()
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.state.stop.store(true, Ordering::Relaxed);
        let (latency, positions) = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the Kafka consumer thread panicked"))??;
        Ok(Consumed {
            records: self.state.records.load(Ordering::Relaxed),
            malformed: self.state.malformed.load(Ordering::Relaxed),
            refetches: self.state.refetches.load(Ordering::Relaxed),
            latency,
            positions,
        })
    }
}

/// The consumer thread: polls until told to stop, timing records stamped from `since` on;
/// reading each partition from its offset in `starts`. Returns the latency histogram and
/// the offsets where it stopped.
fn read(
    consumer: BaseConsumer,
    topic: String,
    starts: Vec<i64>,
    since: u64,
    state: &State,
) -> Result<(Histogram<u64>, Vec<i64>)> {
    let mut latency = histogram();
    let mut at_end = vec![false; starts.len()];
    let mut reading: Vec<InOrder> = starts
        .iter()
        .map(|&next| InOrder {
            next,
            ..InOrder::default()
        })
        .collect();
    while !state.stop.load(Ordering::Relaxed) {
        let Some(polled) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let message = match polled {
            Ok(m) => m,
            Err(KafkaError::PartitionEOF(p)) => {
                if let Some(end) = at_end.get_mut(p as usize) {
                    *end = true;
                }
                if at_end.iter().all(|e| *e) {
                    *state.caught_up.lock().expect("not poisoned") = true;
                    state.caught_up_cv.notify_all();
                }
                continue;
            }
            Err(e) => return Err(e).context("the Kafka consumer failed"),
        };
        let p = message.partition();
        let Some(order) = reading.get_mut(p as usize) else {
            continue;
        };
        match order.take(message.offset()) {
            Take::Next => {}
            Take::Again => continue,
            Take::SeekBack(to) => {
                state.refetches.fetch_add(1, Ordering::Relaxed);
                consumer
                    .seek(&topic, p, Offset::Offset(to), Duration::from_secs(5))
                    .context("seeking back to a skipped offset")?;
                continue;
            }
        }
        let now = wall_ns();
        let stamp = message
            .payload()
            .and_then(|p| p.get(..8))
            .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")));
        match stamp {
            Some(sent) if sent < since => {} // an earlier run's
            Some(sent) if sent <= now => {
                latency.saturating_record(now - sent);
                state.records.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                state.malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok((latency, reading.iter().map(|o| o.next).collect()))
}

/// One partition's offsets, taken each once and in order.
#[derive(Debug, Default)]
struct InOrder {
    /// The next offset to take.
    next: i64,
    /// How far before `next` the last seek went (0: none since `next` last moved), and
    /// when: records fetched before a seek can still arrive for a moment after it.
    back: i64,
    sought_at: Option<Instant>,
}

/// What to do with a record at some offset.
#[derive(Debug, PartialEq, Eq)]
enum Take {
    /// It is the next one.
    Next,
    /// Already taken, or past a gap while a seek is under way: dropped.
    Again,
    /// Past a gap: seek back to this offset.
    SeekBack(i64),
}

/// How long records fetched before a seek may keep arriving after it.
const SEEK_SETTLE: Duration = Duration::from_millis(100);

impl InOrder {
    fn take(&mut self, offset: i64) -> Take {
        if offset == self.next {
            *self = InOrder {
                next: offset + 1,
                ..InOrder::default()
            };
            return Take::Next;
        }
        if offset < self.next || self.sought_at.is_some_and(|t| t.elapsed() < SEEK_SETTLE) {
            return Take::Again;
        }
        self.back = (self.back * 2).max(1);
        self.sought_at = Some(Instant::now());
        Take::SeekBack((self.next - self.back).max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_offset_is_taken_once_in_order_and_gaps_are_sought_back_ever_further() {
        let mut o = InOrder::default();
        assert_eq!(o.take(0), Take::Next);
        assert_eq!(o.take(1), Take::Next);
        assert_eq!(o.take(1), Take::Again);
        // The broker skipped 2..=5.
        assert_eq!(o.take(6), Take::SeekBack(1));
        assert_eq!(o.take(7), Take::Again, "fetched before the seek");
        o.sought_at = Some(Instant::now() - SEEK_SETTLE);
        assert_eq!(o.take(6), Take::SeekBack(0), "still skipped: further back");
        o.sought_at = None;
        assert_eq!(o.take(6), Take::SeekBack(0), "not before the start");
        assert_eq!(o.take(1), Take::Again);
        assert_eq!(o.take(2), Take::Next);
        assert_eq!(
            (o.back, o.sought_at),
            (0, None),
            "a gap closed resets the step"
        );
        assert_eq!(o.take(3), Take::Next);
    }
}
