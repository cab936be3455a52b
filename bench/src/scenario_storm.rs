//! Scenario `storm`: a reconnect storm. N MQTT connections are opened (at a moderate rate)
//! and then all of them, at once, send DISCONNECT, close and connect again: the CONNECT →
//! CONNACK rate and latency of the reconnects, and the server's CPU per CONNACK.
//!
//! Variants: `clean` (clean session, no subscription) against sluice and, in the same run,
//! the peers (mosquitto, rumqttd: no Kafka behind them, so they do not write a session
//! claim); `persistent` (clean session 0 with one QoS 1 subscription each, so every
//! reconnect resumes a session from Kafka and must get session present = 1) against sluice.
//! sluice runs as one process per `--per-process` connections on one port (2 shards each
//! by default); a peer is one process, capped at 15,000 connections (20k open files).
//!
//! Rate = reconnects ÷ (first DISCONNECT → last CONNACK), from the session clients'
//! wall-clock stamps. CPU per CONNACK = the server processes' user+system time over the
//! storm ÷ reconnects (it includes closing the old connection); its inverse is the
//! "CONNACKs per core-second" the brief's target is about. The session clients share the
//! machine's two cores with the server and tansu.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::cpu::pid_cpu;
use crate::loadgen::{wall_ns, MqttVersion};
use crate::procs::{self, Peer, PeerKind, SluiceProc};
use crate::progress::Progress;
use crate::sessions::{SessionArgs, SessionGroup};
use crate::stats::{median, Spread};

/// Session kind of a storm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
pub enum Variant {
    Clean,
    Persistent,
}

/// The `storm` scenario's arguments.
#[derive(Debug, Clone, Args, Serialize)]
pub struct StormArgs {
    /// Connections that reconnect at once.
    #[arg(long, default_value_t = 10_000)]
    pub connections: u64,
    /// Session kinds to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "clean,persistent"
    )]
    pub variants: Vec<Variant>,
    /// Peers to run the clean variant against too (capped at 15,000 connections).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "mosquitto,rumqttd"
    )]
    pub peers: Vec<PeerKind>,
    /// Shards per sluice process.
    #[arg(long, default_value_t = 2)]
    pub sluice_shards: usize,
    /// Most connections per sluice process and per session-client process.
    #[arg(long, default_value_t = 18_000)]
    pub per_process: u64,
    /// Connections opened per second before the storm, over all clients.
    #[arg(long, default_value_t = 5000.0)]
    pub connect_rate: f64,
    /// MQTT version.
    #[arg(long, value_enum, default_value = "3.1.1")]
    pub mqtt: MqttVersion,
    /// Runs of every (variant, server) pair, medians reported.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
}

/// One storm.
#[derive(Debug, Clone, Serialize)]
pub struct StormRun {
    pub server: String,
    pub variant: Variant,
    pub processes: usize,
    pub connections: u64,
    /// Connections that completed their first handshake (the peers may refuse some).
    pub set_up: u64,
    pub reconnected: u64,
    /// Persistent: reconnects answered with session present = 0 (must be 0).
    pub without_session: u64,
    pub seconds: f64,
    pub connacks_per_sec: f64,
    pub latency: Spread,
    pub server_cpu_seconds: f64,
    pub server_cpu_us_per_connack: f64,
    pub connacks_per_core_second: f64,
}

/// The scenario's output.
#[derive(Debug, Serialize)]
pub struct StormOutput {
    pub args: StormArgs,
    pub runs: Vec<StormRun>,
    /// Per (server, variant): medians over runs.
    pub medians: Vec<StormMedian>,
}

#[derive(Debug, Serialize)]
pub struct StormMedian {
    pub server: String,
    pub variant: Variant,
    pub runs: usize,
    /// Fewest connections set up in a run (the peers may refuse some).
    pub set_up: u64,
    pub connacks_per_sec: f64,
    pub connacks_per_core_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub without_session: u64,
}

/// Runs the scenario.
pub fn run(a: &StormArgs) -> Result<StormOutput> {
    if a.connections == 0 || a.per_process == 0 || a.per_process > 19_000 || a.runs == 0 {
        bail!("--connections and --runs must be positive and --per-process at most 19,000");
    }
    let mut runs = Vec::new();
    for run in 0..a.runs {
        for &variant in &a.variants {
            runs.push(storm_sluice(a, variant, run)?);
            if variant == Variant::Clean {
                for &peer in &a.peers {
                    runs.push(storm_peer(a, peer, run)?);
                }
            }
        }
    }
    let mut medians: Vec<StormMedian> = Vec::new();
    for r in &runs {
        if medians
            .iter()
            .any(|m| m.server == r.server && m.variant == r.variant)
        {
            continue;
        }
        let same: Vec<&StormRun> = runs
            .iter()
            .filter(|x| x.server == r.server && x.variant == r.variant)
            .collect();
        let med = |f: &dyn Fn(&StormRun) -> f64| median(same.iter().map(|x| f(x)).collect());
        medians.push(StormMedian {
            server: r.server.clone(),
            variant: r.variant,
            runs: same.len(),
            set_up: same.iter().map(|x| x.set_up).min().unwrap_or(0),
            connacks_per_sec: med(&|x| x.connacks_per_sec),
            connacks_per_core_second: med(&|x| x.connacks_per_core_second),
            p50_ms: med(&|x| x.latency.p50_ms),
            p99_ms: med(&|x| x.latency.p99_ms),
            max_ms: med(&|x| x.latency.max_ms),
            without_session: same.iter().map(|x| x.without_session).max().unwrap_or(0),
        });
    }
    Ok(StormOutput {
        args: a.clone(),
        runs,
        medians,
    })
}

