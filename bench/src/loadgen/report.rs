//! A load-generator process's report, and merging reports of several processes.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::{histogram, LoadgenArgs, ShardResult};

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
    #[serde(default)]
    pub mean_us: f64,
}

impl LatencySummary {
    /// Summarises a histogram of nanoseconds.
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        let q = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            p9999_us: q(0.9999),
            max_us: h.max() as f64 / 1000.0,
            mean_us: h.mean() / 1000.0,
        }
    }

    /// p50, p90, p99, p99.9, p99.99 and max in milliseconds, as Markdown table cells.
    pub fn ms_cells(&self) -> String {
        [
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.p9999_us,
            self.max_us,
        ]
        .map(|us| format!("{:.2}", us / 1000.0))
        .join(" | ")
    }
}

/// A histogram's recorded values as `[nanoseconds, count]` pairs, so that several
/// processes' histograms can be merged.
pub fn histogram_values(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// The histogram of [`histogram_values`] rebuilt.
pub fn histogram_from(values: &[(u64, u64)]) -> Histogram<u64> {
    let mut h = histogram();
    for &(v, n) in values {
        let _ = h.record_n(v, n);
    }
    h
}

/// Counters of one shard, and of a whole process in its report.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Stats {
    pub connected: u64,
    /// socket(), bind() or connect() failed (e.g. out of ports or files).
    pub connect_errors: u64,
    /// The server closed or reset before CONNACK.
    pub closed_before_connack: u64,
    pub connack_timeouts: u64,
    /// CONNACK with a refusal code.
    pub refused: u64,
    /// Handshakes still in progress when the run stopped.
    #[serde(default)]
    pub abandoned: u64,
    /// Connections the server closed (or that broke) after CONNACK, before the end.
    pub dropped: u64,
    pub sent: u64,
    pub acked: u64,
    /// PUBACKs still missing when the drain timeout ended.
    pub unacked: u64,
    /// The longest span of one connection from its first send to its last PUBACK (or last
    /// send for QoS 0).
    pub publish_seconds: f64,
    /// Subscribers: PUBLISHes received.
    #[serde(default)]
    pub received: u64,
    /// Subscribers: messages of the expected streams that never arrived (`subscriber.rs`).
    #[serde(default)]
    pub lost: u64,
    /// Subscribers: messages that arrived again or out of order.
    #[serde(default)]
    pub duplicates: u64,
    /// Subscribers: PUBLISHes whose payload carries no stamp of the fan-out producer.
    #[serde(default)]
    pub malformed: u64,
    /// Subscribers that got every expected message exactly once, in order.
    #[serde(default)]
    pub complete: u64,
    /// Publishers: (connection number, PUBLISHes it sent), for subscribers to know what
    /// each stream holds.
    #[serde(default)]
    pub sent_by_connection: Vec<(u64, u64)>,
}

impl Stats {
    /// Adds `o`'s counts (the span is the longer of the two).
    pub fn add(&mut self, o: &Stats) {
        self.connected += o.connected;
        self.connect_errors += o.connect_errors;
        self.closed_before_connack += o.closed_before_connack;
        self.connack_timeouts += o.connack_timeouts;
        self.refused += o.refused;
        self.abandoned += o.abandoned;
        self.dropped += o.dropped;
        self.sent += o.sent;
        self.acked += o.acked;
        self.unacked += o.unacked;
        self.publish_seconds = self.publish_seconds.max(o.publish_seconds);
        self.received += o.received;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.malformed += o.malformed;
        self.complete += o.complete;
        self.sent_by_connection
            .extend_from_slice(&o.sent_by_connection);
    }
}

/// What one load-generator process measured (the `report` event).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub connections: u64,
    /// Counts summed over the process's connections.
    #[serde(flatten)]
    pub counts: Stats,
    /// Start to the last CONNACK (or SUBACK for subscribers, or failure).
    pub connect_seconds: f64,
    pub connack_latency: LatencySummary,
    pub puback_latency: LatencySummary,
    /// The PUBACK latency histogram ([`histogram_values`]).
    pub puback_histogram: Vec<(u64, u64)>,
    /// Subscribers: send time in the payload → receipt of the PUBLISH.
    #[serde(default)]
    pub delivery_latency: LatencySummary,
    /// The delivery latency histogram ([`histogram_values`]).
    #[serde(default)]
    pub delivery_histogram: Vec<(u64, u64)>,
    /// This process's CPU time (user + system, all threads).
    pub cpu_seconds: f64,
}

impl Report {
    pub(super) fn merge(
        args: &LoadgenArgs,
        results: Vec<ShardResult>,
        connect_seconds: f64,
        cpu: Duration,
    ) -> Report {
        let mut latency = histogram();
        let mut connack = histogram();
        let mut delivery = histogram();
        let mut counts = Stats::default();
        for r in results {
            let _ = latency.add(&r.latency);
            let _ = connack.add(&r.connack);
            let _ = delivery.add(&r.delivery);
            counts.add(&r.stats);
        }
        Report {
            connections: args.connections,
            counts,
            connect_seconds,
            connack_latency: LatencySummary::of(&connack),
            puback_latency: LatencySummary::of(&latency),
            puback_histogram: histogram_values(&latency),
            delivery_latency: LatencySummary::of(&delivery),
            delivery_histogram: histogram_values(&delivery),
            cpu_seconds: cpu.as_secs_f64(),
        }
    }

    /// Several processes' reports as one (histograms merged, counts summed).
    pub fn combine(reports: &[Report]) -> Report {
        let mut puback = histogram();
        let mut delivery = histogram();
        let mut total = Report::default();
        for r in reports {
            let _ = puback.add(histogram_from(&r.puback_histogram));
            let _ = delivery.add(histogram_from(&r.delivery_histogram));
            total.connections += r.connections;
            total.counts.add(&r.counts);
            total.connect_seconds = total.connect_seconds.max(r.connect_seconds);
            total.cpu_seconds += r.cpu_seconds;
        }
        // CONNACK percentiles cannot be merged from summaries: keep the worst process's.
        total.connack_latency = reports
            .iter()
            .map(|r| r.connack_latency.clone())
            .max_by(|a, b| a.p99_us.total_cmp(&b.p99_us))
            .unwrap_or_default();
        total.puback_latency = LatencySummary::of(&puback);
        total.puback_histogram = histogram_values(&puback);
        total.delivery_latency = LatencySummary::of(&delivery);
        total.delivery_histogram = histogram_values(&delivery);
        total
    }
}
