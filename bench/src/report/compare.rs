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
    batches(md, &max_runs);
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
        percentiles(
            md,
            s,
            "acked/s",
            [
                (
                    "rdkafka → tansu",
                    "rdkafka",
                    n(f(s, "rdkafka_acked_per_sec")),
                ),
                (
                    "MQTT → sluice → tansu",
                    "sluice",
                    n(f(s, "sluice_acked_per_sec")),
                ),
                ("**added**", "added", String::new()),
            ],
        );
        let _ = writeln!(
            md,
            "\nInside sluice (its `sluice_produce_latency_seconds`: read of the PUBLISH → Kafka's acknowledgement): mean {:.2} ms, p99 ≤ {:.2} ms (bucket bound). Rounds that sustained the rate (≥ 97 % acknowledged): rdkafka {}, sluice {} of {}.\n",
            f(s, "inside_sluice_mean_us") / 1000.0,
            f(s, "inside_sluice_p99_at_most_us") / 1000.0,
            f(s, "rdkafka_sustained"),
            f(s, "sluice_sustained"),
            f(c, "args.rounds")
        );
        let runs: Vec<&Value> = s["runs"].as_array().into_iter().flatten().collect();
        batches(md, &runs);
        cpu(md, &runs);
        if s["consumer"].is_object() {
            consumer(md, c, s);
        }
    }
}

/// The record batches each side's producer wrote per run (`sluice_batches`: sluice's
/// metric; `rdkafka_batches`: librdkafka's statistics) and the records per batch, which is
/// what a Kafka consumer fetches in each. Nothing for results that predate the counts.
fn batches(md: &mut String, runs: &[&Value]) {
    let count = |r: &Value| {
        r["sluice_batches"]
            .as_f64()
            .or(r["rdkafka_batches"].as_f64())
    };
    if !runs.iter().any(|r| count(r).is_some()) {
        return;
    }
    let _ = writeln!(
        md,
        "| side | record batches (each round) | records per batch (median) |"
    );
    let _ = writeln!(md, "| --- | --- | ---: |");
    for side in ["rdkafka", "sluice"] {
        let mine: Vec<&&Value> = runs.iter().filter(|r| r["side"] == side).collect();
        let each: Vec<String> = mine
            .iter()
            .map(|r| n(count(r).unwrap_or(f64::NAN)))
            .collect();
        let per_batch = median(
            mine.iter()
                .filter_map(|r| Some(f(r, "acked") / count(r).filter(|b| *b > 0.0)?))
                .collect(),
        );
        let _ = writeln!(md, "| {side} | {} | {per_batch:.1} |", each.join(" · "));
    }
    let _ = writeln!(md);
}

/// The CPU each side's processes used per record in the latency runs, and the cores they
/// kept busy together (their CPU time over the run's span, an upper bound: see
/// `Run::cores_busy`): the two sides share the machine with their broker, and where they
/// keep every core busy the latency is partly queueing for one. Nothing for results that
/// predate the broker's CPU.
fn cpu(md: &mut String, runs: &[&Value]) {
    if !runs.iter().any(|r| r["broker_cpu_seconds"].is_number()) {
        return;
    }
    let _ = writeln!(
        md,
        "| side | producer CPU µs/record (rdkafka child / sluice) | MQTT load generator µs/record | broker µs/record | cores busy (all three) |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: |");
    // A median over the runs that acknowledged something, "—" if none did.
    let shown = |values: Vec<f64>| {
        let m = median(values.into_iter().filter(|x| x.is_finite()).collect());
        if m.is_finite() {
            format!("{m:.2}")
        } else {
            "—".into()
        }
    };
    for side in ["rdkafka", "sluice"] {
        let mine: Vec<&&Value> = runs.iter().filter(|r| r["side"] == side).collect();
        let per_record = |key: &str| {
            shown(
                mine.iter()
                    .map(|r| f(r, key) * 1e6 / f(r, "acked"))
                    .collect(),
            )
        };
        let busy = shown(
            mine.iter()
                .map(|r| {
                    let cpu = f(r, "client_cpu_seconds")
                        + f(r, "loadgen_cpu_seconds")
                        + f(r, "broker_cpu_seconds");
                    cpu / (f(r, "acked") / f(r, "acked_per_sec"))
                })
                .collect(),
        );
        let loadgen = if side == "sluice" {
            per_record("loadgen_cpu_seconds")
        } else {
            "—".into()
        };
        let _ = writeln!(
            md,
            "| {side} | {} | {loadgen} | {} | {busy} |",
            per_record("client_cpu_seconds"),
            per_record("broker_cpu_seconds"),
        );
    }
    let _ = writeln!(
        md,
        "\nMedians of the rounds. The rdkafka child makes its own records; cores busy = the three processes' CPU time ÷ the run's span, an upper bound (each process's CPU is counted over a little more than the span: the rdkafka child's whole life with its broker's, the load generator's connecting); the independent consumer, when there is one, runs in the bench process and is not counted. Where a side keeps every core of the machine busy, its latency includes waiting for a core.\n"
    );
}

