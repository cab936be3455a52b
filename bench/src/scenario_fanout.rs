//! Scenario `fanout`: Kafka → sluice → N MQTT subscribers.
//!
//! Each run starts its own tansu (in memory) and sluice, opens `--subscribers` MQTT
//! connections from load-generator child processes (source addresses spread over
//! 127.0.0.0/8), each subscribing to `fanout/#` at `--qos`, and, once every SUBACK is in,
//! produces records into `mqtt-messages` with kafka-wire straight to the broker (key =
//! MQTT topic `fanout/{stream}`), open loop at `--rate` records/s. Every subscriber should
//! receive every record: deliveries = records × subscribers.
//!
//! Measured: deliveries per second received by all subscribers (first scheduled send to
//! the last receipt), sluice's CPU (from /proc/PID/stat over the same span) per delivery,
//! end-to-end latency from each record's scheduled produce time (stamped in its payload)
//! to its receipt, and an exact per-subscriber count: each stream must arrive complete,
//! once, in order (`loadgen/subscriber.rs`). QoS 1 subscribers PUBACK every delivery.
//!
//! A run is *sustained* when nothing was lost or duplicated, no subscriber was dropped,
//! sluice counted no slow consumer (its mailbox limit is 4,096 queued messages), the last
//! delivery arrived within `--max-drain` seconds of the producer's last acknowledgement,
//! and the p99 latency stayed under `--max-p99-ms` (a backlog that grows during the run
//! shows there first). Several `--rate` values make a ramp, stopped after the first rate
//! that is not sustained; the highest sustained rate is reported.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use serde::Serialize;

use crate::cpu::pid_cpu;
use crate::fanout_producer::{Plan, Produced, ProducerThread};
use crate::loadgen::{histogram_from, Group, LatencySummary, LoadgenArgs, MqttVersion};
use crate::procs::{self, SluiceProc, SluiceSettings};
use crate::stats::{latency_curve, median, CurvePoint};

/// The `fanout` scenario's arguments.
#[derive(Debug, Clone, Args, Serialize)]
pub struct FanoutArgs {
    /// MQTT subscribers, each subscribed to every record.
    #[arg(long, default_value_t = 100)]
    pub subscribers: u64,
    /// Records produced per second (open loop). A comma-separated list is a ramp: each
    /// rate in turn, stopping after the first that is not sustained.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub rate: Vec<f64>,
    /// Runs per rate, each with a fresh broker, sluice and subscribers (medians reported).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Seconds of producing per run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// QoS the subscribers subscribe with: 0, or 1 (every delivery PUBACKed).
    #[arg(long, default_value_t = 0)]
    pub qos: u8,
    /// Payload bytes (the first 20 are the send time, stream and sequence number).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Streams: MQTT topics `fanout/0` … (Kafka keys), produced round robin.
    #[arg(long, default_value_t = 6)]
    pub streams: u32,
    /// Partitions of `mqtt-messages`.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// The producer's `linger.ms`.
    #[arg(long, default_value_t = 1)]
    pub linger_ms: u64,
    /// MQTT version of the subscribers.
    #[arg(long, value_enum, default_value = "3.1.1")]
    pub mqtt: MqttVersion,
    /// Shards of the sluice process.
    #[arg(long, default_value_t = 2)]
    pub sluice_shards: usize,
    /// Load-generator processes (subscribers are split evenly).
    #[arg(long, default_value_t = 1)]
    pub loadgen_processes: u64,
    /// Executor threads per load-generator process.
    #[arg(long, default_value_t = 1)]
    pub loadgen_shards: usize,
    /// Seconds the last delivery may arrive after the producer's last acknowledgement for
    /// the run to count as sustained.
    #[arg(long, default_value_t = 2.0)]
    pub max_drain: f64,
    /// p99 delivery latency (ms) above which a run does not count as sustained.
    #[arg(long, default_value_t = 1500.0)]
    pub max_p99_ms: f64,
    /// Go on ramping after a rate that was not sustained.
    #[arg(long)]
    pub keep_going: bool,
}

