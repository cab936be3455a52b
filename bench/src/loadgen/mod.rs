//! The load generator: many MQTT client connections (or length-prefixed, `--wire framed`,
//! raw WebSocket, `--wire ws`, or HTTP ones, `--wire http`) from one process,
//! thread-per-core.
//!
//! Each shard (a glommio executor on its own thread) opens its share of the connections at
//! a fixed connect rate, binding each socket to a source address in 127.0.0.2–127.0.0.254
//! before connecting so that more than one address's ~28k ephemeral ports are available.
//! A connection sends CONNECT (clean session), waits for CONNACK, and then holds the
//! connection idle, publishes on an open-loop schedule (`conn.rs`), or subscribes to
//! `--filter` and receives (`subscriber.rs`: delivery latency from the send time stamped
//! in each payload, and an exact per-subscriber loss and duplicate check). A framed
//! connection has no handshake: it publishes length-prefixed records keyed by its topic,
//! and sluice acknowledges each in order once Kafka has it, as a PUBACK would. A WebSocket
//! connection upgrades on `--path` and publishes binary messages, and an HTTP one
//! pipelines a `POST --path` per record; both are answered in order (`records.rs`).
//!
//! Latency is measured from the *scheduled* send time of each PUBLISH to its PUBACK, so a
//! stall on either side shows up in the percentiles instead of silently delaying the
//! schedule (coordinated omission). With `--rate max` the schedule is closed-loop: each
//! connection keeps `--inflight` PUBLISHes outstanding and latency is measured from the
//! actual send.
//!
//! A process reports on stdout as JSON lines: `connected` once every connection has
//! succeeded or failed (subscribers: once every SUBACK is in), `published` once every
//! publishing connection has finished, `received` once subscribers have everything they
//! were told to expect, and `report` at the end. With `--control` it waits for a `go` line
//! on stdin before publishing, takes `expect N0 N1 …` (messages sent per stream) for
//! subscribers, and holds its connections until stdin closes, so a scenario can run several
//! processes in step (`child.rs`). The per-process open-file limit (20k here) caps one
//! process at about 18k connections.

mod child;
mod conn;
mod gate;
mod records;
mod report;
mod subscriber;

use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use codecs::mqtt::ProtocolVersion;
use hdrhistogram::Histogram;
use serde::Serialize;

pub use child::{split, Connected, Group, LoadgenChild};
pub use conn::{next_packet, read_some, start_tcp};
pub use gate::Gate;
pub use report::{histogram_from, histogram_values, LatencySummary, Report};
pub use subscriber::{wall_ns, Stamp};

use crate::cpu::process_cpu;

/// Source addresses cycled through: 127.0.0.2 ..= 127.0.0.254.
const SOURCE_ADDRESSES: u64 = 253;
/// How long a connection may take from connect() to CONNACK.
pub(crate) const CONNACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long publishing connections wait for outstanding PUBACKs after their schedule ends,
/// and subscribers for what they were told to expect.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Subscribers stop waiting for what they expect once nothing arrived for this long.
const STALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a publishing load generator reports its counts.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// What connections do once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
pub enum Mode {
    /// Hold the connection, sending nothing (PINGREQ only if a keepalive is set).
    Idle,
    /// Publish on a schedule, then hold until told to stop.
    Publish,
    /// Subscribe to `--filter` at `--qos` and receive until told to stop.
    Subscribe,
}

/// What the connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
pub enum Wire {
    /// MQTT (`--mqtt` says which version).
    Mqtt,
    /// sluice's length-prefixed records (`codecs::framed`: a u32 prefix and a key header,
    /// each record acknowledged in order); publishers only, every record acknowledged.
    Framed,
    /// Raw WebSocket messages (`--path` names the upgrade's path), each answered in order
    /// with its partition and offset; publishers only, every message acknowledged.
    Ws,
    /// HTTP produce calls: one `POST --path` per record (key in `Sluice-Key`), pipelined
    /// on a keep-alive connection, each answered `200` in order; publishers only.
    Http,
}

