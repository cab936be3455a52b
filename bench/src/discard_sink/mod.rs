//! The discard sink: **a measurement tool, not a broker.** It speaks just enough of the
//! Kafka wire protocol for a producer (kafka-wire's or librdkafka's) to connect, look up
//! topics, get a producer id and have its Produce requests acknowledged — and it throws the
//! records away. It measures a producer's (or sluice's) own ceiling when the real broker
//! would be the bottleneck. Never use it where correctness is being checked: nothing it
//! acknowledges can be read back.
//!
//! What it answers (`handler.rs`, `answers.rs`; sans-IO): ApiVersions (only the versions
//! it implements), Metadata (one broker, itself; every topic named exists, with
//! `--partitions` partitions, led by itself), InitProducerId (increasing ids, epoch 0), Produce (error 0 for every
//! partition and a base offset that advances by each RecordBatch's record count; acks=0
//! gets no answer), FindCoordinator (itself), CreateTopics (success) and Fetch (no records,
//! at once: librdkafka only produces RecordBatch v2 to a broker that advertises Fetch v4+).
//! Only RecordBatch headers are read; CRCs are not checked. Any other API closes the
//! connection.
//!
//! The driver here is one thread per connection with blocking reads: each read takes as
//! many pipelined requests as have arrived, and their responses go out in order in one
//! write. Counts are printed as a JSON `summary` line on stdout (and a sentence on stderr)
//! at SIGTERM or Ctrl-C; `child.rs` runs the sink as a child process of a scenario.

mod answers;
mod child;
mod handler;
#[cfg(test)]
mod tests;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::{Buf, Bytes, BytesMut};
use clap::Args;
use serde::{Deserialize, Serialize};

pub use child::DiscardSinkProc;
pub use handler::{Counts, SinkState};

use crate::cpu::process_cpu;
use crate::procs;

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 256 * 1024;

/// The `discard-sink` subcommand's arguments.
#[derive(Debug, Clone, Args)]
pub struct DiscardSinkArgs {
    /// Address to listen on (port 0: any free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Partitions of every topic not created with an explicit count.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
}

/// What the sink saw, printed when it stops.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SinkSummary {
    #[serde(flatten)]
    pub counts: Counts,
    pub connections: u64,
    pub elapsed_s: f64,
    /// The sink's own CPU time (user + system, all threads) since it started.
    pub cpu_s: f64,
    pub cpu_ns_per_record: f64,
}

/// Runs the sink until SIGTERM or Ctrl-C, then prints its summary.
pub fn run(args: &DiscardSinkArgs) -> Result<()> {
    if args.partitions < 1 {
        bail!("--partitions must be at least 1");
    }
    procs::catch_interrupts();
    let listener = TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let sink = Arc::new(SinkState::new(args.partitions));
    let start = Instant::now();
    let cpu0 = process_cpu();
    eprintln!(
        "discard sink on {addr}: a MEASUREMENT TOOL, not a broker. It acknowledges Produce \
         requests and discards the records; never use it to check correctness. Topics have \
         {} partitions unless created otherwise.",
        args.partitions
    );
    println!(
        "{}",
        serde_json::json!({ "event": "listening", "tool": "discard-sink", "addr": addr.to_string() })
    );
    std::io::stdout().flush()?;
    let connections = Arc::new(AtomicU64::new(0));
    {
        let sink = sink.clone();
        let connections = connections.clone();
        std::thread::Builder::new()
            .name("sink-accept".into())
            .spawn(move || accept_loop(listener, sink, connections))?;
    }
    while !procs::interrupted() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let counts = sink.counts();
    let cpu = (process_cpu() - cpu0).as_secs_f64();
    let summary = SinkSummary {
        counts,
        connections: connections.load(Ordering::Relaxed),
        elapsed_s: start.elapsed().as_secs_f64(),
        cpu_s: cpu,
        cpu_ns_per_record: if counts.records == 0 {
            0.0
        } else {
            cpu * 1e9 / counts.records as f64
        },
    };
    let mut line = serde_json::to_value(summary)?;
    line["event"] = "summary".into();
    println!("{line}");
    eprintln!(
        "discard sink: discarded {} records ({} bytes in {} batches, {} Produce requests) \
         from {} connections in {:.1} s, using {:.2} s of CPU ({:.0} ns per record)",
        counts.records,
        counts.record_bytes,
        counts.batches,
        counts.produce_requests,
        summary.connections,
        summary.elapsed_s,
        cpu,
        summary.cpu_ns_per_record
    );
    if let Some(why) = sink.first_refusal() {
        eprintln!(
            "discard sink: refused {} partitions of Produce requests; the first because {why}",
            counts.refused_partitions
        );
    }
    Ok(())
}

fn accept_loop(listener: TcpListener, sink: Arc<SinkState>, connections: Arc<AtomicU64>) {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("discard sink: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        connections.fetch_add(1, Ordering::Relaxed);
        let sink = sink.clone();
        let spawned = std::thread::Builder::new()
            .name("sink-conn".into())
            .spawn(move || {
                if let Err(e) = serve(&stream, &sink) {
                    eprintln!("discard sink: closed the connection from {peer}: {e:#}");
                }
            });
        if let Err(e) = spawned {
            eprintln!("discard sink: no thread for the connection from {peer}: {e}");
        }
    }
}

/// Serves one connection until the peer closes it.
fn serve(mut stream: &TcpStream, sink: &SinkState) -> Result<()> {
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?;
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        let n = match stream.read(&mut scratch) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        input.extend_from_slice(&scratch[..n]);
        while let Some(frame) = split_frame(&mut input)? {
            sink.handle(frame, local, &mut out)?;
        }
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
    }
}

/// Takes one whole size-prefixed frame off the front of `buf`, or `None` if it has not all
/// arrived yet (nothing is consumed then).
fn split_frame(buf: &mut BytesMut) -> Result<Option<Bytes>> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let size = match usize::try_from(size) {
        Ok(s) if s <= handler::MAX_REQUEST_BYTES => s,
        _ => bail!(
            "a request frame declares {size} bytes (the limit is {})",
            handler::MAX_REQUEST_BYTES
        ),
    };
    if buf.len() < 4 + size {
        buf.reserve(4 + size - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size).freeze()))
}
