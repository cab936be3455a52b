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

/// MQTT.js subscribed over `transport` (`mqtt` or `ws`) to `filter`, once it has its
/// SUBACK: its output lines.
fn mqttjs_subscriber(
    addr: std::net::SocketAddr,
    filter: &str,
    count: usize,
    transport: &str,
) -> common::Lines {
    let mut node = Command::new("node");
    node.arg(script("mqttjs_subscribe.js"))
        .args([&addr.ip().to_string(), &addr.port().to_string(), filter])
        .args([&count.to_string(), transport])
        .env("NODE_PATH", node_modules());
    let lines = common::Lines::spawn(node);
    lines.find(Duration::from_secs(30), "MQTT.js's SUBACK", |l| {
        l.contains("\"subscribed\"")
    });
    lines
}

#[test]
fn mqttjs_subscribers_over_tcp_and_websocket_get_what_mqtt_clients_and_kafka_published() {
    let broker = Broker::start().expect("broker");
    let ws = "\n[[listeners]]\nname = \"ws\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"mqtt\"\nwebsocket = { path = \"/mqtt\" }\n\n[[routes]]\nlistener = \"ws\"\nmqtt_topic = \"#\"\nkafka_topic = \"mqtt-messages\"\nheaders = [\"client_id\", \"user_properties\", \"content_type\", \"qos\"]\n";
    let sluice = Sluice::start(&(common::config(&broker.bootstrap(), "") + ws)).expect("sluice");
    let mut tcp = mqttjs_subscriber(sluice.mqtt, "js/#", 3, "mqtt");
    let mut websocket = mqttjs_subscriber(sluice.listeners["ws"], "js/#", 3, "ws");

    // A mosquitto_pub at QoS 0 and 1 (MQTT 5, with a content type and user property), and
    // a record another producer wrote to Kafka, one topic each.
    common::publish(sluice.mqtt, &["-q", "0", "-t", "js/a", "-m", "zero"], None).unwrap();
    common::publish(
        sluice.mqtt,
        &[
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            "js/b",
            "-m",
            "one",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
        ],
        None,
    )
    .unwrap();
    broker
        .kafka()
        .produce(
            "mqtt-messages",
            &[sluice_tests::ProduceRecord::value("from kafka").key("js/c")],
        )
        .expect("confluent-kafka produces");

    for (name, sub) in [("tcp", &mut tcp), ("websocket", &mut websocket)] {
        assert!(
            sub.wait_success(Duration::from_secs(30)),
            "MQTT.js over {name} did not get 3 messages"
        );
        let until = std::time::Instant::now() + Duration::from_secs(10);
        let mut messages: Vec<serde_json::Value> =
            std::iter::from_fn(|| sub.next(until, "MQTT.js's output to end"))
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
                .filter(|e| e["event"] == "message")
                .collect();
        messages.sort_by_key(|m| m["topic"].as_str().unwrap_or_default().to_owned());
        assert_eq!(
            messages,
            [
                serde_json::json!({"event": "message", "topic": "js/a", "payload": "zero", "qos": 0, "retain": false, "userProperties": {}, "contentType": null}),
                serde_json::json!({"event": "message", "topic": "js/b", "payload": "one", "qos": 1, "retain": false, "userProperties": {"k": "v"}, "contentType": "text/plain"}),
                serde_json::json!({"event": "message", "topic": "js/c", "payload": "from kafka", "qos": 1, "retain": false, "userProperties": {}, "contentType": null}),
            ],
            "over {name}"
        );
    }
}
