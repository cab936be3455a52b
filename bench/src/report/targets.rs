//! The report's first table: each brief.md target, measured / target / peer.

use std::fmt::Write as _;

use serde_json::Value;

use super::sessions::{failovers, storm_row};
use super::{f, med, n, runs, Results};

pub(super) fn targets(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## The brief's targets\n");
    let _ = writeln!(
        md,
        "| target (brief.md) | target | measured | peer, same run | status |"
    );
    let _ = writeln!(md, "| --- | ---: | --- | --- | --- |");
    let idle_rows: Vec<&Value> = r
        .iter()
        .filter(|(k, _)| k.starts_with("idle-"))
        .flat_map(|(_, v)| v["results"].as_array().into_iter().flatten())
        .collect();
    let sluice_idle: Vec<&&Value> = idle_rows
        .iter()
        .filter(|v| v["server"] == "sluice")
        .collect();
    let mosq = idle_rows.iter().find(|v| v["server"] == "mosquitto");
    let largest = sluice_idle
        .iter()
        .max_by(|a, b| f(a, "connected").total_cmp(&f(b, "connected")));
    let peer_mem = mosq.map_or("—".into(), |v| {
        format!(
            "mosquitto {} B ({} conns)",
            n(f(v, "vm_rss_bytes_per_conn")),
            n(f(v, "connected"))
        )
    });
    match largest {
        Some(v) => {
            let conns = f(v, "connected");
            let _ = writeln!(
                md,
                "| idle MQTT connections held | 1,000,000 | {} (largest run) | — | {} |",
                n(conns),
                if conns >= 1e6 { "met" } else { "not run at 1M" }
            );
            let mem: Vec<String> = sluice_idle
                .iter()
                .map(|v| {
                    format!(
                        "{} B at {}",
                        n(f(v, "vm_rss_bytes_per_conn")),
                        n(f(v, "connected"))
                    )
                })
                .collect();
            let worst = sluice_idle
                .iter()
                .map(|v| f(v, "vm_rss_bytes_per_conn"))
                .fold(0.0, f64::max);
            let _ = writeln!(
                md,
                "| memory per idle MQTT connection (ΔRSS) | ≤ 512 B | {} | {peer_mem} | {} |",
                mem.join("; "),
                status(worst <= 512.0, worst / 512.0)
            );
        }
        None => {
            let _ = writeln!(
                md,
                "| idle MQTT connections held | 1,000,000 | not run | — | — |"
            );
            let _ = writeln!(
                md,
                "| memory per idle MQTT connection | ≤ 512 B | not run | — | — |"
            );
        }
    }
    let discard = runs(r, "publish-max-discard");
    let produce = r.get("produce");
    let rd_cpu = produce.map_or(f64::NAN, |p| f(p, "rdkafka_cpu_ns_per_record"));
    if discard.is_empty() {
        let _ = writeln!(
            md,
            "| CPU per 100-byte QoS 1 publish (discard sink) | ≤ 1 µs | not run | — | — |"
        );
    } else {
        let cpu = med(&discard, "sluice_cpu_us_per_msg");
        let _ = writeln!(
            md,
            "| CPU per 100-byte QoS 1 publish (discard sink) | ≤ 1 µs | {cpu:.2} µs (median of {}, closed loop) | rdkafka alone: {:.2} µs/record | {} |",
            discard.len(),
            rd_cpu / 1000.0,
            status(cpu <= 1.0, cpu)
        );
    }
    if let Some(c) = r.get("compare") {
        compare_targets(md, c);
        // The full profile's fixed lower rates, timed without the consumer.
        if let Some(rates) = r.get("compare-rates") {
            fixed_rate_rows(md, rates);
        }
    } else {
        throughput_and_latency(md, r, produce);
    }
    for qos in [0, 1] {
        let Some(v) = r.get(&format!("fanout-qos{qos}")) else {
            let _ = writeln!(
                md,
                "| Kafka → MQTT fan-out, QoS {qos} | ≥ 1M deliveries/s/core | not run | — | — |"
            );
            continue;
        };
        let step = best_step(v);
        let per_core = step.map_or(f64::NAN, |s| f(s, "median_deliveries_per_core_second"));
        let _ = writeln!(
            md,
            "| Kafka → MQTT fan-out, QoS {qos} | ≥ 1M deliveries/s/core | {} per core-second of sluice CPU ({} ns/delivery), {} deliveries/s in all | — | {} |",
            n(per_core),
            n(step.map_or(f64::NAN, |s| f(s, "median_sluice_cpu_ns_per_delivery"))),
            n(step.map_or(f64::NAN, |s| f(s, "median_deliveries_per_sec"))),
            status(per_core >= 1e6, per_core / 1e6)
        );
    }
    connack_rate(md, r);
    failover_target(md, r);
}

