//! The session client: `sluice-bench sessions`, a load-generator child for the `failover`
//! and `storm` scenarios (one glommio thread per process; a scenario runs several processes
//! past ~18k connections, the open-files limit).
//!
//! Each connection is client `{prefix}{index}` from source address 127.0.0.(2 + index %
//! 253): a persistent session (3.1.1 clean session 0, or MQTT 5 session expiry > 0; `--clean`
//! for clean ones) that, with `--subscribe`, subscribes at QoS 1 to its own topic
//! `{prefix}/{index}`. When the server's end goes away the connection reconnects after
//! `--reconnect-delay-ms` plus a per-connection jitter, without subscribing again, and
//! records whether the CONNACK said session present; the subscription working afterwards is
//! checked by the scenario, which publishes one message per session topic and counts what
//! arrives. On the `storm` line (stdin) every connection sends DISCONNECT and reconnects at
//! once. `stop` or the end of stdin closes everything and prints the `report` event.
//!
//! Events (JSON lines on stdout): `ready` once every first handshake succeeded or failed,
//! `progress` every 250 ms (counters), `report` at the end with one [`Record`] per
//! connection.

mod child;
mod client;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use serde::Serialize;

pub use child::SessionGroup;
pub use client::Record;

use crate::loadgen::{event, Gate, MqttVersion};

/// The session client's arguments.
#[derive(Debug, Clone, Args, Serialize)]
pub struct SessionArgs {
    /// The MQTT server.
    #[arg(long)]
    pub addr: std::net::SocketAddr,
    /// Connections (sessions) of this process (≤ ~18k: 20k open files per process).
    #[arg(long, default_value_t = 1000)]
    pub connections: u64,
    /// Number of this process's first connection.
    #[arg(long, default_value_t = 0)]
    pub first_index: u64,
    /// New connections per second at the start (this process).
    #[arg(long, default_value_t = 5000.0)]
    pub connect_rate: f64,
    /// MQTT version of the CONNECTs.
    #[arg(long, value_enum, default_value = "3.1.1")]
    pub mqtt: MqttVersion,
    /// Keepalive in seconds (0: none); these clients never PINGREQ, so keep it longer
    /// than the run.
    #[arg(long, default_value_t = 0)]
    pub keepalive: u16,
    /// Clean sessions instead of persistent ones.
    #[arg(long)]
    pub clean: bool,
    /// Subscribe (QoS 1) to the session's own topic `{prefix}/{index}` after the first CONNACK.
    #[arg(long)]
    pub subscribe: bool,
    /// Client identifier (and topic) prefix.
    #[arg(long, default_value = "s")]
    pub prefix: String,
    /// Milliseconds a connection waits after losing its server before reconnecting.
    #[arg(long, default_value_t = 0)]
    pub reconnect_delay_ms: u64,
    /// Up to this many more milliseconds, spread evenly over the connections.
    #[arg(long, default_value_t = 100)]
    pub reconnect_jitter_ms: u64,
    /// Seconds a connection keeps retrying to reconnect before giving up.
    #[arg(long, default_value_t = 120.0)]
    pub reconnect_deadline: f64,
    /// Seconds a connection keeps retrying its first CONNECT (and SUBSCRIBE) before it
    /// counts as failed, pausing 1 s after the first failure and twice as long after each
    /// next one, up to 8 s, as a real client would (0: one attempt).
    #[arg(long, default_value_t = 0.0)]
    pub setup_deadline: f64,
}

/// Counters of the whole process.
#[derive(Debug, Default)]
pub struct Shared {
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    /// First CONNECTs (or SUBSCRIBEs) that failed and were tried again.
    pub setup_retries: AtomicU64,
    /// Connections whose server went away (counted once each).
    pub lost: AtomicU64,
    /// Of those, reconnected.
    pub resumed: AtomicU64,
    /// Of those, with CONNACK session present = 0.
    pub not_present: AtomicU64,
    /// Connections that stopped retrying.
    pub gave_up: AtomicU64,
    /// Connections that finished their storm reconnect.
    pub stormed: AtomicU64,
    /// PUBLISHes received.
    pub received: AtomicU64,
    storm: AtomicBool,
    stop: AtomicBool,
}

