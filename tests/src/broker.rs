//! A real Kafka-compatible broker per test: tansu 0.6.0 on a free loopback port.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::chaos::ChaosProxy;
use crate::clients::{home, PyClient, Sasl};
use crate::process::{log_tail, Service};
use crate::tls::{self, ClientAuth, TlsFiles};
use crate::wait::poll_until;

/// How long tansu may take to answer its first ApiVersions (it usually needs about 1 s).
const START_DEADLINE: Duration = Duration::from_secs(15);
/// The sqlite engine creates its schema first.
const SQLITE_START_DEADLINE: Duration = Duration::from_secs(30);
const USER_CREATE_DEADLINE: Duration = Duration::from_secs(30);
/// Attempts when another process takes a port between our picking and tansu's binding.
const PORT_ATTEMPTS: usize = 5;
/// Log lines printed when a test panics or a start fails.
const LOG_LINES: usize = 200;
/// The SCRAM mechanism [`Broker::kafka`] uses (tansu's `user create` default).
const DEFAULT_SCRAM: &str = "SCRAM-SHA-512";

/// A SASL SCRAM user created in the broker (for both SCRAM-SHA-256 and SCRAM-SHA-512).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramUser {
    pub name: String,
    pub password: String,
}

/// What kind of tansu to start; [`Broker::start`], [`Broker::start_sqlite_scram`] and
/// [`Broker::start_behind_tls`] are shortcuts for the usual ones.
#[derive(Debug, Clone, Default)]
pub struct BrokerBuilder {
    sqlite: bool,
    users: Vec<ScramUser>,
    tls: Option<ClientAuth>,
    relay: Option<Relay>,
}

/// The [`ChaosProxy`] a broker advertises, and the slot where its upstream goes.
#[derive(Debug, Clone)]
struct Relay {
    addr: SocketAddr,
    upstream: Arc<Mutex<Option<SocketAddr>>>,
}

impl BrokerBuilder {
    /// Use the (slow, durable) sqlite engine instead of memory.
    pub fn sqlite(mut self) -> Self {
        self.sqlite = true;
        self
    }

    /// Require SASL SCRAM and create these users (implies sqlite: tansu keeps credentials
    /// only there).
    pub fn scram_users(mut self, users: &[(&str, &str)]) -> Self {
        self.sqlite = true;
        self.users = users
            .iter()
            .map(|(name, password)| ScramUser {
                name: (*name).to_owned(),
                password: (*password).to_owned(),
            })
            .collect();
        self
    }

    /// Put a stunnel4 TLS terminator in front and advertise its address.
    pub fn tls(mut self, client_auth: ClientAuth) -> Self {
        self.tls = Some(client_auth);
        self
    }

    /// Advertise `relay`'s address, so every client connection goes through it, and point
    /// the relay at tansu once it listens. Not combinable with [`BrokerBuilder::tls`].
    pub fn behind(mut self, relay: &ChaosProxy) -> Self {
        self.relay = Some(Relay {
            addr: relay.addr(),
            upstream: relay.upstream_slot(),
        });
        self
    }

