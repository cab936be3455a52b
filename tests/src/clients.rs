//! Independent Kafka clients: the Python scripts in `tools/kafka/`, run with the venv's
//! Python. They are what checks sluice: if sluice wrote it, librdkafka or kafka-python must
//! read it back; if they wrote it, sluice must read it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::tools_dir;

/// Extra time a script gets beyond its own `--timeout` before the harness kills it.
const SCRIPT_GRACE: Duration = Duration::from_secs(20);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The venv's Python: `$SLUICE_VENV/bin/python`, else
/// `${SLUICE_CACHE:-~/.cache/sluice}/venv/bin/python` (what tools/install-deps.sh creates).
pub fn python() -> PathBuf {
    let venv = match std::env::var_os("SLUICE_VENV") {
        Some(venv) => PathBuf::from(venv),
        None => {
            let cache = std::env::var_os("SLUICE_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| home().join(".cache").join("sluice"));
            cache.join("venv")
        }
    };
    venv.join("bin").join("python")
}

pub(crate) fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// Which independent client library a [`PyClient`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientLib {
    /// confluent-kafka, i.e. librdkafka (the default).
    #[default]
    ConfluentKafka,
    /// kafka-python, a pure-Python implementation of the protocol.
    KafkaPython,
}

impl ClientLib {
    fn arg(self) -> &'static str {
        match self {
            ClientLib::ConfluentKafka => "confluent-kafka",
            ClientLib::KafkaPython => "kafka-python",
        }
    }
}

/// SASL credentials, e.g. `Sasl::new("SCRAM-SHA-512", "alice", "secret")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sasl {
    pub mechanism: String,
    pub username: String,
    pub password: String,
}

impl Sasl {
    pub fn new(mechanism: &str, username: &str, password: &str) -> Self {
        Self {
            mechanism: mechanism.to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ClientTls {
    ca: PathBuf,
    identity: Option<(PathBuf, PathBuf)>,
}

/// One record as an independent consumer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Milliseconds since the epoch; `None` when the client reported no timestamp.
    pub timestamp: Option<i64>,
}

/// One record for an independent producer to write.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProduceRecord {
    /// `None` lets the client's partitioner choose.
    pub partition: Option<i32>,
    #[serde(serialize_with = "ser_b64")]
    pub key: Option<Vec<u8>>,
    #[serde(serialize_with = "ser_b64")]
    pub value: Option<Vec<u8>>,
    #[serde(serialize_with = "ser_headers")]
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Milliseconds since the epoch; `None` lets the client stamp it.
    pub timestamp: Option<i64>,
}

impl ProduceRecord {
    pub fn value(value: impl AsRef<[u8]>) -> Self {
        Self {
            value: Some(value.as_ref().to_vec()),
            ..Self::default()
        }
    }

    pub fn key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.key = Some(key.as_ref().to_vec());
        self
    }

    pub fn header(mut self, name: &str, value: Option<&[u8]>) -> Self {
        self.headers
            .push((name.to_owned(), value.map(|value| value.to_vec())));
        self
    }

    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }
}

/// Where the broker put a produced record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Delivery {
    pub partition: i32,
    pub offset: i64,
}

/// An independent Kafka client (confluent-kafka or kafka-python) pointed at one cluster.
///
/// Each call runs one script from `tools/kafka/` and waits for it; a script that fails or
/// hangs becomes an `Err` carrying its stderr.
#[derive(Debug, Clone)]
pub struct PyClient {
    bootstrap: String,
    lib: ClientLib,
    sasl: Option<Sasl>,
    tls: Option<ClientTls>,
    compression: Option<String>,
    timeout: Duration,
}

