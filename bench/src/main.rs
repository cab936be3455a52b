//! sluice-bench: the benchmark suite. Every performance claim sluice makes comes from here.
//!
//! - `micro`: RecordBatch encode/decode, partitioner and codec micro-benchmarks (no network).
//! - `produce`: kafka-wire against the rdkafka producer, same records, same broker, same run.
//! - `loadgen`: the MQTT load generator (idle or publishing connections, many per process).
//! - `idle`: memory per idle MQTT connection, sluice against mosquitto.
//! - `publish`: MQTT QoS 0/1 publishing through sluice into Kafka: rate, PUBACK latency, CPU.
//! - `compare`: MQTT clients → sluice → Kafka against the rdkafka producer straight to the
//!   same broker: maximum throughput, and latency added at 50 % load.
//! - `fanout`: Kafka → sluice → N MQTT subscribers: deliveries/s, CPU per delivery,
//!   produce → receipt latency, every delivery checked.
//! - `failover`: persistent sessions resumed on the surviving sluice processes after one is
//!   killed: time per session and in total, sessions lost, the survivors' CPU and memory.
//! - `storm`: every connection disconnects and reconnects at once: CONNACK rate, latency,
//!   server CPU per CONNACK; sluice against mosquitto and rumqttd.
//! - `report`: the Markdown report (and latency plot) of a suite run's results directory;
//!   `tools/bench.sh quick|full` runs the suite and calls it.
//! - `discard-sink`: a measurement tool, not a broker: a Kafka-wire endpoint that acknowledges
//!   Produce and discards the records, so `produce` and `publish` (`--sink discard`) can
//!   measure a producer's own ceiling when the real broker would be the bottleneck.
//!
//! Results are printed as Markdown tables and written as JSON (`--out`). docs/benchmarks.md
//! explains the method and holds the latest numbers.

mod alloc;
mod cpu;
mod discard_sink;
mod fanout_producer;
mod kafka_consumer;
mod loadgen;
mod micro;
mod micro_codecs;
mod procs;
mod produce;
mod progress;
mod rdkafka_load;
mod report;
mod scenario_compare;
mod scenario_failover;
mod scenario_fanout;
mod scenario_idle;
mod scenario_publish;
mod scenario_storm;
mod sessions;
mod sink;
mod stats;
mod svg;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