impl Shared {
    fn counters(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "connected": get(&self.connected),
            "failed": get(&self.failed),
            "setup_retries": get(&self.setup_retries),
            "lost": get(&self.lost),
            "resumed": get(&self.resumed),
            "not_present": get(&self.not_present),
            "gave_up": get(&self.gave_up),
            "stormed": get(&self.stormed),
            "received": get(&self.received),
            "wall_ns": crate::loadgen::wall_ns(),
        })
    }
}

/// The MQTT topic of session `index`.
pub fn topic(prefix: &str, index: u64) -> String {
    format!("{prefix}/{index}")
}

/// Runs the session client in this process until `stop` (or the end of stdin).
pub fn run(args: SessionArgs) -> Result<()> {
    if args.connections == 0 || args.connect_rate <= 0.0 {
        bail!("--connections and --connect-rate must be positive");
    }
    let shared = Arc::new(Shared::default());
    {
        let shared = shared.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::stdin().lock().lines() {
                match line.as_deref().map(str::trim) {
                    Ok("storm") => shared.storm.store(true, Ordering::Relaxed),
                    Ok("stop") | Err(_) => break,
                    Ok(_) => {}
                }
            }
            shared.stop.store(true, Ordering::Relaxed);
        });
    }
    let records = Arc::new(Mutex::new(Vec::new()));
    let thread = {
        let (args, shared, records) = (args.clone(), shared.clone(), records.clone());
        glommio::LocalExecutorBuilder::default()
            .name("sessions")
            .spawn(move || async move {
                let out = run_shard(args, shared).await;
                *records.lock().expect("lock") = out;
            })
            .map_err(|e| anyhow::anyhow!("starting the session client: {e}"))?
    };
    let mut ready = false;
    while !shared.stop.load(Ordering::Relaxed) && !crate::procs::interrupted() {
        let c = &shared;
        let done = c.connected.load(Ordering::Relaxed) + c.failed.load(Ordering::Relaxed);
        if !ready && done >= args.connections {
            ready = true;
            event("ready", shared.counters());
        }
        event("progress", shared.counters());
        std::thread::sleep(Duration::from_millis(250));
    }
    shared.stop.store(true, Ordering::Relaxed);
    thread
        .join()
        .map_err(|e| anyhow::anyhow!("the session client panicked: {e:?}"))?;
    let records = std::mem::take(&mut *records.lock().expect("lock"));
    let mut report = shared.counters();
    report["records"] = serde_json::to_value(records)?;
    event("report", report);
    Ok(())
}

async fn run_shard(args: SessionArgs, shared: Arc<Shared>) -> Vec<Record> {
    let n = args.connections as usize;
    let rate = args.connect_rate;
    let ctx = Rc::new(client::ShardCtx {
        args,
        shared: shared.clone(),
        storm: Gate::default(),
        stop: Gate::default(),
        records: std::cell::RefCell::new(vec![Record::default(); n]),
    });
    let watcher = {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            loop {
                if ctx.shared.storm.load(Ordering::Relaxed) {
                    ctx.storm.open();
                }
                if ctx.shared.stop.load(Ordering::Relaxed) {
                    ctx.stop.open();
                    return;
                }
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for local in 0..n {
        if ctx.stop.is_open() {
            break;
        }
        let at = start + Duration::from_secs_f64(local as f64 / rate);
        let now = Instant::now();
        if at > now {
            glommio::timer::sleep(at - now).await;
        }
        tasks.push(glommio::spawn_local(client::run(ctx.clone(), local)));
    }
    for t in tasks {
        t.await;
    }
    watcher.await;
    ctx.records.take()
}
