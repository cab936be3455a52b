//! Scenario `idle`: memory per idle MQTT connection, sluice against mosquitto and rumqttd
//! (peers without Kafka behind them) in the same run.
//!
//! For each server: a few warm-up connections come and go (so per-shard buffers touched by
//! the first connection are in the baseline), the server's memory is read once it is
//! stable, N connections are opened by load-generator processes (≤ `--per-process` each:
//! the 20k open-files limit), and once every CONNACK is in and RSS is stable again, memory
//! is read a second time. User-space bytes per connection = ΔRSS ÷ N (summed over the
//! server's processes). Kernel memory is reported separately and is machine-wide: it covers
//! both ends of each loopback connection.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use serde::Serialize;

use crate::loadgen::{Connected, Group, LoadgenArgs, LoadgenChild, Mode, MqttVersion, Rate, Wire};
use crate::procs::{self, KernelMemory, Memory, Peer, PeerKind, SluiceProc};
use crate::progress::Progress;

/// The `idle` scenario's arguments.
#[derive(Debug, Clone, Args, Serialize)]
pub struct IdleArgs {
    /// Idle connections to sluice.
    #[arg(long, default_value_t = 10_000)]
    pub connections: u64,
    /// Most connections per sluice process and per load-generator process (20k open files
    /// per process here).
    #[arg(long, default_value_t = 18_000)]
    pub per_process: u64,
    /// New connections per second, over all load generators.
    #[arg(long, default_value_t = 10_000.0)]
    pub connect_rate: f64,
    /// MQTT version of the CONNECTs.
    #[arg(long, value_enum, default_value = "3.1.1")]
    pub mqtt: MqttVersion,
    /// Keepalive in seconds (0: none; otherwise clients PINGREQ at half of it).
    #[arg(long, default_value_t = 0)]
    pub keepalive: u16,
    /// Shards per sluice process.
    #[arg(long, default_value_t = 2)]
    pub sluice_shards: usize,
    /// Connections to mosquitto (one process, 20k open files: capped at 15,000); 0 skips it.
    #[arg(long, default_value_t = 15_000)]
    pub mosquitto_connections: u64,
    /// Connections to rumqttd (one process, capped at 15,000 like mosquitto); 0 skips it.
    #[arg(long, default_value_t = 0)]
    pub rumqttd_connections: u64,
    /// A handshake that failed or timed out is attempted again up to this many times (as a
    /// real client reconnects); the result counts the retries. 0 by default: every
    /// connection gets one attempt.
    #[arg(long, default_value_t = 0)]
    pub connect_retries: u32,
}

/// One server's measurement.
#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    pub server: String,
    pub processes: usize,
    pub loadgen_processes: usize,
    pub requested: u64,
    pub connected: u64,
    pub failed: u64,
    /// Handshakes attempted again (`--connect-retries`).
    pub retries: u64,
    /// Connections the server itself counts as open (sluice's metrics), if known.
    pub server_open: Option<u64>,
    /// Of those, the parked ones (no task, no buffers: `sluice_connections_parked`).
    pub server_parked: Option<u64>,
    pub before: Memory,
    pub after: Memory,
    pub rss_stable: bool,
    pub vm_rss_bytes_per_conn: f64,
    pub pss_bytes_per_conn: f64,
    pub anon_bytes_per_conn: f64,
    pub kernel_before: KernelMemory,
    pub kernel_after: KernelMemory,
    /// Machine-wide, both ends of each connection.
    pub tcp_mem_bytes_per_conn: f64,
    pub slab_bytes_per_conn: f64,
    /// The load generators' own RSS per connection.
    pub loadgen_rss_bytes_per_conn: f64,
    pub connect_seconds: f64,
    pub connack_p99_us: f64,
    /// Load generators still connecting at the deadline (counted with their last
    /// progress): `connected` is then what had been open by then.
    pub stalled_loadgens: usize,
}

/// The scenario's output.
#[derive(Debug, Serialize)]
pub struct IdleOutput {
    pub args: IdleArgs,
    pub results: Vec<IdleResult>,
}

fn sum(mems: &[Memory]) -> Memory {
    mems.iter().fold(Memory::default(), |a, m| Memory {
        vm_rss: a.vm_rss + m.vm_rss,
        rss: a.rss + m.rss,
        pss: a.pss + m.pss,
        anonymous: a.anonymous + m.anonymous,
    })
}

fn memory_of(pids: &[u32]) -> Result<Memory> {
    let mems = pids
        .iter()
        .map(|&p| procs::memory(p).with_context(|| format!("reading /proc/{p} memory")))
        .collect::<Result<Vec<_>>>()?;
    Ok(sum(&mems))
}