impl PyClient {
    /// confluent-kafka over plaintext, 30 s per operation.
    pub fn new(bootstrap: &str) -> Self {
        Self {
            bootstrap: bootstrap.to_owned(),
            lib: ClientLib::default(),
            sasl: None,
            tls: None,
            compression: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Use this client library instead.
    pub fn using(mut self, lib: ClientLib) -> Self {
        self.lib = lib;
        self
    }

    /// Authenticate with SASL (`None`: don't).
    pub fn sasl(mut self, sasl: Option<Sasl>) -> Self {
        self.sasl = sasl;
        self
    }

    /// Speak TLS, trusting `ca`, presenting `identity` (certificate, key) if given.
    pub fn tls(mut self, ca: &Path, identity: Option<(&Path, &Path)>) -> Self {
        self.tls = Some(ClientTls {
            ca: ca.to_owned(),
            identity: identity.map(|(cert, key)| (cert.to_owned(), key.to_owned())),
        });
        self
    }

    /// Compress what [`PyClient::produce`] writes: "gzip", "snappy", "lz4" or "zstd".
    pub fn compression(mut self, codec: &str) -> Self {
        self.compression = Some(codec.to_owned());
        self
    }

    /// How long admin and produce operations may take (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Creates `topic` and returns once metadata shows all its partitions.
    pub fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        let mut args = vec![
            "create-topic".to_owned(),
            "--topic".to_owned(),
            topic.to_owned(),
            "--partitions".to_owned(),
            partitions.to_string(),
        ];
        for (key, value) in configs {
            args.push("--config".to_owned());
            args.push(format!("{key}={value}"));
        }
        self.run("admin.py", &args, None, self.timeout).map(drop)
    }

    pub fn delete_topic(&self, topic: &str) -> Result<()> {
        let args = ["delete-topic", "--topic", topic].map(str::to_owned);
        self.run("admin.py", &args, None, self.timeout).map(drop)
    }

    /// Topic names and their partition counts, from metadata.
    pub fn topics(&self) -> Result<std::collections::BTreeMap<String, i32>> {
        let out = self.run("admin.py", &["topics".to_owned()], None, self.timeout)?;
        serde_json::from_str(&out).with_context(|| format!("admin.py topics printed {out:?}"))
    }

    /// Produces `records` with acks=all and returns where each landed, in order.
    pub fn produce(&self, topic: &str, records: &[ProduceRecord]) -> Result<Vec<Delivery>> {
        let mut input = Vec::new();
        for record in records {
            serde_json::to_writer(&mut input, record)?;
            input.push(b'\n');
        }
        let mut args = vec!["--topic".to_owned(), topic.to_owned()];
        if let Some(codec) = &self.compression {
            args.extend(["--compression".to_owned(), codec.clone()]);
        }
        let out = self.run("produce.py", &args, Some(input), self.timeout)?;
        let deliveries = parse_lines::<Delivery>(&out)?;
        if deliveries.len() != records.len() {
            bail!(
                "produce.py acknowledged {} of {} records",
                deliveries.len(),
                records.len()
            );
        }
        Ok(deliveries)
    }

    /// Reads every partition of `topic` from the beginning until at least `expected` records
    /// arrived, every partition caught up with its fetch high watermark, and nothing more
    /// arrived for a quiet second. Duplicates beyond `expected` are therefore returned too.
    /// Sorted by (partition, offset). `Err` if fewer than `expected` arrive within `deadline`.
    pub fn consume_all(
        &self,
        topic: &str,
        expected: usize,
        deadline: Duration,
    ) -> Result<Vec<ConsumedRecord>> {
        let args = [
            "--topic".to_owned(),
            topic.to_owned(),
            "--expected".to_owned(),
            expected.to_string(),
        ];
        let out = self.run("consume.py", &args, None, deadline)?;
        let mut records: Vec<ConsumedRecord> = parse_lines::<RawRecord>(&out)?
            .into_iter()
            .map(RawRecord::decode)
            .collect::<Result<_>>()?;
        records.sort_by_key(|r| (r.partition, r.offset));
        Ok(records)
    }

    fn run(
        &self,
        script: &str,
        args: &[String],
        stdin: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<String> {
        let python = python();
        if !python.exists() {
            bail!(
                "no Python venv at {} (set SLUICE_VENV or SLUICE_CACHE): run tools/install-deps.sh",
                python.display()
            );
        }
        let path = tools_dir().join("kafka").join(script);
        let mut cmd = Command::new(&python);
        cmd.arg("-B") // no __pycache__ in tools/kafka
            .arg("-u")
            .arg(&path)
            .args(["--bootstrap", &self.bootstrap, "--client", self.lib.arg()])
            .arg("--timeout")
            .arg(format!("{:.3}", timeout.as_secs_f64()))
            .args(self.security_args())
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("{script} {}", args.join(" "));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot run {} {}", python.display(), path.display()))?;

        let writer = match (stdin, child.stdin.take()) {
            (Some(input), Some(mut pipe)) => Some(thread::spawn(move || pipe.write_all(&input))),
            _ => None,
        };
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());

        let end = Instant::now() + timeout + SCRIPT_GRACE;
        let finished = crate::poll_until(end.saturating_duration_since(Instant::now()), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !finished {
            let _ = child.kill();
        }
        let status = child.wait()?;
        if let Some(writer) = writer {
            // A script that died early closes its stdin; its own error says why.
            let _ = writer.join();
        }
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        if !finished {
            bail!(
                "{what} ({}) hung past its {timeout:?} timeout and was killed; stderr:\n{stderr}",
                self.lib.arg()
            );
        }
        if !status.success() {
            bail!("{what} ({}) failed ({status}):\n{stderr}", self.lib.arg());
        }
        if !stderr.trim().is_empty() {
            // Shown by the test runner only when the test fails.
            eprintln!("[{what} stderr]\n{stderr}");
        }
        Ok(stdout)
    }

    fn security_args(&self) -> Vec<String> {
        let protocol = match (&self.tls, &self.sasl) {
            (None, None) => "PLAINTEXT",
            (Some(_), None) => "SSL",
            (None, Some(_)) => "SASL_PLAINTEXT",
            (Some(_), Some(_)) => "SASL_SSL",
        };
        let mut args = vec!["--security-protocol".to_owned(), protocol.to_owned()];
        if let Some(sasl) = &self.sasl {
            args.extend([
                "--sasl-mechanism".to_owned(),
                sasl.mechanism.clone(),
                "--sasl-username".to_owned(),
                sasl.username.clone(),
                "--sasl-password".to_owned(),
                sasl.password.clone(),
            ]);
        }
        if let Some(tls) = &self.tls {
            args.extend(["--ssl-ca".to_owned(), path_arg(&tls.ca)]);
            if let Some((cert, key)) = &tls.identity {
                args.extend([
                    "--ssl-cert".to_owned(),
                    path_arg(cert),
                    "--ssl-key".to_owned(),
                    path_arg(key),
                ]);
            }
        }
        args
    }
}

/// [`PyClient::create_topic`] with confluent-kafka over plaintext.
pub fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<()> {
    PyClient::new(bootstrap).create_topic(topic, partitions, configs)
}

/// [`PyClient::delete_topic`] with confluent-kafka over plaintext.
pub fn delete_topic(bootstrap: &str, topic: &str) -> Result<()> {
    PyClient::new(bootstrap).delete_topic(topic)
}

/// [`PyClient::consume_all`] with confluent-kafka over plaintext.
pub fn consume_all(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    deadline: Duration,
) -> Result<Vec<ConsumedRecord>> {
    PyClient::new(bootstrap).consume_all(topic, expected, deadline)
}

/// [`PyClient::produce`] with confluent-kafka over plaintext.
pub fn produce(bootstrap: &str, topic: &str, records: &[ProduceRecord]) -> Result<Vec<Delivery>> {
    PyClient::new(bootstrap).produce(topic, records)
}

#[derive(Debug, Deserialize)]
struct RawRecord {
    partition: i32,
    offset: i64,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<(String, Option<String>)>,
    timestamp: Option<i64>,
}

impl RawRecord {
    fn decode(self) -> Result<ConsumedRecord> {
        let bytes = |text: Option<String>| -> Result<Option<Vec<u8>>> {
            text.map(|text| B64.decode(text).context("bad base64 from consume.py"))
                .transpose()
        };
        Ok(ConsumedRecord {
            partition: self.partition,
            offset: self.offset,
            key: bytes(self.key)?,
            value: bytes(self.value)?,
            headers: self
                .headers
                .into_iter()
                .map(|(name, value)| Ok((name, bytes(value)?)))
                .collect::<Result<_>>()?,
            timestamp: self.timestamp,
        })
    }
}

fn parse_lines<T: for<'de> Deserialize<'de>>(out: &str) -> Result<Vec<T>> {
    out.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line)
                .with_context(|| format!("unexpected script output line {line:?}"))
        })
        .collect()
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn ser_b64<S: serde::Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match bytes {
        Some(bytes) => s.serialize_some(&B64.encode(bytes)),
        None => s.serialize_none(),
    }
}

fn ser_headers<S: serde::Serializer>(
    headers: &[(String, Option<Vec<u8>>)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq as _;
    let mut seq = s.serialize_seq(Some(headers.len()))?;
    for (name, value) in headers {
        seq.serialize_element(&(name, value.as_ref().map(|value| B64.encode(value))))?;
    }
    seq.end()
}
