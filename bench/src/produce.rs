//! End to end: the same records produced to the same broker by kafka-wire and by the rdkafka
//! crate (vendored librdkafka), same acks, linger, batch size, compression and partitioner,
//! in the same run. Each producer runs in its own child process so that its CPU time is its
//! own; runs alternate which client goes first, and medians are reported.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use kafka_wire::record::Compression;
use kafka_wire::{Acks, Client, ClientConfig, NewTopic, Producer, ProducerConfig, ProducerRecord};
use serde::{Deserialize, Serialize};

use crate::cpu::{pid_cpu, process_cpu};
use crate::discard_sink::SinkSummary;
use crate::sink::SinkKind;
use crate::stats::median;

/// Which producer a child process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum ClientKind {
    /// sluice's kafka-wire, on one glommio shard.
    KafkaWire,
    /// The rdkafka crate (vendored librdkafka).
    Rdkafka,
}

/// The workload, shared by the parent and its children.
#[derive(Debug, Clone, Args, Serialize)]
pub struct Workload {
    /// Records per run.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// `acks`: 0, 1 or all (idempotence is on for all, as both clients default).
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// `linger.ms`.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// `compression.type`.
    #[arg(long, default_value = "none")]
    pub compression: String,
}

/// What one child measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub client: ClientKind,
    pub records: u64,
    pub failed: u64,
    pub elapsed_s: f64,
    pub cpu_s: f64,
    /// CPU the broker spent during this run (same broker for both clients).
    #[serde(default)]
    pub broker_cpu_s: f64,
}

impl RunResult {
    fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed_s
    }
    fn cpu_ns_per_record(&self) -> f64 {
        self.cpu_s * 1e9 / self.records as f64
    }
    fn broker_cpu_ns_per_record(&self) -> f64 {
        self.broker_cpu_s * 1e9 / self.records as f64
    }
}

/// The comparison's summary.
#[derive(Debug, Serialize)]
pub struct Comparison {
    pub workload: Workload,
    pub runs: Vec<RunResult>,
    pub kafka_wire_records_per_sec: f64,
    pub rdkafka_records_per_sec: f64,
    pub kafka_wire_cpu_ns_per_record: f64,
    pub rdkafka_cpu_ns_per_record: f64,
    pub throughput_ratio: f64,
    pub cpu_ratio: f64,
    /// The broker's (or discard sink's) CPU per record during each client's runs.
    pub kafka_wire_broker_cpu_ns_per_record: f64,
    pub rdkafka_broker_cpu_ns_per_record: f64,
    /// What the bench started (`None`: an existing broker, `--bootstrap`).
    pub sink: Option<SinkKind>,
    /// What the discard sink counted over all runs, warm-up records included.
    pub discard_sink: Option<SinkSummary>,
}