/// Waits until the summed VmRSS of `pids` moves by less than 0.5% over 2 s (at most
/// `limit`); returns whether it settled.
fn wait_stable(pids: &[u32], limit: Duration) -> Result<bool> {
    let started = Instant::now();
    let deadline = started + limit;
    let mut progress = Progress::seconds("waiting for RSS to settle", limit.as_secs_f64());
    let mut samples: Vec<u64> = Vec::new();
    while Instant::now() < deadline {
        let rss = memory_of(pids)?.vm_rss;
        samples.push(rss);
        progress.detail(format!("{:.1} MB", rss as f64 / 1e6));
        progress.at_seconds(started.elapsed().as_secs_f64());
        if samples.len() >= 5 {
            let last = &samples[samples.len() - 5..];
            let (lo, hi) = (
                *last.iter().min().expect("5"),
                *last.iter().max().expect("5"),
            );
            if (hi - lo) as f64 <= hi as f64 * 0.005 {
                return Ok(true);
            }
        }
        procs::sleep(Duration::from_millis(500))?;
    }
    Ok(false)
}

fn loadgen_args(a: &IdleArgs, addr: std::net::SocketAddr, n: u64, rate: f64) -> LoadgenArgs {
    LoadgenArgs {
        addr,
        connections: n,
        connect_rate: rate,
        mqtt: a.mqtt,
        wire: Wire::Mqtt,
        path: String::new(),
        keepalive: a.keepalive,
        mode: Mode::Idle,
        rate: Rate::PerSecond(1.0),
        duration: 0.0,
        qos: 0,
        size: 8,
        inflight: 1,
        shards: 1,
        first_index: 0,
        connect_retries: a.connect_retries,
        hold: 0.0,
        control: true,
        filter: String::new(),
    }
}

/// What sluice's metrics say about its connections.
#[derive(Debug, Clone, Copy)]
struct ServerCounts {
    open: u64,
    parked: u64,
}

/// Opens `n` idle connections to `addr` and measures the memory of `pids`.
fn measure(
    server: &str,
    pids: &[u32],
    addr: std::net::SocketAddr,
    n: u64,
    warmup: u64,
    a: &IdleArgs,
    server_counts: &dyn Fn() -> Option<ServerCounts>,
) -> Result<IdleResult> {
    eprintln!("{server}: warm-up with {warmup} connections");
    let mut warm = LoadgenChild::spawn(
        "warm-up",
        &LoadgenArgs {
            first_index: 1_000_000_000,
            ..loadgen_args(a, addr, warmup, 1000.0)
        },
    )?;
    warm.wait_event("connected", Instant::now() + Duration::from_secs(60))?;
    warm.finish(Instant::now() + Duration::from_secs(30))?;
    drop(warm);
    wait_stable(pids, Duration::from_secs(10))?;
    let before = memory_of(pids)?;
    let kernel_before = procs::kernel_memory();

    let loadgens = n.div_ceil(a.per_process).max(1);
    let rate = a.connect_rate / loadgens as f64;
    eprintln!(
        "{server}: opening {n} connections from {loadgens} load generator(s) at {:.0}/s",
        a.connect_rate
    );
    let mut group = Group::spawn(n, loadgens, |count, first| LoadgenArgs {
        first_index: first,
        ..loadgen_args(a, addr, count, rate)
    })?;
    // Load generators report once every attempt has ended, which on a machine loaded far
    // past its cores (a million connections) comes well after the schedule: allow half the
    // schedule again.
    let deadline = Instant::now()
        + Duration::from_secs_f64(1.5 * n as f64 / a.connect_rate)
        + Duration::from_secs(90)
        + crate::loadgen::retry_time(a.connect_retries);
    let Connected {
        connected,
        failed,
        retries,
        seconds: connect_seconds,
        stalled: stalled_loadgens,
    } = group.wait_connected(deadline)?;
    eprintln!("{server}: {connected} connected, {failed} failed ({retries} retried handshakes, {stalled_loadgens} load generator(s) stalled) in {connect_seconds:.1} s; waiting for RSS to settle");
    // A million connections on a machine at load 100 still moved RSS after 30 s (1,752
    // B per connection then, 498 B at 204,000), so the wait grows with the count: 30 s
    // plus 1 s per 10,000 connections.
    let settle = Duration::from_secs(30) + Duration::from_secs_f64(n as f64 / 10_000.0);
    let stable = wait_stable(pids, settle)?;
    let after = memory_of(pids)?;
    let kernel_after = procs::kernel_memory();
    let counts = server_counts();
    let loadgen_rss: u64 = group
        .children
        .iter()
        .filter_map(|c| procs::memory(c.pid()))
        .map(|m| m.vm_rss)
        .sum();
    // Closing takes a while when a million connections close at once on two cores; the
    // memory is measured already, so a late report costs only the CONNACK percentile.
    let closing = Duration::from_secs(60) + Duration::from_secs_f64(n as f64 / 5_000.0);
    let connack_p99_us = match group.finish(Instant::now() + closing) {
        Ok(total) => total.connack_latency.p99_us,
        Err(e) => {
            eprintln!("{server}: no CONNACK latencies ({e:#})");
            f64::NAN
        }
    };
    let per = |after: u64, before: u64| (after as f64 - before as f64) / connected.max(1) as f64;
    Ok(IdleResult {
        server: server.to_owned(),
        processes: pids.len(),
        loadgen_processes: loadgens as usize,
        requested: n,
        connected,
        failed,
        retries,
        server_open: counts.map(|c| c.open),
        server_parked: counts.map(|c| c.parked),
        before,
        after,
        rss_stable: stable,
        vm_rss_bytes_per_conn: per(after.vm_rss, before.vm_rss),
        pss_bytes_per_conn: per(after.pss, before.pss),
        anon_bytes_per_conn: per(after.anonymous, before.anonymous),
        kernel_before,
        kernel_after,
        tcp_mem_bytes_per_conn: per(kernel_after.tcp_mem_bytes, kernel_before.tcp_mem_bytes),
        slab_bytes_per_conn: per(kernel_after.slab_bytes, kernel_before.slab_bytes),
        loadgen_rss_bytes_per_conn: loadgen_rss as f64 / connected.max(1) as f64,
        connect_seconds,
        connack_p99_us,
        stalled_loadgens,
    })
}