fn storm_sluice(a: &StormArgs, variant: Variant, run: usize) -> Result<StormRun> {
    let broker = sluice_tests::Broker::start().context("starting tansu")?;
    let processes = a.connections.div_ceil(a.per_process) as usize;
    let sluices =
        SluiceProc::start_on_one_port(&broker.bootstrap(), processes, a.sluice_shards, None)?;
    let listen = sluices[0].mqtt;
    let pids: Vec<u32> = sluices.iter().map(SluiceProc::pid).collect();
    let r = storm(a, "sluice", variant, (listen, 0), &pids, a.connections, run);
    drop(sluices);
    drop(broker);
    r
}

fn storm_peer(a: &StormArgs, kind: PeerKind, run: usize) -> Result<StormRun> {
    let peer = Peer::start(kind)?;
    let n = a.connections.min(15_000);
    storm(
        a,
        kind.name(),
        Variant::Clean,
        (peer.addr, kind.min_keepalive()),
        &[peer.pid()],
        n,
        run,
    )
}

/// Opens `n` connections to `addr` (with `keepalive`), storms them, and measures the
/// server processes `pids`.
fn storm(
    a: &StormArgs,
    server: &str,
    variant: Variant,
    (addr, keepalive): (std::net::SocketAddr, u16),
    pids: &[u32],
    n: u64,
    run: usize,
) -> Result<StormRun> {
    let persistent = variant == Variant::Persistent;
    eprintln!(
        "storm: {server}, {variant:?} sessions, {n} connections ({} process(es)), run {}",
        pids.len(),
        run + 1
    );
    let clients = n.div_ceil(a.per_process);
    let prefix = format!("st{}-", wall_ns() % 1_000_000);
    let mut group = SessionGroup::spawn(n, clients, |count, first| SessionArgs {
        addr,
        connections: count,
        first_index: first,
        connect_rate: a.connect_rate / clients as f64,
        mqtt: a.mqtt,
        keepalive,
        clean: !persistent,
        subscribe: persistent,
        prefix: prefix.clone(),
        reconnect_delay_ms: 0,
        reconnect_jitter_ms: 0,
        reconnect_deadline: 60.0,
        setup_deadline: 0.0,
    })?;
    // A peer that refuses some connections is stormed with the rest (`set_up` says how
    // many); sluice must take them all.
    let deadline = Instant::now() + Duration::from_secs_f64(n as f64 / a.connect_rate + 120.0);
    let set_up = group.wait_ready(n, deadline, server == "sluice")?;
    procs::sleep(Duration::from_secs(2))?;
    let cpu = || -> Duration { pids.iter().filter_map(|&p| pid_cpu(p)).sum() };
    let cpu0 = cpu();
    let started = Instant::now();
    group.storm()?;
    let mut progress = Progress::count("storm: reconnected", set_up);
    loop {
        let done = group.counter("stormed");
        progress.set(done);
        if done >= set_up {
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            progress.println(&format!(
                "storm: only {done}/{set_up} reconnected within 90 s"
            ));
            break;
        }
        procs::sleep(Duration::from_millis(10))?;
    }
    drop(progress);
    let cpu_seconds = cpu().saturating_sub(cpu0).as_secs_f64();
    let (records, _) = group.finish(Instant::now() + Duration::from_secs(60))?;
    let done: Vec<_> = records.iter().filter(|r| r.storm_connack_at > 0).collect();
    let first = done.iter().map(|r| r.storm_at).min().unwrap_or(0);
    let last = done.iter().map(|r| r.storm_connack_at).max().unwrap_or(0);
    let seconds = last.saturating_sub(first) as f64 / 1e9;
    let reconnected = done.len() as u64;
    let out = StormRun {
        server: server.to_owned(),
        variant,
        processes: pids.len(),
        connections: n,
        set_up,
        reconnected,
        without_session: if persistent {
            done.iter().filter(|r| !r.storm_present).count() as u64
        } else {
            0
        },
        seconds,
        connacks_per_sec: reconnected as f64 / seconds,
        latency: Spread::of(
            done.iter()
                .map(|r| r.storm_connack_at.saturating_sub(r.storm_at))
                .collect(),
        ),
        server_cpu_seconds: cpu_seconds,
        server_cpu_us_per_connack: cpu_seconds * 1e6 / reconnected.max(1) as f64,
        connacks_per_core_second: reconnected as f64 / cpu_seconds,
    };
    eprintln!(
        "storm: {server} {variant:?}: {reconnected}/{set_up} (of {n}) in {seconds:.2} s = {:.0} CONNACK/s, p50/p99/max {:.0}/{:.0}/{:.0} ms, {:.1} µs server CPU each",
        out.connacks_per_sec,
        out.latency.p50_ms,
        out.latency.p99_ms,
        out.latency.max_ms,
        out.server_cpu_us_per_connack
    );
    Ok(out)
}

/// Prints the medians as a Markdown table.
pub fn print(out: &StormOutput) {
    println!("| server | sessions | runs | connections | CONNACK/s | CONNACKs per core-second of server CPU | p50 ms | p99 ms | max ms | reconnects without session |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for m in &out.medians {
        println!(
            "| {} | {:?} | {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {} |",
            m.server,
            m.variant,
            m.runs,
            m.set_up,
            m.connacks_per_sec,
            m.connacks_per_core_second,
            m.p50_ms,
            m.p99_ms,
            m.max_ms,
            m.without_session
        );
    }
}
