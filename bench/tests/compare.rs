//! The `compare` scenario end to end, small: MQTT clients → sluice → tansu against the
//! rdkafka producer → the same tansu, with the independent Kafka consumer (librdkafka)
//! reading back every acknowledged record of both sides' latency runs, and each side's
//! record batch count (sluice's metric, librdkafka's statistics).

mod common;

#[test]
fn the_kafka_consumer_reads_every_acknowledged_record_of_both_sides() {
    // Two rounds: the second consumer of each side starts where the first stopped.
    let o = common::run_scenario(
        "compare",
        &[
            "--rounds",
            "2",
            "--clients",
            "4",
            "--max-seconds",
            "0.2",
            "--seconds",
            "1",
            "--rates",
            "1000",
            "--kafka-consumer",
        ],
    );
    let series = &o["latency"][0];
    let runs = series["runs"].as_array().expect("the latency runs");
    assert_eq!(runs.len(), 4, "2 rounds of both sides: {series}");
    for side in ["rdkafka", "sluice"] {
        assert_eq!(
            runs.iter().filter(|r| r["side"] == side).count(),
            2,
            "{series}"
        );
    }
    for r in runs {
        let acked = r["acked"].as_u64().unwrap();
        let consumer = &r["consumer"];
        assert!(acked >= 900, "about 1,000 records acknowledged: {r}");
        assert_eq!(consumer["records"].as_u64(), Some(acked), "{r}");
        assert_eq!(consumer["malformed"].as_u64(), Some(0), "{r}");
        assert_eq!(consumer["count_matches"], true, "{r}");
        assert_eq!(consumer["latency"]["count"].as_u64(), Some(acked), "{r}");
        // Read after the acknowledgement's scheduled send, within the run's deadlines.
        let p50 = consumer["latency"]["p50_us"].as_f64().unwrap();
        assert!(p50 > 0.0 && p50 < 60e6, "{r}");
        // Each side's record batches: sluice's metric, or librdkafka's statistics, which
        // must account for every acknowledged record (no statistics window missed).
        let (mine, other) = match r["side"].as_str() {
            Some("rdkafka") => ("rdkafka_batches", "sluice_batches"),
            _ => ("sluice_batches", "rdkafka_batches"),
        };
        let batches = r[mine].as_u64().unwrap_or(0);
        assert!(batches > 0 && batches <= acked, "{mine}: {r}");
        assert!(r[other].is_null(), "{r}");
        if mine == "rdkafka_batches" {
            let batched = r["rdkafka_batched_records"].as_u64().unwrap_or(0);
            assert!(batched >= acked, "records in librdkafka's batches: {r}");
        }
    }
    for r in o["max_runs"].as_array().expect("the max runs") {
        let batches = r["rdkafka_batches"]
            .as_u64()
            .or(r["sluice_batches"].as_u64())
            .unwrap_or(0);
        let acked = r["acked"].as_u64().unwrap();
        assert!(batches > 0 && batches <= acked, "{r}");
    }
    let c = &series["consumer"];
    assert_eq!(c["rdkafka_complete"].as_u64(), Some(2), "{c}");
    assert_eq!(c["sluice_complete"].as_u64(), Some(2), "{c}");
    let added = c["added"]["p99_us"].as_f64().unwrap();
    let (sl, rd) = (
        c["sluice"]["p99_us"].as_f64().unwrap(),
        c["rdkafka"]["p99_us"].as_f64().unwrap(),
    );
    assert!((added - (sl - rd)).abs() < 1e-6, "{c}");
}