/// Runs the scenario.
pub fn run(a: &IdleArgs) -> Result<IdleOutput> {
    if a.connections == 0 || a.per_process == 0 || a.per_process > 19_000 {
        bail!("--connections must be positive and --per-process at most 19,000");
    }
    let mut results = Vec::new();
    let broker = sluice_tests::Broker::start().context("starting tansu")?;
    {
        let processes = a.connections.div_ceil(a.per_process) as usize;
        let sluices =
            SluiceProc::start_on_one_port(&broker.bootstrap(), processes, a.sluice_shards, None)?;
        let listen = sluices[0].mqtt;
        eprintln!("sluice: {processes} process(es) listening on {listen}");
        let pids: Vec<u32> = sluices.iter().map(SluiceProc::pid).collect();
        let counts = || -> Option<ServerCounts> {
            let sum =
                |name: &str| -> Option<u64> { sluices.iter().map(|s| s.metric(name).ok()).sum() };
            Some(ServerCounts {
                open: sum("sluice_connections_open")?,
                parked: sum("sluice_connections_parked")?,
            })
        };
        let warmup = 8 * (a.sluice_shards * processes) as u64;
        results.push(measure(
            "sluice",
            &pids,
            listen,
            a.connections,
            warmup,
            a,
            &counts,
        )?);
    }
    for (kind, n) in [
        (PeerKind::Mosquitto, a.mosquitto_connections),
        (PeerKind::Rumqttd, a.rumqttd_connections),
    ] {
        if n > 0 {
            let m = Peer::start(kind)?;
            let n = n.min(15_000);
            let a = IdleArgs {
                keepalive: a.keepalive.max(kind.min_keepalive()),
                ..a.clone()
            };
            results.push(measure(
                kind.name(),
                &[m.pid()],
                m.addr,
                n,
                16,
                &a,
                &|| None,
            )?);
        }
    }
    drop(broker);
    Ok(IdleOutput {
        args: a.clone(),
        results,
    })
}

/// Prints the results as a Markdown table.
pub fn print(out: &IdleOutput) {
    println!(
        "| server | processes | connections | failed | ΔVmRSS B/conn | ΔPss B/conn | ΔAnon B/conn | kernel TCP mem B/conn | kernel Slab B/conn | loadgen RSS B/conn | connect s | CONNACK p99 ms |"
    );
    println!(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in &out.results {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.2} |",
            r.server,
            r.processes,
            r.connected,
            r.failed,
            r.vm_rss_bytes_per_conn,
            r.pss_bytes_per_conn,
            r.anon_bytes_per_conn,
            r.tcp_mem_bytes_per_conn,
            r.slab_bytes_per_conn,
            r.loadgen_rss_bytes_per_conn,
            r.connect_seconds,
            r.connack_p99_us / 1000.0,
        );
    }
    for r in &out.results {
        if !r.rss_stable {
            println!(
                "\nnote: {}'s RSS had not settled when it was measured",
                r.server
            );
        }
        if let (Some(open), Some(parked)) = (r.server_open, r.server_parked) {
            if parked < open {
                println!(
                    "\nnote: {parked} of {} open connections were parked when measured",
                    open
                );
            }
        }
        if let Some(open) = r.server_open {
            if open != r.connected {
                println!(
                    "\nnote: {} counts {open} open connections, the load generators {}",
                    r.server, r.connected
                );
            }
        }
    }
}
