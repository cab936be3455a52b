//! Metrics: counters each shard owns and only it writes (relaxed atomics, no locks on the
//! data path), read by the admin listener and rendered in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds of the produce latency histogram buckets, in microseconds.
const LATENCY_BUCKETS_US: [u64; 14] = [
    250, 500, 1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 10_000_000,
];

/// Why a connection ended with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The client sent something the protocol forbids.
    Protocol,
    /// Reading from or writing to the socket failed.
    Io,
    /// The keepalive (or CONNECT) deadline passed.
    Timeout,
    /// Kafka refused a record.
    Kafka,
    /// The TLS handshake failed or timed out.
    Tls,
    /// Authentication or authorization refused the client (missing or wrong credentials,
    /// a topic its ACL forbids); counted once per refusal, whether or not the connection
    /// ends.
    Auth,
}

impl ErrorKind {
    const ALL: [ErrorKind; 6] = [
        ErrorKind::Protocol,
        ErrorKind::Io,
        ErrorKind::Timeout,
        ErrorKind::Kafka,
        ErrorKind::Tls,
        ErrorKind::Auth,
    ];

    fn label(self) -> &'static str {
        match self {
            ErrorKind::Protocol => "protocol",
            ErrorKind::Io => "io",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Kafka => "kafka",
            ErrorKind::Tls => "tls",
            ErrorKind::Auth => "auth",
        }
    }
}

/// Counters of one listener on one shard.
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub frames_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// Counters of one shard.
#[derive(Debug)]
pub struct ShardMetrics {
    pub listeners: Vec<ListenerMetrics>,
    pub records_produced: AtomicU64,
    pub records_failed: AtomicU64,
    /// Messages handed to subscribers' mailboxes, and subscribers dropped as too slow.
    pub deliveries: AtomicU64,
    pub slow_consumers: AtomicU64,
    /// Messages not delivered because their MQTT 5 Message Expiry Interval had passed.
    pub expired: AtomicU64,
    /// Delivery partitions this shard's readers fetch (the process's readers live on shard
    /// 0: one fetch stream per partition per process), and the fetches they made.
    pub delivery_partitions: AtomicU64,
    pub delivery_fetches: AtomicU64,
    /// Shared subscriptions: local MQTT members, partitions this shard's share groups
    /// are assigned, deliveries, and deliveries returned for another member.
    pub share_members: AtomicU64,
    pub share_partitions: AtomicU64,
    pub share_deliveries: AtomicU64,
    pub share_redeliveries: AtomicU64,
    errors: [AtomicU64; ErrorKind::ALL.len()],
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
    /// Record bytes waiting for Kafka (the producer's buffer).
    pub buffered_bytes: AtomicU64,
    /// Idle connections parked without a task (`park`).
    pub parked: Arc<AtomicU64>,
    /// Produce requests and batches sent, and batch retries.
    pub produce_requests: AtomicU64,
    pub produce_batches: AtomicU64,
    pub produce_retries: AtomicU64,
    /// Records and batches the session-topic producer sent (claims, saves, heartbeats).
    pub session_records: AtomicU64,
    pub session_batches: AtomicU64,
    /// Whether this shard has reached Kafka.
    pub kafka_ready: AtomicBool,
    /// Whether this shard is shutting down (draining its connections).
    pub draining: AtomicBool,
}