impl Wire {
    /// The command-line spelling.
    pub fn arg(self) -> &'static str {
        match self {
            Wire::Mqtt => "mqtt",
            Wire::Framed => "framed",
            Wire::Ws => "ws",
            Wire::Http => "http",
        }
    }
}

/// The MQTT version of the CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
pub enum MqttVersion {
    /// MQTT 3.1.1.
    #[value(name = "3.1.1")]
    V311,
    /// MQTT 5.0.
    #[value(name = "5")]
    V5,
}

impl MqttVersion {
    pub(crate) fn protocol(self) -> ProtocolVersion {
        match self {
            MqttVersion::V311 => ProtocolVersion::V3_1_1,
            MqttVersion::V5 => ProtocolVersion::V5,
        }
    }

    /// The command-line spelling.
    pub fn arg(self) -> &'static str {
        match self {
            MqttVersion::V311 => "3.1.1",
            MqttVersion::V5 => "5",
        }
    }
}

/// An aggregate publish rate: messages per second, or `max` (closed loop).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Rate {
    /// Open loop: this many PUBLISHes per second over all connections.
    PerSecond(f64),
    /// Closed loop: each connection keeps its in-flight window full.
    Max,
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "max" {
            return Ok(Rate::Max);
        }
        match s.parse::<f64>() {
            Ok(r) if r > 0.0 && r.is_finite() => Ok(Rate::PerSecond(r)),
            _ => Err(format!("{s:?} is not a positive rate or `max`")),
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::PerSecond(r) => write!(f, "{r}"),
            Rate::Max => f.write_str("max"),
        }
    }
}

/// The load generator's settings (the `loadgen` subcommand's arguments).
#[derive(Debug, Clone, Args, Serialize)]
pub struct LoadgenArgs {
    /// The MQTT server.
    #[arg(long)]
    pub addr: SocketAddr,
    /// Connections this process opens (≤ ~18k: 20k open files per process).
    #[arg(long, default_value_t = 1000)]
    pub connections: u64,
    /// New connections per second (this process).
    #[arg(long, default_value_t = 5000.0)]
    pub connect_rate: f64,
    /// MQTT version of the CONNECT.
    #[arg(long, value_enum, default_value = "3.1.1")]
    pub mqtt: MqttVersion,
    /// What the connections speak (framed, ws and http: publishers only).
    #[arg(long, value_enum, default_value = "mqtt")]
    pub wire: Wire,
    /// `--wire ws`: the path of the WebSocket upgrade; `--wire http`: of the requests.
    #[arg(long, default_value = "/topics/mqtt-messages")]
    pub path: String,
    /// Keepalive in seconds (0: none). With a keepalive, PINGREQ is sent at half of it.
    #[arg(long, default_value_t = 0)]
    pub keepalive: u16,
    /// Idle or publish.
    #[arg(long, value_enum, default_value = "idle")]
    pub mode: Mode,
    /// Aggregate PUBLISH rate of this process (msgs/s), or `max` for closed loop.
    #[arg(long, default_value = "1000")]
    pub rate: Rate,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// QoS of the PUBLISHes (0 or 1).
    #[arg(long, default_value_t = 1)]
    pub qos: u8,
    /// Payload bytes (the first 8 are the scheduled send time, ns since the Unix epoch).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Most PUBLISHes a connection has in flight (keep ≤ the server's receive maximum).
    #[arg(long, default_value_t = 64)]
    pub inflight: usize,
    /// Executor threads.
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    /// Number of this process's first connection (client ids and source addresses).
    #[arg(long, default_value_t = 0)]
    pub first_index: u64,
    /// Attempts a connection again (up to this many times) when its handshake failed or
    /// timed out; a refusal (CONNACK with an error code) is final. Real clients reconnect;
    /// the report counts the retries.
    #[arg(long, default_value_t = 0)]
    pub connect_retries: u32,
    /// Idle mode without --control: seconds to hold the connections.
    #[arg(long, default_value_t = 0.0)]
    pub hold: f64,
    /// Wait for `go` on stdin before publishing; hold connections until stdin closes.
    #[arg(long)]
    pub control: bool,
    /// Subscribe mode: the topic filter.
    #[arg(long, default_value = "fanout/#")]
    pub filter: String,
}