/// One run at one rate.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutRun {
    pub rate: f64,
    pub run: usize,
    pub subscribed: u64,
    pub produced: Produced,
    /// Records × subscribers.
    pub expected_deliveries: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub malformed: u64,
    /// Subscribers that got every record exactly once, in order.
    pub complete_subscribers: u64,
    /// Subscribers whose connection ended before the run did.
    pub dropped: u64,
    /// Δ sluice_slow_consumers_total.
    pub slow_consumers: u64,
    /// Δ sluice_deliveries_total (handed to mailboxes).
    pub sluice_deliveries: u64,
    /// First scheduled send → last receipt.
    pub delivery_seconds: f64,
    /// Producer's last acknowledgement → last receipt.
    pub drain_seconds: f64,
    pub deliveries_per_sec: f64,
    pub sluice_cpu_seconds: f64,
    pub sluice_cpu_ns_per_delivery: f64,
    /// 1 s ÷ sluice's CPU per delivery: what one core of sluice delivers at this load.
    pub deliveries_per_core_second: f64,
    pub broker_cpu_seconds: f64,
    pub loadgen_cpu_seconds: f64,
    pub latency: LatencySummary,
    pub latency_curve: Vec<CurvePoint>,
    pub sustained: bool,
    /// Why not, when not sustained.
    pub problems: Vec<String>,
}

/// The runs at one rate, summarised.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutStep {
    pub rate: f64,
    pub runs: usize,
    /// Every run sustained.
    pub sustained: bool,
    pub offered_deliveries_per_sec: f64,
    pub median_deliveries_per_sec: f64,
    pub median_sluice_cpu_ns_per_delivery: f64,
    pub median_deliveries_per_core_second: f64,
    pub median_p50_us: f64,
    pub median_p90_us: f64,
    pub median_p99_us: f64,
    pub median_p999_us: f64,
    pub median_max_us: f64,
    /// The run with the median p99: its curve.
    pub latency_curve: Vec<CurvePoint>,
}

/// The scenario's output.
#[derive(Debug, Serialize)]
pub struct FanoutOutput {
    pub args: FanoutArgs,
    pub runs: Vec<FanoutRun>,
    pub steps: Vec<FanoutStep>,
    /// The highest rate whose runs were all sustained.
    pub max_sustained_rate: Option<f64>,
    pub max_sustained_deliveries_per_sec: Option<f64>,
}

/// Runs the scenario.
pub fn run(a: &FanoutArgs) -> Result<FanoutOutput> {
    if a.subscribers == 0 || a.loadgen_processes == 0 || a.runs == 0 || a.streams == 0 {
        bail!("--subscribers, --loadgen-processes, --runs and --streams must be positive");
    }
    if a.subscribers.div_ceil(a.loadgen_processes) > 19_000 {
        bail!("at most 19,000 subscribers per load-generator process (20k open files)");
    }
    if a.qos > 1 {
        bail!("--qos must be 0 or 1");
    }
    if a.rate.is_empty() || a.rate.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        bail!("--rate takes positive numbers");
    }
    let mut runs = Vec::new();
    let mut steps = Vec::new();
    for &rate in &a.rate {
        let mut these = Vec::new();
        for run in 0..a.runs {
            eprintln!(
                "fanout: rate {rate}/s × {} subscribers, QoS {}, run {}/{}",
                a.subscribers,
                a.qos,
                run + 1,
                a.runs
            );
            let r = run_once(a, rate, run)?;
            eprintln!(
                "fanout:   {:.0} deliveries/s, sluice {:.0} ns CPU/delivery, p99 {:.2} ms, {}",
                r.deliveries_per_sec,
                r.sluice_cpu_ns_per_delivery,
                r.latency.p99_us / 1000.0,
                if r.sustained {
                    "sustained".to_owned()
                } else {
                    format!("NOT sustained: {}", r.problems.join("; "))
                }
            );
            these.push(r);
        }
        let step = summarise(a, rate, &these);
        runs.extend(these);
        let sustained = step.sustained;
        steps.push(step);
        if !sustained && !a.keep_going {
            break;
        }
    }
    let best = steps
        .iter()
        .filter(|s| s.sustained)
        .max_by(|x, y| x.rate.total_cmp(&y.rate));
    Ok(FanoutOutput {
        args: a.clone(),
        max_sustained_rate: best.map(|s| s.rate),
        max_sustained_deliveries_per_sec: best.map(|s| s.median_deliveries_per_sec),
        runs,
        steps,
    })
}