/// Runs `runs` rounds of both clients against `bootstrap` (a broker whose CPU is read from
/// `broker_pid`) and summarises them.
pub fn compare(
    workload: &Workload,
    runs: usize,
    bootstrap: &str,
    broker_pid: Option<u32>,
) -> Result<Comparison> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let mut results = Vec::new();
    for run in 0..runs {
        let order = if run % 2 == 0 {
            [ClientKind::KafkaWire, ClientKind::Rdkafka]
        } else {
            [ClientKind::Rdkafka, ClientKind::KafkaWire]
        };
        for client in order {
            let topic = format!("bench-{}-{run}", client_name(client));
            create_topic(bootstrap, &topic, workload.partitions)?;
            let broker_before = broker_pid.and_then(pid_cpu);
            let output = Command::new(&exe)
                .arg("produce-run")
                .arg("--client")
                .arg(client_name(client))
                .arg("--bootstrap")
                .arg(bootstrap)
                .arg("--topic")
                .arg(&topic)
                .args(workload_args(workload))
                .output()
                .with_context(|| format!("running the {client:?} child"))?;
            if !output.status.success() {
                bail!(
                    "the {client:?} run failed ({}):\n{}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let line = String::from_utf8_lossy(&output.stdout);
            let mut result: RunResult =
                serde_json::from_str(line.trim().lines().last().unwrap_or(""))
                    .with_context(|| format!("parsing the {client:?} child's result: {line}"))?;
            if let (Some(before), Some(after)) = (broker_before, broker_pid.and_then(pid_cpu)) {
                result.broker_cpu_s = (after - before).as_secs_f64();
            }
            eprintln!(
                "run {run} {:>10}: {:>9.0} records/s, {:>6.0} ns CPU/record, broker {:.2} s CPU{}",
                client_name(client),
                result.records_per_sec(),
                result.cpu_ns_per_record(),
                result.broker_cpu_s,
                if result.failed > 0 {
                    format!(", {} FAILED", result.failed)
                } else {
                    String::new()
                }
            );
            if result.failed > 0 {
                bail!("{} records failed in the {client:?} run", result.failed);
            }
            results.push(result);
        }
    }
    let of = |c: ClientKind, f: fn(&RunResult) -> f64| {
        median(results.iter().filter(|r| r.client == c).map(f).collect())
    };
    let kw_tput = of(ClientKind::KafkaWire, RunResult::records_per_sec);
    let rd_tput = of(ClientKind::Rdkafka, RunResult::records_per_sec);
    let kw_cpu = of(ClientKind::KafkaWire, RunResult::cpu_ns_per_record);
    let rd_cpu = of(ClientKind::Rdkafka, RunResult::cpu_ns_per_record);
    let kw_broker = of(ClientKind::KafkaWire, RunResult::broker_cpu_ns_per_record);
    let rd_broker = of(ClientKind::Rdkafka, RunResult::broker_cpu_ns_per_record);
    Ok(Comparison {
        workload: workload.clone(),
        runs: results,
        kafka_wire_records_per_sec: kw_tput,
        rdkafka_records_per_sec: rd_tput,
        kafka_wire_cpu_ns_per_record: kw_cpu,
        rdkafka_cpu_ns_per_record: rd_cpu,
        throughput_ratio: kw_tput / rd_tput,
        cpu_ratio: kw_cpu / rd_cpu,
        kafka_wire_broker_cpu_ns_per_record: kw_broker,
        rdkafka_broker_cpu_ns_per_record: rd_broker,
        sink: None,
        discard_sink: None,
    })
}

fn client_name(c: ClientKind) -> &'static str {
    match c {
        ClientKind::KafkaWire => "kafka-wire",
        ClientKind::Rdkafka => "rdkafka",
    }
}

fn workload_args(w: &Workload) -> Vec<String> {
    vec![
        "--records".into(),
        w.records.to_string(),
        "--value-size".into(),
        w.value_size.to_string(),
        "--partitions".into(),
        w.partitions.to_string(),
        "--acks".into(),
        w.acks.clone(),
        "--linger-ms".into(),
        w.linger_ms.to_string(),
        "--compression".into(),
        w.compression.clone(),
    ]
}

