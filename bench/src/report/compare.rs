//! The report's `compare` section: sluice against the rdkafka producer, same broker, same run.

use std::fmt::Write as _;

use serde_json::Value;

use super::{f, n, Results};
use crate::stats::median;
use crate::svg::Series;

pub(super) fn compare(md: &mut String, r: &Results) {
    let Some(c) = r.get("compare") else { return };
    let _ = writeln!(
        md,
        "## MQTT → sluice → tansu vs rdkafka → tansu (same broker, same run)\n"
    );
    let _ = writeln!(
        md,
        "linger.ms {} on both sides, acks=all, idempotent, {} B values, {} MQTT QoS 1 clients (keys `bench/N`), headers: {}; rounds alternate which side goes first.\n",
        f(c, "args.linger_ms"),
        f(c, "args.size"),
        f(c, "args.clients"),
        if c["args"]["headers"] == true {
            "`mqtt.client_id` and `mqtt.qos` on both sides"
        } else {
            "none on either side"
        }
    );
    let _ = writeln!(
        md,
        "| side | max records/s (each round) | median | client CPU µs/record (median) |"
    );
    let _ = writeln!(md, "| --- | --- | ---: | ---: |");
    let max_runs: Vec<&Value> = c["max_runs"].as_array().into_iter().flatten().collect();
    for (side, label, key) in [
        ("rdkafka", "rdkafka → tansu", "rdkafka_max_per_sec"),
        ("sluice", "MQTT → sluice → tansu", "sluice_max_per_sec"),
    ] {
        let mine: Vec<&&Value> = max_runs.iter().filter(|v| v["side"] == side).collect();
        let each: Vec<String> = mine.iter().map(|v| n(f(v, "acked_per_sec"))).collect();
        let cpu = median(
            mine.iter()
                .map(|v| f(v, "client_cpu_seconds") * 1e6 / f(v, "acked"))
                .collect(),
        );
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {cpu:.2} |",
            each.join(" · "),
            n(f(c, key))
        );
    }
    let _ = writeln!(
        md,
        "\nThroughput sluice / rdkafka: **{:.2}×**. Client CPU is the rdkafka child's, or sluice's (the MQTT load generator's is not counted).\n",
        f(c, "throughput_ratio")
    );
    for s in c["latency"].as_array().into_iter().flatten() {
        let of = match s["base"].as_str().unwrap_or("?") {
            "fixed" => String::new(),
            base => format!(
                " ({:.0} % of the {base} maximum)",
                f(c, "args.load") * 100.0
            ),
        };
        let _ = writeln!(
            md,
            "Open loop at {} records/s{of}, scheduled send → acknowledgement, medians of the rounds, ms:\n",
            n(f(s, "rate")),
        );
        let _ = writeln!(
            md,
            "| side | acked/s | mean | p50 | p90 | p99 | p99.9 | max |"
        );
        let _ = writeln!(
            md,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for (label, key, rate) in [
            ("rdkafka → tansu", "rdkafka", "rdkafka_acked_per_sec"),
            ("MQTT → sluice → tansu", "sluice", "sluice_acked_per_sec"),
            ("**added**", "added", ""),
        ] {
            let ms = |p: &str| f(s, &format!("{key}.{p}")) / 1000.0;
            let _ = writeln!(
                md,
                "| {label} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                if rate.is_empty() {
                    "".into()
                } else {
                    n(f(s, rate))
                },
                ms("p50_us"),
                ms("p90_us"),
                ms("p99_us"),
                ms("p999_us"),
                ms("max_us")
            );
        }
        let _ = writeln!(
            md,
            "\nInside sluice (its `sluice_produce_latency_seconds`: read of the PUBLISH → Kafka's acknowledgement): mean {:.2} ms, p99 ≤ {:.2} ms (bucket bound).\n",
            f(s, "inside_sluice_mean_us") / 1000.0,
            f(s, "inside_sluice_p99_at_most_us") / 1000.0
        );
    }
}

/// Latency curves of the first latency series: each side's run with the median p99.
pub(super) fn compare_curves(r: &Results) -> Vec<Series> {
    let Some(s) = r
        .get("compare")
        .and_then(|c| c["latency"].as_array()?.first())
    else {
        return Vec::new();
    };
    let runs: Vec<&Value> = s["runs"].as_array().into_iter().flatten().collect();
    let mut out = Vec::new();
    for side in ["rdkafka", "sluice"] {
        let mine: Vec<&&Value> = runs.iter().filter(|v| v["side"] == side).collect();
        let p99 = median(mine.iter().map(|v| f(v, "latency.p99_us")).collect());
        if let Some(v) = mine.iter().min_by(|a, b| {
            (f(a, "latency.p99_us") - p99)
                .abs()
                .total_cmp(&(f(b, "latency.p99_us") - p99).abs())
        }) {
            out.push(Series {
                label: format!("{side} at {}/s", n(f(s, "rate"))),
                points: serde_json::from_value(v["curve"].clone()).unwrap_or_default(),
            });
        }
    }
    out
}
