//! `sluice-bench report --dir DIR`: the Markdown report of one suite run (`tools/bench.sh`).
//!
//! It reads what the suite left in DIR: `meta.env` (machine, commit, load before and
//! after, written by bench.sh), the scenarios' JSON files by name (`micro.json`,
//! `produce.json`, `publish-{max,20k}-{tansu,discard}-N.json`, `idle-*.json`,
//! `fanout-*.json`, `storm.json`, `failover-*.json`, `compare.json`, `compare-rates.json`) and `subscriptions.txt` (the subscription-index benchmark's output),
//! and writes `report.md` with one table per brief.md target (measured, target, peer in
//! the same run) and one per scenario (every run, and medians), plus `latency.svg`, a
//! latency percentile plot, `failover.svg` (sessions resumed over time since the kill),
//! `idle-memory.svg` (memory per idle connection by connection count) and `throughput.svg`
//! (PUBACKs per second over each publish run). Missing files leave their rows as "not run".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use serde_json::Value;

mod compare;
mod sections;
mod sessions;
mod targets;

use crate::stats::{median, CurvePoint};
use crate::svg::{latency_percentiles, Series};
use compare::{compare, compare_curves};
use sections::{fanout, idle, micro, produce, publish};
use sessions::{failover, storm};
use targets::{best_step, targets};

/// The JSON files of a directory, by file stem.
type Results = BTreeMap<String, Value>;

fn load(dir: &Path) -> Result<Results> {
    let mut out = Results::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path)?;
            let value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            out.insert(stem.into_owned(), value);
        }
    }
    Ok(out)
}