#[derive(Debug, Parser)]
#[command(name = "sluice-bench", about = "sluice's benchmark suite")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Micro-benchmarks that need no network.
    Micro {
        /// Run each benchmark briefly (a check that they still work, not a measurement).
        #[arg(long)]
        smoke: bool,
        /// Seconds per benchmark.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Write the results as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// kafka-wire vs the rdkafka producer: throughput and CPU per record.
    Produce {
        /// Rounds of both clients; medians are reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// An existing broker; by default a tansu broker is started for the run.
        #[arg(long, conflicts_with = "sink")]
        bootstrap: Option<String>,
        /// What to start for the run: tansu, or the discard sink (a measurement tool that
        /// acknowledges Produce without storing: the clients' own ceiling).
        #[arg(long, value_enum, default_value = "tansu")]
        sink: sink::SinkKind,
        #[command(flatten)]
        workload: produce::Workload,
        /// Write the comparison as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The MQTT load generator: many connections, idle or publishing.
    Loadgen {
        #[command(flatten)]
        args: loadgen::LoadgenArgs,
        /// Write the report as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Memory per idle MQTT connection: sluice (several processes past ~18k) and mosquitto.
    Idle {
        #[command(flatten)]
        args: scenario_idle::IdleArgs,
        /// Write the results as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// MQTT publishing through sluice into Kafka: rate, PUBACK latency, CPU per message.
    Publish {
        #[command(flatten)]
        args: scenario_publish::PublishArgs,
        /// Write the results as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// MQTT QoS 1 clients → sluice → tansu against the rdkafka producer → the same tansu:
    /// maximum throughput of each, then both open loop at 50 % load (latency added).
    Compare {
        #[command(flatten)]
        args: scenario_compare::CompareArgs,
        /// Write the results as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Kafka → MQTT fan-out: records produced to Kafka, delivered by sluice to N subscribers.
    Fanout {
        #[command(flatten)]
        args: scenario_fanout::FanoutArgs,
        /// Write the results as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Failover: K sluice processes on one port, N persistent sessions, one process killed
    /// (SIGKILL); time until every session resumed on the survivors, sessions lost.
    Failover {
        #[command(flatten)]
        args: scenario_failover::FailoverArgs,
        /// Write the results as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Reconnect storm: N connections disconnect and reconnect at once; CONNACK rate,
    /// latency and CPU, sluice (clean and persistent sessions) against mosquitto and rumqttd.
    Storm {
        #[command(flatten)]
        args: scenario_storm::StormArgs,
        /// Write the results as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Session clients for `failover` and `storm` (a child process driven over stdin).
    #[command(hide = true)]
    Sessions {
        #[command(flatten)]
        args: sessions::SessionArgs,
    },
    /// Writes DIR/report.md (and DIR/latency.svg) from the results of a suite run in DIR.
    Report {
        /// The results directory (`tools/bench.sh` makes bench/results/<date>/).
        #[arg(long)]
        dir: PathBuf,
    },
    /// MEASUREMENT TOOL, not a broker: a Kafka-wire endpoint that acknowledges Produce and
    /// discards the records (ApiVersions, Metadata, InitProducerId, Produce, FindCoordinator,
    /// CreateTopics, and Fetch with no records). Prints `{"event":"listening","addr":...}`
    /// on stdout, and a summary of what it discarded at SIGTERM or Ctrl-C. Never use it to
    /// check correctness.
    DiscardSink {
        #[command(flatten)]
        args: discard_sink::DiscardSinkArgs,
    },
    /// The rdkafka side of `compare` in a child process.
    #[command(hide = true)]
    RdkafkaLoad {
        #[command(flatten)]
        args: rdkafka_load::RdkafkaLoadArgs,
    },
    /// One producer run in a child process (used by `produce`).
    #[command(hide = true)]
    ProduceRun {
        #[arg(long, value_enum)]
        client: produce::ClientKind,
        #[arg(long)]
        bootstrap: String,
        #[arg(long)]
        topic: String,
        #[command(flatten)]
        workload: produce::Workload,
    },
}

fn write_json(path: &Option<PathBuf>, value: &impl serde::Serialize) -> Result<()> {
    if let Some(path) = path {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(value)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Micro {
            smoke,
            seconds,
            out,
        } => {
            let budget = if smoke {
                Duration::from_millis(20)
            } else {
                Duration::from_secs_f64(seconds)
            };
            let results = micro::run(budget);
            micro::print(&results);
            write_json(&out, &results)?;
        }
        Cmd::Produce {
            runs,
            bootstrap,
            sink: sink_kind,
            workload,
            out,
        } => {
            let started = match &bootstrap {
                Some(_) => None,
                None => Some(
                    sink::Sink::start(sink_kind, workload.partitions)
                        .context("starting the sink for the run")?,
                ),
            };
            let (addr, pid) = match (&bootstrap, &started) {
                (Some(b), _) => (b.clone(), None),
                (None, Some(s)) => (s.bootstrap(), Some(s.pid())),
                (None, None) => unreachable!("a sink was started"),
            };
            let mut comparison = produce::compare(&workload, runs, &addr, pid)?;
            comparison.sink = bootstrap.is_none().then_some(sink_kind);
            if let Some(started) = started {
                comparison.discard_sink = started.finish()?;
            }
            let broker = match comparison.sink {
                Some(sink::SinkKind::Discard) => "discard sink",
                _ => "broker",
            };
            println!(
                "| client | records/s (median) | CPU ns/record (median) | {broker} CPU ns/record (median) |"
            );
            println!("| --- | ---: | ---: | ---: |");
            println!(
                "| kafka-wire | {:.0} | {:.0} | {:.0} |",
                comparison.kafka_wire_records_per_sec,
                comparison.kafka_wire_cpu_ns_per_record,
                comparison.kafka_wire_broker_cpu_ns_per_record
            );
            println!(
                "| rdkafka | {:.0} | {:.0} | {:.0} |",
                comparison.rdkafka_records_per_sec,
                comparison.rdkafka_cpu_ns_per_record,
                comparison.rdkafka_broker_cpu_ns_per_record
            );
            println!(
                "\nthroughput kafka-wire/rdkafka = {:.2}x, CPU per record kafka-wire/rdkafka = {:.2}x",
                comparison.throughput_ratio, comparison.cpu_ratio
            );
            if let Some(s) = &comparison.discard_sink {
                // Each child run also sends one warm-up record.
                let expected = runs as u64 * 2 * (workload.records + 1);
                println!(
                    "discard sink (measurement tool): {} records received, {} expected ({}); \
                     {:.0} ns of the sink's CPU per record",
                    s.counts.records,
                    expected,
                    if s.counts.records == expected {
                        "match"
                    } else {
                        "MISMATCH"
                    },
                    s.cpu_ns_per_record
                );
            }
            write_json(&out, &comparison)?;
        }
        Cmd::Loadgen { args, out } => {
            procs::catch_interrupts();
            let report = loadgen::run(args)?;
            write_json(&out, &report)?;
        }
        Cmd::Idle { args, out } => {
            procs::catch_interrupts();
            let output = scenario_idle::run(&args)?;
            scenario_idle::print(&output);
            write_json(&out, &output)?;
        }
        Cmd::Publish { args, out } => {
            procs::catch_interrupts();
            let output = scenario_publish::run(&args)?;
            scenario_publish::print(&output);
            write_json(&out, &output)?;
        }
        Cmd::Compare { args, out } => {
            procs::catch_interrupts();
            let output = scenario_compare::run(&args)?;
            scenario_compare::print(&output);
            write_json(&out, &output)?;
        }
        Cmd::RdkafkaLoad { args } => rdkafka_load::run_child(&args)?,
        Cmd::Fanout { args, out } => {
            procs::catch_interrupts();
            let output = scenario_fanout::run(&args)?;
            scenario_fanout::print(&output);
            write_json(&out, &output)?;
        }
        Cmd::Failover { args, out } => {
            procs::catch_interrupts();
            let output = scenario_failover::run(&args)?;
            scenario_failover::print(&output);
            write_json(&out, &output)?;
        }
        Cmd::Storm { args, out } => {
            procs::catch_interrupts();
            let output = scenario_storm::run(&args)?;
            scenario_storm::print(&output);
            write_json(&out, &output)?;
        }
        Cmd::Sessions { args } => {
            procs::catch_interrupts();
            sessions::run(args)?;
        }
        Cmd::Report { dir } => report::write(&dir)?,
        Cmd::DiscardSink { args } => discard_sink::run(&args)?,
        Cmd::ProduceRun {
            client,
            bootstrap,
            topic,
            workload,
        } => produce::run_child(client, &bootstrap, &topic, &workload)?,
    }
    Ok(())
}