    pub fn start(self) -> Result<Broker> {
        if self.tls.is_some() && self.relay.is_some() {
            bail!("a test broker can be behind a TLS front or a ChaosProxy, not both");
        }
        let bin = tansu_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("sluice-tansu-")
            .tempdir()
            .context("cannot create a temporary directory for tansu")?;
        let tls = self
            .tls
            .map(|client_auth| tls::write_files(dir.path(), client_auth))
            .transpose()
            .context("cannot generate TLS certificates")?;
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let listen = loopback(free_port()?);
            let advertised = match (&tls, &self.relay) {
                (Some(_), _) => loopback(free_port()?),
                (None, Some(relay)) => relay.addr,
                (None, None) => listen,
            };
            match self.try_start(&bin, dir.path(), tls.as_ref(), listen, advertised) {
                Ok((tansu, stunnel)) => {
                    if let Some(relay) = &self.relay {
                        *relay.upstream.lock().unwrap_or_else(|e| e.into_inner()) = Some(listen);
                    }
                    return Ok(Broker {
                        stunnel,
                        tansu,
                        bin,
                        listen,
                        advertised,
                        args: tansu_args(
                            listen,
                            advertised,
                            self.storage(),
                            !self.users.is_empty(),
                        ),
                        tls,
                        users: self.users,
                        dir,
                    });
                }
                Err(StartError::PortTaken(e)) => last = Some(e),
                Err(StartError::Failed(e)) => return Err(e),
            }
            // Lost a race for a port: start over on fresh ones with a fresh database.
            remove_databases(dir.path());
        }
        Err(last.expect("at least one attempt").context(format!(
            "tansu could not bind a free port in {PORT_ATTEMPTS} attempts"
        )))
    }

    fn storage(&self) -> &'static str {
        if self.sqlite {
            // Relative to tansu's working directory, the broker's temporary directory.
            "sqlite://tansu.db"
        } else {
            "memory://tansu/"
        }
    }

    fn try_start(
        &self,
        bin: &Path,
        dir: &Path,
        tls: Option<&TlsFiles>,
        listen: SocketAddr,
        advertised: SocketAddr,
    ) -> Result<(Service, Option<Service>), StartError> {
        let deadline = if self.sqlite {
            SQLITE_START_DEADLINE
        } else {
            START_DEADLINE
        };
        if !self.users.is_empty() {
            // Credentials can only be written while authentication is off.
            let args = tansu_args(listen, advertised, self.storage(), false);
            let mut setup = spawn_tansu(bin, dir, &args, "without authentication, to create users")
                .map_err(StartError::Failed)?;
            wait_ready(&mut setup, listen, deadline)?;
            create_users(bin, dir, listen, &self.users).map_err(StartError::Failed)?;
            setup.signal(Signal::SIGTERM).map_err(StartError::Failed)?;
            if setup.wait_exit(Duration::from_secs(15)).is_none() {
                return Err(StartError::Failed(anyhow!(
                    "tansu (user setup) did not exit within 15 s of SIGTERM; {}:\n{}",
                    setup.log_path().display(),
                    setup.log_tail(LOG_LINES)
                )));
            }
        }
        let args = tansu_args(listen, advertised, self.storage(), !self.users.is_empty());
        let mut tansu = spawn_tansu(bin, dir, &args, "").map_err(StartError::Failed)?;
        tansu.set_drop_signal(Signal::SIGINT);
        wait_ready(&mut tansu, listen, deadline)?;
        let stunnel = match tls {
            Some(files) => Some(tls::start_stunnel(dir, files, advertised, listen)?),
            None => None,
        };
        Ok((tansu, stunnel))
    }
}

/// A tansu broker process for one test, on `127.0.0.1` and a free port, with its own
/// temporary directory (log, database, certificates). Dropping it stops the processes
/// (tansu gets SIGINT, which unlike SIGTERM doesn't wait 5 s for open connections; SIGKILL
/// after 5 s) and removes the directory; if the test is panicking, the logs are printed first.
#[derive(Debug)]
pub struct Broker {
    // Fields drop in order: the TLS front, then tansu, then the directory.
    stunnel: Option<Service>,
    tansu: Service,
    bin: PathBuf,
    listen: SocketAddr,
    advertised: SocketAddr,
    args: Vec<OsString>,
    tls: Option<TlsFiles>,
    users: Vec<ScramUser>,
    dir: TempDir,
}

impl Broker {
    /// tansu in memory, plaintext, no authentication.
    pub fn start() -> Result<Broker> {
        Self::builder().start()
    }

    /// tansu on the sqlite engine requiring SASL SCRAM (SHA-256 or SHA-512) from `users`.
    pub fn start_sqlite_scram(users: &[(&str, &str)]) -> Result<Broker> {
        Self::builder().scram_users(users).start()
    }

