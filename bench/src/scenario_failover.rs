//! Scenario `failover`: K sluice processes on one port (SO_REUSEPORT) in front of tansu,
//! N persistent MQTT sessions each subscribed (QoS 1) to its own topic, opened by session
//! clients (`sessions/`, several processes and 127.x source addresses past ~18k). One sluice
//! process is killed with SIGKILL; its clients see their connections end, wait the
//! reconnect delay (plus jitter) and reconnect through the same port, so the kernel hands
//! them to the survivors, which must answer CONNACK with session present = 1. Once every
//! lost session is back, one record per session topic is produced straight to Kafka and
//! every session must receive its one message: the subscription came back with the session.
//!
//! Per session, from the session clients' wall-clock stamps (same machine, same clock):
//! kill → connection end seen (detect), → first reconnect attempt (the configured delay),
//! → CONNACK (handshake, including failed attempts), and kill → CONNACK (resume time;
//! the total is its maximum). Lost sessions: not resumed, resumed without session present,
//! or without their check message. Also the survivors' CPU over the resume window and
//! their RSS before the kill and after the check.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use serde::Serialize;

use crate::cpu::pid_cpu;
use crate::fanout_producer::{produce_keyed, Plan};
use crate::loadgen::{wall_ns, MqttVersion};
use crate::procs::{self, SluiceProc};
use crate::progress::Progress;
use crate::sessions::{topic, Record, SessionArgs, SessionGroup};
use crate::stats::Spread;

/// The `failover` scenario's arguments.
#[derive(Debug, Clone, Args, Serialize)]
pub struct FailoverArgs {
    /// Persistent sessions.
    #[arg(long, default_value_t = 1000)]
    pub sessions: u64,
    /// sluice processes on the port (0: enough that the survivors hold every session
    /// within --per-process each, at least 2).
    #[arg(long, default_value_t = 0)]
    pub sluice_processes: usize,
    /// Shards per sluice process.
    #[arg(long, default_value_t = 2)]
    pub sluice_shards: usize,
    /// Most connections per sluice process and per session-client process.
    #[arg(long, default_value_t = 18_000)]
    pub per_process: u64,
    /// New sessions per second while setting up, over all clients.
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,
    /// MQTT version.
    #[arg(long, value_enum, default_value = "3.1.1")]
    pub mqtt: MqttVersion,
    /// Milliseconds a client waits after losing its server before reconnecting.
    #[arg(long, default_value_t = 0)]
    pub reconnect_delay_ms: u64,
    /// Up to this many more milliseconds, spread evenly over the clients.
    #[arg(long, default_value_t = 100)]
    pub reconnect_jitter_ms: u64,
    /// Seconds to wait for every lost session to resume.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// Runs, each with a fresh broker, sluice processes and clients (medians reported).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// sluice's `mqtt.sessions_linger_ms` (unset: sluice's default; leave it unset for a
    /// sluice that predates the key).
    #[arg(long)]
    pub sessions_linger_ms: Option<u64>,
    /// Seconds a client keeps retrying its first CONNECT + SUBSCRIBE (pausing 1, 2, 4, 8,
    /// 8, … s) before the setup counts it as failed; 0: one attempt. Only the setup
    /// retries: the failover is measured from the kill as before.
    #[arg(long, default_value_t = 0.0)]
    pub setup_deadline: f64,
}

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverRun {
    pub sessions: u64,
    pub sluice_processes: usize,
    pub setup_seconds: f64,
    /// First CONNECTs (or SUBSCRIBEs) that failed and were tried again during the setup.
    pub setup_retries: u64,
    /// Session-topic records and batches all processes wrote during the setup (batches:
    /// every batch the process sent, which in this scenario are session records only;
    /// records: 0 from a sluice without `sluice_session_records_total`).
    pub setup_session_records: u64,
    pub setup_batches: u64,
    /// The same, by the survivors from the kill to the last resume.
    pub failover_session_records: u64,
    pub failover_batches: u64,
    /// Connections the killed process held (its own metric, just before the kill).
    pub victim_connections: u64,
    /// Sessions whose connection ended (seen by the clients).
    pub lost_connections: u64,
    pub resumed: u64,
    pub resumed_without_session: u64,
    pub not_resumed: u64,
    pub failed_reconnect_attempts: u64,
    /// Sessions that did not receive their check message, of all N.
    pub missing_deliveries: u64,
    /// Of those, sessions that had moved to a survivor.
    pub missing_moved: u64,
    /// Session numbers of up to 20 of them (client id `{prefix}{n}`), to look into.
    pub missing_sample: Vec<u64>,
    pub duplicate_deliveries: u64,
    /// Records the check produced that Kafka did not acknowledge.
    pub check_produce_failed: u64,
    /// Not resumed + resumed without session + no delivery (a session counted once).
    pub sessions_lost: u64,
    /// Kill → last CONNACK of a lost session.
    pub total_seconds: f64,
    /// Kill → CONNACK, per resumed session.
    pub resume: Spread,
    /// Kill → connection end seen by the client.
    pub detect: Spread,
    /// Connection end → first reconnect attempt (the configured delay and jitter).
    pub delay: Spread,
    /// First reconnect attempt → CONNACK (failed attempts included).
    pub handshake: Spread,
    /// Initial connect → CONNACK → SUBACK of every session before the kill, for comparison.
    pub initial_handshake: Spread,
    /// Survivors' CPU from the kill to the last resume, in cores (CPU s ÷ wall s).
    pub survivor_cpu_cores: f64,
    /// Survivors' CPU seconds over the same window.
    pub survivor_cpu_seconds: f64,
    pub survivor_rss_before: u64,
    pub survivor_rss_after: u64,
    /// Sessions resumed by time since the kill: (seconds, sessions), for the plot.
    pub timeline: Vec<(f64, u64)>,
}