fn summarise(a: &FanoutArgs, rate: f64, runs: &[FanoutRun]) -> FanoutStep {
    let of = |f: fn(&FanoutRun) -> f64| median(runs.iter().map(f).collect());
    let p99 = of(|r| r.latency.p99_us);
    let curve = runs
        .iter()
        .min_by(|x, y| {
            (x.latency.p99_us - p99)
                .abs()
                .total_cmp(&(y.latency.p99_us - p99).abs())
        })
        .map(|r| r.latency_curve.clone())
        .unwrap_or_default();
    FanoutStep {
        rate,
        runs: runs.len(),
        sustained: runs.iter().all(|r| r.sustained),
        offered_deliveries_per_sec: rate * a.subscribers as f64,
        median_deliveries_per_sec: of(|r| r.deliveries_per_sec),
        median_sluice_cpu_ns_per_delivery: of(|r| r.sluice_cpu_ns_per_delivery),
        median_deliveries_per_core_second: of(|r| r.deliveries_per_core_second),
        median_p50_us: of(|r| r.latency.p50_us),
        median_p90_us: of(|r| r.latency.p90_us),
        median_p99_us: p99,
        median_p999_us: of(|r| r.latency.p999_us),
        median_max_us: of(|r| r.latency.max_us),
        latency_curve: curve,
    }
}

fn subscriber_args(a: &FanoutArgs, sluice: &SluiceProc, count: u64, first: u64) -> LoadgenArgs {
    LoadgenArgs {
        connections: count,
        connect_rate: 5000.0 / a.loadgen_processes as f64,
        shards: a.loadgen_shards,
        first_index: first,
        ..LoadgenArgs::subscriber(sluice.mqtt, a.mqtt, a.qos, a.size, "fanout/#")
    }
}

