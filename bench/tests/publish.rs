//! The `publish` scenario end to end, small: MQTT clients → sluice → tansu, with the
//! independent Kafka consumer (librdkafka) reading back every record of the run, and MQTT
//! subscribers getting every message back through sluice.

use std::process::Command;

#[test]
fn every_acknowledged_record_reaches_the_kafka_consumer_and_the_mqtt_subscribers() {
    // The sluice binary of this build, beside the bench's (the workspace's tests build it).
    let bench = std::path::Path::new(env!("CARGO_BIN_EXE_sluice-bench"));
    let sluice = bench.with_file_name("sluice");
    assert!(
        sluice.is_file(),
        "{} is missing: build the workspace (`cargo build --workspace`)",
        sluice.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("publish.json");
    let status = Command::new(bench)
        .args([
            "publish",
            "--clients",
            "4",
            "--rate",
            "400",
            "--duration",
            "2",
        ])
        .args(["--kafka-consumer", "--subscribers", "2", "--out"])
        .arg(&out)
        .env("SLUICE_BIN", &sluice)
        .status()
        .expect("sluice-bench runs");
    assert!(status.success(), "sluice-bench publish: {status}");
    let o: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).expect("the scenario's JSON");
    let acked = o["acked"].as_u64().unwrap();
    let consumer = &o["kafka_consumer"];
    assert!(acked >= 700, "about 800 PUBLISHes acknowledged: {o}");
    assert_eq!(consumer["records"].as_u64(), Some(acked), "{consumer}");
    assert_eq!(consumer["malformed"].as_u64(), Some(0));
    assert_eq!(consumer["count_matches"], true);
    assert_eq!(consumer["latency"]["count"].as_u64(), Some(acked));
    assert!(consumer["latency"]["p50_us"].as_f64().unwrap() > 0.0);
    // Every publisher's messages, complete, in order and once, at both subscribers.
    let subs = &o["mqtt_subscribers"];
    assert_eq!(
        subs["expected"].as_u64(),
        Some(2 * o["sent"].as_u64().unwrap())
    );
    assert_eq!(subs["received"], subs["expected"], "{subs}");
    assert_eq!(subs["lost"].as_u64(), Some(0));
    assert_eq!(subs["duplicates"].as_u64(), Some(0));
    assert_eq!(subs["malformed"].as_u64(), Some(0));
    assert_eq!(subs["complete"].as_u64(), Some(2), "{subs}");
}
