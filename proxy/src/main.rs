//! sluice: the edge proxy between millions of long-lived client connections and Kafka.
//!
//! # Layout
//!
//! - `main`: the command line, configuration loading, signals, starting the shards.
//! - `config`: the TOML configuration, its defaults (`default.toml`) and validation.
//! - `runtime`: the only module that names glommio (shards, sockets, timers).
//! - `shard`: one executor thread's listeners, connections, Kafka client and producer.
//! - `mqtt`: the MQTT connection driver (socket ↔ codec ↔ session ↔ producer).
//! - `http`: the HTTP produce driver (`POST /topics/{topic}`, single records and batches).
//! - `driver`: what the connection drivers share (reads, input buffers, accounting).
//! - `stream`: the record-stream driver (framed, lines, plugged-in record codecs).
//! - `share`: shared subscriptions, as Kafka consumer groups.
//! - `route`: which Kafka topic, key and headers a message gets.
//! - `auth`: MQTT client authentication (password file, JWT) and publish ACLs.
//! - `metrics` and `admin`: Prometheus counters and the admin HTTP listener.
//!
//! docs/architecture.md follows a message from the socket to Kafka's acknowledgement.

mod admin;
mod auth;
mod config;
mod delivery;
mod driver;
mod http;
mod metrics;
mod mqtt;
mod route;
mod runtime;
mod sessions;
mod shard;
mod share;
mod stream;
mod table;
mod transport;
mod ws;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, Subcommand};
use socket2::{Domain, Socket, Type};
use tracing::{error, info};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::shard::ShardSetup;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "The edge proxy between millions of clients and Kafka"
)]
struct Cli {
    /// Configuration file (TOML); without it, the embedded default is used.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Overrides `kafka."bootstrap.servers"`.
    #[arg(long, global = true)]
    bootstrap_server: Option<String>,
    /// Validate the configuration and exit (non-zero, naming the bad key, if invalid).
    #[arg(long)]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the embedded default configuration.
    PrintDefaultConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::PrintDefaultConfig) = cli.command {
        print!("{}", config::DEFAULT_TOML);
        return ExitCode::SUCCESS;
    }
    init_logging();
    let mut config = match &cli.config {
        Some(path) => Config::load(path),
        None => Ok(Config::default_config()),
    }
    .unwrap_or_else(|e| {
        eprintln!("sluice: {e}");
        std::process::exit(2);
    });
    if let Some(servers) = cli.bootstrap_server {
        config.kafka.bootstrap_servers = servers;
        if let Err(e) = config.validate() {
            eprintln!("sluice: {e}");
            return ExitCode::from(2);
        }
    }
    if cli.check {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves a listener address: a port of 0 is replaced by a free port, reserved by a
/// bound (not listening) SO_REUSEPORT socket kept for the life of the process, so every
/// shard can bind the same port.
fn reserve(addr: SocketAddr) -> anyhow::Result<(SocketAddr, Option<Socket>)> {
    if addr.port() != 0 {
        return Ok((addr, None));
    }
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    let bound = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| anyhow::anyhow!("{addr} is not an IP address"))?;
    Ok((bound, Some(socket)))
}

fn run(config: Config) -> anyhow::Result<()> {
    let shards = match config.server.shards {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut reserved = Vec::new();
    let mut addresses = Vec::new();
    for l in &config.listeners {
        let (addr, socket) = reserve(l.listen)?;
        addresses.push(addr);
        reserved.extend(socket);
    }
    let admin = TcpListener::bind(config.admin.listen).map_err(|e| {
        anyhow::anyhow!("cannot listen on admin.listen {}: {e}", config.admin.listen)
    })?;
    let admin_addr = admin.local_addr()?;
    admin.set_nonblocking(true)?;

    let metrics = Metrics::new(
        shards,
        config.listeners.iter().map(|l| l.name.clone()).collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let listening = Arc::new(AtomicUsize::new(0));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    announce_when_listening(
        &config,
        &addresses,
        admin_addr,
        shards,
        listening.clone(),
        stop.clone(),
    );
    let stopped = Arc::new(AtomicUsize::new(0));
    shutdown_watchdog(
        stop.clone(),
        Duration::from_millis(config.server.shutdown_timeout_ms),
    );

    let setup = ShardSetup {
        config: Arc::new(config),
        metrics,
        addresses: Arc::new(addresses),
        admin: Some(Arc::new(Mutex::new(Some(admin)))),
        stop: stop.clone(),
        listening,
        stopped,
    };
    let next_index = Arc::new(AtomicUsize::new(0));
    info!(shards, "starting");
    runtime::run_shards(shards, setup.config.server.pin_cpus, move || {
        let index = next_index.fetch_add(1, Ordering::SeqCst);
        let mut setup = setup.clone();
        if index != 0 {
            setup.admin = None;
        }
        shard::run(index, setup)
    })?;
    drop(reserved);
    info!("stopped");
    Ok(())
}

/// Bounds shutdown: a process still running 5 s after `server.shutdown_timeout_ms` exits
/// with status 1, so supervisors see the overrun instead of a hung process.
fn shutdown_watchdog(stop: Arc<AtomicBool>, deadline: Duration) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(deadline + Duration::from_secs(5));
        error!(?deadline, "shutdown overran its deadline by 5 s; exiting");
        eprintln!("sluice: shutdown overran server.shutdown_timeout_ms by 5 s; exiting");
        std::process::exit(1);
    });
}

/// Prints one JSON line on stdout once every shard listens: the addresses clients (and
/// tests, which ask for port 0) connect to.
fn announce_when_listening(
    config: &Config,
    addresses: &[SocketAddr],
    admin: SocketAddr,
    shards: usize,
    listening: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let listeners: serde_json::Map<String, serde_json::Value> = config
        .listeners
        .iter()
        .zip(addresses)
        .map(|(l, a)| (l.name.clone(), serde_json::Value::String(a.to_string())))
        .collect();
    let line = serde_json::json!({
        "event": "listening",
        "listeners": listeners,
        "admin": admin.to_string(),
        "shards": shards,
    });
    std::thread::spawn(move || {
        while listening.load(Ordering::SeqCst) < shards {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        println!("{line}");
        info!(listeners = %line["listeners"], admin = %admin, "listening");
    });
}
