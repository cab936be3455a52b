//! sluice: the edge proxy between millions of long-lived client connections and Kafka.
//!
//! The `sluice` binary is this library's [`Sluice::builder`] run from the command line.
//! A binary of your own adds record codecs to it, so that `stream` listeners can name them
//! in the config, without touching sluice's internals (docs/codecs.md, "Writing your own
//! codec"):
//!
//! ```ignore
//! // The whole main.rs of a binary that adds the example `jsonlines` codec
//! // (examples/jsonlines-proxy in sluice's repository).
//! fn main() -> std::process::ExitCode {
//!     sluice::Sluice::builder()
//!         .codec(sluice_codec_jsonlines::JsonLinesFactory)
//!         .run_from_args()
//! }
//! ```
//!
//! Everything else is private: the public surface is [`Sluice`], [`Builder`], the
//! allocator of the `sluice` binary (`alloc`, with the default `mimalloc` feature), and
//! the codec traits of the `sluice-codecs` crate ([`codecs::registry`]).
//!
//! # Layout
//!
//! - `lib`: the command line, configuration loading, signals, starting the shards.
//! - `config`: the TOML configuration, its defaults (`default.toml`) and validation.
//! - `runtime`: the only module that names glommio (shards, sockets, timers).
//! - `shard`: one executor thread's listeners, connections, Kafka client and producer.
//! - `stop`: shutdown as an event each shard and the watchdog wait for (signals, or a
//!   shard that cannot start).
//! - `mqtt`: the MQTT connection driver (socket ↔ codec ↔ session ↔ producer).
//! - `http`: the HTTP produce driver (`POST /topics/{topic}`, single records and batches).
//! - `driver`: what the connection drivers share (reads, input buffers, accounting).
//! - `park`: idle connections parked without a task, woken by epoll, wakers or deadlines.
//! - `stream`: the record-stream driver (framed, lines, plugged-in record codecs).
//! - `delivery`: Kafka → MQTT subscribers: the process's one reader of the delivery
//!   topics, each shard's subscription index and mailboxes, PUBLISH encoded per variant.
//! - `per_shard`: the shard ends of a process-wide reader's channels.
//! - `share`: shared subscriptions, as Kafka consumer groups.
//! - `route`: which Kafka topic, key and headers a message gets.
//! - `auth`: client authentication (password file, JWT, TLS client certificates) and ACLs.
//! - `metrics` and `admin`: Prometheus counters and the admin HTTP listener.
//! - `alloc`: the global allocator of the `sluice` binary (mimalloc).
//!
//! docs/architecture.md follows a message from the socket to Kafka's acknowledgement.

mod admin;
pub mod alloc;
mod auth;
mod config;
mod delivery;
mod driver;
mod http;
mod metrics;
mod mqtt;
mod park;
mod per_shard;
mod route;
mod runtime;
mod sessions;
mod shard;
mod share;
mod stop;
mod stream;
mod transport;
mod ws;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, Subcommand};
use codecs::registry::{CodecFactory, CodecRegistry, RegistryError};
use socket2::{Domain, Socket, Type};
use tracing::{error, info};

use crate::config::Config;
use crate::delivery::DeliveryFeed;
use crate::metrics::Metrics;
use crate::sessions::SessionFeed;
use crate::shard::ShardSetup;

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

/// A sluice process to run: the built-in protocols plus the record codecs added with
/// [`Builder::codec`].
#[derive(Debug)]
pub struct Sluice {
    codecs: CodecRegistry,
}

impl Sluice {
    /// Starts describing a sluice process; [`Builder::run_from_args`] runs it.
    pub fn builder() -> Builder {
        Builder {
            codecs: CodecRegistry::with_builtins(),
            refused: None,
        }
    }

    /// Reads the command line (`--config`, `--check`, `--bootstrap-server`,
    /// `print-default-config`), loads and validates the configuration, and runs until
    /// SIGTERM or SIGINT. The exit code is 2 for a bad configuration, 1 for a failure.
    pub fn run_from_args(self) -> ExitCode {
        let cli = Cli::parse();
        if let Some(Command::PrintDefaultConfig) = cli.command {
            print!("{}", config::DEFAULT_TOML);
            return ExitCode::SUCCESS;
        }
        init_logging();
        let mut config = match &cli.config {
            Some(path) => Config::load_with(path, &self.codecs),
            None => Ok(Config::default_config()),
        };
        if let (Ok(config), Some(servers)) = (&mut config, cli.bootstrap_server) {
            config.kafka.bootstrap_servers = servers;
        }
        let config = match config.and_then(|c| c.validate_with(&self.codecs).map(|()| c)) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("sluice: {e}");
                return ExitCode::from(2);
            }
        };
        if cli.check {
            println!("configuration OK");
            return ExitCode::SUCCESS;
        }
        match run(config, Arc::new(self.codecs)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("{e:#}");
                eprintln!("sluice: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Builds a [`Sluice`] with more record codecs.
#[derive(Debug)]
pub struct Builder {
    codecs: CodecRegistry,
    /// The first registration that failed (a name taken twice), reported by `build`.
    refused: Option<RegistryError>,
}

impl Builder {
    /// Adds a record codec, which `stream` listeners then name in the config
    /// (`codec = "..."`, with `codec_settings`) like the built-in `framed` and `lines`.
    pub fn codec(mut self, factory: impl CodecFactory + 'static) -> Builder {
        if let Err(e) = self.codecs.register(Box::new(factory)) {
            self.refused.get_or_insert(e);
        }
        self
    }

    /// The process to run, or the first codec that could not be added.
    pub fn build(self) -> Result<Sluice, RegistryError> {
        match self.refused {
            None => Ok(Sluice {
                codecs: self.codecs,
            }),
            Some(e) => Err(e),
        }
    }

    /// [`Builder::build`] and [`Sluice::run_from_args`]: the whole `main` of a binary.
    pub fn run_from_args(self) -> ExitCode {
        match self.build() {
            Ok(sluice) => sluice.run_from_args(),
            Err(e) => {
                eprintln!("sluice: {e}");
                ExitCode::from(2)
            }
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

fn run(config: Config, codecs: Arc<CodecRegistry>) -> anyhow::Result<()> {
    runtime::allow_huge_pages(config.server.transparent_huge_pages);
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
    let stop = stop::Stop::new(shards)?;
    let listening = Arc::new(AtomicUsize::new(0));
    announce_when_listening(
        &config,
        &addresses,
        admin_addr,
        shards,
        listening.clone(),
        stop.flag().clone(),
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
        codecs,
        session_feed: SessionFeed::new(shards),
        delivery_feed: DeliveryFeed::new(shards),
        stop: stop.clone(),
        listening,
        stopped,
    };
    let next_index = Arc::new(AtomicUsize::new(0));
    info!(shards, "starting");
    let server = &setup.config.server;
    runtime::run_shards(shards, server.pin_cpus, server.io_uring_depth, move || {
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
fn shutdown_watchdog(stop: Arc<stop::Stop>, deadline: Duration) {
    std::thread::spawn(move || {
        stop.wait_blocking();
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

#[cfg(test)]
mod tests {
    use codecs::registry::{LinesFactory, RegistryError};

    use super::Sluice;

    #[test]
    fn a_codec_name_can_be_taken_once() {
        // `lines` is built in: adding it again is refused when the process is built.
        let err = Sluice::builder().codec(LinesFactory).build().unwrap_err();
        assert!(
            matches!(&err, RegistryError::Duplicate { name } if name == "lines"),
            "{err}"
        );
        assert!(Sluice::builder().build().is_ok());
    }
}