/// The scenario's output.
#[derive(Debug, Serialize)]
pub struct FailoverOutput {
    pub args: FailoverArgs,
    pub runs: Vec<FailoverRun>,
    pub median_total_seconds: f64,
    pub median_resume_p99_ms: f64,
    pub max_sessions_lost: u64,
}

/// Runs the scenario.
pub fn run(a: &FailoverArgs) -> Result<FailoverOutput> {
    if a.sessions == 0 || a.per_process == 0 || a.per_process > 19_000 || a.runs == 0 {
        bail!("--sessions and --runs must be positive and --per-process at most 19,000");
    }
    let mut runs = Vec::new();
    for i in 0..a.runs {
        eprintln!("failover: run {}/{}", i + 1, a.runs);
        let r = run_once(a)?;
        print_run(&r);
        runs.push(r);
    }
    let med = |f: &dyn Fn(&FailoverRun) -> f64| crate::stats::median(runs.iter().map(f).collect());
    Ok(FailoverOutput {
        args: a.clone(),
        median_total_seconds: med(&|r| r.total_seconds),
        median_resume_p99_ms: med(&|r| r.resume.p99_ms),
        max_sessions_lost: runs.iter().map(|r| r.sessions_lost).max().unwrap_or(0),
        runs,
    })
}