/// `key=value` lines.
fn meta(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(dir.join("meta.env"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn f(v: &Value, path: &str) -> f64 {
    path.split('.')
        .fold(v, |v, k| &v[k])
        .as_f64()
        .unwrap_or(f64::NAN)
}

/// Results whose stem starts with `prefix` followed by `-N` (the runs of one setting).
fn runs<'a>(r: &'a Results, prefix: &str) -> Vec<&'a Value> {
    r.iter()
        .filter(|(k, _)| {
            k.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .map(|(_, v)| v)
        .collect()
}

fn med(values: &[&Value], path: &str) -> f64 {
    median(values.iter().map(|v| f(v, path)).collect())
}

fn list(values: &[&Value], path: &str, scale: f64, digits: usize) -> String {
    let each: Vec<String> = values
        .iter()
        .map(|v| format!("{:.*}", digits, f(v, path) * scale))
        .collect();
    each.join(" · ")
}

/// A number with thousands separators.
fn n(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Writes DIR/report.md (and DIR/latency.svg when there are latency curves).
pub fn write(dir: &Path) -> Result<()> {
    let r = load(dir)?;
    let m = meta(dir);
    let mut md = String::new();
    header(&mut md, &m);
    targets(&mut md, &r);
    produce(&mut md, &r);
    compare(&mut md, &r);
    publish(&mut md, &r, dir)?;
    idle(&mut md, &r, dir)?;
    fanout(&mut md, &r);
    storm(&mut md, &r);
    failover(&mut md, &r, dir)?;
    plot(&mut md, &r, dir)?;
    micro(&mut md, &r, dir);
    let path = dir.join("report.md");
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn header(md: &mut String, m: &BTreeMap<String, String>) {
    let get = |k: &str| m.get(k).map_or("?", String::as_str);
    let _ = writeln!(
        md,
        "# sluice benchmark report ({} profile)\n",
        get("profile")
    );
    let _ = writeln!(
        md,
        "- Started {}, finished {}; commit {} ({}); sluice binary `{}`.",
        get("started"),
        get("finished"),
        get("commit"),
        get("tree"),
        get("sluice_bin")
    );
    let _ = writeln!(
        md,
        "- Machine: {} ({} cores), {} GiB memory, Linux {}, {}.",
        get("cpu_model"),
        get("nproc"),
        get("mem_gib"),
        get("kernel"),
        get("os")
    );
    let _ = writeln!(
        md,
        "- Load average (1/5/15 min) before: {}; after: {}. Busiest other processes at the \
         start: {}.",
        get("load_before"),
        get("load_after"),
        get("others_before")
    );
    let _ = writeln!(
        md,
        "- All processes (sluice, tansu, load generators, producers) share this machine's \
         cores; ratios against a baseline of the same run are what to read.\n"
    );
}

fn curve(v: &Value, key: &str) -> Vec<CurvePoint> {
    serde_json::from_value(v[key].clone()).unwrap_or_default()
}

fn plot(md: &mut String, r: &Results, dir: &Path) -> Result<()> {
    let mut series = Vec::new();
    for qos in [0, 1] {
        if let Some(step) = r.get(&format!("fanout-qos{qos}")).and_then(best_step) {
            series.push(Series {
                label: format!("fan-out QoS {qos}"),
                points: curve(step, "latency_curve"),
            });
        }
    }
    for (prefix, label) in [
        ("publish-20k-tansu", "PUBACK 20k/s tansu"),
        ("publish-20k-discard", "PUBACK 20k/s discard"),
    ] {
        let rs = runs(r, prefix);
        let p99 = med(&rs, "puback_latency.p99_us");
        // The run whose p99 is the median's.
        if let Some(v) = rs.iter().min_by(|a, b| {
            (f(a, "puback_latency.p99_us") - p99)
                .abs()
                .total_cmp(&(f(b, "puback_latency.p99_us") - p99).abs())
        }) {
            series.push(Series {
                label: label.into(),
                points: curve(v, "puback_curve"),
            });
        }
    }
    series.extend(compare_curves(r));
    let Some(svg) = latency_percentiles("Latency by percentile (median run of each)", &series)
    else {
        return Ok(());
    };
    std::fs::write(dir.join("latency.svg"), svg).context("writing latency.svg")?;
    let _ = writeln!(
        md,
        "## Latency percentiles\n\n![latency percentiles](latency.svg)\n"
    );
    let _ = writeln!(md, "Fan-out: scheduled produce time → receipt by the subscriber. PUBACK: scheduled PUBLISH time → PUBACK (sluice → Kafka → acks=all → back). rdkafka / sluice at N/s (`compare`): scheduled send → delivery report or PUBACK, same broker, same run.\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_separators() {
        assert_eq!(n(1234567.4), "1,234,567");
        assert_eq!(n(999.0), "999");
        assert_eq!(n(-1000.0), "-1,000");
        assert_eq!(n(f64::NAN), "—");
    }

    #[test]
    fn runs_are_grouped_by_prefix() {
        let mut r = Results::new();
        for k in [
            "publish-max-tansu-1",
            "publish-max-tansu-2",
            "publish-max-tansu-x",
        ] {
            r.insert(k.into(), serde_json::json!({ "v": 1.0 }));
        }
        r.insert("publish-max-tansu".into(), serde_json::json!({}));
        assert_eq!(runs(&r, "publish-max-tansu").len(), 2);
        assert_eq!(runs(&r, "publish-max").len(), 0);
    }

    #[test]
    fn lower_fixed_rates_get_rows_of_their_own_in_the_targets() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let series = |base: &str, rate: f64, p99: f64, met: bool| {
            serde_json::json!({
                "base": base, "rate": rate, "target_met": met, "consumer": null,
                "added": { "p99_us": p99, "p999_us": 2.0 * p99 },
                "sluice": { "p99_us": 6000.0 + p99, "p999_us": 8000.0 },
                "rdkafka": { "p99_us": 6000.0, "p999_us": 7000.0 },
                "runs": []
            })
        };
        let compare = serde_json::json!({
            "args": { "rounds": 3, "load": 0.5, "linger_ms": 5 },
            "rdkafka_max_per_sec": 1000000.0, "sluice_max_per_sec": 900000.0,
            "throughput_ratio": 0.9, "max_runs": [],
            "latency": [
                series("rdkafka", 500000.0, 20000.0, false),
                series("fixed", 10000.0, 300.0, true),
                series("fixed", 50000.0, 700.0, false)
            ]
        });
        std::fs::write(dir.path().join("compare.json"), compare.to_string()).expect("write");
        // The full profile's second invocation, fixed rates only, no consumer.
        let rates = serde_json::json!({
            "args": { "rounds": 3, "load": 0.5, "linger_ms": 5, "kafka_consumer": false },
            "rdkafka_max_per_sec": 1000000.0,
            "latency": [series("fixed", 20000.0, 100.0, true)]
        });
        std::fs::write(dir.path().join("compare-rates.json"), rates.to_string()).expect("write");
        write(dir.path()).expect("a report");
        let md = std::fs::read_to_string(dir.path().join("report.md")).expect("read");
        assert!(
            md.contains("at 50 % load (500,000 records/s, rdkafka max"),
            "{md}"
        );
        assert!(md.contains(
            "at a fixed 10,000 records/s (1.0 % of rdkafka's max) | p99 ≤ 0.5 ms, p99.9 ≤ 2 ms | added p99 0.30 ms, p99.9 0.60 ms"
        ));
        assert!(md.contains("| within at this rate |"));
        assert!(md.contains("at a fixed 50,000 records/s (5.0 % of rdkafka's max)"));
        assert!(md.contains("| over at this rate (1.40) |"));
        assert!(md.contains(
            "at a fixed 20,000 records/s (2.0 % of rdkafka's max) | p99 ≤ 0.5 ms, p99.9 ≤ 2 ms | added p99 0.10 ms"
        ));
    }

    #[test]
    fn writes_a_report_from_whatever_is_there() {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("meta.env"), "profile=quick\nnproc=2\n").expect("write");
        std::fs::write(
            dir.path().join("micro.json"),
            r#"[{"name":"x","ops":1,"ns_per_op":2.0,"ops_per_sec":5e8,"mb_per_sec":0,"allocs_per_op":0}]"#,
        )
        .expect("write");
        write(dir.path()).expect("a report");
        let md = std::fs::read_to_string(dir.path().join("report.md")).expect("read");
        assert!(md.contains("(quick profile)") && md.contains("| x | 2.0 | 500,000,000 |"));
        assert!(md.contains("| memory per idle MQTT connection | ≤ 512 B | not run |"));
        assert!(!dir.path().join("throughput.svg").exists());
    }

    #[test]
    fn plots_publish_throughput_over_time() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let run = serde_json::json!({
            "acked_per_sec": 20000.0,
            "timeline": [
                {"seconds": 0.5, "sent_per_sec": 19000.0, "acked_per_sec": 18000.0},
                {"seconds": 1.0, "sent_per_sec": 21000.0, "acked_per_sec": 22000.0},
            ],
        });
        std::fs::write(dir.path().join("publish-20k-tansu-1.json"), run.to_string())
            .expect("write");
        write(dir.path()).expect("a report");
        let md = std::fs::read_to_string(dir.path().join("report.md")).expect("read");
        assert!(md.contains("![throughput over time](throughput.svg)"));
        let svg = std::fs::read_to_string(dir.path().join("throughput.svg")).expect("read");
        assert!(
            svg.contains("20k-tansu") && svg.contains("PUBACKs/s"),
            "{svg}"
        );
    }
}
