//! The direct baseline of `compare`: the rdkafka producer (vendored librdkafka) writing the
//! records the MQTT clients publish through sluice (same value size, key = the client's MQTT
//! topic `bench/N`, unless `--no-headers` the headers `mqtt.client_id` and `mqtt.qos` as
//! sluice's route writes them),
//! either as fast as it can or open loop at a fixed rate. Runs in a child process of its own
//! (`rdkafka-load`), so its CPU is its own, and prints one JSON line.
//!
//! Latency is from each record's scheduled send time (open loop) or its actual `send` (max)
//! to its delivery report, in an HdrHistogram: a stall of the sender, librdkafka or the
//! broker counts (coordinated omission), as on the MQTT side. Each value starts with the
//! same [`Stamp`] the MQTT load generator writes (that send time on the wall clock, the key
//! as the stream, a sequence number per key), so an independent Kafka consumer times both
//! sides' records alike (`compare --kafka-consumer`).
//!
//! The child also counts the record batches librdkafka built for the topic during the run,
//! from librdkafka's own statistics (`statistics.interval.ms`): each statistics emit carries
//! the topic's `batchcnt` window, one value (the batch's record count) per ProduceRequest
//! batch built since the previous emit, so the sum of the windows' `cnt` is the batches and
//! of their `sum` the records in them. librdkafka 2.12 puts one partition's batch in each
//! ProduceRequest; a retried batch is built, and counted, again. The warm-up's batches are
//! left out, and the count is read from an emit made after the last delivery report.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use serde::{Deserialize, Serialize};

use crate::cpu::process_cpu;
use crate::loadgen::{histogram_values, wall_ns, Rate, Stamp};

/// The child's arguments.
#[derive(Debug, Clone, Args, Serialize)]
pub struct RdkafkaLoadArgs {
    #[arg(long)]
    pub bootstrap: String,
    #[arg(long)]
    pub topic: String,
    /// Records per second, or `max` (as fast as librdkafka's queue takes them).
    #[arg(long)]
    pub rate: Rate,
    /// Seconds of sending.
    #[arg(long)]
    pub seconds: f64,
    /// Value bytes (at least 8: the value carries its send time).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// `linger.ms`.
    #[arg(long)]
    pub linger_ms: u64,
    /// Distinct keys `bench/0` … (the MQTT side's client count).
    #[arg(long, default_value_t = 100)]
    pub keys: u64,
    /// Records without the two headers (to see what they cost; `compare` always sends them).
    #[arg(long)]
    pub no_headers: bool,
}

/// What the child measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RdkafkaLoadResult {
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    /// First send → last delivery report.
    pub seconds: f64,
    pub acked_per_sec: f64,
    /// The child's CPU (user + system, all threads) over the same span.
    pub cpu_seconds: f64,
    /// Send (scheduled, open loop) → delivery report, nanoseconds
    /// ([`crate::loadgen::histogram_from`]).
    pub histogram: Vec<(u64, u64)>,
    /// Record batches librdkafka built for the topic during the run (its statistics'
    /// `batchcnt` windows summed), and the records in them (at least `acked` when no window
    /// was missed; more if a batch was retried).
    pub batches: u64,
    pub batched_records: u64,
}

/// How often librdkafka emits its statistics.
const STATS_INTERVAL_MS: u64 = 500;

/// The part of librdkafka's statistics JSON (STATISTICS.md) the child reads.
#[derive(Deserialize)]
struct Stats {
    #[serde(default)]
    topics: HashMap<String, TopicStats>,
}

#[derive(Deserialize)]
struct TopicStats {
    /// Records per batch over the window since the previous emit.
    batchcnt: Window,
}

#[derive(Deserialize)]
struct Window {
    /// Batches.
    cnt: u64,
    /// Records in them.
    sum: u64,
}

/// The statistics emits seen so far and the batch windows summed over them.
#[derive(Debug, Clone, Copy, Default)]
struct BatchTally {
    emits: u64,
    /// Emits whose JSON did not parse (their windows are lost).
    unreadable: u64,
    batches: u64,
    records: u64,
}

/// Counts delivery reports and times them; librdkafka calls it on the producer's poll thread.
struct Reports {
    start: Instant,
    latency: Mutex<Histogram<u64>>,
    ok: AtomicU64,
    failed: AtomicU64,
    /// Nanoseconds since `start` of the last report.
    last: AtomicU64,
    /// The topic whose batches are counted.
    topic: String,
    tally: Mutex<BatchTally>,
    emitted: Condvar,
}

impl rdkafka::ClientContext for Reports {
    fn stats_raw(&self, json: &[u8]) {
        let window = serde_json::from_slice::<Stats>(json)
            .map(|mut s| s.topics.remove(&self.topic).map(|t| t.batchcnt));
        let mut tally = self.tally.lock().expect("the poll thread does not panic");
        tally.emits += 1;
        match window {
            Ok(Some(w)) => {
                tally.batches += w.cnt;
                tally.records += w.sum;
            }
            Ok(None) => {}
            Err(_) => tally.unreadable += 1,
        }
        self.emitted.notify_all();
    }
}

impl Reports {
    /// The tally once librdkafka has emitted its statistics twice more. The poll thread may
    /// be inside the callback of an emit built before this call (a flush returns once the
    /// queue it serves is empty), but the second is built after the call, so after the
    /// batches of every record delivered by then.
    fn tally_after_two_emits(&self) -> Result<BatchTally> {
        let deadline = Instant::now() + Duration::from_millis(10 * STATS_INTERVAL_MS);
        let mut tally = self.tally.lock().expect("not poisoned");
        let until = tally.emits + 2;
        while tally.emits < until {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("librdkafka emitted no statistics for {STATS_INTERVAL_MS} ms × 10");
            }
            tally = self
                .emitted
                .wait_timeout(tally, left)
                .expect("not poisoned")
                .0;
        }
        if tally.unreadable > 0 {
            bail!(
                "{} of librdkafka's statistics emits did not parse",
                tally.unreadable
            );
        }
        Ok(*tally)
    }
}