    /// tansu in memory behind a stunnel4 TLS terminator; [`Broker::bootstrap`] is the TLS
    /// address and [`Broker::tls`] has the CA, server and (with [`ClientAuth::Required`])
    /// client certificates.
    pub fn start_behind_tls(client_auth: ClientAuth) -> Result<Broker> {
        Self::builder().tls(client_auth).start()
    }

    pub fn builder() -> BrokerBuilder {
        BrokerBuilder::default()
    }

    /// `host:port` for clients: tansu's own address, or the TLS front's, or the relay's.
    pub fn bootstrap(&self) -> String {
        self.advertised.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.advertised
    }

    /// Where tansu itself listens (plaintext). Equal to [`Broker::addr`] without TLS.
    pub fn tansu_addr(&self) -> SocketAddr {
        self.listen
    }

    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    pub fn scram_users(&self) -> &[ScramUser] {
        &self.users
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> &Path {
        self.tansu.log_path()
    }

    pub fn pid(&self) -> u32 {
        self.tansu.pid()
    }

    /// An independent client (confluent-kafka) set up for this broker: trusting its CA and
    /// presenting the client certificate if TLS, and as the first SCRAM user with
    /// SCRAM-SHA-512 if SASL.
    pub fn kafka(&self) -> PyClient {
        let mut client = PyClient::new(&self.bootstrap());
        if let Some(tls) = &self.tls {
            client = client.tls(&tls.ca_cert, tls.client_identity());
        }
        if let Some(user) = self.users.first() {
            client = client.sasl(Some(Sasl::new(DEFAULT_SCRAM, &user.name, &user.password)));
        }
        client
    }

    /// Freezes tansu (SIGSTOP): connections stay open, nothing is answered.
    ///
    /// Returns once every thread of the broker has stopped: SIGSTOP is asynchronous, and a
    /// thread still running could otherwise answer a request sent right after this call.
    pub fn pause(&mut self) -> Result<()> {
        self.tansu.signal(Signal::SIGSTOP)?;
        let pid = self.pid();
        let stopped = poll_until(Duration::from_secs(10), || all_threads_stopped(pid));
        anyhow::ensure!(
            stopped,
            "tansu (pid {pid}) did not stop within 10 s of SIGSTOP"
        );
        Ok(())
    }

    /// Lets a paused tansu run again (SIGCONT).
    pub fn resume(&mut self) -> Result<()> {
        self.tansu.signal(Signal::SIGCONT)
    }

    pub fn is_running(&mut self) -> bool {
        self.tansu.exit_status().is_none()
    }

    /// Stops tansu (and the TLS front) gracefully with SIGTERM; tansu waits up to 5 s for
    /// open connections. Dropping afterwards only removes the directory.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(stunnel) = &mut self.stunnel {
            stunnel.stop_with(Signal::SIGTERM);
        }
        let status = self.tansu.stop_with(Signal::SIGTERM);
        if !status.success() && status.code().is_some() {
            bail!(
                "tansu exited with {status}; {}:\n{}",
                self.log_path().display(),
                self.tansu.log_tail(LOG_LINES)
            );
        }
        Ok(())
    }

    /// Stops tansu and starts it again on the same port (the TLS front keeps running).
    /// In memory every topic is gone afterwards; with sqlite they stay.
    pub fn restart(&mut self) -> Result<()> {
        self.tansu.stop_with(Signal::SIGTERM);
        let mut tansu = spawn_tansu(&self.bin, self.dir.path(), &self.args, "again")?;
        tansu.set_drop_signal(Signal::SIGINT);
        let deadline = if self
            .args
            .iter()
            .any(|a| a.to_string_lossy().starts_with("sqlite:"))
        {
            SQLITE_START_DEADLINE
        } else {
            START_DEADLINE
        };
        match wait_ready(&mut tansu, self.listen, deadline) {
            Ok(()) => {
                self.tansu = tansu;
                Ok(())
            }
            Err(StartError::PortTaken(e)) => Err(e.context(format!(
                "another process took {} while tansu restarted",
                self.listen
            ))),
            Err(StartError::Failed(e)) => Err(e),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- tansu log ({}) ---\n{}--- end of tansu log ---",
                self.tansu.log_path().display(),
                self.tansu.log_tail(LOG_LINES)
            );
            if let Some(stunnel) = &self.stunnel {
                eprintln!(
                    "--- stunnel log ({}) ---\n{}--- end of stunnel log ---",
                    stunnel.log_path().display(),
                    stunnel.log_tail(LOG_LINES)
                );
            }
        }
    }
}

