//! Configuration: TOML with defaults, unknown keys refused, and a `validate` that names the
//! bad key. The documented default file is embedded (`default.toml`); docs/configuration.md
//! lists every key and a test checks that the two agree.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use codecs::mqtt::{check_topic_filter, MqttString, TopicFilter};
use codecs::registry::CodecRegistry;
use kafka_wire::partitioner::Partitioning;
use kafka_wire::record::Compression;
use kafka_wire::sasl::{SaslConfig, SaslMechanism};
use kafka_wire::tls::TlsConfig;
use kafka_wire::{Acks, ClientConfig, ProducerConfig};
use serde::Deserialize;

use crate::auth::{AclRule, AuthMethod, Authenticator, JwtConfig};
use crate::route::{HeaderField, KeyTemplate};
use crate::transport::ListenerTls;
use crate::ws::ListenerWebSocket;

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The longest `mqtt.sessions_linger_ms`: every persistent CONNECT waits for its claim's
/// batch, and heartbeats (every 500 ms) go the same way.
const MAX_SESSIONS_LINGER_MS: u64 = 1000;

/// A configuration that could not be loaded, naming the file or key at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a value of the wrong type.
    #[error("invalid configuration{}: {message}", path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Parse {
        /// The file, if not the embedded default.
        path: Option<PathBuf>,
        /// The parser's message, which names the key and line.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: `{key}` {problem}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Process-wide settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// The Kafka cluster and producer settings.
    pub kafka: KafkaConfig,
    /// The admin HTTP listener.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Client listeners.
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    /// Routes from listeners to Kafka topics.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Kafka topics whose records reach MQTT subscribers, besides those MQTT routes write
    /// with the key `{topic}`.
    #[serde(default)]
    pub reverse_routes: Vec<ReverseRouteConfig>,
    /// MQTT state kept in Kafka.
    #[serde(default)]
    pub mqtt: MqttStateConfig,
}

/// `[mqtt]`: the Kafka topics that hold MQTT state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttStateConfig {
    /// Compacted topic of retained messages: key = MQTT topic, value = payload, a null
    /// value deletes. Created (cleanup.policy=compact) when missing.
    pub retained_topic: String,
    /// Compacted topic of MQTT sessions: key = client identifier, value = the session's
    /// state (JSON), a null value ends it. Created (cleanup.policy=compact) when missing.
    pub sessions_topic: String,
    /// How long a session-topic batch waits for more records (claims, saves, heartbeats)
    /// before it is sent: the `linger.ms` of the shards' session producers, which keep one
    /// Produce request in flight each, so records also gather while Kafka answers.
    pub sessions_linger_ms: u64,
    /// Shared subscriptions (`$share/{name}/{filter}`) are Kafka consumer groups with this
    /// id prefix, followed by the share name, `/` and the filter.
    pub share_group_prefix: String,
    /// The share groups' session timeout: how long after a process dies its partitions
    /// move to the other members.
    pub share_session_timeout_ms: u64,
    /// How often a share group member heartbeats (and notices rebalances).
    pub share_heartbeat_ms: u64,
    /// How long the process's delivery readers' fetches wait at the broker for records
    /// (`fetch.max.wait.ms`). Kafka answers as soon as records arrive; a broker that holds
    /// every fetch this long (tansu 0.6) adds it to the delivery latency.
    pub delivery_max_wait_ms: u64,
}

impl Default for MqttStateConfig {
    fn default() -> Self {
        MqttStateConfig {
            retained_topic: "mqtt-retained".into(),
            sessions_topic: "mqtt-sessions".into(),
            sessions_linger_ms: 20,
            share_group_prefix: "sluice-share-".into(),
            share_session_timeout_ms: 10_000,
            share_heartbeat_ms: 1_000,
            delivery_max_wait_ms: 100,
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Number of shards; 0 means one per CPU core.
    pub shards: usize,
    /// Pin each shard to a CPU.
    pub pin_cpus: bool,
    /// How long shutdown waits for Kafka to acknowledge accepted messages.
    pub shutdown_timeout_ms: u64,
    /// Partitions of the topics sluice creates for its routes (when they do not exist).
    pub topic_partitions: i32,
    /// Let the kernel back sluice's memory with transparent huge pages.
    pub transparent_huge_pages: bool,
    /// Submission-queue entries of each shard's io_uring rings (a power of two).
    pub io_uring_depth: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            shards: 0,
            pin_cpus: false,
            shutdown_timeout_ms: 10_000,
            topic_partitions: 3,
            transparent_huge_pages: false,
            io_uring_depth: 1024,
        }
    }
}