pub(crate) fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let client = Client::connect(ClientConfig {
                bootstrap_servers: vec![bootstrap],
                ..ClientConfig::default()
            })
            .await?;
            client
                .create_topics(&[NewTopic::new(topic, partitions)])
                .await
        })
        .map_err(|e| anyhow::anyhow!("starting the setup shard: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("the setup shard panicked: {e:?}"))??;
    Ok(())
}

fn key(i: u64) -> [u8; 12] {
    let mut k = *b"key-00000000";
    let mut n = i % 1024;
    for d in k[4..].iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    k
}

/// The child: produce `workload.records` records with one client and print a RunResult.
pub fn run_child(
    client: ClientKind,
    bootstrap: &str,
    topic: &str,
    workload: &Workload,
) -> Result<()> {
    let result = match client {
        ClientKind::KafkaWire => run_kafka_wire(bootstrap, topic, workload)?,
        ClientKind::Rdkafka => run_rdkafka(bootstrap, topic, workload)?,
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

fn run_kafka_wire(bootstrap: &str, topic: &str, w: &Workload) -> Result<RunResult> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    let w = w.clone();
    let acks: Acks = w.acks.parse().map_err(anyhow::Error::msg)?;
    let compression: Compression = w.compression.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    glommio::LocalExecutorBuilder::default()
        .name("bench-shard")
        .spawn(move || async move {
            let client = Client::connect(ClientConfig {
                bootstrap_servers: vec![bootstrap],
                ..ClientConfig::default()
            })
            .await?;
            let producer = Producer::new(
                client,
                ProducerConfig {
                    acks,
                    idempotent: acks == Acks::All,
                    linger: Duration::from_millis(w.linger_ms),
                    compression,
                    buffer_memory: 64 * 1024 * 1024,
                    ..ProducerConfig::default()
                },
            )
            .await?;
            let value = vec![b'x'; w.value_size];
            // Warm-up: metadata and connections are in place before the clock starts.
            producer
                .send(ProducerRecord::new(&topic, &value).key(b"warm"))
                .await?
                .await?;
            let cpu0 = process_cpu();
            let start = Instant::now();
            let mut pending = Vec::with_capacity(w.records as usize);
            for i in 0..w.records {
                let k = key(i);
                pending.push(
                    producer
                        .send(ProducerRecord::new(&topic, &value).key(&k))
                        .await?,
                );
            }
            producer.flush().await;
            let elapsed = start.elapsed();
            let cpu = process_cpu() - cpu0;
            let failed = pending
                .iter()
                .filter(|d| !matches!(d.try_result(), Some(Ok(_))))
                .count() as u64;
            producer.close(Duration::from_secs(5)).await;
            anyhow::Ok(RunResult {
                client: ClientKind::KafkaWire,
                records: w.records,
                failed,
                elapsed_s: elapsed.as_secs_f64(),
                cpu_s: cpu.as_secs_f64(),
                broker_cpu_s: 0.0,
            })
        })
        .map_err(|e| anyhow::anyhow!("starting the bench shard: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("the bench shard panicked: {e:?}"))?
}

struct Counter {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl rdkafka::ClientContext for Counter {}

impl rdkafka::producer::ProducerContext for Counter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn run_rdkafka(bootstrap: &str, topic: &str, w: &Workload) -> Result<RunResult> {
    use rdkafka::config::ClientConfig as RdConfig;
    use rdkafka::producer::{BaseRecord, Producer as _, ThreadedProducer};

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let producer: ThreadedProducer<Counter> = RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", &w.acks)
        .set(
            "enable.idempotence",
            if w.acks == "all" { "true" } else { "false" },
        )
        .set("linger.ms", w.linger_ms.to_string())
        .set("compression.type", &w.compression)
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(Counter {
            ok: ok.clone(),
            failed: failed.clone(),
        })
        .context("creating the rdkafka producer")?;
    let value = vec![b'x'; w.value_size];
    producer
        .send(BaseRecord::to(topic).key(&b"warm"[..]).payload(&value[..]))
        .map_err(|(e, _)| e)?;
    producer.flush(Duration::from_secs(30))?;
    let cpu0 = process_cpu();
    let start = Instant::now();
    for i in 0..w.records {
        let k = key(i);
        let record = BaseRecord::to(topic).key(&k[..]).payload(&value[..]);
        crate::rdkafka_load::send_waiting(&producer, record)?;
    }
    producer.flush(Duration::from_secs(120))?;
    let elapsed = start.elapsed();
    let cpu = process_cpu() - cpu0;
    let delivered = ok.load(Ordering::Relaxed).saturating_sub(1);
    Ok(RunResult {
        client: ClientKind::Rdkafka,
        records: w.records,
        failed: failed.load(Ordering::Relaxed) + w.records.saturating_sub(delivered),
        elapsed_s: elapsed.as_secs_f64(),
        cpu_s: cpu.as_secs_f64(),
        broker_cpu_s: 0.0,
    })
}