/// Why one attempt to start failed: a lost race for a port is retried on fresh ports.
#[derive(Debug)]
pub(crate) enum StartError {
    PortTaken(anyhow::Error),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(e: anyhow::Error) -> Self {
        StartError::Failed(e)
    }
}

pub(crate) fn port_taken(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("AddrInUse")
}

/// The tansu binary: `$TANSU_BIN`, else `~/.cargo/bin/tansu` (or `$CARGO_HOME/bin/tansu`),
/// else `tansu` on `PATH`.
pub fn tansu_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("TANSU_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!(
                "TANSU_BIN={} does not exist: unset it or run tools/install-deps.sh",
                bin.display()
            );
        }
        return Ok(bin);
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cargo"));
    let installed = cargo_home.join("bin").join("tansu");
    if installed.is_file() {
        return Ok(installed);
    }
    find_binary(&["tansu"]).context(
        "the tansu broker is not installed ($TANSU_BIN unset, no ~/.cargo/bin/tansu, none on PATH): \
         run tools/install-deps.sh",
    )
}

pub(crate) fn find_binary(names: &[&str]) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!("none of {names:?} is on PATH")
}

fn tansu_args(
    listen: SocketAddr,
    advertised: SocketAddr,
    storage: &str,
    auth: bool,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "broker".into(),
        "--listener-url".into(),
        format!("tcp://{listen}").into(),
        "--advertised-listener-url".into(),
        format!("tcp://{advertised}").into(),
        "--storage-engine".into(),
        storage.into(),
    ];
    if auth {
        args.push("--authentication".into());
    }
    args
}

fn spawn_tansu(bin: &Path, dir: &Path, args: &[OsString], why: &str) -> Result<Service> {
    let log = dir.join("tansu.log");
    let banner = format!(
        "=== sluice-tests: starting {} {} {why} ===\n",
        bin.display(),
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(banner.as_bytes()))
        .with_context(|| format!("cannot write {}", log.display()))?;
    let mut cmd = Command::new(bin);
    cmd.args(args)
        // tansu reads a .env from its working directory (dotenv): keep it in ours.
        .current_dir(dir)
        // Not sluice's log filter: tansu would log every request.
        .env_remove("RUST_LOG");
    if let Some(filter) = std::env::var_os("SLUICE_TANSU_LOG") {
        cmd.env("RUST_LOG", filter);
    }
    Service::spawn("tansu", cmd, &log)
}

/// Waits until this tansu printed "ready in" (it has bound the port: not someone else's
/// listener) and answers ApiVersions there.
fn wait_ready(tansu: &mut Service, addr: SocketAddr, deadline: Duration) -> Result<(), StartError> {
    let mut last_probe = None;
    let ready = poll_until(deadline, || {
        if tansu.exit_status().is_some() || !tansu.new_output().contains("ready in") {
            return tansu.exit_status().is_some();
        }
        match api_versions(addr) {
            Ok(()) => true,
            Err(e) => {
                last_probe = Some(e);
                false
            }
        }
    });
    if let Some(status) = tansu.exit_status() {
        let why = anyhow!(
            "tansu exited ({status}) before answering on {addr}; {}:\n{}",
            tansu.log_path().display(),
            tansu.log_tail(LOG_LINES)
        );
        return Err(if port_taken(&tansu.new_output()) {
            StartError::PortTaken(why)
        } else {
            StartError::Failed(why)
        });
    }
    if !ready {
        let probe = last_probe.map_or_else(
            || "it never printed \"ready in\"".to_owned(),
            |e| format!("{e:#}"),
        );
        return Err(StartError::Failed(anyhow!(
            "tansu did not answer ApiVersions on {addr} within {deadline:?} ({probe}); {}:\n{}",
            tansu.log_path().display(),
            tansu.log_tail(LOG_LINES)
        )));
    }
    Ok(())
}