/// `[kafka]`: Kafka client properties, by their Kafka names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    #[serde(rename = "bootstrap.servers")]
    pub bootstrap_servers: String,
    #[serde(rename = "client.id", default = "default_client_id")]
    pub client_id: String,
    #[serde(default = "default_acks")]
    pub acks: String,
    #[serde(rename = "enable.idempotence", default = "yes")]
    pub enable_idempotence: bool,
    #[serde(rename = "linger.ms", default = "default_linger")]
    pub linger_ms: u64,
    #[serde(rename = "batch.size", default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(rename = "compression.type", default = "default_compression")]
    pub compression_type: String,
    #[serde(rename = "request.timeout.ms", default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    #[serde(rename = "delivery.timeout.ms", default = "default_delivery_timeout")]
    pub delivery_timeout_ms: u64,
    #[serde(rename = "buffer.memory", default = "default_buffer_memory")]
    pub buffer_memory: usize,
    #[serde(rename = "security.protocol", default = "default_security")]
    pub security_protocol: String,
    #[serde(rename = "ssl.ca.location")]
    pub ssl_ca_location: Option<PathBuf>,
    #[serde(rename = "ssl.certificate.location")]
    pub ssl_certificate_location: Option<PathBuf>,
    #[serde(rename = "ssl.key.location")]
    pub ssl_key_location: Option<PathBuf>,
    #[serde(rename = "sasl.mechanism")]
    pub sasl_mechanism: Option<String>,
    #[serde(rename = "sasl.username")]
    pub sasl_username: Option<String>,
    #[serde(rename = "sasl.password")]
    pub sasl_password: Option<String>,
}

fn default_client_id() -> String {
    "sluice".into()
}
fn default_acks() -> String {
    "all".into()
}
fn yes() -> bool {
    true
}
fn default_linger() -> u64 {
    5
}
fn default_batch_size() -> usize {
    1 << 20
}
fn default_compression() -> String {
    "none".into()
}
fn default_request_timeout() -> u64 {
    30_000
}
fn default_delivery_timeout() -> u64 {
    120_000
}
fn default_buffer_memory() -> usize {
    32 << 20
}
fn default_security() -> String {
    "PLAINTEXT".into()
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin HTTP listener (`/metrics`, `/healthz`, `/readyz`).
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9100)),
        }
    }
}

/// The protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// MQTT 3.1, 3.1.1 and 5.0 over TCP.
    Mqtt,
    /// A stream of records in a record codec's format (`codec`: `framed`, `lines`, ...).
    Stream,
    /// HTTP/1.1 produce calls: `POST /topics/{topic}`.
    Http,
}