/// The same rate at the independent Kafka consumer (`compare --kafka-consumer`).
fn consumer(md: &mut String, c: &Value, s: &Value) {
    let _ = writeln!(
        md,
        "The same runs at an independent Kafka consumer (librdkafka, `fetch.wait.max.ms` {}), scheduled send → read, medians of the rounds, ms:\n",
        f(c, "args.consumer_max_wait_ms")
    );
    let runs: Vec<&Value> = s["runs"].as_array().into_iter().flatten().collect();
    let read = |side: &str| {
        let each: Vec<String> = runs
            .iter()
            .filter(|r| r["side"] == side)
            .map(|r| format!("{} / {}", n(f(r, "consumer.records")), n(f(r, "acked"))))
            .collect();
        each.join(" · ")
    };
    percentiles(
        md,
        &s["consumer"],
        "read / acked (each round)",
        [
            ("rdkafka → tansu → consumer", "rdkafka", read("rdkafka")),
            ("MQTT → sluice → tansu → consumer", "sluice", read("sluice")),
            ("**added**", "added", String::new()),
        ],
    );
    let _ = writeln!(
        md,
        "\nRounds in which the consumer read exactly the acknowledged records: rdkafka {}, sluice {} of {}.\n",
        f(s, "consumer.rdkafka_complete"),
        f(s, "consumer.sluice_complete"),
        f(c, "args.rounds")
    );
}

