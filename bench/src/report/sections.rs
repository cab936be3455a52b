//! The report's per-scenario tables: every run, and medians.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

use super::{f, list, med, n, runs, Results};
use crate::svg::timeline;

pub(super) fn produce(md: &mut String, r: &Results) {
    let Some(p) = r.get("produce") else { return };
    let _ = writeln!(md, "## kafka-wire vs rdkafka (same tansu, same run)\n");
    let all: Vec<&Value> = p["runs"].as_array().into_iter().flatten().collect();
    let _ = writeln!(
        md,
        "| client | records/s (each run) | median | CPU ns/record (median) |"
    );
    let _ = writeln!(md, "| --- | --- | ---: | ---: |");
    for (name, key) in [("kafka-wire", "kafka_wire"), ("rdkafka", "rdkafka")] {
        let mine: Vec<String> = all
            .iter()
            .filter(|v| {
                v["client"]
                    .as_str()
                    .is_some_and(|c| c.eq_ignore_ascii_case(&key.replace('_', "")))
            })
            .map(|v| n(f(v, "records") / f(v, "elapsed_s")))
            .collect();
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} |",
            mine.join(" · "),
            n(f(p, &format!("{key}_records_per_sec"))),
            n(f(p, &format!("{key}_cpu_ns_per_record")))
        );
    }
    let _ = writeln!(
        md,
        "\nRatio kafka-wire / rdkafka: throughput {:.2}×, CPU per record {:.2}×.\n",
        f(p, "throughput_ratio"),
        f(p, "cpu_ratio")
    );
}

/// End to end at the independent Kafka consumer, for the settings that ran one.
fn consumer_latency(md: &mut String, r: &Results, groups: &[(&str, &str, &str)]) {
    let with: Vec<_> = groups
        .iter()
        .map(|(prefix, load, sink)| {
            let rs: Vec<_> = runs(r, prefix)
                .into_iter()
                .filter(|v| v["kafka_consumer"].is_object())
                .collect();
            (load, sink, rs)
        })
        .filter(|(_, _, rs)| !rs.is_empty())
        .collect();
    if with.is_empty() {
        return;
    }
    let _ = writeln!(md, "End to end, from each PUBLISH's scheduled send to its read by an independent Kafka consumer (librdkafka, `--kafka-consumer`), medians of the runs:\n");
    let _ = writeln!(
        md,
        "| load | sink | p50 ms | p99 ms | p99.9 ms | max ms | records read = expected |"
    );
    let _ = writeln!(md, "| --- | --- | ---: | ---: | ---: | ---: | --- |");
    for (load, sink, rs) in with {
        let all = rs
            .iter()
            .all(|v| v["kafka_consumer"]["count_matches"] == true);
        let _ = writeln!(
            md,
            "| {load} | {sink} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            med(&rs, "kafka_consumer.latency.p50_us") / 1000.0,
            med(&rs, "kafka_consumer.latency.p99_us") / 1000.0,
            med(&rs, "kafka_consumer.latency.p999_us") / 1000.0,
            med(&rs, "kafka_consumer.latency.max_us") / 1000.0,
            if all { "yes" } else { "NO" }
        );
    }
    let _ = writeln!(md);
}