impl LoadgenArgs {
    /// One subscriber connection to `addr` on `filter` at `qos` (set `connections`,
    /// `connect_rate`, `shards` and `first_index` for the group).
    pub fn subscriber(
        addr: SocketAddr,
        mqtt: MqttVersion,
        qos: u8,
        size: usize,
        filter: &str,
    ) -> LoadgenArgs {
        LoadgenArgs {
            addr,
            connections: 1,
            connect_rate: 1000.0,
            mqtt,
            wire: Wire::Mqtt,
            path: String::new(),
            keepalive: 0,
            mode: Mode::Subscribe,
            rate: Rate::PerSecond(1.0),
            duration: 0.0,
            qos,
            size,
            inflight: 1,
            shards: 1,
            first_index: 0,
            connect_retries: 0,
            hold: 0.0,
            control: true,
            filter: filter.to_owned(),
        }
    }
}

/// Counters shared by all shards of the process.
#[derive(Debug, Default)]
struct Shared {
    connected: AtomicU64,
    failed: AtomicU64,
    /// Connections whose attempt has begun (or that were given up before it began).
    started: AtomicU64,
    /// Handshakes attempted again after a failure or timeout (`--connect-retries`).
    retries: AtomicU64,
    /// Connections that finished publishing (or never will: failed or dropped).
    finished: AtomicU64,
    go: AtomicBool,
    stop: AtomicBool,
    interrupted: AtomicBool,
    /// Wakes the shards' watchers when `go` or `stop` is raised.
    signal: (Mutex<()>, Condvar),
    /// Publishers: PUBLISHes sent and PUBACKs received, all connections (the `progress`
    /// events' counts).
    sent: AtomicU64,
    acked: AtomicU64,
    /// Subscribers: PUBLISHes received, all connections.
    received: AtomicU64,
    /// Subscribers: messages sent per stream (the `expect` line).
    expected: Mutex<Option<Vec<u64>>>,
}

impl Shared {
    /// Sets `flag` (`go` or `stop`) and wakes the shards' watchers.
    fn raise(&self, flag: &AtomicBool) {
        let _guard = self.signal.0.lock().expect("lock");
        flag.store(true, Ordering::Relaxed);
        self.signal.1.notify_all();
    }

    /// Blocks this thread until `done` holds (checked whenever a flag is raised, and every
    /// 100 ms in case of a flag set without [`Self::raise`]).
    fn block_until(&self, done: impl Fn(&Shared) -> bool) {
        let mut guard = self.signal.0.lock().expect("lock");
        while !done(self) {
            guard = self
                .signal
                .1
                .wait_timeout(guard, Duration::from_millis(100))
                .expect("lock")
                .0;
        }
    }
}

/// One shard's results, merged into the report.
#[derive(Debug)]
struct ShardResult {
    stats: report::Stats,
    latency: Histogram<u64>,
    connack: Histogram<u64>,
    delivery: Histogram<u64>,
}

/// An empty latency histogram (nanoseconds, 1 ns to 1 h, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds")
}

/// The source address for connection number `index`.
fn source_ip(index: u64) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (index % SOURCE_ADDRESSES) as u8)
}

pub(crate) fn event(name: &str, fields: serde_json::Value) {
    let mut v = serde_json::json!({ "event": name });
    if let (Some(obj), serde_json::Value::Object(extra)) = (v.as_object_mut(), fields) {
        obj.extend(extra);
    }
    println!("{v}");
}