/// A table of `s`'s percentiles (objects under each row's key), in ms, with one more column.
fn percentiles(md: &mut String, s: &Value, column: &str, rows: [(&str, &str, String); 3]) {
    let _ = writeln!(
        md,
        "| side | {column} | mean | p50 | p90 | p99 | p99.9 | max |"
    );
    let _ = writeln!(
        md,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (label, key, extra) in rows {
        let ms = |p: &str| f(s, &format!("{key}.{p}")) / 1000.0;
        let _ = writeln!(
            md,
            "| {label} | {extra} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            ms("mean_us"),
            ms("p50_us"),
            ms("p90_us"),
            ms("p99_us"),
            ms("p999_us"),
            ms("max_us")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_section_shows_both_sides_and_the_added_latency() {
        let p = |us: f64| serde_json::json!({ "p50_us": us, "p90_us": us, "p99_us": us, "p999_us": us, "max_us": us, "mean_us": us / 2.0 });
        let mut r = Results::new();
        r.insert(
            "compare".into(),
            serde_json::json!({
                "args": { "linger_ms": 5, "size": 100, "clients": 100, "load": 0.5, "rounds": 1, "headers": false, "consumer_max_wait_ms": 5 },
                "max_runs": [
                    { "side": "rdkafka", "acked_per_sec": 500000.0, "acked": 1000, "client_cpu_seconds": 0.002, "rdkafka_batches": 4 },
                    { "side": "sluice", "acked_per_sec": 600000.0, "acked": 1000, "client_cpu_seconds": 0.001, "sluice_batches": 8 }
                ],
                "rdkafka_max_per_sec": 500000.0,
                "sluice_max_per_sec": 600000.0,
                "throughput_ratio": 1.2,
                "latency": [{
                    "base": "rdkafka", "rate": 250000.0,
                    "runs": [
                        { "side": "rdkafka", "acked": 1250000, "acked_per_sec": 250000.0, "consumer": { "records": 1250000 },
                          "client_cpu_seconds": 2.5, "loadgen_cpu_seconds": 0.0, "broker_cpu_seconds": 2.0 },
                        { "side": "sluice", "acked": 1250000, "acked_per_sec": 250000.0, "consumer": { "records": 1249999 },
                          "client_cpu_seconds": 3.0, "loadgen_cpu_seconds": 2.5, "broker_cpu_seconds": 2.0 }
                    ],
                    "rdkafka": p(3000.0), "sluice": p(4000.0), "added": p(1000.0),
                    "rdkafka_acked_per_sec": 250000.0, "sluice_acked_per_sec": 250000.0,
                    "inside_sluice_mean_us": 3500.0, "inside_sluice_p99_at_most_us": 5000.0,
                    "rdkafka_sustained": 1, "sluice_sustained": 1,
                    "consumer": {
                        "rdkafka": p(8000.0), "sluice": p(10000.0), "added": p(2000.0),
                        "rdkafka_complete": 1, "sluice_complete": 0, "target_met": false
                    }
                }]
            }),
        );
        let mut md = String::new();
        compare(&mut md, &r);
        assert!(
            md.contains("| rdkafka → tansu | 500,000 | 500,000 | 2.00 |"),
            "{md}"
        );
        assert!(md.contains("**1.20×**"), "{md}");
        assert!(md.contains("| rdkafka | 4 | 250.0 |"), "{md}");
        assert!(md.contains("| sluice | 8 | 125.0 |"), "{md}");
        assert!(md.contains("(50 % of the rdkafka maximum)"), "{md}");
        assert!(md.contains("| **added** |  | 0.50 | 1.00 |"), "{md}");
        assert!(
            md.contains(
                "| MQTT → sluice → tansu → consumer | 1,249,999 / 1,250,000 | 5.00 | 10.00 |"
            ),
            "{md}"
        );
        assert!(md.contains("| **added** |  | 1.00 | 2.00 |"), "{md}");
        assert!(md.contains("rdkafka 1, sluice 0 of 1."), "{md}");
        // CPU per record, and the cores the three processes kept busy over the 5 s span.
        assert!(md.contains("| rdkafka | 2.00 | — | 1.60 | 0.90 |"), "{md}");
        assert!(
            md.contains("| sluice | 2.40 | 2.00 | 1.60 | 1.50 |"),
            "{md}"
        );
    }

    /// A side whose runs acknowledged nothing gets dashes, not NaN.
    #[test]
    fn cpu_table_shows_dashes_for_runs_that_acknowledged_nothing() {
        let rdkafka = serde_json::json!({ "side": "rdkafka", "acked": 1000, "acked_per_sec": 1000.0,
            "client_cpu_seconds": 0.5, "loadgen_cpu_seconds": 0.0, "broker_cpu_seconds": 0.25 });
        let sluice = serde_json::json!({ "side": "sluice", "acked": 0, "acked_per_sec": 0.0,
            "client_cpu_seconds": 0.5, "loadgen_cpu_seconds": 0.5, "broker_cpu_seconds": 0.25 });
        let mut md = String::new();
        cpu(&mut md, &[&rdkafka, &sluice]);
        assert!(
            md.contains("| rdkafka | 500.00 | — | 250.00 | 0.75 |"),
            "{md}"
        );
        assert!(md.contains("| sluice | — | — | — | — |"), "{md}");
        assert!(!md.contains("NaN"), "{md}");
    }
}
