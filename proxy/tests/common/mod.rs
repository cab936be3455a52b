//! Starting the sluice binary against a test broker, and the real MQTT clients that talk to
//! it.

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod subscribers;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sluice_tests::ConsumedRecord;

/// A running sluice process, killed on drop.
#[derive(Debug)]
pub struct Sluice {
    child: Child,
    /// The MQTT listener's address.
    pub mqtt: SocketAddr,
    /// The admin listener's address.
    pub admin: SocketAddr,
    /// Every listener's address, by listener name.
    pub listeners: std::collections::BTreeMap<String, SocketAddr>,
    _dir: tempfile::TempDir,
}

/// A config for tests: every port 0, the given broker, two shards.
pub fn config(bootstrap: &str, extra_kafka: &str) -> String {
    format!(
        r##"
[server]
shards = 2
shutdown_timeout_ms = 10000

[kafka]
"bootstrap.servers" = "{bootstrap}"
"request.timeout.ms" = 5000
"delivery.timeout.ms" = 60000
{extra_kafka}

[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "mqtt"
listen = "127.0.0.1:0"
protocol = "mqtt"
receive_maximum = 100

[[routes]]
listener = "mqtt"
mqtt_topic = "#"
kafka_topic = "mqtt-messages"
key = "{{topic}}"
headers = ["client_id", "user_properties", "content_type", "qos"]
"##
    )
}

/// `config` (made by [`config`]) with its MQTT listener on `first`'s port, so that the
/// process shares it with `first` (SO_REUSEPORT: the kernel picks a process per connection).
pub fn on_mqtt_port_of(config: &str, first: &Sluice) -> String {
    config.replace(
        "name = \"mqtt\"\nlisten = \"127.0.0.1:0\"",
        &format!(
            "name = \"mqtt\"\nlisten = \"127.0.0.1:{}\"",
            first.mqtt.port()
        ),
    )
}

/// [`config`] with the route stamping every MQTT 5 property sluice carries through Kafka
/// (as the embedded default config's routes do).
pub fn config_with_mqtt5_headers(bootstrap: &str) -> String {
    config(bootstrap, "").replace(
        r#"headers = ["client_id", "user_properties", "content_type", "qos"]"#,
        r#"headers = ["client_id", "user_properties", "content_type", "qos", "message_expiry",
                      "response_topic", "correlation_data", "payload_format"]"#,
    )
}

/// [`config`] plus an HTTP listener called `http` on port 0 with `listener_keys` added.
pub fn config_with_http(bootstrap: &str, extra_kafka: &str, listener_keys: &str) -> String {
    format!(
        "{}\n[[listeners]]\nname = \"http\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"http\"\n{listener_keys}\n",
        config(bootstrap, extra_kafka)
    )
}

impl Sluice {
    /// Starts sluice with `config` and waits until it listens.
    pub fn start(config: &str) -> Result<Sluice> {
        // `option_env`: this module also serves crates whose binary is another sluice
        // (examples/jsonlines-proxy), which call `start_bin`.
        let bin = option_env!("CARGO_BIN_EXE_sluice").context("no sluice binary here")?;
        Sluice::start_bin(bin, config)
    }