/// Runs the load generator in this process and prints its events and report on stdout.
pub fn run(args: LoadgenArgs) -> Result<Report> {
    if args.qos > 1 {
        bail!("--qos {} is not supported (0 or 1)", args.qos);
    }
    if args.shards == 0 || args.connections == 0 || args.connect_rate <= 0.0 {
        bail!("--shards, --connections and --connect-rate must be positive");
    }
    if args.size < 8 {
        bail!("--size must be at least 8 (the payload carries a timestamp)");
    }
    if args.wire != Wire::Mqtt && (args.mode != Mode::Publish || args.qos != 1) {
        bail!("--wire framed, ws and http publish only, every record acknowledged (--qos 1)");
    }
    if args.mode == Mode::Subscribe {
        let filter = codecs::mqtt::MqttString::try_from(args.filter.as_str())
            .map_err(|e| anyhow::anyhow!("--filter {:?}: {e}", args.filter))?;
        codecs::mqtt::TopicFilter::new(filter)
            .map_err(|e| anyhow::anyhow!("--filter {:?}: {e}", args.filter))?;
    }
    let shared = Arc::new(Shared::default());
    control_thread(&args, shared.clone());
    let results = Arc::new(Mutex::new(Vec::new()));
    let cpu0 = process_cpu();
    let started = Instant::now();
    let mut threads = Vec::new();
    for shard in 0..args.shards {
        let args = args.clone();
        let shared = shared.clone();
        let results = results.clone();
        let handle = glommio::LocalExecutorBuilder::default()
            .name(&format!("loadgen-{shard}"))
            // No file I/O: glommio's pinned buffer area at its minimum, not 10 MiB a shard
            // (a million connections take ~60 load generators).
            .io_memory(64 << 10)
            // Each idle connection's pending read is a poll request in a kernel hash table
            // with 8 buckets at glommio's default depth (128) and 256 from 4096 on:
            // dropping 17k connections at the end cancels each one by walking its bucket.
            .ring_depth(4096)
            // One blocking thread for the watcher, which holds it until `stop`, and one for
            // pacing the connect schedule (`pace_until`).
            .blocking_thread_pool_placement(glommio::PoolPlacement::Unbound(2))
            .spawn(move || async move {
                let result = run_shard(shard, args, shared).await;
                results.lock().expect("lock").push(result);
            })
            .map_err(|e| anyhow::anyhow!("starting loadgen shard {shard}: {e}"))?;
        threads.push(handle);
    }

    // Bounded waits: every phase has a deadline derived from the settings. Connecting
    // follows the attempts, not the schedule: a load generator starved of CPU falls behind
    // its schedule, and each attempt ends (CONNACK, failure or timeout) within
    // CONNACK_TIMEOUT of its start, so "all attempts ended" comes at most that long after
    // the last one began. The schedule bound only guards against a shard that died.
    let total = args.connections;
    let all_started = || shared.started.load(Ordering::Relaxed) >= total;
    let schedule = Duration::from_secs_f64(total as f64 / args.connect_rate);
    wait_reporting_connects(
        &shared,
        started + 10 * schedule + CONNACK_TIMEOUT,
        all_started,
    );
    let done_connecting = || {
        shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) >= total
    };
    let connect_deadline = Instant::now()
        + CONNACK_TIMEOUT
        + retry_time(args.connect_retries)
        + Duration::from_secs(10);
    wait_reporting_connects(&shared, connect_deadline, done_connecting);
    let connect_secs = started.elapsed().as_secs_f64();
    event(
        "connected",
        serde_json::json!({
            "connected": shared.connected.load(Ordering::Relaxed),
            "failed": shared.failed.load(Ordering::Relaxed),
            "retries": shared.retries.load(Ordering::Relaxed),
            "seconds": connect_secs,
            "rss_bytes": crate::procs::memory(std::process::id()).map(|m| m.vm_rss),
        }),
    );
    if args.control && args.mode == Mode::Publish {
        wait_for(&shared, Instant::now() + Duration::from_secs(3600), || {
            shared.go.load(Ordering::Relaxed) || shared.stop.load(Ordering::Relaxed)
        });
    }
    shared.raise(&shared.go);
    let publish_started = Instant::now();
    if args.mode == Mode::Publish {
        let deadline = Instant::now()
            + Duration::from_secs_f64(args.duration)
            + DRAIN_TIMEOUT
            + Duration::from_secs(10);
        // A `progress` event every PROGRESS_EVERY while publishing: the scenario's
        // throughput over time.
        let mut next = publish_started;
        loop {
            next += PROGRESS_EVERY;
            let done = || shared.finished.load(Ordering::Relaxed) >= total;
            wait_for(&shared, next.min(deadline), done);
            event(
                "progress",
                serde_json::json!({
                    "seconds": publish_started.elapsed().as_secs_f64(),
                    "sent": shared.sent.load(Ordering::Relaxed),
                    "acked": shared.acked.load(Ordering::Relaxed),
                }),
            );
            if done() || Instant::now() >= deadline || shared.interrupted.load(Ordering::Relaxed) {
                break;
            }
        }
        event(
            "published",
            serde_json::json!({ "seconds": publish_started.elapsed().as_secs_f64() }),
        );
    }
    if args.mode == Mode::Subscribe && args.control {
        wait_until_received(&shared);
    }
    if args.control {
        wait_for(&shared, Instant::now() + Duration::from_secs(3600), || {
            shared.stop.load(Ordering::Relaxed)
        });
    } else if args.mode == Mode::Subscribe {
        let until = Instant::now() + Duration::from_secs_f64(args.duration);
        wait_for(&shared, until, || false);
    } else if args.mode == Mode::Idle {
        let until = Instant::now() + Duration::from_secs_f64(args.hold);
        wait_for(&shared, until, || false);
    }
    shared.raise(&shared.stop);
    for t in threads {
        t.join()
            .map_err(|e| anyhow::anyhow!("a loadgen shard panicked: {e:?}"))?;
    }
    let results = std::mem::take(&mut *results.lock().expect("lock"));
    let report = Report::merge(&args, results, connect_secs, process_cpu() - cpu0);
    event("report", serde_json::to_value(&report)?);
    Ok(report)
}