impl ShardMetrics {
    fn new(listeners: usize) -> Self {
        ShardMetrics {
            listeners: (0..listeners).map(|_| ListenerMetrics::default()).collect(),
            records_produced: AtomicU64::new(0),
            records_failed: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            slow_consumers: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            delivery_partitions: AtomicU64::new(0),
            delivery_fetches: AtomicU64::new(0),
            share_members: AtomicU64::new(0),
            share_partitions: AtomicU64::new(0),
            share_deliveries: AtomicU64::new(0),
            share_redeliveries: AtomicU64::new(0),
            errors: Default::default(),
            latency_buckets: Default::default(),
            latency_sum_us: AtomicU64::new(0),
            buffered_bytes: AtomicU64::new(0),
            parked: Arc::default(),
            produce_requests: AtomicU64::new(0),
            produce_batches: AtomicU64::new(0),
            produce_retries: AtomicU64::new(0),
            session_records: AtomicU64::new(0),
            session_batches: AtomicU64::new(0),
            kafka_ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }

    /// Counts an error that ended a connection.
    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Records the time from a message's arrival to Kafka's acknowledgement.
    pub fn produce_latency(&self, latency: Duration) {
        let us = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

/// Every shard's counters, shared with the admin listener.
#[derive(Debug)]
pub struct Metrics {
    listener_names: Vec<String>,
    shards: Vec<Arc<ShardMetrics>>,
}

impl Metrics {
    /// Counters for `shards` shards and these listeners (by config index).
    pub fn new(shards: usize, listener_names: Vec<String>) -> Arc<Metrics> {
        Arc::new(Metrics {
            shards: (0..shards)
                .map(|_| Arc::new(ShardMetrics::new(listener_names.len())))
                .collect(),
            listener_names,
        })
    }

    /// The counters of shard `id`.
    pub fn shard(&self, id: usize) -> Arc<ShardMetrics> {
        self.shards[id % self.shards.len()].clone()
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Whether every shard has reached Kafka.
    pub fn ready(&self) -> bool {
        self.shards
            .iter()
            .all(|s| s.kafka_ready.load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        type Field = fn(&ListenerMetrics) -> &AtomicU64;
        let per_listener: [(&str, &str, &str, Field); 5] = [
            (
                "sluice_connections_open",
                "gauge",
                "Client connections open.",
                |l| &l.connections_open,
            ),
            (
                "sluice_connections_total",
                "counter",
                "Client connections accepted.",
                |l| &l.connections_total,
            ),
            (
                "sluice_frames_in_total",
                "counter",
                "Frames (packets, messages) decoded.",
                |l| &l.frames_in,
            ),
            (
                "sluice_bytes_in_total",
                "counter",
                "Bytes read from clients.",
                |l| &l.bytes_in,
            ),
            (
                "sluice_bytes_out_total",
                "counter",
                "Bytes written to clients.",
                |l| &l.bytes_out,
            ),
        ];
        for (name, kind, help, field) in per_listener {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (shard, s) in self.shards.iter().enumerate() {
                for (i, l) in s.listeners.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "{name}{{listener=\"{}\",shard=\"{shard}\"}} {}",
                        self.listener_names[i],
                        get(field(l))
                    );
                }
            }
        }
        type ShardField = fn(&ShardMetrics) -> u64;
        let per_shard: [(&str, &str, &str, ShardField); 20] = [
            (
                "sluice_delivery_partitions",
                "gauge",
                "Delivery topic partitions this shard fetches for MQTT subscribers (the process's one reader of each is on shard 0).",
                |s| s.delivery_partitions.load(Ordering::Relaxed),
            ),
            (
                "sluice_delivery_fetches_total",
                "counter",
                "Fetch polls of the delivery and retained topics (one Fetch request per leader each).",
                |s| s.delivery_fetches.load(Ordering::Relaxed),
            ),
            (
                "sluice_expired_messages_total",
                "counter",
                "Messages not sent to subscribers because their MQTT 5 Message Expiry Interval had passed (once per subscriber when it expired in a queue, once per record when it had expired before it was matched).",
                |s| s.expired.load(Ordering::Relaxed),
            ),
            (
                "sluice_share_members",
                "gauge",
                "MQTT connections subscribed to shared subscriptions (one per share joined).",
                |s| s.share_members.load(Ordering::Relaxed),
            ),
            (
                "sluice_share_partitions",
                "gauge",
                "Kafka partitions assigned to this shard's shared-subscription consumer groups.",
                |s| s.share_partitions.load(Ordering::Relaxed),
            ),
            (
                "sluice_share_deliveries_total",
                "counter",
                "Messages handed to one member of a shared subscription.",
                |s| s.share_deliveries.load(Ordering::Relaxed),
            ),
            (
                "sluice_share_redeliveries_total",
                "counter",
                "Shared deliveries returned unacknowledged (member gone) and handed to another member.",
                |s| s.share_redeliveries.load(Ordering::Relaxed),
            ),
            (
                "sluice_deliveries_total",
                "counter",
                "Messages from Kafka queued for MQTT subscribers (one per subscriber).",
                |s| s.deliveries.load(Ordering::Relaxed),
            ),
            (
                "sluice_slow_consumers_total",
                "counter",
                "Subscribers disconnected because their queue of deliveries was full.",
                |s| s.slow_consumers.load(Ordering::Relaxed),
            ),
            (
                "sluice_records_produced_total",
                "counter",
                "Records Kafka acknowledged.",
                |s| s.records_produced.load(Ordering::Relaxed),
            ),
            (
                "sluice_records_failed_total",
                "counter",
                "Records Kafka refused or that timed out.",
                |s| s.records_failed.load(Ordering::Relaxed),
            ),
            (
                "sluice_produce_requests_total",
                "counter",
                "Produce requests sent.",
                |s| s.produce_requests.load(Ordering::Relaxed),
            ),
            (
                "sluice_produce_batches_total",
                "counter",
                "Record batches sent (first attempts).",
                |s| s.produce_batches.load(Ordering::Relaxed),
            ),
            (
                "sluice_session_records_total",
                "counter",
                "Records written to the MQTT session topic (claims, saves, heartbeats).",
                |s| s.session_records.load(Ordering::Relaxed),
            ),
            (
                "sluice_session_batches_total",
                "counter",
                "Record batches the MQTT session topic's producer sent (first attempts).",
                |s| s.session_batches.load(Ordering::Relaxed),
            ),
            (
                "sluice_produce_retries_total",
                "counter",
                "Record batches sent again after a retriable error.",
                |s| s.produce_retries.load(Ordering::Relaxed),
            ),
            (
                "sluice_budget_bytes_in_use",
                "gauge",
                "Record bytes waiting for Kafka.",
                |s| s.buffered_bytes.load(Ordering::Relaxed),
            ),
            (
                "sluice_connections_parked",
                "gauge",
                "Idle connections parked without a task.",
                |s| s.parked.load(Ordering::Relaxed),
            ),
            (
                "sluice_kafka_ready",
                "gauge",
                "1 when the shard has reached Kafka.",
                |s| u64::from(s.kafka_ready.load(Ordering::Relaxed)),
            ),
            (
                "sluice_draining",
                "gauge",
                "1 while the shard shuts down, draining its connections.",
                |s| u64::from(s.draining.load(Ordering::Relaxed)),
            ),
        ];
        for (name, kind, help, field) in per_shard {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (shard, s) in self.shards.iter().enumerate() {
                let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", field(s));
            }
        }
        let name = "sluice_connection_errors_total";
        let _ = writeln!(
            out,
            "# HELP {name} Connections ended by an error, by kind (auth: each refused authentication or authorization).\n# TYPE {name} counter"
        );
        for (shard, s) in self.shards.iter().enumerate() {
            for kind in ErrorKind::ALL {
                let _ = writeln!(
                    out,
                    "{name}{{kind=\"{}\",shard=\"{shard}\"}} {}",
                    kind.label(),
                    get(&s.errors[kind as usize])
                );
            }
        }
        let name = "sluice_produce_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from a message's arrival to Kafka's acknowledgement.\n# TYPE {name} histogram"
        );
        for (shard, s) in self.shards.iter().enumerate() {
            let mut cumulative = 0;
            for (i, bound) in LATENCY_BUCKETS_US.iter().enumerate() {
                cumulative += get(&s.latency_buckets[i]);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{shard=\"{shard}\",le=\"{}\"}} {cumulative}",
                    *bound as f64 / 1e6
                );
            }
            cumulative += get(&s.latency_buckets[LATENCY_BUCKETS_US.len()]);
            let _ = writeln!(
                out,
                "{name}_bucket{{shard=\"{shard}\",le=\"+Inf\"}} {cumulative}"
            );
            let _ = writeln!(
                out,
                "{name}_sum{{shard=\"{shard}\"}} {}",
                get(&s.latency_sum_us) as f64 / 1e6
            );
            let _ = writeln!(out, "{name}_count{{shard=\"{shard}\"}} {cumulative}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_labels() {
        let m = Metrics::new(2, vec!["mqtt".into()]);
        let s = m.shard(1);
        s.listeners[0]
            .connections_open
            .fetch_add(3, Ordering::Relaxed);
        s.records_produced.fetch_add(7, Ordering::Relaxed);
        s.error(ErrorKind::Protocol);
        s.produce_latency(Duration::from_micros(1500));
        s.produce_latency(Duration::from_secs(60));
        let text = m.render();
        assert!(text.contains("sluice_connections_open{listener=\"mqtt\",shard=\"1\"} 3"));
        assert!(text.contains("sluice_records_produced_total{shard=\"1\"} 7"));
        assert!(text.contains("sluice_connection_errors_total{kind=\"protocol\",shard=\"1\"} 1"));
        assert!(text.contains("sluice_produce_latency_seconds_bucket{shard=\"1\",le=\"0.002\"} 1"));
        assert!(text.contains("sluice_produce_latency_seconds_bucket{shard=\"1\",le=\"+Inf\"} 2"));
        assert!(text.contains("sluice_produce_latency_seconds_count{shard=\"1\"} 2"));
        assert!(!m.ready());
        m.shard(0).kafka_ready.store(true, Ordering::Relaxed);
        s.kafka_ready.store(true, Ordering::Relaxed);
        assert!(m.ready());
    }
}
