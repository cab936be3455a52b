//! paho-mqtt (Python) and MQTT.js (Node) publish through sluice with MQTT 3.1.1 and 5, each
//! waiting for its acknowledgements; confluent-kafka checks what reached Kafka.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{header, node_modules, run, script, Sluice};
use sluice_tests::{python, Broker, ConsumedRecord};

#[test]
fn paho_and_mqttjs_publishes_reach_kafka_exactly_once() {
    let broker = Broker::start().expect("broker");
    let sluice = Sluice::start(&common::config(&broker.bootstrap(), "")).expect("sluice starts");
    let (host, port) = (sluice.mqtt.ip().to_string(), sluice.mqtt.port().to_string());

    let mut paho = Command::new(python());
    paho.arg(script("paho_publish.py"))
        .args([&host, &port, "paho"]);
    run(paho, "paho-mqtt");

    let mut node = Command::new("node");
    node.arg(script("mqttjs_publish.js"))
        .args([&host, &port, "mqttjs"])
        .env("NODE_PATH", node_modules());
    run(node, "MQTT.js");

    let expected = 6 + 3;
    let records = broker
        .kafka()
        .consume_all("mqtt-messages", expected, Duration::from_secs(60))
        .expect("confluent-kafka reads mqtt-messages");
    assert_eq!(records.len(), expected, "exact count");
    let find = |key: &str| -> &ConsumedRecord {
        let matching: Vec<_> = records
            .iter()
            .filter(|r| r.key.as_deref() == Some(key.as_bytes()))
            .collect();
        assert_eq!(matching.len(), 1, "one record with key {key}");
        matching[0]
    };
    for name in ["v311", "v5"] {
        for qos in 0..3 {
            let r = find(&format!("paho/{name}/q{qos}"));
            assert_eq!(
                r.value.as_deref(),
                Some(format!("{name}-q{qos}").as_bytes())
            );
            assert_eq!(
                header(r, "mqtt.client_id"),
                Some(format!("paho-{name}").as_bytes())
            );
            if name == "v5" {
                assert_eq!(header(r, "client-lib"), Some(&b"paho"[..]));
                assert_eq!(header(r, "content-type"), Some(&b"text/plain"[..]));
            }
        }
    }
    let r = find("mqttjs/v5/q2");
    assert_eq!(
        r.value.as_deref(),
        Some(&b"{\"lib\":\"mqtt.js\",\"qos\":2}"[..])
    );
    assert_eq!(header(r, "client-lib"), Some(&b"mqtt.js"[..]));
    assert_eq!(header(r, "content-type"), Some(&b"application/json"[..]));
    assert_eq!(header(r, "mqtt.client_id"), Some(&b"mqttjs-v5"[..]));
    find("mqttjs/v5/q1");
    assert_eq!(
        find("mqttjs/v311/q1").value.as_deref(),
        Some(&b"mqtt.js-v311-q1"[..])
    );
}