    /// Starts the sluice binary `bin` (sluice itself, or one built on the library) with
    /// `config` and waits until it listens.
    pub fn start_bin(bin: &str, config: &str) -> Result<Sluice> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, config)?;
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(&path)
            .env("SLUICE_LOG", "info,sluice=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting sluice")?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("\"listening\"") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                bail!("sluice did not start listening within 60 s");
            }
        };
        let v: serde_json::Value = serde_json::from_str(&line)?;
        let addr = |s: &serde_json::Value| -> Result<SocketAddr> {
            s.as_str()
                .ok_or_else(|| anyhow!("no address in {line}"))?
                .parse()
                .context("address")
        };
        let listeners = v["listeners"]
            .as_object()
            .ok_or_else(|| anyhow!("no listeners in {line}"))?
            .iter()
            .map(|(name, a)| Ok((name.clone(), addr(a)?)))
            .collect::<Result<_>>()?;
        Ok(Sluice {
            listeners,
            mqtt: addr(&v["listeners"]["mqtt"])?,
            admin: addr(&v["admin"])?,
            child,
            _dir: dir,
        })
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) -> Result<()> {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status()?;
        anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
        Ok(())
    }

    /// Waits up to 30 s for the process to exit and returns its status.
    pub fn wait_exit(&mut self) -> Result<std::process::ExitStatus> {
        let mut status = None;
        sluice_tests::poll_until(Duration::from_secs(30), || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status.ok_or_else(|| anyhow!("sluice did not exit within 30 s"))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in bytes, from /proc.
    pub fn rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no VmRSS in /proc/{}/status", self.child.id()))?;
        Ok(kb * 1024)
    }

    /// GETs an admin path and returns (status, body).
    pub fn admin_get(&self, path: &str) -> Result<(u16, String)> {
        let out = Command::new("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"])
            .arg(format!("http://{}{path}", self.admin))
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text
            .rsplit_once('\n')
            .ok_or_else(|| anyhow!("no status from curl"))?;
        Ok((code.trim().parse()?, body.to_owned()))
    }

    /// The value of a Prometheus counter summed over its label sets.
    pub fn metric(&self, name: &str) -> Result<u64> {
        let (_, body) = self.admin_get("/metrics")?;
        Ok(body
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64)
    }
}

impl Sluice {
    /// A counter summed over the label sets that start with `labels`, e.g.
    /// `metric_where("sluice_connection_errors_total", "kind=\"auth\"")`.
    pub fn metric_where(&self, name: &str, labels: &str) -> Result<u64> {
        let (_, body) = self.admin_get("/metrics")?;
        let prefix = format!("{name}{{{labels}");
        Ok(body
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum())
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// mosquitto_pub against `addr` with extra arguments; returns the child.
pub fn mosquitto_pub(addr: SocketAddr, args: &[&str]) -> Result<Child> {
    Command::new("mosquitto_pub")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("mosquitto_pub (apt-get install mosquitto-clients; tools/install-deps.sh does it)")
}

/// Runs mosquitto_pub to completion, failing on a non-zero exit.
pub fn publish(addr: SocketAddr, args: &[&str], stdin: Option<&str>) -> Result<()> {
    let mut child = mosquitto_pub(addr, args)?;
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input.as_bytes())?;
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "mosquitto_pub {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A client script in tests/clients.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// Runs a client to completion, failing with its output unless it succeeded.
pub fn run(mut cmd: Command, what: &str) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A record header's value.
pub fn header<'a>(r: &'a ConsumedRecord, name: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
}

/// Where tools/install-deps.sh puts MQTT.js.
pub fn node_modules() -> PathBuf {
    let cache = std::env::var_os("SLUICE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/sluice")
        });
    let dir = cache.join("node/node_modules");
    assert!(
        dir.join("mqtt").is_dir(),
        "MQTT.js is not installed in {}; run tools/install-deps.sh",
        dir.display()
    );
    dir
}

/// A client process whose stdout lines arrive as they are printed; killed on drop.
pub struct Lines {
    pub child: Child,
    rx: Receiver<String>,
}

impl Lines {
    pub fn spawn(mut cmd: Command) -> Lines {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("client starts");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines { child, rx }
    }

    /// The next line; `None` once the client closed its output.
    pub fn next(&self, until: Instant, what: &str) -> Option<String> {
        match self
            .rx
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!("timed out waiting for {what}"),
        }
    }

    /// Waits for the client to exit and returns whether it succeeded.
    pub fn wait_success(&mut self, deadline: Duration) -> bool {
        let mut status = None;
        sluice_tests::poll_until(deadline, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status.is_some_and(|s| s.success())
    }
}

impl Lines {
    /// The first line that `pick` accepts within `deadline`; panics without one.
    pub fn find(&self, deadline: Duration, what: &str, pick: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + deadline;
        loop {
            match self.next(until, what) {
                Some(line) if pick(&line) => return line,
                Some(_) => {}
                None => panic!("the client ended before {what}"),
            }
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process that is killed when the guard drops, also when a test fails first.
#[derive(Debug)]
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Guard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}
