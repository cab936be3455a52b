//! Scenario `compare`: MQTT QoS 1 clients → sluice → Kafka against the rdkafka producer
//! writing the same records straight to the same broker, in the same run (brief.md: client →
//! Kafka throughput ≥ 1.0× rdkafka's, and the latency sluice adds over a direct rdkafka
//! producer at 50 % load).
//!
//! One tansu broker and one sluice process serve the whole run; both sides get the same
//! `linger.ms` (sluice through its TOML), acks=all and idempotence, and write the same
//! records: key = the MQTT topic `bench/N`, the 100-byte payload, and with `--headers` the
//! two headers sluice's route adds for these clients (they cost librdkafka ~1.5 µs a record,
//! so by default neither side writes them). Two phases, each of
//! `--rounds` rounds that alternate which side goes first:
//!
//! 1. **Max**: rdkafka as fast as its queue takes records (`rdkafka_load.rs`, a child
//!    process) and the MQTT clients closed loop (`--inflight` per client, the `publish`
//!    scenario's load generator). Throughput = records acknowledged ÷ (first send → last
//!    acknowledgement); the ratio is of the medians.
//! 2. **Latency**: both open loop at `--load` × the median maximum of rdkafka (the brief's
//!    "50 % load"; `--load-base lower` takes the lower of the two maxima instead, `both`
//!    runs each). Latency is from each record's *scheduled* send time to its acknowledgement
//!    (rdkafka's delivery report; the MQTT PUBACK), in HdrHistograms; the added latency per
//!    percentile is sluice's median minus rdkafka's median.
//!
//! With `--kafka-consumer`, every latency run also has an independent librdkafka consumer
//! (`kafka_consumer.rs`) read its side's topic: both sides stamp each record's scheduled send
//! time at the start of its value the same way, so the consumer times MQTT client → sluice →
//! Kafka → consumer and rdkafka → Kafka → consumer alike, and checks that it read exactly
//! the records acknowledged. The added latency at the consumer is again the difference of
//! the medians per percentile: what a Kafka reader of sluice's records waits longer than a
//! reader of a direct producer's. Each run's consumer starts where the side's previous one
//! stopped, so only the first reads through the maximum phase's records (before its run).
//! It runs in this process during both sides' runs, so both share the machine with it.
//!
//! Every run also counts the record batches its producer wrote, which is what a Kafka
//! consumer fetches records in: sluice's `sluice_produce_batches_total`, and librdkafka's
//! own statistics in the rdkafka child (`rdkafka_load.rs`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::cpu::pid_cpu;
use crate::kafka_consumer::LatencyConsumer;
use crate::loadgen::{histogram_from, LatencySummary, MqttVersion, Rate, Wire};
use crate::procs::{self, SluiceProc, SluiceSettings};
use crate::rdkafka_load::RdkafkaLoadResult;
use crate::scenario_publish::{self, ConsumerOutput, PublishArgs, Server};
use crate::sink::{Sink, SinkKind};
use crate::stats::{latency_curve, median, CurvePoint};

mod print;
pub use print::print;
use print::report_run;

/// The topic the rdkafka side writes (sluice writes its route's `mqtt-messages`).
const RDKAFKA_TOPIC: &str = "compare-rdkafka";
const PARTITIONS: i32 = 3;
/// A run sustained its rate if it acknowledged at least this share of it.
const SUSTAINED: f64 = 0.97;

/// What the latency phase's rate is a fraction of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadBase {
    /// rdkafka's median maximum (the brief's baseline).
    Rdkafka,
    /// The lower of the two median maxima (both sides at most at `--load` of their own).
    Lower,
    /// One series of each.
    Both,
    /// The rates of `--rates`.
    Fixed,
}