/// `[[listeners]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Name routes refer to; also a metrics label.
    pub name: String,
    /// Address to listen on (every shard listens on it, SO_REUSEPORT).
    pub listen: SocketAddr,
    /// The protocol.
    pub protocol: Protocol,
    /// Largest MQTT packet accepted, in bytes.
    #[serde(default = "default_max_packet")]
    pub max_packet_size: u32,
    /// Unacknowledged QoS 1/2 PUBLISHes a client may have outstanding.
    #[serde(default = "default_receive_maximum")]
    pub receive_maximum: u16,
    /// Highest topic alias a client may use; 0 disables aliases.
    #[serde(default = "default_alias_max")]
    pub topic_alias_maximum: u16,
    /// Time allowed between accepting the connection and CONNECT.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// MQTT: an idle plain-TCP connection parks (drops its task and keeps only its state)
    /// after this long without traffic; 0 never parks.
    #[serde(default = "default_park_after")]
    pub park_after_ms: u64,
    /// Listen backlog.
    #[serde(default = "default_backlog")]
    pub backlog: i32,
    /// `stream` listeners: the record codec, by name (`framed`, `lines`).
    #[serde(default)]
    pub codec: Option<String>,
    /// `stream` listeners: the codec's settings (string values), e.g. `{ prefix = "u16" }`.
    #[serde(default)]
    pub codec_settings: std::collections::BTreeMap<String, String>,
    /// `stream` listeners: answer each record with an ack once Kafka has it (or a
    /// rejection); without acks, records are produced without telling the client.
    #[serde(default)]
    pub acks: bool,
    /// `http` listeners: the largest request body, in bytes (413 beyond).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// `http` listeners: the most records one batch request may carry (413 beyond).
    #[serde(default = "default_max_records")]
    pub max_records: usize,
    /// `http` listeners: topics that may be written: names, or prefixes ending in `*`.
    #[serde(default = "default_http_topics")]
    pub topics: Vec<String>,
    /// `http` listeners: how long a connection may wait for a request before it is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_ms: u64,
    /// How clients authenticate (`none`, `password_file`, `jwt`; stream listeners
    /// `client_cert`).
    #[serde(default)]
    pub auth: AuthMethod,
    /// `auth = "password_file"`: a mosquitto_passwd file.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// `auth = "jwt"`: how tokens are checked.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    /// The topics a client may publish to (and, on HTTP listeners, subscribe to); absent
    /// means every topic.
    #[serde(default)]
    pub acl: Option<Vec<AclRule>>,
    /// Terminate TLS on this listener.
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// Speak WebSocket: MQTT over WebSocket on `mqtt` listeners (at `websocket.path`), raw
    /// messages to `/topics/{topic}` on `http` listeners.
    #[serde(default)]
    pub websocket: Option<ListenerWebSocket>,
    /// Built from the keys above when the config is loaded (their files read then).
    #[serde(skip)]
    pub authenticator: Option<Arc<Authenticator>>,
    /// Built from `tls` when the config is loaded.
    #[serde(skip)]
    pub tls_config: Option<Arc<rustls::ServerConfig>>,
}

fn default_max_packet() -> u32 {
    1 << 20
}
fn default_receive_maximum() -> u16 {
    1024
}
fn default_alias_max() -> u16 {
    64
}
fn default_connect_timeout() -> u64 {
    10_000
}
fn default_park_after() -> u64 {
    2_000
}
fn default_backlog() -> i32 {
    4096
}
fn default_max_body() -> usize {
    1 << 20
}
fn default_max_records() -> usize {
    10_000
}
fn default_http_topics() -> Vec<String> {
    vec!["*".into()]
}
fn default_idle_timeout() -> u64 {
    60_000
}

/// `[[reverse_routes]]`: a Kafka topic whose records MQTT clients can subscribe to, and
/// the MQTT topic each record is delivered under.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReverseRouteConfig {
    /// The Kafka topic, written by any producer.
    pub kafka_topic: String,
    /// The MQTT topic of a record: text with `{key}` (the record's key) and
    /// `{header.NAME}` (the value of its header NAME). Default `{key}`.
    #[serde(default = "default_reverse_topic")]
    pub mqtt_topic: String,
}

fn default_reverse_topic() -> String {
    "{key}".into()
}

/// `[[routes]]`: which Kafka topic, key and headers a listener's messages get.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The listener this route applies to.
    pub listener: String,
    /// MQTT listeners: the topic filter (`+` and `#` wildcards) the message topic must
    /// match. Stream listeners have one route and no filter.
    #[serde(default)]
    pub mqtt_topic: Option<String>,
    /// The Kafka topic.
    pub kafka_topic: String,
    /// Key template: text with `{topic}`, `{client_id}`, `{username}`, `{topic.N}` (the
    /// N-th topic level, from 0) for MQTT, `{key}` (the key the client sent) for streams;
    /// empty for no key. Default: `{topic}` for MQTT, `{key}` for streams.
    #[serde(default)]
    pub key: Option<String>,
    /// How the partition is chosen: `key` (murmur2 of the key like the Java client,
    /// sticky for records without one; the default), `sticky` (keys do not decide) or
    /// `round_robin`.
    #[serde(default)]
    pub partitioner: Option<String>,
    /// Every record to this partition (instead of `partitioner`).
    #[serde(default)]
    pub partition: Option<u32>,
    /// Kafka's `acks` for this route's records (`0`, `1`, `all` or `-1`); default the
    /// process's `kafka.acks`. A level other than the process's gets a producer of its own
    /// in every shard, never idempotent.
    #[serde(default)]
    pub acks: Option<String>,
    /// Record headers to stamp: `client_id`, `username`, `listener`, `mqtt_topic`,
    /// `user_properties`, `content_type`, `principal`, `qos`, `message_expiry`,
    /// `response_topic`, `correlation_data`, `payload_format` ([`HeaderField`](crate::route::HeaderField)).
    #[serde(default)]
    pub headers: Vec<String>,
}