/// The longest time `retries` more attempts of one connection add (each after its backoff).
pub fn retry_time(retries: u32) -> Duration {
    (1..=retries)
        .map(|attempt| conn::RETRY_BACKOFF * attempt + CONNACK_TIMEOUT)
        .sum()
}

/// Waits until about `at` (up to a millisecond early) on the executor's blocking thread.
/// Not with a glommio timer: in the second million-connection run a load generator's
/// shard went to sleep in the middle of its connect schedule with no timer armed (as the
/// timer-polling watcher had in the first), holding 4,147 of its 16,950 connections; the
/// blocking thread's completion wakes the shard through its eventfd.
async fn pace_until(at: Instant) {
    let now = Instant::now();
    if at > now + Duration::from_millis(1) {
        glommio::executor()
            .spawn_blocking(move || std::thread::sleep(at - now))
            .await;
    }
}

fn load(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Relaxed)
}

/// [`wait_for`], printing a `connecting` event (the counts so far) every second.
fn wait_reporting_connects(shared: &Shared, deadline: Instant, done: impl Fn() -> bool) {
    loop {
        let next = (Instant::now() + Duration::from_secs(1)).min(deadline);
        wait_for(shared, next, &done);
        if done() || Instant::now() >= deadline || shared.interrupted.load(Ordering::Relaxed) {
            return;
        }
        event(
            "connecting",
            serde_json::json!({
                "connected": shared.connected.load(Ordering::Relaxed),
                "failed": shared.failed.load(Ordering::Relaxed),
            }),
        );
    }
}