fn run_once(a: &FailoverArgs) -> Result<FailoverRun> {
    let n = a.sessions;
    let processes = if a.sluice_processes > 0 {
        a.sluice_processes.max(2)
    } else {
        (n.div_ceil(a.per_process) as usize + 1).max(2)
    };
    let broker = sluice_tests::Broker::start().context("starting tansu")?;
    let plan = Plan {
        bootstrap: broker.bootstrap(),
        partitions: 3,
        rate: 1.0,
        duration: Duration::ZERO,
        streams: 1,
        size: 16,
        linger: Duration::from_millis(5),
    };
    // Creates mqtt-messages before sluice does (and checks the broker takes records).
    produce_keyed(plan.clone(), Vec::new())?;
    let mut sluices = SluiceProc::start_on_one_port(
        &broker.bootstrap(),
        processes,
        a.sluice_shards,
        a.sessions_linger_ms,
    )?;
    let listen = sluices[0].mqtt;
    eprintln!("failover: {processes} sluice processes on {listen}; opening {n} persistent sessions at {:.0}/s", a.connect_rate);
    let clients = n.div_ceil(a.per_process);
    let prefix = format!("fo{}-", wall_ns() % 1_000_000);
    let setup = Instant::now();
    let mut group = SessionGroup::spawn(n, clients, |count, first| SessionArgs {
        addr: listen,
        connections: count,
        first_index: first,
        connect_rate: a.connect_rate / clients as f64,
        mqtt: a.mqtt,
        keepalive: 0,
        clean: false,
        subscribe: true,
        prefix: prefix.clone(),
        reconnect_delay_ms: a.reconnect_delay_ms,
        reconnect_jitter_ms: a.reconnect_jitter_ms,
        reconnect_deadline: a.timeout,
        setup_deadline: a.setup_deadline,
    })?;
    let deadline = Instant::now()
        + Duration::from_secs_f64(n as f64 / a.connect_rate + 120.0 + a.setup_deadline);
    wait_progress(&mut group, "connected", n, deadline, "sessions set up")?;
    group.wait_ready(n, deadline, true)?;
    let setup_seconds = setup.elapsed().as_secs_f64();
    let setup_retries = group.counter("setup_retries");
    // Let the claims and subscription saves settle before the kill (and the processes'
    // producer counters, copied each second, catch up).
    procs::sleep(Duration::from_secs(2))?;
    let (setup_session_records, setup_batches) = session_writes(&sluices);

    let victim = sluices.remove(0);
    let victim_connections = victim.metric("sluice_connections_open")?;
    let survivors: Vec<u32> = sluices.iter().map(SluiceProc::pid).collect();
    let rss = |pids: &[u32]| -> u64 {
        pids.iter()
            .filter_map(|&p| procs::memory(p))
            .map(|m| m.vm_rss)
            .sum()
    };
    let cpu = |pids: &[u32]| -> Duration { pids.iter().filter_map(|&p| pid_cpu(p)).sum() };
    let survivor_rss_before = rss(&survivors);
    let cpu0 = cpu(&survivors);
    let writes_before = session_writes(&sluices);
    eprintln!("failover: SIGKILL to the sluice process holding {victim_connections} sessions");
    let killed_at = wall_ns();
    let killed = Instant::now();
    drop(victim);

    // Every connection of the victim must come back; the clients count them.
    let want = victim_connections;
    let until = killed + Duration::from_secs_f64(a.timeout);
    wait_progress(&mut group, "resumed", want, until, "sessions resumed")?;
    let window = killed.elapsed();
    let survivor_cpu = cpu(&survivors).saturating_sub(cpu0);
    // The processes copy their producer counters each second.
    procs::sleep(Duration::from_millis(1200))?;
    let writes_after = session_writes(&sluices);

    eprintln!("failover: producing one message to each of the {n} session topics");
    let keys = (0..n).map(|i| topic(&prefix, i)).collect();
    let check_produce_failed = produce_keyed(plan, keys)?;
    let until = Instant::now() + Duration::from_secs_f64(30.0 + n as f64 / 5000.0);
    let _ = wait_progress(&mut group, "received", n, until, "check messages received");
    let survivor_rss_after = rss(&survivors);
    let (records, _) = group.finish(Instant::now() + Duration::from_secs(60))?;
    drop(sluices);
    drop(broker);

    Ok(summarise(
        &records,
        killed_at,
        FailoverRun {
            sessions: n,
            sluice_processes: processes,
            setup_seconds,
            setup_retries,
            setup_session_records,
            setup_batches,
            failover_session_records: writes_after.0.saturating_sub(writes_before.0),
            failover_batches: writes_after.1.saturating_sub(writes_before.1),
            victim_connections,
            check_produce_failed,
            survivor_cpu_cores: survivor_cpu.as_secs_f64() / window.as_secs_f64(),
            survivor_cpu_seconds: survivor_cpu.as_secs_f64(),
            survivor_rss_before,
            survivor_rss_after,
            lost_connections: 0,
            resumed: 0,
            resumed_without_session: 0,
            not_resumed: 0,
            failed_reconnect_attempts: 0,
            missing_deliveries: 0,
            missing_moved: 0,
            missing_sample: Vec::new(),
            duplicate_deliveries: 0,
            sessions_lost: 0,
            total_seconds: 0.0,
            resume: Spread::default(),
            detect: Spread::default(),
            delay: Spread::default(),
            handshake: Spread::default(),
            initial_handshake: Spread::default(),
            timeline: Vec::new(),
        },
    ))
}

/// Session-topic records and all batches `sluices` have written so far (see
/// [`FailoverRun::setup_batches`]); a process that does not answer counts 0.
fn session_writes(sluices: &[SluiceProc]) -> (u64, u64) {
    let sum = |name: &str| -> u64 { sluices.iter().filter_map(|s| s.metric(name).ok()).sum() };
    (
        sum("sluice_session_records_total"),
        sum("sluice_produce_batches_total") + sum("sluice_session_batches_total"),
    )
}