pub(super) fn publish(md: &mut String, r: &Results, dir: &Path) -> anyhow::Result<()> {
    let groups = [
        ("publish-max-tansu", "max (closed loop)", "tansu"),
        ("publish-max-discard", "max (closed loop)", "discard sink"),
        ("publish-20k-tansu", "20,000/s open loop", "tansu"),
        ("publish-20k-discard", "20,000/s open loop", "discard sink"),
        (
            "publish-framed-max-discard",
            "max (closed loop), length-prefixed records (`--wire framed`)",
            "discard sink",
        ),
        (
            "publish-ws-max-discard",
            "max (closed loop), raw WebSocket messages (`--wire ws`)",
            "discard sink",
        ),
        (
            "publish-http-max-discard",
            "max (closed loop), HTTP produce calls, pipelined (`--wire http`)",
            "discard sink",
        ),
        (
            "publish-max-mosquitto",
            "max (closed loop)",
            "peer mosquitto, no Kafka",
        ),
        (
            "publish-max-rumqttd",
            "max (closed loop)",
            "peer rumqttd, no Kafka",
        ),
    ];
    if groups.iter().all(|(p, _, _)| runs(r, p).is_empty()) {
        return Ok(());
    }
    let _ = writeln!(
        md,
        "## Publish through sluice (MQTT, length-prefixed records, raw WebSocket, HTTP), and to the peers (100 clients, QoS 1 or acknowledged records, 100 B)\n"
    );
    let _ = writeln!(md, "| load | sink | server CPU µs/msg (each run) | median | acked msgs/s (median) | p50 ms | p99 ms | p99.9 ms | counts match |");
    let _ = writeln!(
        md,
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for (prefix, load, sink) in groups {
        let rs = runs(r, prefix);
        if rs.is_empty() {
            continue;
        }
        let matched = if sink.starts_with("peer") {
            "n/a"
        } else if rs.iter().all(|v| v["kafka_count_matches"] == true) {
            "yes"
        } else {
            "NO"
        };
        let _ = writeln!(
            md,
            "| {load} | {sink} | {} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {} |",
            list(&rs, "sluice_cpu_us_per_msg", 1.0, 2),
            med(&rs, "sluice_cpu_us_per_msg"),
            n(med(&rs, "acked_per_sec")),
            med(&rs, "puback_latency.p50_us") / 1000.0,
            med(&rs, "puback_latency.p99_us") / 1000.0,
            med(&rs, "puback_latency.p999_us") / 1000.0,
            matched
        );
    }
    let _ = writeln!(md, "\nServer CPU is sluice's, or the peer's in the peer rows. The discard sink is a measurement tool, not a broker: it acknowledges Produce and stores nothing. The peers (mosquitto, rumqttd) have no Kafka behind them: their PUBACK means the message is in their memory.\n");
    consumer_latency(md, r, &groups);
    // Throughput over time: each setting's first run.
    let series: Vec<(String, Vec<(f64, f64)>)> = groups
        .iter()
        .filter_map(|(prefix, _, _)| {
            let first = runs(r, prefix).into_iter().next()?;
            let points = first["timeline"]
                .as_array()?
                .iter()
                .filter_map(|p| Some((p["seconds"].as_f64()?, p["acked_per_sec"].as_f64()?)))
                .collect();
            // "max-tansu", "20k-discard": the legend is narrow.
            Some((prefix.trim_start_matches("publish-").to_owned(), points))
        })
        .collect();
    let title = "PUBACKs per second while publishing (first run of each)";
    if let Some(svg) = timeline(
        title,
        "seconds since publishing began",
        "PUBACKs/s",
        &series,
    ) {
        std::fs::write(dir.join("throughput.svg"), svg).context("writing throughput.svg")?;
        let _ = writeln!(md, "![throughput over time](throughput.svg)\n");
    }
    Ok(())
}

pub(super) fn idle(md: &mut String, r: &Results, dir: &Path) -> anyhow::Result<()> {
    let files: Vec<(&String, &Value)> = r.iter().filter(|(k, _)| k.starts_with("idle-")).collect();
    if files.is_empty() {
        return Ok(());
    }
    let _ = writeln!(md, "## Idle MQTT connections\n");
    let _ = writeln!(md, "| run | server | processes | connections | failed | ΔVmRSS B/conn | kernel Slab B/conn (both ends) | load generator RSS B/conn | CONNACK p99 ms |");
    let _ = writeln!(
        md,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for &(name, v) in &files {
        for row in v["results"].as_array().into_iter().flatten() {
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
                row["server"].as_str().unwrap_or("?"),
                f(row, "processes"),
                n(f(row, "connected")),
                n(f(row, "failed")),
                n(f(row, "vm_rss_bytes_per_conn")),
                n(f(row, "slab_bytes_per_conn")),
                n(f(row, "loadgen_rss_bytes_per_conn")),
                f(row, "connack_p99_us") / 1000.0
            );
        }
    }
    let _ = writeln!(md);
    // Memory per connection against the number of connections, one line per server and
    // build, from every idle run in the directory: runs of different builds on one line
    // would draw the code's history as a curve.
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for &(name, v) in &files {
        for row in v["results"].as_array().into_iter().flatten() {
            let server = row["server"].as_str().unwrap_or("?");
            let server = match build_tag(name) {
                Some(tag) => format!("{server} ({tag})"),
                None => server.to_owned(),
            };
            let point = (f(row, "connected"), f(row, "vm_rss_bytes_per_conn"));
            if !(point.0.is_finite() && point.1.is_finite()) {
                continue;
            }
            match series.iter_mut().find(|(s, _)| *s == server) {
                Some((_, points)) => points.push(point),
                None => series.push((server, vec![point])),
            }
        }
    }
    for (_, points) in &mut series {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let title = "Server memory per idle connection (ΔVmRSS) by connection count";
    if let Some(svg) = timeline(title, "connections", "bytes per connection", &series) {
        std::fs::write(dir.join("idle-memory.svg"), svg).context("writing idle-memory.svg")?;
        let _ = writeln!(md, "![memory per idle connection](idle-memory.svg)\n");
    }
    Ok(())
}

/// The build an idle run's file names, as `session` and what follows it up to a trailing
/// run letter: `idle-1m-2500-session6-b` → `session6`, `idle-1m-session6-purge0` →
/// `session6-purge0`; `None` for a file that names none.
fn build_tag(name: &str) -> Option<&str> {
    let at = name.find("session")?;
    let tag = name[at..].trim_end_matches(".json");
    match tag.rsplit_once('-') {
        Some((build, run)) if run.len() == 1 && run.chars().all(|c| c.is_ascii_lowercase()) => {
            Some(build)
        }
        _ => Some(tag),
    }
}

pub(super) fn fanout(md: &mut String, r: &Results) {
    let files: Vec<(&String, &Value)> =
        r.iter().filter(|(k, _)| k.starts_with("fanout-")).collect();
    if files.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Kafka → MQTT fan-out\n");
    let _ = writeln!(md, "Records produced with kafka-wire straight to tansu; sluice delivers each to every subscriber; every delivery is counted and checked per subscriber. Latency is from the record's scheduled produce time to its receipt.\n");
    let _ = writeln!(md, "| run | QoS | subscribers | records/s | runs | offered deliveries/s | deliveries/s (median) | sluice CPU ns/delivery | deliveries per core-s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | sustained |");
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for (name, v) in &files {
        for s in v["steps"].as_array().into_iter().flatten() {
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
                f(v, "args.qos"),
                n(f(v, "args.subscribers")),
                n(f(s, "rate")),
                f(s, "runs"),
                n(f(s, "offered_deliveries_per_sec")),
                n(f(s, "median_deliveries_per_sec")),
                n(f(s, "median_sluice_cpu_ns_per_delivery")),
                n(f(s, "median_deliveries_per_core_second")),
                f(s, "median_p50_us") / 1000.0,
                f(s, "median_p90_us") / 1000.0,
                f(s, "median_p99_us") / 1000.0,
                f(s, "median_p999_us") / 1000.0,
                f(s, "median_max_us") / 1000.0,
                if s["sustained"] == true { "yes" } else { "**no**" }
            );
        }
    }
    let _ = writeln!(md);
    for (name, v) in &files {
        if let Some(rate) = v["max_sustained_rate"].as_f64() {
            let _ = writeln!(
                md,
                "- {name}: highest sustained rate {} records/s = {} deliveries/s.",
                n(rate),
                n(f(v, "max_sustained_deliveries_per_sec"))
            );
        }
        for run in v["runs"].as_array().into_iter().flatten() {
            let problems: Vec<&str> = run["problems"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !problems.is_empty() {
                let _ = writeln!(
                    md,
                    "- {name}, {} records/s run {}: {}.",
                    n(f(run, "rate")),
                    f(run, "run") + 1.0,
                    problems.join("; ")
                );
            }
        }
    }
    let _ = writeln!(md);
}

pub(super) fn micro(md: &mut String, r: &Results, dir: &Path) {
    if let Some(rows) = r.get("micro").and_then(Value::as_array) {
        let _ = writeln!(md, "## Micro-benchmarks (one core, no network)\n");
        let _ = writeln!(md, "| benchmark | ns/op | ops/s | allocs/op |");
        let _ = writeln!(md, "| --- | ---: | ---: | ---: |");
        for row in rows {
            let _ = writeln!(
                md,
                "| {} | {:.1} | {} | {:.4} |",
                row["name"].as_str().unwrap_or("?"),
                f(row, "ns_per_op"),
                n(f(row, "ops_per_sec")),
                f(row, "allocs_per_op")
            );
        }
        let _ = writeln!(md);
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("subscriptions.txt")) {
        let _ = writeln!(
            md,
            "## Subscription index (`cargo bench --bench subscriptions`)\n"
        );
        let _ = writeln!(md, "{}\n", text.trim());
    }
}

#[cfg(test)]
mod tests {
    use super::build_tag;

    #[test]
    fn idle_runs_are_grouped_by_the_build_their_file_names() {
        assert_eq!(build_tag("idle-1m-2500-session6-a"), Some("session6"));
        assert_eq!(build_tag("idle-1m-2500-session6-b.json"), Some("session6"));
        assert_eq!(
            build_tag("idle-1m-2500-session6-purge0"),
            Some("session6-purge0")
        );
        assert_eq!(build_tag("idle-204k-session6"), Some("session6"));
        assert_eq!(build_tag("idle-10k"), None);
    }
}