/// Polls `done` every 10 ms until it holds, the deadline passes or the process is
/// interrupted.
fn wait_for(shared: &Shared, deadline: Instant, mut done: impl FnMut() -> bool) {
    while !done() && Instant::now() < deadline && !shared.interrupted.load(Ordering::Relaxed) {
        if crate::procs::interrupted() {
            shared.interrupted.store(true, Ordering::Relaxed);
            shared.raise(&shared.stop);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Subscribers under `--control`: waits for the `expect` line, then until every connected
/// subscriber has received that many messages, nothing arrived for [`STALL_TIMEOUT`], or
/// [`DRAIN_TIMEOUT`] passed; prints the `received` event.
fn wait_until_received(shared: &Shared) {
    let expected = || shared.expected.lock().expect("lock").clone();
    wait_for(shared, Instant::now() + Duration::from_secs(3600), || {
        expected().is_some() || shared.stop.load(Ordering::Relaxed)
    });
    let Some(expected) = expected() else { return };
    let since = Instant::now();
    let want = expected.iter().sum::<u64>() * shared.connected.load(Ordering::Relaxed);
    let mut last = (shared.received.load(Ordering::Relaxed), Instant::now());
    wait_for(shared, since + DRAIN_TIMEOUT, || {
        let got = shared.received.load(Ordering::Relaxed);
        if got != last.0 {
            last = (got, Instant::now());
        }
        got >= want || last.1.elapsed() > STALL_TIMEOUT
    });
    let got = shared.received.load(Ordering::Relaxed);
    event(
        "received",
        serde_json::json!({
            "received": got,
            "expected": want,
            "seconds": since.elapsed().as_secs_f64(),
            "complete": got >= want,
        }),
    );
}

/// With `--control`, a thread reads stdin: `go` starts publishing, `expect N0 N1 …` tells
/// subscribers how many messages each stream was sent, end of input stops.
fn control_thread(args: &LoadgenArgs, shared: Arc<Shared>) {
    if !args.control {
        return;
    }
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) if l.trim() == "go" => shared.raise(&shared.go),
                Ok(l) if l.starts_with("expect") => {
                    let counts = l.split_whitespace().skip(1).map(str::parse).collect();
                    match counts {
                        Ok(counts) => *shared.expected.lock().expect("lock") = Some(counts),
                        Err(e) => eprintln!("loadgen: ignoring {l:?}: {e}"),
                    }
                }
                Ok(l) if l.trim() == "stop" => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        shared.raise(&shared.stop);
    });
}

/// One shard: open this shard's connections at its share of the connect rate, then let
/// them run until the process says stop.
async fn run_shard(shard: usize, args: LoadgenArgs, shared: Arc<Shared>) -> ShardResult {
    let ctx = Rc::new(conn::ShardCtx::new(&args, shared.clone()));
    let go = Gate::default();
    let stop = Gate::default();
    let watcher = {
        let (go, stop, shared) = (go.clone(), stop.clone(), shared.clone());
        glommio::spawn_local(async move {
            // The process's flags are waited for on the executor's blocking thread, whose
            // completion wakes the shard: no timer polls them. A watcher polling every 2 ms
            // cost 59 load generators 30,000 wake-ups a second in the million-connection
            // run, and 48 of them never saw `stop` (their shards slept in io_uring with no
            // timer armed, holding 17k connections each).
            // Bounded by the process's own deadlines: it raises `stop` on every exit path.
            let ex = glommio::executor();
            let s = shared.clone();
            ex.spawn_blocking(move || s.block_until(|s| load(&s.go) || load(&s.stop)))
                .await;
            go.open();
            ex.spawn_blocking(move || shared.block_until(|s| load(&s.stop)))
                .await;
            stop.open();
        })
    };
    let shard_rate = args.connect_rate / args.shards as f64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mine = (shard as u64..args.connections).step_by(args.shards);
    for (k, local) in mine.enumerate() {
        if shared.stop.load(Ordering::Relaxed) {
            shared.started.fetch_add(1, Ordering::Relaxed);
            shared.failed.fetch_add(1, Ordering::Relaxed);
            shared.finished.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        pace_until(start + Duration::from_secs_f64(k as f64 / shard_rate)).await;
        shared.started.fetch_add(1, Ordering::Relaxed);
        let index = args.first_index + local;
        let conn = conn::Conn::new(ctx.clone(), index, local, go.clone(), stop.clone());
        tasks.push(glommio::spawn_local(conn.run()));
    }
    for t in tasks {
        t.await;
    }
    watcher.await;
    let ctx = Rc::try_unwrap(ctx).unwrap_or_else(|_| panic!("connections still hold the shard"));
    ShardResult {
        stats: ctx.stats.into_inner(),
        latency: ctx.latency.into_inner(),
        connack: ctx.connack.into_inner(),
        delivery: ctx.delivery.into_inner(),
    }
}
