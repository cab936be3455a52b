//! sluice-bench: the benchmark suite. Every performance claim sluice makes comes from here.
//!
//! - `micro`: RecordBatch encode/decode, partitioner and codec micro-benchmarks (no network).
//! - `produce`: kafka-wire against the rdkafka producer, same records, same broker, same run.
//! - `loadgen`: the MQTT load generator (idle or publishing connections, many per process).
//! - `idle`: memory per idle MQTT connection, sluice against mosquitto.
//! - `publish`: MQTT QoS 0/1 publishing through sluice into Kafka: rate, PUBACK latency, CPU.
//!
//! Results are printed as Markdown tables and written as JSON (`--out`). docs/benchmarks.md
//! explains the method and holds the latest numbers.

mod alloc;
mod cpu;
mod loadgen;
mod micro;
mod micro_codecs;
mod procs;
mod produce;
mod scenario_idle;
mod scenario_publish;

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
        #[arg(long)]
        bootstrap: Option<String>,
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
            workload,
            out,
        } => {
            let broker = match &bootstrap {
                Some(_) => None,
                None => Some(sluice_tests::Broker::start().context("starting tansu for the run")?),
            };
            let (addr, pid) = match (&bootstrap, &broker) {
                (Some(b), _) => (b.clone(), None),
                (None, Some(b)) => (b.bootstrap(), Some(b.pid())),
                (None, None) => unreachable!("a broker was started"),
            };
            let comparison = produce::compare(&workload, runs, &addr, pid)?;
            println!("| client | records/s (median) | CPU ns/record (median) |");
            println!("| --- | ---: | ---: |");
            println!(
                "| kafka-wire | {:.0} | {:.0} |",
                comparison.kafka_wire_records_per_sec, comparison.kafka_wire_cpu_ns_per_record
            );
            println!(
                "| rdkafka | {:.0} | {:.0} |",
                comparison.rdkafka_records_per_sec, comparison.rdkafka_cpu_ns_per_record
            );
            println!(
                "\nthroughput kafka-wire/rdkafka = {:.2}x, CPU per record kafka-wire/rdkafka = {:.2}x",
                comparison.throughput_ratio, comparison.cpu_ratio
            );
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
        Cmd::ProduceRun {
            client,
            bootstrap,
            topic,
            workload,
        } => produce::run_child(client, &bootstrap, &topic, &workload)?,
    }
    Ok(())
}
