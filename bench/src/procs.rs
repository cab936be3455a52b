//! The processes a scenario runs (sluice, mosquitto, load-generator and discard-sink
//! children) and what it reads about them from /proc. Every child but mosquitto reports
//! through JSON lines on stdout ([`EventChild`]). Every child is killed when its guard
//! drops, and also when this process dies (PR_SET_PDEATHSIG); Ctrl-C sets a flag that
//! scenario loops check, so the guards run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use serde::Serialize;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Makes Ctrl-C (SIGINT) and SIGTERM set a flag instead of killing the process.
pub fn catch_interrupts() {
    let handler: extern "C" fn(libc::c_int) = on_sigint;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

/// Whether Ctrl-C was pressed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// An error once Ctrl-C was pressed (so `?` unwinds through the guards).
pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps, returning early with an error on Ctrl-C.
pub fn sleep(d: Duration) -> Result<()> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        check_interrupted()?;
        std::thread::sleep(
            until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50)),
        );
    }
    Ok(())
}

/// Spawns `cmd` so that the kernel kills it if this process dies.
pub fn spawn_guarded(cmd: &mut Command) -> std::io::Result<Child> {
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// A process's memory, in bytes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Memory {
    /// /proc/PID/status VmRSS.
    pub vm_rss: u64,
    /// /proc/PID/smaps_rollup Rss.
    pub rss: u64,
    /// /proc/PID/smaps_rollup Pss.
    pub pss: u64,
    /// /proc/PID/smaps_rollup Anonymous.
    pub anonymous: u64,
}

fn kb_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024)
}

/// Reads `pid`'s memory from /proc.
pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    Some(Memory {
        vm_rss: kb_field(&status, "VmRSS:")?,
        rss: kb_field(&rollup, "Rss:")?,
        pss: kb_field(&rollup, "Pss:")?,
        anonymous: kb_field(&rollup, "Anonymous:")?,
    })
}

/// Machine-wide kernel memory that grows with sockets.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct KernelMemory {
    /// /proc/net/sockstat `TCP: inuse`.
    pub tcp_inuse: u64,
    /// /proc/net/sockstat `TCP: mem` (pages) × page size: socket buffers.
    pub tcp_mem_bytes: u64,
    /// /proc/meminfo Slab.
    pub slab_bytes: u64,
    /// /proc/meminfo SUnreclaim.
    pub sunreclaim_bytes: u64,
}

/// Reads /proc/net/sockstat and /proc/meminfo.
pub fn kernel_memory() -> KernelMemory {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let tcp: Vec<&str> = sockstat
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let field = |name: &str| -> u64 {
        tcp.iter()
            .position(|w| *w == name)
            .and_then(|i| tcp.get(i + 1)?.parse().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    KernelMemory {
        tcp_inuse: field("inuse"),
        tcp_mem_bytes: field("mem") * page,
        slab_bytes: kb_field(&meminfo, "Slab:").unwrap_or(0),
        sunreclaim_bytes: kb_field(&meminfo, "SUnreclaim:").unwrap_or(0),
    }
}

/// The `sluice` binary: $SLUICE_BIN if set, else the release binary beside this one or
/// under $CARGO_TARGET_DIR/release.
pub fn sluice_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("SLUICE_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("SLUICE_BIN={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join("sluice"));
        }
    }
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("release").join("sluice"));
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        anyhow!("no sluice binary: run `cargo build --release -p sluice` or set SLUICE_BIN")
    })
}

/// Settings of a sluice process started by a scenario.
#[derive(Debug, Clone)]
pub struct SluiceSettings {
    pub bootstrap: String,
    /// 127.0.0.1:0 for the first process, then the port it got.
    pub listen: SocketAddr,
    pub shards: usize,
    pub receive_maximum: u16,
    /// `kafka."linger.ms"`; None leaves sluice's default (5).
    pub linger_ms: Option<u64>,
    /// `mqtt.sessions_linger_ms`; None leaves sluice's default (and works with a sluice
    /// that predates the key).
    pub sessions_linger_ms: Option<u64>,
    /// `mqtt.delivery_max_wait_ms`; None leaves sluice's default.
    pub delivery_max_wait_ms: Option<u64>,
    /// The route writes records with headers (client id, user properties, content type,
    /// QoS); false: key and value only.
    pub headers: bool,
    /// Also a length-prefixed listener (`framed`: a u32 prefix and a key header, each record
    /// acknowledged), routed to the same Kafka topic with the frame's key.
    pub framed: bool,
    /// Also an HTTP listener (`POST /topics/{topic}`), taking raw WebSocket producers on
    /// the same paths, each message answered with its offset.
    pub http: bool,
}

