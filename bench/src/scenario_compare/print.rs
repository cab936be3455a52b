//! `compare`'s output: each run's line on stderr as it ends, and the Markdown tables of the
//! whole scenario on stdout.

use super::{CompareOutput, Percentiles, Run, Side};
use crate::stats::median;

/// One run's line, as it ends.
pub(super) fn report_run(r: &Run) {
    eprintln!(
        "round {} {:?} at {}: {:.0} acked/s, mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms{}{} (load {:.2} → {:.2})",
        r.round,
        r.side,
        r.rate.map_or("max".into(), |x| format!("{x:.0}/s")),
        r.acked_per_sec,
        r.latency.mean_us / 1000.0,
        r.latency.p50_us / 1000.0,
        r.latency.p99_us / 1000.0,
        r.latency.p999_us / 1000.0,
        r.latency.max_us / 1000.0,
        r.batches().map_or(String::new(), |b| format!(
            "; {b} Kafka batches, {:.1} records per batch{}",
            records_per_batch(r).unwrap_or(f64::NAN),
            match r.rdkafka_batched_records {
                Some(n) if n < r.acked => format!(
                    " (librdkafka's statistics account for only {n} of the records)"
                ),
                _ => String::new(),
            }
        )),
        r.inside_sluice.as_ref().map_or(String::new(), |i| format!(
            "; inside sluice mean {:.2} ms, p50 ≤ {:.2} ms, p99 ≤ {:.2} ms",
            i.mean_us / 1000.0,
            i.p50_at_most_us / 1000.0,
            i.p99_at_most_us / 1000.0,
        )),
        r.load_before,
        r.load_after
    );
    if let Some(c) = &r.consumer {
        eprintln!(
            "  at the Kafka consumer: {} of {} acknowledged records read{}, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            c.records,
            r.acked,
            if c.count_matches { "" } else { " (MISMATCH)" },
            c.latency.p50_us / 1000.0,
            c.latency.p99_us / 1000.0,
            c.latency.p999_us / 1000.0,
            c.latency.max_us / 1000.0
        );
    }
}

/// Prints the results as Markdown tables.
pub fn print(o: &CompareOutput) {
    println!(
        "linger.ms = {} on both sides; acks=all, idempotent; {} B values; {} MQTT clients / keys; headers {}\n",
        o.args.linger_ms,
        o.args.size,
        o.args.clients,
        if o.args.headers { "mqtt.client_id and mqtt.qos" } else { "none" }
    );
    println!("| side | max records/s (each round) | median | client CPU µs/record (median) |");
    println!("| --- | --- | ---: | ---: |");
    for side in [Side::Rdkafka, Side::Sluice] {
        let mine: Vec<&Run> = o.max_runs.iter().filter(|r| r.side == side).collect();
        let each: Vec<String> = mine
            .iter()
            .map(|r| format!("{:.0}", r.acked_per_sec))
            .collect();
        let cpu = median(
            mine.iter()
                .map(|r| r.client_cpu_seconds * 1e6 / r.acked.max(1) as f64)
                .collect(),
        );
        let max = if side == Side::Rdkafka {
            o.rdkafka_max_per_sec
        } else {
            o.sluice_max_per_sec
        };
        println!("| {side:?} | {} | {max:.0} | {cpu:.2} |", each.join(" · "));
    }
    println!(
        "\nthroughput sluice / rdkafka = {:.2}x\n",
        o.throughput_ratio
    );
    print_batches(&o.max_runs);
    for s in &o.latency {
        println!(
            "latency at {:.0} records/s ({} × {:?} max unless Fixed); acknowledged: rdkafka {:.0}/s, sluice {:.0}/s; medians of {} rounds, ms:\n",
            s.rate, o.args.load, s.base, s.rdkafka_acked_per_sec, s.sluice_acked_per_sec, o.args.rounds
        );
        print_percentiles(
            [
                ("rdkafka → tansu", &s.rdkafka),
                ("MQTT → sluice → tansu", &s.sluice),
                ("added (sluice − rdkafka)", &s.added),
            ],
            &[],
        );
        println!(
            "\ninside sluice (read → Kafka ack, its own histogram): mean {:.2} ms, p99 ≤ {:.2} ms",
            s.inside_sluice_mean_us / 1000.0,
            s.inside_sluice_p99_at_most_us / 1000.0
        );
        println!();
        print_batches(&s.runs);
        print_cpu(&s.runs);
        println!(
            "rounds that sustained the rate: rdkafka {}, sluice {} of {}",
            s.rdkafka_sustained, s.sluice_sustained, o.args.rounds
        );
        println!(
            "added p99 ≤ 0.5 ms and p99.9 ≤ 2 ms (both sides sustaining the rate): {}\n",
            if s.target_met { "met" } else { "MISSED" }
        );
        if let Some(c) = &s.consumer {
            println!("at an independent Kafka consumer (librdkafka, fetch.wait.max.ms {}), scheduled send → read; medians of the rounds, ms:\n", o.args.consumer_max_wait_ms);
            let read = |side: Side| {
                let each: Vec<String> = s
                    .runs
                    .iter()
                    .filter(|r| r.side == side)
                    .map(|r| {
                        r.consumer
                            .as_ref()
                            .map_or("—".into(), |c| format!("{} / {}", c.records, r.acked))
                    })
                    .collect();
                each.join(" · ")
            };
            print_percentiles(
                [
                    ("rdkafka → tansu → consumer", &c.rdkafka),
                    ("MQTT → sluice → tansu → consumer", &c.sluice),
                    ("added (sluice − rdkafka)", &c.added),
                ],
                &[read(Side::Rdkafka), read(Side::Sluice), String::new()],
            );
            println!(
                "\nrounds in which the consumer read exactly the acknowledged records: rdkafka {}, sluice {} of {}",
                c.rdkafka_complete, c.sluice_complete, o.args.rounds
            );
            println!(
                "added at the consumer p99 ≤ 0.5 ms and p99.9 ≤ 2 ms (both sides sustaining the rate, every record read): {}\n",
                if c.target_met { "met" } else { "MISSED" }
            );
        }
    }
}