/// The `compare` scenario's arguments.
#[derive(Debug, Clone, Args, Serialize)]
pub struct CompareArgs {
    /// Rounds of each phase (each round runs both sides, alternating which goes first).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds of each maximum-throughput run.
    #[arg(long, default_value_t = 5.0)]
    pub max_seconds: f64,
    /// Seconds of each open-loop latency run.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// The latency phase's rate as a fraction of `--load-base`'s maximum.
    #[arg(long, default_value_t = 0.5)]
    pub load: f64,
    #[arg(long, value_enum, default_value = "rdkafka")]
    pub load_base: LoadBase,
    /// Latency series at these records/s instead (comma-separated; e.g. 20000,100000), to
    /// see how the added latency moves with the load.
    #[arg(long, value_delimiter = ',')]
    pub rates: Vec<f64>,
    /// `linger.ms` of both producers (sluice's default is 5).
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// MQTT clients (and distinct keys on the rdkafka side).
    #[arg(long, default_value_t = 100)]
    pub clients: u64,
    /// PUBLISHes in flight per MQTT client (closed loop, and the cap open loop).
    #[arg(long, default_value_t = 64)]
    pub inflight: usize,
    /// Value (payload) bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Shards of the sluice process.
    #[arg(long, default_value_t = 2)]
    pub sluice_shards: usize,
    /// Records carry headers on both sides (sluice's route: client id and QoS for these
    /// clients; rdkafka: the same two). Off: key and value only, rdkafka at its fastest.
    #[arg(long)]
    pub headers: bool,
    /// In the latency phase, also read both sides' records with an independent Kafka
    /// consumer (librdkafka) and time each from its scheduled send.
    #[arg(long)]
    pub kafka_consumer: bool,
    /// The consumer's `fetch.wait.max.ms`: the most its own polling adds to the latency.
    #[arg(long, default_value_t = 5)]
    pub consumer_max_wait_ms: u32,
}

/// Which side a run measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The rdkafka producer straight to the broker.
    Rdkafka,
    /// MQTT QoS 1 clients → sluice → the broker.
    Sluice,
}

/// One run of one side.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub round: usize,
    pub side: Side,
    /// Offered rate (None: max).
    pub rate: Option<f64>,
    pub sent: u64,
    pub acked: u64,
    pub acked_per_sec: f64,
    pub latency: LatencySummary,
    pub curve: Vec<CurvePoint>,
    /// The producing client's CPU: the rdkafka child, or sluice (the load generator's is
    /// `loadgen_cpu_seconds`).
    pub client_cpu_seconds: f64,
    pub loadgen_cpu_seconds: f64,
    pub broker_cpu_seconds: f64,
    /// 1-minute load average before and after the run.
    pub load_before: f64,
    pub load_after: f64,
    /// sluice runs: sluice's own `sluice_produce_latency_seconds` over the run (a
    /// message's read → Kafka's acknowledgement).
    pub inside_sluice: Option<InsideSluice>,
    /// sluice runs: record batches it sent to Kafka (Δ `sluice_produce_batches_total`, read
    /// once settled: [`procs::SluiceProc::settled_metric`]); the records per batch are what a Kafka
    /// consumer fetches in each.
    pub sluice_batches: Option<u64>,
    /// rdkafka runs: record batches librdkafka built for the topic (its statistics'
    /// `batchcnt` windows over the run, `rdkafka_load.rs`), and the records in them.
    pub rdkafka_batches: Option<u64>,
    pub rdkafka_batched_records: Option<u64>,
    /// Latency runs with `--kafka-consumer`: what the independent consumer read of this
    /// run's records (`count_matches`: exactly the `acked` ones).
    pub consumer: Option<ConsumerOutput>,
}

impl Run {
    /// The record batches this run's producer wrote (sluice's or rdkafka's count).
    pub fn batches(&self) -> Option<u64> {
        self.sluice_batches.or(self.rdkafka_batches)
    }

    /// The cores the producer (the rdkafka child or sluice), the MQTT load generator and
    /// the broker kept busy together: their CPU time over the run's span (records
    /// acknowledged ÷ the rate); `None` for a run that acknowledged nothing. An upper
    /// bound: each process's CPU is counted over a little more than the span (the rdkafka
    /// child's whole life, with its broker's; the load generator's connecting).
    pub fn cores_busy(&self) -> Option<f64> {
        let cpu = self.client_cpu_seconds + self.loadgen_cpu_seconds + self.broker_cpu_seconds;
        let span = self.acked as f64 / self.acked_per_sec;
        (span > 0.0 && span.is_finite()).then(|| cpu / span)
    }
}