impl RouteConfig {
    /// How the route chooses partitions (`None`: the producer's default, by key).
    pub fn partitioning(&self) -> Result<Option<Partitioning>, String> {
        Ok(match (self.partitioner.as_deref(), self.partition) {
            (Some(_), Some(_)) => return Err("and partitioner exclude each other".into()),
            (None, Some(p)) => Some(Partitioning::Explicit(p)),
            (None | Some("key"), None) => None,
            (Some("sticky"), None) => Some(Partitioning::Sticky),
            (Some("round_robin"), None) => Some(Partitioning::RoundRobin),
            (Some(other), None) => {
                return Err(format!(
                    "is {other:?}; known are key, sticky and round_robin"
                ))
            }
        })
    }

    /// The route's own `acks`, if it sets one.
    pub fn acks(&self) -> Result<Option<Acks>, String> {
        self.acks.as_deref().map(str::parse).transpose()
    }

    /// The key template, with the listener kind's default.
    pub fn key_template(&self, protocol: Protocol) -> &str {
        match (&self.key, protocol) {
            (Some(k), _) => k,
            (None, Protocol::Stream) => "{key}",
            (None, _) => "{topic}",
        }
    }
}

impl Config {
    /// Parses and validates TOML text; `path` names the file in errors.
    pub fn parse(text: &str, path: Option<PathBuf>) -> Result<Config, ConfigError> {
        Config::parse_with(text, path, &CodecRegistry::with_builtins())
    }