/// One Markdown table of percentiles in ms, one row per side, with the records read per
/// round when `read` has them.
fn print_percentiles(rows: [(&str, &Percentiles); 3], read: &[String]) {
    let read_column = !read.is_empty();
    println!(
        "| side | mean | p50 | p90 | p99 | p99.9 | max |{}",
        if read_column {
            " read / acked (each round) |"
        } else {
            ""
        }
    );
    println!(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |{}",
        if read_column { " --- |" } else { "" }
    );
    for (i, (name, p)) in rows.into_iter().enumerate() {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |{}",
            p.mean_us / 1000.0,
            p.p50_us / 1000.0,
            p.p90_us / 1000.0,
            p.p99_us / 1000.0,
            p.p999_us / 1000.0,
            p.max_us / 1000.0,
            read.get(i).map_or(String::new(), |r| format!(" {r} |"))
        );
    }
}

/// Acknowledged records per Kafka record batch of one run.
fn records_per_batch(r: &Run) -> Option<f64> {
    r.batches()
        .filter(|b| *b > 0)
        .map(|b| r.acked as f64 / b as f64)
}

/// The record batches each side's producer wrote per run (sluice: its
/// `sluice_produce_batches_total`; rdkafka: librdkafka's statistics), and the records per
/// batch: what a Kafka consumer fetches in each.
fn print_batches(runs: &[Run]) {
    println!("| side | record batches (each round) | records per batch (each round) | median records per batch |");
    println!("| --- | --- | --- | ---: |");
    for side in [Side::Rdkafka, Side::Sluice] {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.side == side).collect();
        let each = |f: &dyn Fn(&Run) -> String| -> String {
            mine.iter().map(|r| f(r)).collect::<Vec<_>>().join(" · ")
        };
        let batches = each(&|r| r.batches().map_or("—".into(), |b| b.to_string()));
        let per_batch = each(&|r| records_per_batch(r).map_or("—".into(), |x| format!("{x:.1}")));
        let median_per_batch = median(mine.iter().filter_map(|r| records_per_batch(r)).collect());
        println!("| {side:?} | {batches} | {per_batch} | {median_per_batch:.1} |");
    }
    println!();
}

/// Each side's CPU per record in these runs (the producer: the rdkafka child or sluice; the
/// MQTT load generator; the broker) and the cores the three kept busy together, an upper
/// bound ([`Run::cores_busy`]): where a side keeps every core busy, its latency includes
/// waiting for one.
fn print_cpu(runs: &[Run]) {
    println!("| side | producer µs/record (each round) | load generator µs/record | broker µs/record | cores busy (each round) |");
    println!("| --- | --- | --- | --- | --- |");
    for side in [Side::Rdkafka, Side::Sluice] {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.side == side).collect();
        let each = |f: &dyn Fn(&Run) -> Option<f64>| -> String {
            mine.iter()
                .map(|r| f(r).map_or("—".into(), |x| format!("{x:.2}")))
                .collect::<Vec<_>>()
                .join(" · ")
        };
        let per_record = |cpu: f64, r: &Run| (r.acked > 0).then(|| cpu * 1e6 / r.acked as f64);
        let loadgen = match side {
            Side::Rdkafka => "—".to_string(),
            Side::Sluice => each(&|r| per_record(r.loadgen_cpu_seconds, r)),
        };
        println!(
            "| {side:?} | {} | {loadgen} | {} | {} |",
            each(&|r| per_record(r.client_cpu_seconds, r)),
            each(&|r| per_record(r.broker_cpu_seconds, r)),
            each(&Run::cores_busy),
        );
    }
    println!();
}