/// One run: fresh broker, sluice, producer and subscribers.
fn run_once(a: &FanoutArgs, rate: f64, run: usize) -> Result<FanoutRun> {
    let broker = sluice_tests::Broker::start().context("starting tansu")?;
    let plan = Plan {
        bootstrap: broker.bootstrap(),
        partitions: a.partitions,
        rate,
        duration: Duration::from_secs_f64(a.duration),
        streams: a.streams,
        size: a.size.max(crate::loadgen::Stamp::LEN),
        linger: Duration::from_millis(a.linger_ms),
    };
    // Before sluice, so that the topic has `--partitions` (sluice creates its routes' topics
    // with its own default, 3, when they do not exist).
    let producer = ProducerThread::start(plan.clone())?;
    let sluice = SluiceProc::start(&SluiceSettings {
        bootstrap: broker.bootstrap(),
        listen: "127.0.0.1:0".parse().expect("an address"),
        shards: a.sluice_shards,
        receive_maximum: 1024,
        linger_ms: None,
        sessions_linger_ms: None,
        delivery_max_wait_ms: None,
        headers: true,
        framed: false,
        http: false,
    })?;

    let mut group = Group::spawn(a.subscribers, a.loadgen_processes, |count, first| {
        subscriber_args(a, &sluice, count, first)
    })?;
    group.wait_all_connected(a.subscribers, 5000.0)?;
    let subscribed = a.subscribers;
    procs::sleep(Duration::from_millis(500))?;

    let slow0 = sluice.metric("sluice_slow_consumers_total")?;
    let deliveries0 = sluice.metric("sluice_deliveries_total")?;
    let sluice_cpu0 = pid_cpu(sluice.pid()).context("reading sluice's CPU time")?;
    let broker_cpu0 = pid_cpu(broker.pid()).unwrap_or_default();
    let started = Instant::now();
    let produced =
        crate::progress::timed(&format!("producing {rate} records/s"), a.duration, || {
            producer.run()
        })?;
    let acked_at = Instant::now();
    let per_stream = plan.per_stream();
    for c in &mut group.children {
        c.expect(&per_stream)?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for c in &mut group.children {
        c.wait_event("received", deadline)?;
    }
    let done = Instant::now();
    let sluice_cpu = pid_cpu(sluice.pid()).context("reading sluice's CPU time")? - sluice_cpu0;
    let broker_cpu = pid_cpu(broker.pid()).unwrap_or_default() - broker_cpu0;
    let slow_consumers = sluice.metric("sluice_slow_consumers_total")? - slow0;
    let sluice_deliveries = sluice.metric("sluice_deliveries_total")? - deliveries0;
    let total = group.finish(Instant::now() + Duration::from_secs(60))?;
    let n = &total.counts;
    let expected_deliveries = produced.records * subscribed;
    // The last receipt is within the children's 10 ms polling of `done`.
    let delivery_seconds = (done - started).as_secs_f64();
    let drain_seconds = (done - acked_at).as_secs_f64();
    let cpu_ns = sluice_cpu.as_secs_f64() * 1e9 / n.received.max(1) as f64;
    let mut problems = Vec::new();
    if produced.failed > 0 {
        problems.push(format!(
            "{} records not acknowledged by Kafka",
            produced.failed
        ));
    }
    if n.lost > 0 || n.received < expected_deliveries {
        problems.push(format!(
            "{} of {expected_deliveries} deliveries lost ({} received)",
            n.lost, n.received
        ));
    }
    if n.duplicates > 0 || n.malformed > 0 {
        problems.push(format!(
            "{} duplicates, {} malformed",
            n.duplicates, n.malformed
        ));
    }
    if n.dropped > 0 || slow_consumers > 0 {
        problems.push(format!(
            "{} subscribers dropped ({slow_consumers} counted as slow consumers by sluice)",
            n.dropped
        ));
    }
    if drain_seconds > a.max_drain {
        problems.push(format!(
            "last delivery {drain_seconds:.1} s after the producer finished (limit {} s)",
            a.max_drain
        ));
    }
    let p99_ms = total.delivery_latency.p99_us / 1000.0;
    if p99_ms > a.max_p99_ms {
        problems.push(format!(
            "p99 latency {p99_ms:.0} ms (limit {} ms)",
            a.max_p99_ms
        ));
    }
    Ok(FanoutRun {
        rate,
        run,
        subscribed,
        expected_deliveries,
        received: n.received,
        lost: n.lost,
        duplicates: n.duplicates,
        malformed: n.malformed,
        complete_subscribers: n.complete,
        dropped: n.dropped,
        slow_consumers,
        sluice_deliveries,
        delivery_seconds,
        drain_seconds,
        deliveries_per_sec: n.received as f64 / delivery_seconds.max(1e-9),
        sluice_cpu_seconds: sluice_cpu.as_secs_f64(),
        sluice_cpu_ns_per_delivery: cpu_ns,
        deliveries_per_core_second: 1e9 / cpu_ns.max(1e-9),
        broker_cpu_seconds: broker_cpu.as_secs_f64(),
        loadgen_cpu_seconds: total.cpu_seconds,
        latency: total.delivery_latency.clone(),
        latency_curve: latency_curve(&histogram_from(&total.delivery_histogram)),
        sustained: problems.is_empty(),
        problems,
        produced,
    })
}

/// Prints the results as Markdown tables.
pub fn print(o: &FanoutOutput) {
    println!(
        "| records/s | subscribers | QoS | run | deliveries/s | sluice CPU ns/delivery | deliveries/core-s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | received / expected | lost | dup | dropped | slow | sustained |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in &o.runs {
        let l = &r.latency;
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} / {} | {} | {} | {} | {} | {} |",
            r.rate,
            r.subscribed,
            o.args.qos,
            r.run + 1,
            r.deliveries_per_sec,
            r.sluice_cpu_ns_per_delivery,
            r.deliveries_per_core_second,
            l.p50_us / 1000.0,
            l.p90_us / 1000.0,
            l.p99_us / 1000.0,
            l.p999_us / 1000.0,
            l.max_us / 1000.0,
            r.received,
            r.expected_deliveries,
            r.lost,
            r.duplicates,
            r.dropped,
            r.slow_consumers,
            if r.sustained { "yes" } else { "NO" },
        );
    }
    println!();
    match (o.max_sustained_rate, o.max_sustained_deliveries_per_sec) {
        (Some(rate), Some(d)) => println!(
            "max sustained: {rate} records/s × {} subscribers = {d:.0} deliveries/s (median)",
            o.args.subscribers
        ),
        _ => println!("no rate was sustained"),
    }
    for r in o.runs.iter().filter(|r| !r.sustained) {
        println!(
            "rate {} run {}: {}",
            r.rate,
            r.run + 1,
            r.problems.join("; ")
        );
    }
}