/// sluice's produce latency histogram over one run: what of the PUBACK latency is spent
/// between sluice's read of the PUBLISH and Kafka's acknowledgement (the rest is the load
/// generator, the sockets and the PUBACK's way back).
#[derive(Debug, Clone, Serialize)]
pub struct InsideSluice {
    pub mean_us: f64,
    /// The upper bounds of the buckets that hold the 50th and 99th percentiles (the metric's
    /// buckets: 0.25, 0.5, 1, 2, 5, 10, 25, 50 ms, …).
    pub p50_at_most_us: f64,
    pub p99_at_most_us: f64,
}

/// `sluice_produce_latency_seconds`: sum, count and cumulative counts by upper bound (µs),
/// summed over shards.
struct ProduceHistogram {
    sum_s: f64,
    count: f64,
    buckets: Vec<(f64, f64)>,
}

impl ProduceHistogram {
    fn read(sluice: &SluiceProc) -> Result<ProduceHistogram> {
        let name = "sluice_produce_latency_seconds";
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        let body = procs::http_get(sluice.admin, "/metrics")?;
        for line in body
            .lines()
            .filter(|l| l.starts_with(&format!("{name}_bucket{{")))
        {
            let le = line.split("le=\"").nth(1).and_then(|r| r.split('"').next());
            let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            let (Some(le), Some(value)) = (le, value) else {
                continue;
            };
            let le_us = match le {
                "+Inf" => f64::INFINITY,
                s => s.parse::<f64>().unwrap_or(f64::NAN) * 1e6,
            };
            match buckets.iter_mut().find(|(b, _)| *b == le_us) {
                Some((_, n)) => *n += value,
                None => buckets.push((le_us, value)),
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(ProduceHistogram {
            sum_s: sluice.metric_f64(&format!("{name}_sum"))?,
            count: sluice.metric_f64(&format!("{name}_count"))?,
            buckets,
        })
    }

    /// What was recorded since `before`.
    fn since(&self, before: &ProduceHistogram) -> InsideSluice {
        let count = (self.count - before.count).max(1.0);
        let at = |q: f64| {
            self.buckets
                .iter()
                .find(|(le, n)| {
                    let was = before
                        .buckets
                        .iter()
                        .find(|(b, _)| b == le)
                        .map_or(0.0, |x| x.1);
                    n - was >= q * count
                })
                .map_or(f64::NAN, |(le, _)| *le)
        };
        InsideSluice {
            mean_us: (self.sum_s - before.sum_s) * 1e6 / count,
            p50_at_most_us: at(0.5),
            p99_at_most_us: at(0.99),
        }
    }
}

/// Median percentiles of one side's runs, in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Percentiles {
    fn median_of(runs: &[&LatencySummary]) -> Percentiles {
        let m = |f: fn(&LatencySummary) -> f64| median(runs.iter().map(|l| f(l)).collect());
        Percentiles {
            p50_us: m(|l| l.p50_us),
            p90_us: m(|l| l.p90_us),
            p99_us: m(|l| l.p99_us),
            p999_us: m(|l| l.p999_us),
            max_us: m(|l| l.max_us),
            mean_us: m(|l| l.mean_us),
        }
    }

    /// Whether these, as added latencies, meet brief.md's target: p99 ≤ 0.5 ms and p99.9 ≤
    /// 2 ms.
    fn within_added_target(&self) -> bool {
        self.p99_us <= 500.0 && self.p999_us <= 2000.0
    }

    fn minus(&self, o: &Percentiles) -> Percentiles {
        Percentiles {
            p50_us: self.p50_us - o.p50_us,
            p90_us: self.p90_us - o.p90_us,
            p99_us: self.p99_us - o.p99_us,
            p999_us: self.p999_us - o.p999_us,
            max_us: self.max_us - o.max_us,
            mean_us: self.mean_us - o.mean_us,
        }
    }
}

/// The latency phase at one rate.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySeries {
    pub base: LoadBase,
    pub rate: f64,
    pub runs: Vec<Run>,
    pub rdkafka: Percentiles,
    pub sluice: Percentiles,
    /// sluice − rdkafka, per percentile (of the medians).
    pub added: Percentiles,
    /// Medians of the sluice runs' [`InsideSluice`] mean and p99 bucket bound.
    pub inside_sluice_mean_us: f64,
    pub inside_sluice_p99_at_most_us: f64,
    pub rdkafka_acked_per_sec: f64,
    pub sluice_acked_per_sec: f64,
    /// Rounds in which each side acknowledged at least 97 % of the offered rate (a side
    /// that falls behind measures its backlog, not its latency).
    pub rdkafka_sustained: usize,
    pub sluice_sustained: usize,
    /// Added p99 ≤ 0.5 ms and p99.9 ≤ 2 ms, with both sides sustaining the rate in most
    /// rounds.
    pub target_met: bool,
    /// With `--kafka-consumer`: the same at the independent consumer.
    pub consumer: Option<ConsumerSeries>,
}