/// The Kafka topic sluice's MQTT route writes (key = MQTT topic) and its subscriptions
/// read.
pub const MQTT_KAFKA_TOPIC: &str = "mqtt-messages";

fn sluice_config(s: &SluiceSettings) -> String {
    let linger = s
        .linger_ms
        .map_or(String::new(), |ms| format!("\"linger.ms\" = {ms}"));
    let mqtt_keys = [
        ("sessions_linger_ms", s.sessions_linger_ms),
        ("delivery_max_wait_ms", s.delivery_max_wait_ms),
    ];
    let mut mqtt = String::new();
    for (key, value) in mqtt_keys {
        if let Some(v) = value {
            mqtt.push_str(&format!("{key} = {v}\n"));
        }
    }
    let mqtt = if mqtt.is_empty() {
        mqtt
    } else {
        format!("[mqtt]\n{mqtt}")
    };
    let headers = if s.headers {
        r#"["client_id", "user_properties", "content_type", "qos", "message_expiry",
            "response_topic", "correlation_data", "payload_format"]"#
    } else {
        "[]"
    };
    let framed = if s.framed {
        format!(
            r#"
[[listeners]]
name = "framed"
listen = "127.0.0.1:0"
protocol = "stream"
codec = "framed"
codec_settings = {{ prefix = "u32", key = "true" }}
acks = true
backlog = 4096

[[routes]]
listener = "framed"
kafka_topic = "{MQTT_KAFKA_TOPIC}"
key = "{{key}}"
headers = []
"#
        )
    } else {
        String::new()
    };
    let http = if s.http {
        r#"
[[listeners]]
name = "http"
listen = "127.0.0.1:0"
protocol = "http"
topics = ["*"]
backlog = 4096
websocket = { acks = true }
"#
    } else {
        ""
    };
    format!(
        r##"
[server]
shards = {shards}
shutdown_timeout_ms = 5000

[kafka]
"bootstrap.servers" = "{bootstrap}"
{linger}

{mqtt}

[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "mqtt"
listen = "{listen}"
protocol = "mqtt"
backlog = 4096
receive_maximum = {rm}

[[routes]]
listener = "mqtt"
mqtt_topic = "#"
kafka_topic = "{topic}"
key = "{{topic}}"
headers = {headers}
{framed}
{http}
"##,
        topic = MQTT_KAFKA_TOPIC,
        shards = s.shards,
        bootstrap = s.bootstrap,
        listen = s.listen,
        rm = s.receive_maximum,
    )
}