    /// [`Config::parse`] with the record codecs of `codecs` (built-in and plugged in).
    pub fn parse_with(
        text: &str,
        path: Option<PathBuf>,
        codecs: &CodecRegistry,
    ) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path,
            message: e.to_string(),
        })?;
        config.validate_with(codecs)?;
        for (i, l) in config.listeners.iter_mut().enumerate() {
            l.authenticator = Authenticator::load(l, &|k| format!("listeners[{i}].{k}"))?;
            if let Some(tls) = &l.tls {
                let config = tls
                    .server_config()
                    .map_err(|e| invalid(format!("listeners[{i}].tls"), e))?;
                l.tls_config = Some(config);
            }
        }
        Ok(config)
    }

    /// The embedded default.
    pub fn default_config() -> Config {
        Config::parse(DEFAULT_TOML, None).expect("the embedded default configuration is valid")
    }

    /// Reads, parses and validates a file, with the record codecs of `codecs`.
    pub fn load_with(
        path: &std::path::Path,
        codecs: &CodecRegistry,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse_with(&text, Some(path.to_owned()), codecs)
    }

    /// The kafka-wire client settings.
    pub fn client_config(&self) -> Result<ClientConfig, ConfigError> {
        let k = &self.kafka;
        let bootstrap: Vec<String> = k
            .bootstrap_servers
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let (tls, sasl) = match k.security_protocol.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => (false, false),
            "SSL" => (true, false),
            "SASL_PLAINTEXT" => (false, true),
            "SASL_SSL" => (true, true),
            other => {
                return Err(invalid(
                    "kafka.security.protocol",
                    format!("must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, not {other:?}"),
                ))
            }
        };
        if k.ssl_certificate_location.is_some() != k.ssl_key_location.is_some() {
            return Err(invalid(
                "kafka.ssl.certificate.location",
                "and ssl.key.location must be set together",
            ));
        }
        let sasl = if sasl {
            let mechanism: SaslMechanism =
                k.sasl_mechanism
                    .as_deref()
                    .unwrap_or("PLAIN")
                    .parse()
                    .map_err(|e| invalid("kafka.sasl.mechanism", format!("{e}")))?;
            let username = k
                .sasl_username
                .clone()
                .ok_or_else(|| invalid("kafka.sasl.username", "is required with SASL"))?;
            let password = k
                .sasl_password
                .clone()
                .ok_or_else(|| invalid("kafka.sasl.password", "is required with SASL"))?;
            Some(SaslConfig {
                mechanism,
                username,
                password,
            })
        } else {
            None
        };
        Ok(ClientConfig {
            bootstrap_servers: bootstrap,
            client_id: k.client_id.clone(),
            request_timeout: Duration::from_millis(k.request_timeout_ms),
            tls: tls.then(|| TlsConfig {
                ca_file: k.ssl_ca_location.clone(),
                cert_file: k.ssl_certificate_location.clone(),
                key_file: k.ssl_key_location.clone(),
                server_name: None,
            }),
            sasl,
            ..ClientConfig::default()
        })
    }

    /// The settings of a shard's producer of the session topic: the Kafka properties, with
    /// `mqtt.sessions_linger_ms` and one Produce request in flight, so that claims and
    /// saves reach the broker as few batches in few concurrent requests (tansu serializes
    /// idempotent produce; docs/benchmarks.md, "Session records in few batches").
    pub fn session_producer_config(&self) -> Result<ProducerConfig, ConfigError> {
        let k = &self.kafka;
        if k.delivery_timeout_ms < self.mqtt.sessions_linger_ms + k.request_timeout_ms {
            return Err(invalid(
                "kafka.delivery.timeout.ms",
                "must be at least mqtt.sessions_linger_ms + request.timeout.ms",
            ));
        }
        Ok(ProducerConfig {
            linger: Duration::from_millis(self.mqtt.sessions_linger_ms),
            max_in_flight: 1,
            ..self.producer_config()?
        })
    }

    /// The acks levels of routes that differ from the process's `kafka.acks`, each once, in
    /// config order: each gets a producer of its own in every shard.
    pub fn route_acks_levels(&self) -> Vec<Acks> {
        let mut levels = Vec::new();
        for acks in self.routes.iter().filter_map(|r| self.route_acks(r)) {
            if !levels.contains(&acks) {
                levels.push(acks);
            }
        }
        levels
    }

    /// The acks level a route's records go out with when it differs from the process's
    /// (`None`: the process's producer takes them).
    pub fn route_acks(&self, route: &RouteConfig) -> Option<Acks> {
        route
            .acks()
            .ok()
            .flatten()
            .filter(|&acks| Some(acks) != self.process_acks())
    }

    fn process_acks(&self) -> Option<Acks> {
        self.kafka.acks.parse().ok()
    }

    /// The settings of a shard's producer for routes with `acks` other than the process's:
    /// the process's settings, not idempotent (idempotence requires acks = all, and only
    /// the process's producer may be: QoS 2 and retries without duplicates rely on it).
    pub fn route_producer_config(&self, acks: Acks) -> Result<ProducerConfig, ConfigError> {
        Ok(ProducerConfig {
            acks,
            idempotent: false,
            ..self.producer_config()?
        })
    }

    /// The kafka-wire producer settings.
    pub fn producer_config(&self) -> Result<ProducerConfig, ConfigError> {
        let k = &self.kafka;
        let acks: Acks = k
            .acks
            .parse()
            .map_err(|e: String| invalid("kafka.acks", e))?;
        let compression: Compression = k
            .compression_type
            .parse()
            .map_err(|e| invalid("kafka.compression.type", format!("{e}")))?;
        if k.enable_idempotence && acks != Acks::All {
            return Err(invalid(
                "kafka.enable.idempotence",
                "requires acks = \"all\"",
            ));
        }
        if k.batch_size < 1024 {
            return Err(invalid("kafka.batch.size", "must be at least 1024"));
        }
        if k.delivery_timeout_ms < k.linger_ms + k.request_timeout_ms {
            return Err(invalid(
                "kafka.delivery.timeout.ms",
                "must be at least linger.ms + request.timeout.ms",
            ));
        }
        Ok(ProducerConfig {
            acks,
            idempotent: k.enable_idempotence,
            linger: Duration::from_millis(k.linger_ms),
            batch_size: k.batch_size,
            compression,
            delivery_timeout: Duration::from_millis(k.delivery_timeout_ms),
            buffer_memory: k.buffer_memory,
            ..ProducerConfig::default()
        })
    }
}

/// A stream listener's codec settings, as the codec registry takes them.
pub(crate) fn codec_settings(
    map: &std::collections::BTreeMap<String, String>,
) -> codecs::registry::Settings {
    map.iter()
        .fold(codecs::registry::Settings::new(), |s, (k, v)| {
            s.with(k.clone(), v.clone())
        })
}

/// A route filter, compiled.
pub(crate) fn topic_filter(filter: &str) -> TopicFilter {
    TopicFilter::new(MqttString::try_from(filter.to_owned()).expect("validated UTF-8"))
        .expect("validated topic filter")
}

mod validate;

#[cfg(test)]
mod tests;