/// The latency phase at one rate, at the independent Kafka consumer: scheduled send → read.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerSeries {
    /// Medians over the rounds, per percentile.
    pub rdkafka: Percentiles,
    pub sluice: Percentiles,
    /// sluice − rdkafka, per percentile (of the medians).
    pub added: Percentiles,
    /// Rounds in which the consumer read exactly the records acknowledged, none malformed.
    pub rdkafka_complete: usize,
    pub sluice_complete: usize,
    /// Added p99 ≤ 0.5 ms and p99.9 ≤ 2 ms, both sides sustaining the rate in most rounds
    /// and every record read in every round.
    pub target_met: bool,
}

/// The scenario's output.
#[derive(Debug, Serialize)]
pub struct CompareOutput {
    pub args: CompareArgs,
    pub max_runs: Vec<Run>,
    pub rdkafka_max_per_sec: f64,
    pub sluice_max_per_sec: f64,
    /// sluice ÷ rdkafka (medians).
    pub throughput_ratio: f64,
    pub latency: Vec<LatencySeries>,
    /// tansu's resident memory at the end (it keeps every record of the run).
    pub broker_rss_bytes: u64,
}

fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Runs the scenario.
pub fn run(a: &CompareArgs) -> Result<CompareOutput> {
    if a.rounds == 0 || !(a.load > 0.0 && a.load <= 1.0) || a.clients == 0 {
        bail!("--rounds and --clients must be positive and --load in (0, 1]");
    }
    if a.rates.iter().any(|r| !(*r > 0.0 && r.is_finite())) {
        bail!("--rates must be positive records per second");
    }
    let broker = Sink::start(SinkKind::Tansu, PARTITIONS)?;
    crate::produce::create_topic(&broker.bootstrap(), RDKAFKA_TOPIC, PARTITIONS)?;
    let sluice = SluiceProc::start(&SluiceSettings {
        bootstrap: broker.bootstrap(),
        listen: "127.0.0.1:0".parse().expect("an address"),
        shards: a.sluice_shards,
        receive_maximum: 1024.max(a.inflight.min(65_535) as u16),
        linger_ms: Some(a.linger_ms),
        sessions_linger_ms: None,
        delivery_max_wait_ms: None,
        headers: a.headers,
        framed: false,
        http: false,
    })?;
    let server = Server::Sluice {
        broker,
        sluice: Box::new(sluice),
    };
    let broker_pid = match &server {
        Server::Sluice { broker, .. } => broker.pid(),
        Server::Peer(_) => unreachable!("compare starts sluice"),
    };

    let mut resume = Resume::default();
    let mut max_runs = Vec::new();
    for round in 0..a.rounds {
        for side in order(round) {
            let r = one_run(&server, a, round, side, Rate::Max, &mut resume)?;
            report_run(&r);
            max_runs.push(r);
        }
    }
    let max_of = |side: Side| {
        median(
            max_runs
                .iter()
                .filter(|r| r.side == side)
                .map(|r| r.acked_per_sec)
                .collect(),
        )
    };
    let (rd_max, sl_max) = (max_of(Side::Rdkafka), max_of(Side::Sluice));
    eprintln!(
        "max: rdkafka {rd_max:.0}/s, sluice {sl_max:.0}/s, ratio {:.2}",
        sl_max / rd_max
    );

    let of = |base| match base {
        LoadBase::Lower => (a.load * rd_max.min(sl_max)).round().max(1.0),
        _ => (a.load * rd_max).round().max(1.0),
    };
    let series_rates: Vec<(LoadBase, f64)> = match a.load_base {
        _ if !a.rates.is_empty() => a.rates.iter().map(|&r| (LoadBase::Fixed, r)).collect(),
        LoadBase::Both => [LoadBase::Rdkafka, LoadBase::Lower]
            .map(|b| (b, of(b)))
            .to_vec(),
        b => vec![(b, of(b))],
    };
    let mut latency: Vec<LatencySeries> = Vec::new();
    for (base, rate) in series_rates {
        if latency.iter().any(|s| s.rate == rate) {
            eprintln!("{base:?}'s max is rdkafka's: no second latency series");
            continue;
        }
        eprintln!(
            "latency phase: {rate:.0} records/s ({} of {base:?}'s max)",
            a.load
        );
        let mut runs = Vec::new();
        for round in 0..a.rounds {
            for side in order(round) {
                let r = one_run(&server, a, round, side, Rate::PerSecond(rate), &mut resume)?;
                report_run(&r);
                runs.push(r);
            }
        }
        latency.push(series(base, rate, runs));
    }
    let broker_rss_bytes = procs::memory(broker_pid).map_or(0, |m| m.vm_rss);
    Ok(CompareOutput {
        args: a.clone(),
        max_runs,
        rdkafka_max_per_sec: rd_max,
        sluice_max_per_sec: sl_max,
        throughput_ratio: sl_max / rd_max,
        latency,
        broker_rss_bytes,
    })
}

