//! The fan-out scenario's Kafka producer: kafka-wire on a glommio thread of the bench
//! process, writing straight to the broker (not through sluice) on an open-loop schedule.
//!
//! Record `i` is due at `start + i / rate`, belongs to stream `i % streams` (Kafka key and
//! MQTT topic `fanout/{stream}`) with sequence number `i / streams`, and carries a
//! [`Stamp`] whose send time is the *scheduled* time: a stall of the producer, the broker
//! or sluice shows in the delivery latency instead of moving the schedule.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use kafka_wire::{Client, ClientConfig, NewTopic, Producer, ProducerConfig, ProducerRecord};
use serde::Serialize;

use crate::cpu::thread_cpu;
use crate::loadgen::{wall_ns, Stamp};

/// The Kafka topic sluice's MQTT routes write and its subscriptions read.
const TOPIC: &str = crate::procs::MQTT_KAFKA_TOPIC;

/// What the producer is asked to do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub bootstrap: String,
    pub partitions: i32,
    pub rate: f64,
    pub duration: Duration,
    pub streams: u32,
    pub size: usize,
    pub linger: Duration,
}

impl Plan {
    /// Records the schedule holds.
    pub fn records(&self) -> u64 {
        (self.rate * self.duration.as_secs_f64()).round() as u64
    }

    /// How many of them each stream gets.
    pub fn per_stream(&self) -> Vec<u64> {
        let (n, s) = (self.records(), u64::from(self.streams));
        (0..s).map(|k| n / s + u64::from(k < n % s)).collect()
    }
}

/// The MQTT topic (and Kafka key) of a stream.
pub fn topic(stream: u32) -> String {
    format!("fanout/{stream}")
}

/// What the producer did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Produced {
    pub records: u64,
    /// Records Kafka did not acknowledge.
    pub failed: u64,
    /// First scheduled send to the last acknowledgement.
    pub seconds: f64,
    /// How far behind its schedule the producer fell at worst.
    pub max_lag_ms: f64,
    /// The producer thread's CPU time.
    pub cpu_seconds: f64,
}

/// A producer thread, connected and warmed up, waiting for [`ProducerThread::go`].
#[derive(Debug)]
pub struct ProducerThread {
    go: mpsc::Sender<()>,
    thread: glommio::ExecutorJoinHandle<Result<Produced>>,
}

impl ProducerThread {
    /// Connects, creates the topic if needed and sends one warm-up record (key `warmup`,
    /// which no `fanout/…` filter matches), then waits for `go`.
    pub fn start(plan: Plan) -> Result<ProducerThread> {
        let (ready_tx, ready) = mpsc::channel::<Result<()>>();
        let (go, go_rx) = mpsc::channel();
        let thread = glommio::LocalExecutorBuilder::default()
            .name("fanout-producer")
            .spawn(move || async move {
                let setup = connect(&plan).await;
                let producer = match setup {
                    Ok(p) => {
                        let _ = ready_tx.send(Ok(()));
                        p
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!("{e:#}")));
                        return Err(e);
                    }
                };
                // Polled, not blocked on: the client's own tasks share this thread.
                loop {
                    match go_rx.try_recv() {
                        Ok(()) => break,
                        Err(mpsc::TryRecvError::Empty) => {
                            glommio::timer::sleep(Duration::from_millis(1)).await;
                        }
                        Err(mpsc::TryRecvError::Disconnected) => return Ok(Produced::default()),
                    }
                }
                run(&plan, &producer).await
            })
            .map_err(|e| anyhow!("starting the producer thread: {e}"))?;
        match ready.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => Ok(ProducerThread { go, thread }),
            Ok(Err(e)) => Err(e.context("setting up the fan-out producer")),
            Err(_) => Err(anyhow!("the fan-out producer was not ready within 60 s")),
        }
    }

    /// Starts the schedule and waits until every record is answered.
    pub fn run(self) -> Result<Produced> {
        self.go
            .send(())
            .map_err(|_| anyhow!("the producer thread has gone"))?;
        self.thread
            .join()
            .map_err(|e| anyhow!("the producer thread panicked: {e:?}"))?
    }
}

