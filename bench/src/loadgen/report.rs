//! A load-generator process's report, and merging reports of several processes.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::conn::Stats;
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
        }
    }
}

/// What one load-generator process measured (the `report` event).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub connections: u64,
    pub connected: u64,
    pub connect_errors: u64,
    pub closed_before_connack: u64,
    pub connack_timeouts: u64,
    pub refused: u64,
    pub dropped: u64,
    /// Start to the last CONNACK (or failure).
    pub connect_seconds: f64,
    pub connack_latency: LatencySummary,
    pub sent: u64,
    pub acked: u64,
    pub unacked: u64,
    /// Longest span from a connection's first PUBLISH to its last PUBACK.
    pub publish_seconds: f64,
    pub puback_latency: LatencySummary,
    /// The PUBACK latency histogram's recorded values, `[nanoseconds, count]`, so that
    /// several processes' histograms can be merged.
    pub puback_histogram: Vec<(u64, u64)>,
    /// This process's CPU time (user + system, all threads).
    pub cpu_seconds: f64,
}

impl Report {
    pub(super) fn merge(
        args: &LoadgenArgs,
        results: Vec<ShardResult>,
        connect_seconds: f64,
        cpu: Duration,
        dropped: u64,
    ) -> Report {
        let mut latency = histogram();
        let mut connack = histogram();
        let mut stats = Stats::default();
        for r in results {
            let _ = latency.add(&r.latency);
            let _ = connack.add(&r.connack);
            let s = r.stats;
            stats.connected += s.connected;
            stats.connect_errors += s.connect_errors;
            stats.closed_before_connack += s.closed_before_connack;
            stats.connack_timeouts += s.connack_timeouts;
            stats.refused += s.refused;
            stats.sent += s.sent;
            stats.acked += s.acked;
            stats.unacked += s.unacked;
            stats.publish_span_max_s = stats.publish_span_max_s.max(s.publish_span_max_s);
        }
        Report {
            connections: args.connections,
            connected: stats.connected,
            connect_errors: stats.connect_errors,
            closed_before_connack: stats.closed_before_connack,
            connack_timeouts: stats.connack_timeouts,
            refused: stats.refused,
            dropped,
            connect_seconds,
            connack_latency: LatencySummary::of(&connack),
            sent: stats.sent,
            acked: stats.acked,
            unacked: stats.unacked,
            publish_seconds: stats.publish_span_max_s,
            puback_latency: LatencySummary::of(&latency),
            puback_histogram: latency
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
            cpu_seconds: cpu.as_secs_f64(),
        }
    }

    /// The PUBACK histogram rebuilt from the report.
    pub fn puback_histogram(&self) -> Histogram<u64> {
        let mut h = histogram();
        for &(v, n) in &self.puback_histogram {
            let _ = h.record_n(v, n);
        }
        h
    }

    /// Several processes' reports as one (histograms merged, counts summed).
    pub fn combine(reports: &[Report]) -> Report {
        let mut h = histogram();
        let mut total = Report::default();
        for r in reports {
            let _ = h.add(r.puback_histogram());
            total.connections += r.connections;
            total.connected += r.connected;
            total.connect_errors += r.connect_errors;
            total.closed_before_connack += r.closed_before_connack;
            total.connack_timeouts += r.connack_timeouts;
            total.refused += r.refused;
            total.dropped += r.dropped;
            total.connect_seconds = total.connect_seconds.max(r.connect_seconds);
            total.sent += r.sent;
            total.acked += r.acked;
            total.unacked += r.unacked;
            total.publish_seconds = total.publish_seconds.max(r.publish_seconds);
            total.cpu_seconds += r.cpu_seconds;
        }
        // CONNACK percentiles cannot be merged from summaries: keep the worst process's.
        total.connack_latency = reports
            .iter()
            .map(|r| r.connack_latency.clone())
            .max_by(|a, b| a.p99_us.total_cmp(&b.p99_us))
            .unwrap_or_default();
        total.puback_latency = LatencySummary::of(&h);
        total.puback_histogram = Vec::new();
        total
    }
}