impl ProducerContext for Reports {
    /// The nanoseconds since `start` the latency is measured from.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, from: usize) {
        let now = self.start.elapsed().as_nanos() as u64;
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                let _ = self
                    .latency
                    .lock()
                    .expect("the poll thread does not panic")
                    .record(now.saturating_sub(from as u64).max(1));
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.last.fetch_max(now, Ordering::Relaxed);
    }
}

/// Sends `record`, waiting (100 µs at a time) while librdkafka's queue is full.
pub fn send_waiting<C, K, P>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, K, P, C::DeliveryOpaque>,
) -> Result<()>
where
    C: ProducerContext + 'static,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                r,
            )) => {
                record = r;
                std::thread::sleep(Duration::from_micros(100));
            }
            Err((e, _)) => bail!("rdkafka refused a record: {e}"),
        }
    }
}

/// Runs the child and prints its result.
pub fn run_child(a: &RdkafkaLoadArgs) -> Result<()> {
    let result = run(a)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

fn run(a: &RdkafkaLoadArgs) -> Result<RdkafkaLoadResult> {
    if a.keys == 0 || a.size < 8 {
        bail!("--keys must be positive and --size at least 8 (the value carries a timestamp)");
    }
    // The same settings as `produce` (acks=all, idempotent, murmur2 like kafka-wire, deep
    // queues so that the queue is not what limits the maximum).
    let producer: ThreadedProducer<Reports> = ClientConfig::new()
        .set("bootstrap.servers", &a.bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", a.linger_ms.to_string())
        .set("compression.type", "none")
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("statistics.interval.ms", STATS_INTERVAL_MS.to_string())
        .create_with_context(Reports {
            start: Instant::now(),
            latency: Mutex::new(crate::loadgen::histogram()),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last: AtomicU64::new(0),
            topic: a.topic.clone(),
            tally: Mutex::new(BatchTally::default()),
            emitted: Condvar::new(),
        })
        .context("creating the rdkafka producer")?;
    let mut value = vec![b'x'; a.size];
    let keys: Vec<String> = (0..a.keys).map(|i| format!("bench/{i}")).collect();
    let ids: Vec<String> = (0..a.keys).map(|i| format!("lg{i}")).collect();
    let headers = |i: usize| {
        if a.no_headers {
            return OwnedHeaders::new_with_capacity(0);
        }
        OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: "mqtt.client_id",
                value: Some(ids[i].as_str()),
            })
            .insert(Header {
                key: "mqtt.qos",
                value: Some("1"),
            })
    };
    // Warm-up: metadata, connections and the producer id are in place before the clock.
    // Stamped at time 0: a reader timing the run skips them as older than its start.
    Stamp {
        sent_ns: 0,
        stream: 0,
        seq: 0,
    }
    .write(&mut value);
    for (i, key) in keys.iter().enumerate() {
        let record = BaseRecord::with_opaque_to(&a.topic, 0)
            .key(key.as_str())
            .payload(&value[..])
            .headers(headers(i));
        producer.send(record).map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(30))?;
    let ctx = producer.context();
    let warm = ctx.ok.load(Ordering::Relaxed);
    *ctx.latency.lock().expect("not poisoned") = crate::loadgen::histogram();
    let warm_tally = ctx.tally_after_two_emits()?;

    let period = match a.rate {
        Rate::PerSecond(r) => Some(Duration::from_secs_f64(1.0 / r)),
        Rate::Max => None,
    };
    let cpu0 = process_cpu();
    let t0 = ctx.start.elapsed();
    let wall_t0 = wall_ns();
    let mut seqs = vec![0u64; keys.len()];
    let end = t0 + Duration::from_secs_f64(a.seconds);
    let mut next = t0;
    let mut sent = 0u64;
    loop {
        let now = ctx.start.elapsed();
        if next >= end {
            break;
        }
        if next > now {
            std::thread::sleep(next - now);
            continue;
        }
        let i = (sent % a.keys) as usize;
        // Open loop: measured from the scheduled time, so falling behind counts.
        let from = match period {
            Some(_) => next,
            None => now,
        };
        Stamp {
            sent_ns: wall_t0 + (from - t0).as_nanos() as u64,
            stream: i as u32,
            seq: seqs[i],
        }
        .write(&mut value);
        seqs[i] += 1;
        let record = BaseRecord::with_opaque_to(&a.topic, from.as_nanos() as usize)
            .key(keys[i].as_str())
            .payload(&value[..])
            .headers(headers(i));
        send_waiting(&producer, record)?;
        sent += 1;
        next = match period {
            Some(p) => next + p,
            None => now,
        };
    }
    producer.flush(Duration::from_secs(120))?;
    let cpu = process_cpu() - cpu0;
    let acked = ctx.ok.load(Ordering::Relaxed) - warm;
    let last = Duration::from_nanos(ctx.last.load(Ordering::Relaxed));
    let seconds = last.saturating_sub(t0).as_secs_f64().max(1e-9);
    let histogram = histogram_values(&ctx.latency.lock().expect("not poisoned"));
    let tally = ctx.tally_after_two_emits()?;
    Ok(RdkafkaLoadResult {
        sent,
        acked,
        failed: ctx.failed.load(Ordering::Relaxed),
        seconds,
        acked_per_sec: acked as f64 / seconds,
        cpu_seconds: cpu.as_secs_f64(),
        histogram,
        batches: tally.batches - warm_tally.batches,
        batched_records: tally.records - warm_tally.records,
    })
}
