//! Summaries shared by the scenarios: medians of runs, latency percentile curves,
//! throughput over time.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The median (NaN for no values).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Percentiles of a set of durations (nanoseconds in, milliseconds out): per session, per
/// connection.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Spread {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    pub fn of(mut ns: Vec<u64>) -> Spread {
        ns.sort_unstable();
        let at = |q: f64| -> f64 {
            if ns.is_empty() {
                return f64::NAN;
            }
            let i = ((ns.len() as f64 * q).ceil() as usize).clamp(1, ns.len()) - 1;
            ns[i] as f64 / 1e6
        };
        Spread {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// One point of a latency percentile curve.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct CurvePoint {
    pub percentile: f64,
    pub us: f64,
}

/// Percentiles plotted on a latency curve: 0, 50, 90, 99, … ("nines" on the x axis).
const CURVE: [f64; 14] = [
    0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999, 100.0,
];

/// A histogram of nanoseconds as a percentile curve in microseconds.
pub fn latency_curve(h: &Histogram<u64>) -> Vec<CurvePoint> {
    if h.is_empty() {
        return Vec::new();
    }
    CURVE
        .iter()
        .map(|&p| CurvePoint {
            percentile: p,
            us: h.value_at_percentile(p) as f64 / 1000.0,
        })
        .collect()
}

/// One interval of a throughput timeline, all load generators together.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThroughputPoint {
    /// End of the interval, seconds since publishing began.
    pub seconds: f64,
    pub sent_per_sec: f64,
    pub acked_per_sec: f64,
}

/// Each load generator's `progress` events (cumulative counts at regular times since its
/// start) as one timeline: the k-th interval of every generator is summed into the k-th
/// point (they started within milliseconds of each other and report on one period).
pub fn throughput_timeline(generators: &[Vec<serde_json::Value>]) -> Vec<ThroughputPoint> {
    let mut points: Vec<ThroughputPoint> = Vec::new();
    for events in generators {
        let mut last = (0.0, 0.0, 0.0);
        for (k, e) in events.iter().enumerate() {
            let field = |name: &str| e[name].as_f64().unwrap_or(0.0);
            let now = (field("seconds"), field("sent"), field("acked"));
            let span = (now.0 - last.0).max(1e-9);
            if points.len() <= k {
                points.push(ThroughputPoint {
                    seconds: 0.0,
                    sent_per_sec: 0.0,
                    acked_per_sec: 0.0,
                });
            }
            let p = &mut points[k];
            p.seconds = p.seconds.max(now.0);
            p.sent_per_sec += (now.1 - last.1) / span;
            p.acked_per_sec += (now.2 - last.2) / span;
            last = now;
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_take_nearest_ranks() {
        let s = Spread::of((1..=100).map(|ms| ms * 1_000_000).collect());
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (50.0, 99.0, 100.0));
        assert!(Spread::of(Vec::new()).p50_ms.is_nan());
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn timelines_sum_generators_interval_by_interval() {
        let progress = |points: &[(f64, u64, u64)]| -> Vec<serde_json::Value> {
            points
                .iter()
                .map(|&(t, s, a)| serde_json::json!({"seconds": t, "sent": s, "acked": a}))
                .collect()
        };
        let one = progress(&[(0.5, 100, 90), (1.0, 200, 200)]);
        let two = progress(&[(0.5, 50, 50), (1.0, 100, 100), (1.5, 150, 150)]);
        let t = throughput_timeline(&[one, two]);
        assert_eq!(t.len(), 3);
        assert_eq!(
            (t[0].seconds, t[0].sent_per_sec, t[0].acked_per_sec),
            (0.5, 300.0, 280.0)
        );
        assert_eq!(
            (t[1].seconds, t[1].sent_per_sec, t[1].acked_per_sec),
            (1.0, 300.0, 320.0)
        );
        assert_eq!(
            (t[2].seconds, t[2].sent_per_sec, t[2].acked_per_sec),
            (1.5, 100.0, 100.0)
        );
    }
}