fn order(round: usize) -> [Side; 2] {
    if round % 2 == 0 {
        [Side::Rdkafka, Side::Sluice]
    } else {
        [Side::Sluice, Side::Rdkafka]
    }
}

fn series(base: LoadBase, rate: f64, runs: Vec<Run>) -> LatencySeries {
    let of = |side: Side| -> Vec<&Run> { runs.iter().filter(|r| r.side == side).collect() };
    let acks =
        |side: Side| -> Vec<&LatencySummary> { of(side).into_iter().map(|r| &r.latency).collect() };
    let rdkafka = Percentiles::median_of(&acks(Side::Rdkafka));
    let sluice = Percentiles::median_of(&acks(Side::Sluice));
    let added = sluice.minus(&rdkafka);
    let rate_of = |side: Side| median(of(side).iter().map(|r| r.acked_per_sec).collect());
    let sustained = |side: Side| {
        of(side)
            .iter()
            .filter(|r| r.acked_per_sec >= SUSTAINED * rate)
            .count()
    };
    let (rdkafka_sustained, sluice_sustained) = (sustained(Side::Rdkafka), sustained(Side::Sluice));
    let most = |n: usize| 2 * n > of(Side::Rdkafka).len();
    let consumer = runs.iter().any(|r| r.consumer.is_some()).then(|| {
        let read = |side: Side| -> Vec<&ConsumerOutput> {
            of(side)
                .into_iter()
                .filter_map(|r| r.consumer.as_ref())
                .collect()
        };
        let median_of = |side: Side| {
            Percentiles::median_of(&read(side).iter().map(|c| &c.latency).collect::<Vec<_>>())
        };
        let complete = |side: Side| read(side).iter().filter(|c| c.count_matches).count();
        let (rdkafka, sluice) = (median_of(Side::Rdkafka), median_of(Side::Sluice));
        let added = sluice.minus(&rdkafka);
        let (rdkafka_complete, sluice_complete) = (complete(Side::Rdkafka), complete(Side::Sluice));
        let rounds = of(Side::Rdkafka).len();
        ConsumerSeries {
            target_met: added.within_added_target()
                && most(rdkafka_sustained)
                && most(sluice_sustained)
                && rdkafka_complete == rounds
                && sluice_complete == rounds,
            rdkafka,
            sluice,
            added,
            rdkafka_complete,
            sluice_complete,
        }
    });
    let inside = |f: fn(&InsideSluice) -> f64| {
        median(
            runs.iter()
                .filter_map(|r| r.inside_sluice.as_ref())
                .map(f)
                .collect(),
        )
    };
    LatencySeries {
        base,
        rate,
        rdkafka_acked_per_sec: rate_of(Side::Rdkafka),
        sluice_acked_per_sec: rate_of(Side::Sluice),
        target_met: added.within_added_target()
            && most(rdkafka_sustained)
            && most(sluice_sustained),
        rdkafka_sustained,
        sluice_sustained,
        inside_sluice_mean_us: inside(|i| i.mean_us),
        inside_sluice_p99_at_most_us: inside(|i| i.p99_at_most_us),
        rdkafka,
        sluice,
        added,
        consumer,
        runs,
    }
}

