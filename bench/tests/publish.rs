//! The `publish` scenario end to end, small: MQTT clients → sluice → tansu, with the
//! independent Kafka consumer (librdkafka) reading back every record of the run, and MQTT
//! subscribers getting every message back through sluice.

mod common;

#[test]
fn every_acknowledged_record_reaches_the_kafka_consumer_and_the_mqtt_subscribers() {
    let o = common::run_scenario(
        "publish",
        &[
            "--clients",
            "4",
            "--rate",
            "400",
            "--duration",
            "2",
            "--kafka-consumer",
            "--subscribers",
            "2",
        ],
    );
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