/// One ApiVersions v0 round trip on a fresh connection, encoded by hand so the harness
/// depends on no Kafka client.
fn api_versions(addr: SocketAddr) -> Result<()> {
    const CORRELATION_ID: i32 = 0x5eed;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let client_id = b"sluice-tests";
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes()); // api_key: ApiVersions
    body.extend_from_slice(&0i16.to_be_bytes()); // api_version
    body.extend_from_slice(&CORRELATION_ID.to_be_bytes());
    body.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    body.extend_from_slice(client_id);
    let mut request = (body.len() as i32).to_be_bytes().to_vec();
    request.extend_from_slice(&body);
    stream.write_all(&request)?;

    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .context("no ApiVersions response")?;
    let len = i32::from_be_bytes(len);
    if !(6..=1 << 20).contains(&len) {
        bail!("ApiVersions response of implausible size {len}");
    }
    let mut response = vec![0u8; len as usize];
    stream.read_exact(&mut response)?;
    let correlation = i32::from_be_bytes(response[0..4].try_into()?);
    let error_code = i16::from_be_bytes(response[4..6].try_into()?);
    if correlation != CORRELATION_ID {
        bail!("ApiVersions response has correlation id {correlation}, sent {CORRELATION_ID}");
    }
    if error_code != 0 {
        bail!("ApiVersions answered error code {error_code}");
    }
    Ok(())
}

fn create_users(bin: &Path, dir: &Path, addr: SocketAddr, users: &[ScramUser]) -> Result<()> {
    let log = dir.join("tansu-user.log");
    for user in users {
        for mechanism in ["scram256", "scram512"] {
            let mut cmd = Command::new(bin);
            cmd.args(["user", "create", "--broker"])
                .arg(format!("tcp://{addr}"))
                .args(["--mechanism", mechanism, "--"])
                .args([&user.name, &user.password])
                .current_dir(dir)
                .env_remove("RUST_LOG");
            let mut create = Service::spawn("tansu user create", cmd, &log)?;
            match create.wait_exit(USER_CREATE_DEADLINE) {
                Some(status) if status.success() => {}
                Some(status) => bail!(
                    "`tansu user create {}` ({mechanism}) failed ({status}); {}:\n{}",
                    user.name,
                    log.display(),
                    log_tail(&log, 50)
                ),
                None => bail!(
                    "`tansu user create {}` ({mechanism}) did not finish within {USER_CREATE_DEADLINE:?}; {}:\n{}",
                    user.name,
                    log.display(),
                    log_tail(&log, 50)
                ),
            }
        }
    }
    Ok(())
}

fn remove_databases(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("tansu.db") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A port the kernel just had free on 127.0.0.1, never the same twice in this process (the
/// kernel may hand a released port out again, e.g. to a test running in parallel).
fn free_port() -> Result<u16> {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot bind 127.0.0.1:0")?
            .port();
        if HANDED_OUT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port)
        {
            return Ok(port);
        }
    }
    bail!("the kernel keeps handing out ports this process already used")
}

/// Whether every thread of `pid` is in the stopped state ('T' in /proc).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|stat| {
                let rest = &stat[stat.rfind(')')? + 2..];
                rest.chars().next()
            })
            .is_some_and(|state| state == 'T' || state == 't')
    })
}