async fn connect(plan: &Plan) -> Result<Producer> {
    let client = Client::connect(ClientConfig {
        bootstrap_servers: vec![plan.bootstrap.clone()],
        ..ClientConfig::default()
    })
    .await?;
    client
        .create_topics(&[NewTopic::new(TOPIC, plan.partitions)])
        .await?;
    let producer = Producer::new(
        client,
        ProducerConfig {
            linger: plan.linger,
            buffer_memory: 256 * 1024 * 1024,
            ..ProducerConfig::default()
        },
    )
    .await?;
    let warm = vec![b'w'; plan.size];
    producer
        .send(ProducerRecord::new(TOPIC, &warm).key(b"warmup"))
        .await?
        .await?;
    Ok(producer)
}

/// Produces one `size`-byte record per key (as fast as the producer takes them) on a glommio
/// thread of its own; returns how many Kafka did not acknowledge. The failover scenario's
/// check that every resumed subscription still delivers.
pub fn produce_keyed(plan: Plan, keys: Vec<String>) -> Result<u64> {
    glommio::LocalExecutorBuilder::default()
        .name("keyed-producer")
        .spawn(move || async move {
            let producer = connect(&plan).await?;
            let payload = vec![b'k'; plan.size];
            let mut pending = Vec::with_capacity(keys.len());
            for key in &keys {
                let record = ProducerRecord::new(TOPIC, &payload).key(key.as_bytes());
                pending.push(producer.send(record).await?);
            }
            producer.flush().await;
            let failed = pending
                .iter()
                .filter(|d| !matches!(d.try_result(), Some(Ok(_))))
                .count() as u64;
            producer.close(Duration::from_secs(5)).await;
            Ok(failed)
        })
        .map_err(|e| anyhow!("starting the keyed producer: {e}"))?
        .join()
        .map_err(|e| anyhow!("the keyed producer panicked: {e:?}"))?
}

async fn run(plan: &Plan, producer: &Producer) -> Result<Produced> {
    let cpu0 = thread_cpu();
    let total = plan.records();
    let period = Duration::from_secs_f64(1.0 / plan.rate);
    let keys: Vec<String> = (0..plan.streams).map(topic).collect();
    let mut payload = vec![b'x'; plan.size.max(Stamp::LEN)];
    let mut pending = Vec::with_capacity(total as usize);
    let start = Instant::now();
    let wall_start = wall_ns();
    let mut max_lag = Duration::ZERO;
    let mut i = 0u64;
    while i < total {
        let now = Instant::now();
        // Everything due now, each stamped with its own scheduled time.
        while i < total {
            let due = start + period.mul_f64(i as f64);
            if due > now {
                break;
            }
            max_lag = max_lag.max(now - due);
            let stream = (i % u64::from(plan.streams)) as u32;
            Stamp {
                sent_ns: wall_start + (due - start).as_nanos() as u64,
                stream,
                seq: i / u64::from(plan.streams),
            }
            .write(&mut payload);
            let record = ProducerRecord::new(TOPIC, &payload).key(keys[stream as usize].as_bytes());
            pending.push(producer.send(record).await?);
            i += 1;
        }
        let due = start + period.mul_f64(i as f64);
        let wait = due.saturating_duration_since(Instant::now());
        if i < total && !wait.is_zero() {
            glommio::timer::sleep(wait.min(Duration::from_millis(1))).await;
        }
    }
    producer.flush().await;
    let seconds = start.elapsed().as_secs_f64();
    let failed = pending
        .iter()
        .filter(|d| !matches!(d.try_result(), Some(Ok(_))))
        .count() as u64;
    producer.close(Duration::from_secs(5)).await;
    Ok(Produced {
        records: total,
        failed,
        seconds,
        max_lag_ms: max_lag.as_secs_f64() * 1e3,
        cpu_seconds: (thread_cpu() - cpu0).as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_share_the_schedule() {
        let plan = Plan {
            bootstrap: String::new(),
            partitions: 3,
            rate: 1000.0,
            duration: Duration::from_millis(10_500),
            streams: 4,
            size: 100,
            linger: Duration::ZERO,
        };
        assert_eq!(plan.records(), 10_500);
        assert_eq!(plan.per_stream(), vec![2625, 2625, 2625, 2625]);
        let plan = Plan {
            rate: 7.0,
            duration: Duration::from_secs(1),
            ..plan
        };
        assert_eq!(plan.per_stream(), vec![2, 2, 2, 1]);
    }
}