/// Where each side's next independent consumer starts: after what the last one read.
#[derive(Default)]
struct Resume {
    rdkafka: Option<Vec<i64>>,
    sluice: Option<Vec<i64>>,
}

impl Resume {
    fn of(&mut self, side: Side) -> &mut Option<Vec<i64>> {
        match side {
            Side::Rdkafka => &mut self.rdkafka,
            Side::Sluice => &mut self.sluice,
        }
    }
}

/// Starts the independent consumer of `side`'s topic and waits until it has read what is
/// already there.
fn start_consumer(
    server: &Server,
    a: &CompareArgs,
    side: Side,
    from: Option<&[i64]>,
) -> Result<LatencyConsumer> {
    let Server::Sluice { broker, .. } = server else {
        unreachable!("compare starts sluice")
    };
    let topic = match side {
        Side::Rdkafka => RDKAFKA_TOPIC,
        Side::Sluice => procs::MQTT_KAFKA_TOPIC,
    };
    let t0 = Instant::now();
    let c = LatencyConsumer::start(&broker.bootstrap(), topic, a.consumer_max_wait_ms, from)?;
    // The first consumer of a side reads the maximum phase's records (millions) first.
    c.wait_caught_up(t0 + Duration::from_secs(120))?;
    if from.is_none() {
        eprintln!(
            "the {side:?} side's Kafka consumer read {topic} to its end in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(c)
}

fn one_run(
    server: &Server,
    a: &CompareArgs,
    round: usize,
    side: Side,
    rate: Rate,
    resume: &mut Resume,
) -> Result<Run> {
    procs::check_interrupted()?;
    let seconds = match rate {
        Rate::Max => a.max_seconds,
        Rate::PerSecond(_) => a.seconds,
    };
    let consumer = match rate {
        Rate::PerSecond(_) if a.kafka_consumer => {
            Some(start_consumer(server, a, side, resume.of(side).as_deref())?)
        }
        _ => None,
    };
    let load_before = load1();
    let mut run = match side {
        Side::Rdkafka => rdkafka_run(server, a, rate, seconds)?,
        Side::Sluice => {
            let Server::Sluice { sluice, .. } = server else {
                unreachable!("compare starts sluice")
            };
            let inside0 = ProduceHistogram::read(sluice)?;
            let batches0 = sluice.metric("sluice_produce_batches_total")?;
            let o = scenario_publish::measure(server, &publish_args(a, rate, seconds))?;
            // Copied from the producers once a second (`copy_producer_stats`).
            let batches =
                sluice.settled_metric("sluice_produce_batches_total", batches0)? - batches0;
            let inside = ProduceHistogram::read(sluice)?.since(&inside0);
            if o.unacked > 0 || o.dropped > 0 || o.records_failed > 0 || !o.kafka_count_matches {
                bail!(
                    "the sluice run lost messages: {} unacked, {} connections dropped, {} records failed, Kafka count {}",
                    o.unacked,
                    o.dropped,
                    o.records_failed,
                    if o.kafka_count_matches { "matches" } else { "does NOT match" }
                );
            }
            Run {
                round,
                side,
                rate: None,
                sent: o.sent,
                acked: o.acked,
                acked_per_sec: o.acked_per_sec,
                latency: o.puback_latency,
                curve: o.puback_curve,
                client_cpu_seconds: o.sluice_cpu_seconds,
                loadgen_cpu_seconds: o.loadgen_cpu_seconds,
                broker_cpu_seconds: o.broker_cpu_seconds,
                load_before: 0.0,
                load_after: 0.0,
                inside_sluice: Some(inside),
                sluice_batches: Some(batches),
                rdkafka_batches: None,
                rdkafka_batched_records: None,
                consumer: None,
            }
        }
    };
    run.round = round;
    run.rate = match rate {
        Rate::PerSecond(r) => Some(r),
        Rate::Max => None,
    };
    run.load_before = load_before;
    run.load_after = load1();
    if let Some(c) = consumer {
        let consumed = c.finish(run.acked, Instant::now() + Duration::from_secs(15))?;
        run.consumer = Some(ConsumerOutput::of(&consumed, run.acked));
        *resume.of(side) = Some(consumed.positions);
    }
    Ok(run)
}

fn publish_args(a: &CompareArgs, rate: Rate, seconds: f64) -> PublishArgs {
    PublishArgs {
        clients: a.clients,
        rate,
        duration: seconds,
        qos: 1,
        size: a.size,
        mqtt: MqttVersion::V311,
        wire: Wire::Mqtt,
        inflight: a.inflight,
        sluice_shards: a.sluice_shards,
        loadgen_shards: 1,
        per_process: 18_000,
        sink: SinkKind::Tansu,
        peer: None,
        kafka_consumer: false,
        consumer_max_wait_ms: 5,
        subscribers: 0,
        delivery_max_wait_ms: None,
    }
}

fn rdkafka_run(server: &Server, a: &CompareArgs, rate: Rate, seconds: f64) -> Result<Run> {
    let Server::Sluice { broker, .. } = server else {
        unreachable!("compare starts sluice")
    };
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let broker_cpu0 = pid_cpu(broker.pid()).unwrap_or_default();
    let child = procs::spawn_guarded(
        Command::new(exe)
            .arg("rdkafka-load")
            .args(["--bootstrap", &broker.bootstrap(), "--topic", RDKAFKA_TOPIC])
            .args([
                "--rate",
                &rate.to_string(),
                "--seconds",
                &seconds.to_string(),
            ])
            .args(["--size", &a.size.to_string()])
            .args(["--linger-ms", &a.linger_ms.to_string()])
            .args(["--keys", &a.clients.to_string()])
            .args((!a.headers).then_some("--no-headers"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .context("starting the rdkafka child")?;
    let output = crate::progress::timed("rdkafka producing", seconds, || child.wait_with_output())?;
    if !output.status.success() {
        bail!(
            "the rdkafka run failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let broker_cpu = pid_cpu(broker.pid()).unwrap_or_default() - broker_cpu0;
    let text = String::from_utf8_lossy(&output.stdout);
    let r: RdkafkaLoadResult = serde_json::from_str(text.trim().lines().last().unwrap_or(""))
        .with_context(|| format!("parsing the rdkafka child's result: {text}"))?;
    if r.failed > 0 || r.acked < r.sent {
        bail!(
            "the rdkafka run lost records: {} sent, {} acknowledged, {} failed",
            r.sent,
            r.acked,
            r.failed
        );
    }
    let h = histogram_from(&r.histogram);
    Ok(Run {
        round: 0,
        side: Side::Rdkafka,
        rate: None,
        sent: r.sent,
        acked: r.acked,
        acked_per_sec: r.acked_per_sec,
        latency: LatencySummary::of(&h),
        curve: latency_curve(&h),
        client_cpu_seconds: r.cpu_seconds,
        loadgen_cpu_seconds: 0.0,
        broker_cpu_seconds: broker_cpu.as_secs_f64(),
        load_before: 0.0,
        load_after: 0.0,
        inside_sluice: None,
        sluice_batches: None,
        rdkafka_batches: Some(r.batches),
        rdkafka_batched_records: Some(r.batched_records),
        consumer: None,
    })
}