/// The throughput and latency rows from `compare.json`: both sides in the same run.
fn compare_targets(md: &mut String, c: &Value) {
    let ratio = f(c, "throughput_ratio");
    let _ = writeln!(
        md,
        "| client → Kafka throughput vs rdkafka | ≥ 1.0× | 100 MQTT QoS 1 clients → sluice → tansu, closed loop: {} msgs/s = {:.2}× (median of {}) | rdkafka → the same tansu: {} records/s | {} |",
        n(f(c, "sluice_max_per_sec")),
        ratio,
        f(c, "args.rounds"),
        n(f(c, "rdkafka_max_per_sec")),
        status(ratio >= 1.0, ratio)
    );
    let load_based = c["latency"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["base"] != "fixed");
    for s in load_based {
        let (p99, p999) = (
            f(s, "added.p99_us") / 1000.0,
            f(s, "added.p999_us") / 1000.0,
        );
        // With `--kafka-consumer`: the same at an independent Kafka consumer.
        let at_consumer = if s["consumer"].is_object() {
            format!(
                "; at an independent Kafka consumer added p99 {:.2} ms, p99.9 {:.2} ms ({})",
                f(s, "consumer.added.p99_us") / 1000.0,
                f(s, "consumer.added.p999_us") / 1000.0,
                if s["consumer"]["target_met"] == true {
                    "within the target"
                } else {
                    "not within the target"
                }
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| latency added over rdkafka at {:.0} % load ({} records/s, {} max, linger.ms {}) | p99 ≤ 0.5 ms, p99.9 ≤ 2 ms | added p99 {p99:.2} ms, p99.9 {p999:.2} ms (acknowledgements){at_consumer}; sluice p99 {:.2} / p99.9 {:.2} ms | rdkafka p99 {:.2} / p99.9 {:.2} ms | {} |",
            f(c, "args.load") * 100.0,
            n(f(s, "rate")),
            s["base"].as_str().unwrap_or("?"),
            f(c, "args.linger_ms"),
            f(s, "sluice.p99_us") / 1000.0,
            f(s, "sluice.p999_us") / 1000.0,
            f(s, "rdkafka.p99_us") / 1000.0,
            f(s, "rdkafka.p999_us") / 1000.0,
            status(s["target_met"] == true, p99 / 0.5)
        );
    }
    fixed_rate_rows(md, c);
}

/// Rows for the fixed-rate latency series of a `compare` output (`--rates`):
/// lower loads than the brief's 50 %, where the added latency may be within the target.
fn fixed_rate_rows(md: &mut String, c: &Value) {
    let fixed = c["latency"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["base"] == "fixed");
    for s in fixed {
        let (p99, p999) = (
            f(s, "added.p99_us") / 1000.0,
            f(s, "added.p999_us") / 1000.0,
        );
        let _ = writeln!(
            md,
            "| latency added over rdkafka at a fixed {} records/s ({:.1} % of rdkafka's max) | p99 ≤ 0.5 ms, p99.9 ≤ 2 ms | added p99 {p99:.2} ms, p99.9 {p999:.2} ms (acknowledgements{}); sluice p99 {:.2} / p99.9 {:.2} ms | rdkafka p99 {:.2} / p99.9 {:.2} ms | {} |",
            n(f(s, "rate")),
            f(s, "rate") / f(c, "rdkafka_max_per_sec") * 100.0,
            if c["args"]["kafka_consumer"] == true {
                ", a Kafka consumer reading both sides meanwhile"
            } else {
                ""
            },
            f(s, "sluice.p99_us") / 1000.0,
            f(s, "sluice.p999_us") / 1000.0,
            f(s, "rdkafka.p99_us") / 1000.0,
            f(s, "rdkafka.p999_us") / 1000.0,
            if s["target_met"] == true {
                "within at this rate".to_string()
            } else {
                format!("over at this rate ({:.2})", p99 / 0.5)
            }
        );
    }
}

/// Without `compare.json`: throughput from `produce` and `publish` (separate runs).
fn throughput_and_latency(md: &mut String, r: &Results, produce: Option<&Value>) {
    let tansu = runs(r, "publish-max-tansu");
    match (tansu.is_empty(), produce) {
        (false, Some(p)) => {
            let mqtt = med(&tansu, "acked_per_sec");
            let rd = f(p, "rdkafka_records_per_sec");
            let _ = writeln!(
                md,
                "| client → Kafka throughput vs rdkafka | ≥ 1.0× | 100 MQTT clients → sluice → tansu, closed loop: {} msgs/s = {:.2}× (kafka-wire alone {:.2}×) | rdkafka → tansu {} records/s | {} |",
                n(mqtt),
                mqtt / rd,
                f(p, "throughput_ratio"),
                n(rd),
                status(mqtt / rd >= 1.0, mqtt / rd)
            );
        }
        _ => {
            let _ = writeln!(
                md,
                "| client → Kafka throughput vs rdkafka | ≥ 1.0× | not run | — | — |"
            );
        }
    }
    let low = runs(r, "publish-20k-tansu");
    let info = if low.is_empty() {
        "not run".to_owned()
    } else {
        format!(
            "not measured (needs rdkafka at the same rate); for reference PUBACK p99 {:.2} ms, p99.9 {:.2} ms at 20k msgs/s end to end",
            med(&low, "puback_latency.p99_us") / 1000.0,
            med(&low, "puback_latency.p999_us") / 1000.0
        )
    };
    let _ = writeln!(md, "| latency added over rdkafka at 50 % load | p99 ≤ 0.5 ms, p99.9 ≤ 2 ms | {info} | — | not measured |");
}

fn connack_rate(md: &mut String, r: &Results) {
    let peers: Vec<String> = ["mosquitto", "rumqttd"]
        .iter()
        .filter_map(|p| {
            let m = storm_row(r, p, "Clean")?;
            Some(format!(
                "{p} {} per core-second ({} CONNACK/s)",
                n(f(m, "connacks_per_core_second")),
                n(f(m, "connacks_per_sec"))
            ))
        })
        .collect();
    let peers = if peers.is_empty() {
        "—".into()
    } else {
        peers.join("; ")
    };
    match storm_row(r, "sluice", "Clean") {
        Some(m) => {
            let per_core = f(m, "connacks_per_core_second");
            let persistent = storm_row(r, "sluice", "Persistent").map_or(String::new(), |p| {
                format!(
                    "; persistent sessions {} per core-second",
                    n(f(p, "connacks_per_core_second"))
                )
            });
            let _ = writeln!(
                md,
                "| MQTT CONNECT → CONNACK rate (reconnect storm, clean sessions) | ≥ 50k/s/core | {} per core-second of sluice CPU ({} CONNACK/s in all, p99 {:.0} ms){persistent} | {peers} | {} |",
                n(per_core),
                n(f(m, "connacks_per_sec")),
                f(m, "p99_ms"),
                status(per_core >= 50_000.0, per_core / 50_000.0)
            );
        }
        None => {
            let _ = writeln!(
                md,
                "| MQTT CONNECT → CONNACK rate | ≥ 50k/s/core | not run | {peers} | — |"
            );
        }
    }
}

fn failover_target(md: &mut String, r: &Results) {
    let Some(v) = failovers(r).pop() else {
        let _ = writeln!(
            md,
            "| failover of 100k sessions | ≤ 10 s | not run | — | — |\n"
        );
        return;
    };
    let sessions = f(v, "args.sessions");
    let total = f(v, "median_total_seconds");
    let lost = f(v, "max_sessions_lost");
    let state = if lost > 0.0 {
        format!("missed: {} sessions lost", n(lost))
    } else if sessions < 100_000.0 {
        format!("not run at 100k ({})", status(total <= 10.0, total / 10.0))
    } else {
        status(total <= 10.0, total / 10.0)
    };
    let _ = writeln!(
        md,
        "| failover of 100k sessions | ≤ 10 s, 0 lost | {} sessions: all resumed {:.2} s after the kill (median of {}), resume p99 {:.0} ms, {} lost | Waterstream (published): 100k in 1 min 45 s | {state} |\n",
        n(sessions),
        total,
        v["runs"].as_array().map_or(0, Vec::len),
        f(v, "median_resume_p99_ms"),
        n(lost)
    );
}

fn status(met: bool, value: f64) -> String {
    if met {
        "met".into()
    } else if value.is_finite() {
        format!("missed ({value:.2})")
    } else {
        "missed".into()
    }
}

/// The fan-out step to quote: the highest sustained rate, else the first step.
pub(super) fn best_step(v: &Value) -> Option<&Value> {
    let steps = v["steps"].as_array()?;
    steps
        .iter()
        .filter(|s| s["sustained"] == true)
        .max_by(|a, b| f(a, "rate").total_cmp(&f(b, "rate")))
        .or(steps.first())
}