/// A sluice process; killed on drop.
#[derive(Debug)]
pub struct SluiceProc {
    child: EventChild,
    pub mqtt: SocketAddr,
    /// The length-prefixed listener, when the settings asked for one.
    pub framed: Option<SocketAddr>,
    /// The HTTP (and raw WebSocket) listener, when the settings asked for one.
    pub http: Option<SocketAddr>,
    pub admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl SluiceProc {
    /// Starts sluice and waits for its `listening` line.
    pub fn start(settings: &SluiceSettings) -> Result<SluiceProc> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("sluice.toml");
        std::fs::write(&config, sluice_config(settings))?;
        // SLUICE_BENCH_LOG_DIR keeps every sluice process's log (warnings and errors, or what
        // SLUICE_BENCH_SLUICE_LOG asks for) after the run, one file per process; by default
        // it goes away with the run's directory.
        let log_path = match std::env::var_os("SLUICE_BENCH_LOG_DIR") {
            Some(keep) => {
                static STARTED: std::sync::atomic::AtomicUsize =
                    std::sync::atomic::AtomicUsize::new(0);
                let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                PathBuf::from(keep).join(format!("sluice-{}-{n}.log", std::process::id()))
            }
            None => dir.path().join("sluice.log"),
        };
        let log = std::fs::File::create(&log_path)?;
        let mut child = EventChild::spawn(
            "sluice",
            Command::new(sluice_bin()?)
                .arg("--config")
                .arg(&config)
                .env(
                    "SLUICE_LOG",
                    std::env::var("SLUICE_BENCH_SLUICE_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stderr(log),
        )?;
        let line = child
            .wait_event("listening", Instant::now() + Duration::from_secs(60))
            .map_err(|e| {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                e.context(format!("sluice did not start listening:\n{log}"))
            })?;
        let addr = |s: &serde_json::Value| -> Result<SocketAddr> {
            s.as_str()
                .ok_or_else(|| anyhow!("no address in {line}"))?
                .parse()
                .context("an address in sluice's listening line")
        };
        Ok(SluiceProc {
            mqtt: addr(&line["listeners"]["mqtt"])?,
            framed: match &line["listeners"]["framed"] {
                serde_json::Value::Null => None,
                a => Some(addr(a)?),
            },
            http: match &line["listeners"]["http"] {
                serde_json::Value::Null => None,
                a => Some(addr(a)?),
            },
            admin: addr(&line["admin"])?,
            child,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Starts `processes` sluice processes listening on one port (SO_REUSEPORT: the first
    /// gets a free port, the others share it).
    pub fn start_on_one_port(
        bootstrap: &str,
        processes: usize,
        shards: usize,
        sessions_linger_ms: Option<u64>,
    ) -> Result<Vec<SluiceProc>> {
        let mut sluices: Vec<SluiceProc> = Vec::new();
        let mut listen: SocketAddr = ([127, 0, 0, 1], 0).into();
        for _ in 0..processes {
            let s = SluiceProc::start(&SluiceSettings {
                bootstrap: bootstrap.to_owned(),
                listen,
                shards,
                receive_maximum: 1024,
                linger_ms: None,
                sessions_linger_ms,
                delivery_max_wait_ms: None,
                headers: true,
                framed: false,
                http: false,
            })?;
            listen = s.mqtt;
            sluices.push(s);
        }
        Ok(sluices)
    }

    /// A Prometheus metric summed over its label sets (shards, listeners).
    pub fn metric(&self, name: &str) -> Result<u64> {
        Ok(self.metric_f64(name)? as u64)
    }

    /// A metric that the shards copy from their producers once a second
    /// (`sluice_produce_*`), once it has moved past `before` and then held still for
    /// longer than a copy's period, so the copy made after the last change is in it; an
    /// error if that takes over 15 s.
    pub fn settled_metric(&self, name: &str, before: u64) -> Result<u64> {
        const COPY_PERIOD: Duration = Duration::from_millis(1_100);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = self.metric(name)?;
        loop {
            sleep(COPY_PERIOD)?;
            let now = self.metric(name)?;
            if now == last && now > before {
                return Ok(now);
            }
            if Instant::now() > deadline {
                bail!("{name} did not settle above {before} in 15 s (last {last}, now {now})");
            }
            last = now;
        }
    }

    /// [`SluiceProc::metric`] without rounding (sums of seconds).
    pub fn metric_f64(&self, name: &str) -> Result<f64> {
        let body = http_get(self.admin, "/metrics")?;
        Ok(body
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>())
    }
}

/// A child process that reports on stdout as JSON lines with an `event` field (the load
/// generator, the discard sink, sluice's `listening` line); killed on drop, and by the
/// kernel if this process dies.
#[derive(Debug)]
pub struct EventChild {
    child: Child,
    events: mpsc::Receiver<serde_json::Value>,
    name: String,
}

impl EventChild {
    /// Spawns `cmd` with its stdout piped (other lines than JSON objects are skipped).
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<EventChild> {
        let mut child = spawn_guarded(cmd.stdout(Stdio::piped()))
            .with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(EventChild {
            child,
            events,
            name: name.to_owned(),
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's stdin, if it was piped and not taken yet.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Waits for the event named `name` (other events are skipped) until `deadline`.
    pub fn wait_event(&mut self, name: &str, deadline: Instant) -> Result<serde_json::Value> {
        self.wait_event_with(name, deadline, |_| {})
    }

    /// Waits for the event named `name` until `deadline`, handing the other events that
    /// arrive meanwhile to `other`.
    pub fn wait_event_with(
        &mut self,
        name: &str,
        deadline: Instant,
        mut other: impl FnMut(serde_json::Value),
    ) -> Result<serde_json::Value> {
        loop {
            check_interrupted()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("{}: no `{name}` event in time", self.name);
            }
            match self
                .events
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(v) if v["event"] == name => return Ok(v),
                Ok(v) => other(v),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.try_wait().ok().flatten();
                    bail!("{}: exited ({status:?}) before `{name}`", self.name);
                }
            }
        }
    }

    /// The next event that has already arrived, if any.
    pub fn try_event(&mut self) -> Option<serde_json::Value> {
        self.events.try_recv().ok()
    }

    /// The next event that has already arrived, if any; an error once the child has exited
    /// and every event it printed was taken (`awaited` names what was still expected).
    pub fn poll_event(&mut self, awaited: &str) -> Result<Option<serde_json::Value>> {
        match self.events.try_recv() {
            Ok(v) => Ok(Some(v)),
            Err(mpsc::TryRecvError::Empty) => Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => {
                let status = self.child.try_wait().ok().flatten();
                bail!("{}: exited ({status:?}) before `{awaited}`", self.name)
            }
        }
    }

    /// Sends SIGTERM (the child's cue to print its summary and exit).
    pub fn terminate(&self) -> Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).context("a process id")?;
        // SAFETY: kill has no memory-safety preconditions; the pid is our own live child.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            bail!(
                "cannot signal {}: {}",
                self.name,
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Waits for the child to exit (after its last event).
    pub fn wait(&mut self) {
        let _ = self.child.wait();
    }
}

impl Drop for EventChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` from `addr` over HTTP/1.0 and return the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP response from {addr}"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!(
            "GET {path} from {addr}: {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(body.to_owned())
}

/// An MQTT broker the scenarios compare sluice with (no Kafka behind it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum PeerKind {
    /// mosquitto 2.0 (Debian).
    Mosquitto,
    /// rumqttd 0.20 (`cargo install rumqttd --version 0.20.0`), config `rumqttd.toml`.
    Rumqttd,
}

impl PeerKind {
    /// The keepalive its clients must ask for at least (seconds): rumqttd 0.20 closes a
    /// connection whose CONNECT says 0 without a CONNACK.
    pub fn min_keepalive(self) -> u16 {
        match self {
            PeerKind::Mosquitto => 0,
            PeerKind::Rumqttd => 60,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PeerKind::Mosquitto => "mosquitto",
            PeerKind::Rumqttd => "rumqttd",
        }
    }
}

/// A peer broker on a free loopback port; killed on drop.
#[derive(Debug)]
pub struct Peer {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Peer {
    pub fn start(kind: PeerKind) -> Result<Peer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let dir = tempfile::tempdir()?;
        let mut cmd = match kind {
            PeerKind::Mosquitto => {
                let config = dir.path().join("mosquitto.conf");
                std::fs::write(
                    &config,
                    format!(
                        "listener {port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\n\
                         persistence false\nlog_dest none\n"
                    ),
                )?;
                let mut cmd = Command::new("mosquitto");
                cmd.arg("-c").arg(config);
                cmd
            }
            PeerKind::Rumqttd => {
                let config = dir.path().join("rumqttd.toml");
                std::fs::write(
                    &config,
                    include_str!("rumqttd.toml").replace("{port}", &port.to_string()),
                )?;
                let bin = std::env::var_os("RUMQTTD_BIN").unwrap_or_else(|| "rumqttd".into());
                let mut cmd = Command::new(bin);
                cmd.arg("--quiet").arg("--config").arg(config);
                cmd
            }
        };
        let child =
            spawn_guarded(cmd.stdout(Stdio::null()).stderr(Stdio::null())).with_context(|| {
                match kind {
                PeerKind::Mosquitto => "starting mosquitto (apt-get install mosquitto)",
                PeerKind::Rumqttd => {
                    "starting rumqttd (cargo install rumqttd --version 0.20.0, or set RUMQTTD_BIN)"
                }
            }
            })?;
        let mut m = Peer {
            child,
            addr,
            _dir: dir,
        };
        let name = kind.name();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            check_interrupted()?;
            if let Ok(Some(status)) = m.child.try_wait() {
                bail!("{name} exited: {status}");
            }
            if Instant::now() > deadline {
                bail!("{name} did not listen on {addr} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(m)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