/// Fills the per-session figures of `run` from the clients' records.
fn summarise(records: &[Record], killed_at: u64, mut run: FailoverRun) -> FailoverRun {
    let lost: Vec<&Record> = records.iter().filter(|r| r.lost_at > 0).collect();
    let resumed: Vec<&Record> = lost.iter().copied().filter(|r| r.resumed_at > 0).collect();
    let since = |t: u64, from: u64| t.saturating_sub(from);
    run.lost_connections = lost.len() as u64;
    run.resumed = resumed.len() as u64;
    run.resumed_without_session = resumed.iter().filter(|r| !r.present).count() as u64;
    run.not_resumed = (lost.len() - resumed.len()) as u64;
    run.failed_reconnect_attempts = lost.iter().map(|r| u64::from(r.failed_attempts)).sum();
    run.missing_deliveries = run
        .sessions
        .saturating_sub(records.iter().filter(|r| r.received > 0).count() as u64);
    let missing = records.iter().filter(|r| r.received == 0);
    run.missing_moved = missing.clone().filter(|r| r.lost_at > 0).count() as u64;
    run.missing_sample = missing.take(20).map(|r| r.index).collect();
    run.duplicate_deliveries = records
        .iter()
        .map(|r| u64::from(r.received.saturating_sub(1)))
        .sum();
    let bad = |r: &Record| (r.lost_at > 0 && (r.resumed_at == 0 || !r.present)) || r.received == 0;
    run.sessions_lost = records.iter().filter(|r| bad(r)).count() as u64
        + run.sessions.saturating_sub(records.len() as u64);
    let resume: Vec<u64> = resumed
        .iter()
        .map(|r| since(r.resumed_at, killed_at))
        .collect();
    run.total_seconds = resume.iter().copied().max().unwrap_or(0) as f64 / 1e9;
    run.timeline = timeline(&resume);
    run.resume = Spread::of(resume);
    run.detect = Spread::of(lost.iter().map(|r| since(r.lost_at, killed_at)).collect());
    run.delay = Spread::of(lost.iter().map(|r| since(r.retry_at, r.lost_at)).collect());
    run.handshake = Spread::of(
        resumed
            .iter()
            .map(|r| since(r.resumed_at, r.retry_at))
            .collect(),
    );
    run.initial_handshake = Spread::of(records.iter().map(|r| r.first_connect_ns).collect());
    run
}

/// Cumulative resumes over time since the kill, at most ~200 points.
fn timeline(resume_ns: &[u64]) -> Vec<(f64, u64)> {
    let mut sorted = resume_ns.to_vec();
    sorted.sort_unstable();
    let step = sorted.len().div_ceil(200).max(1);
    let mut points = vec![(0.0, 0)];
    for (i, t) in sorted.iter().enumerate() {
        if (i + 1) % step == 0 || i + 1 == sorted.len() {
            points.push((*t as f64 / 1e9, i as u64 + 1));
        }
    }
    points
}

/// Waits until the clients' counter `name` reaches `want`, showing its progress;
/// an error at the deadline.
fn wait_progress(
    group: &mut SessionGroup,
    name: &str,
    want: u64,
    deadline: Instant,
    what: &str,
) -> Result<()> {
    let started = Instant::now();
    let mut progress = Progress::count(&format!("failover: {what}"), want);
    loop {
        let got = group.counter(name);
        progress.set(got);
        if got >= want {
            progress.println(&format!(
                "failover: {got}/{want} {what} in {:.2} s",
                started.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {got} of {want} {what} in time");
        }
        procs::sleep(Duration::from_millis(20))?;
    }
}

fn print_run(r: &FailoverRun) {
    println!("| sessions | processes | victim held | resumed | lost | total s | resume p50/p99/max ms | detect p99 ms | delay p99 ms | handshake p50/p99/max ms | survivors' CPU cores | survivors' RSS MB before → after |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | --- |");
    println!(
        "| {} | {} | {} | {} | {} | {:.2} | {:.0} / {:.0} / {:.0} | {:.0} | {:.0} | {:.0} / {:.0} / {:.0} | {:.2} | {:.0} → {:.0} |",
        r.sessions,
        r.sluice_processes,
        r.victim_connections,
        r.resumed,
        r.sessions_lost,
        r.total_seconds,
        r.resume.p50_ms,
        r.resume.p99_ms,
        r.resume.max_ms,
        r.detect.p99_ms,
        r.delay.p99_ms,
        r.handshake.p50_ms,
        r.handshake.p99_ms,
        r.handshake.max_ms,
        r.survivor_cpu_cores,
        r.survivor_rss_before as f64 / 1e6,
        r.survivor_rss_after as f64 / 1e6,
    );
    println!(
        "session topic: setup {} records in {} batches ({} retried setups); failover {} records in {} batches",
        r.setup_session_records,
        r.setup_batches,
        r.setup_retries,
        r.failover_session_records,
        r.failover_batches,
    );
    println!(
        "\nlost: {} not resumed, {} without session present, {} sessions without their check message ({} of them moved; e.g. {:?}) ({} duplicates, {} check records unacknowledged); {} failed reconnect attempts; initial connect+subscribe p50/p99 {:.0}/{:.0} ms\n",
        r.not_resumed,
        r.resumed_without_session,
        r.missing_deliveries,
        r.missing_moved,
        r.missing_sample,
        r.duplicate_deliveries,
        r.check_produce_failed,
        r.failed_reconnect_attempts,
        r.initial_handshake.p50_ms,
        r.initial_handshake.p99_ms,
    );
}

/// Prints the summary over runs.
pub fn print(out: &FailoverOutput) {
    println!(
        "failover of {} sessions, {} run(s): total median {:.2} s, resume p99 median {:.0} ms, at most {} sessions lost",
        out.args.sessions,
        out.runs.len(),
        out.median_total_seconds,
        out.median_resume_p99_ms,
        out.max_sessions_lost
    );
}
