//! Kafka → MQTT delivery of MQTT 5 features and routing: subscription options, request /
//! response properties and message expiry through Kafka (paho-mqtt, confluent-kafka), and
//! reverse routes that bring other Kafka topics to subscribers.

mod common;

use std::time::Duration;

use common::subscribers::{next_json, paho_script, payloads, SessionClient, Subscriber};
use common::Sluice;
use sluice_tests::{Broker, ProduceRecord};

#[test]
fn mqtt5_subscription_options_no_local_retain_as_published_and_identifiers() {
    let broker = Broker::start().expect("broker");
    let sluice = Sluice::start(&common::config(&broker.bootstrap(), "")).expect("sluice");
    let (mut client, mut lines) = paho_script(&sluice, "options_client.py");
    let mut next = || next_json(&mut lines);
    assert_eq!(next()["event"], "ready");
    // Its own message went to opt/x first (no local: not delivered back), then another
    // client's retained message and a plain one, all on one topic, so in one partition
    // and in this order.
    assert_eq!(next()["event"], "published");
    common::publish(
        sluice.mqtt,
        &["-q", "1", "-r", "-t", "opt/x", "-m", "from-other"],
        None,
    )
    .unwrap();
    common::publish(
        sluice.mqtt,
        &["-q", "1", "-t", "opt/x", "-m", "plain"],
        None,
    )
    .unwrap();
    let done = next();
    assert!(client.wait().unwrap().success(), "{done}");
    assert_eq!(
        done["messages"],
        serde_json::json!([
            {"payload": "from-other", "retain": 1, "ids": [42]},
            {"payload": "plain", "retain": 0, "ids": [42]},
        ])
    );
}

/// A record written ten seconds ago by a plain Kafka producer, with an MQTT 5 Message
/// Expiry Interval of `expiry_s` in its `mqtt.message_expiry` header.
fn written_10_s_ago(topic: &str, payload: &str, expiry_s: u32) -> ProduceRecord {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    ProduceRecord {
        timestamp: Some(now_ms - 10_000),
        ..ProduceRecord::value(payload)
            .key(topic)
            .header("mqtt.message_expiry", Some(expiry_s.to_string().as_bytes()))
    }
}

/// Whether a message event carries what is left of a 60 s expiry set ten seconds ago.
fn fifty_s_left(message: &serde_json::Value, field: &str) -> bool {
    let left = message[field].as_u64().unwrap_or(0);
    // At most 50 (rounded up); the lower bound leaves a slow machine 20 s.
    (30..=50).contains(&left)
}

#[test]
fn mqtt5_request_response_properties_and_message_expiry_travel_through_kafka() {
    let broker = Broker::start().expect("broker");
    let config = common::config_with_mqtt5_headers(&broker.bootstrap());
    let sluice = Sluice::start(&config).expect("sluice");
    sluice_tests::wait_until(Duration::from_secs(30), "sluice ready", || {
        sluice
            .admin_get("/readyz")
            .is_ok_and(|(status, _)| status == 200)
    });
    // Retained messages another producer wrote ten seconds ago: one expired 5 s ago, one
    // with 50 s left. The first SUBSCRIBE loads them.
    broker
        .kafka()
        .produce(
            "mqtt-retained",
            &[
                written_10_s_ago("exp/r/old", "stale", 5),
                written_10_s_ago("exp/r/new", "fresh", 60),
            ],
        )
        .expect("confluent-kafka writes retained messages");

    let (mut client, mut lines) = paho_script(&sluice, "request_response.py");
    let mut next = || next_json(&mut lines);
    assert_eq!(next()["event"], "ready");

    // The request reached the responder through Kafka with every property; the reply
    // found its way back on the Response Topic with the Correlation Data.
    let replied = next();
    assert_eq!(replied["event"], "replied", "{replied}");
    let mut request = replied["request"].clone();
    assert!(
        (290..=300).contains(&request["MessageExpiryInterval"].as_u64().unwrap_or(0)),
        "what is left of 300 s: {request}"
    );
    request
        .as_object_mut()
        .unwrap()
        .remove("MessageExpiryInterval");
    assert_eq!(
        request,
        serde_json::json!({
            "topic": "req/1", "payload": "ping", "retain": 0,
            "ResponseTopic": "resp/requester", "CorrelationData": "00ff6964",
            "PayloadFormatIndicator": 1, "ContentType": "text/plain",
            "UserProperty": [["trace", "t1"]],
        })
    );
    assert_eq!(
        replied["reply"],
        serde_json::json!({
            "topic": "resp/requester", "payload": "re:ping", "retain": 0,
            "CorrelationData": "00ff6964",
        })
    );

    // Live records from Kafka on one topic (so in order): expired, 50 s left, no expiry.
    broker
        .kafka()
        .produce(
            "mqtt-messages",
            &[
                written_10_s_ago("exp/live", "expired", 5),
                written_10_s_ago("exp/live", "alive", 60),
                ProduceRecord::value("end").key("exp/live"),
            ],
        )
        .expect("confluent-kafka produces");
    let done = next();
    assert!(client.wait().unwrap().success(), "{done}");
    let messages = done["messages"].as_array().unwrap();
    let summary: Vec<(&str, &str, u64)> = messages
        .iter()
        .map(|m| {
            let (topic, payload) = (m["topic"].as_str(), m["payload"].as_str());
            (
                topic.unwrap(),
                payload.unwrap(),
                m["retain"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("exp/r/new", "fresh", 1),
            ("exp/live", "alive", 0),
            ("exp/live", "end", 0)
        ],
        "nothing expired is delivered: {done}"
    );
    assert!(
        fifty_s_left(&messages[0], "MessageExpiryInterval"),
        "{done}"
    );
    assert!(
        fifty_s_left(&messages[1], "MessageExpiryInterval"),
        "{done}"
    );
    assert!(messages[2].get("MessageExpiryInterval").is_none());
    sluice_tests::wait_until(Duration::from_secs(10), "the expired copy counted", || {
        sluice.metric("sluice_expired_messages_total").unwrap_or(0) == 1
    });

    // In Kafka, the request carries the properties as headers any consumer can read.
    let records = broker
        .kafka()
        .consume_all("mqtt-messages", 5, Duration::from_secs(30))
        .expect("confluent-kafka reads");
    let request = records
        .iter()
        .find(|r| r.key.as_deref() == Some(&b"req/1"[..]))
        .expect("the request in Kafka");
    for (name, value) in [
        ("mqtt.response_topic", &b"resp/requester"[..]),
        ("mqtt.correlation_data", &[0x00, 0xff, 0x69, 0x64]),
        ("mqtt.message_expiry", b"300"),
        ("mqtt.payload_format", b"1"),
        ("content-type", b"text/plain"),
        ("trace", b"t1"),
    ] {
        assert_eq!(common::header(request, name), Some(value), "{name}");
    }
}

#[test]
fn a_session_that_was_away_does_not_get_what_expired_meanwhile() {
    let broker = Broker::start().expect("broker");
    let sluice = Sluice::start(&common::config(&broker.bootstrap(), "")).expect("sluice");
    let client = SessionClient::start(&sluice, "dev-x", &["subscribe", "away/#", "1"]);
    client.wait("subscribed");
    let produce = |records: &[ProduceRecord]| {
        broker
            .kafka()
            .produce("mqtt-messages", records)
            .expect("confluent-kafka produces")
    };
    produce(&[ProduceRecord::value("first").key("away/x")]);
    assert_eq!(payloads(&client.finish()), ["first"]);

    // While it is away, another subscriber sees them go by, so the process's live reader
    // is past them and the resumed session reads them back from Kafka (its catch-up).
    let witness = Subscriber::start(&sluice, "away/#", 1, "mqttv5", 2);
    produce(&[
        written_10_s_ago("away/x", "expired", 5),
        written_10_s_ago("away/x", "alive", 60),
        ProduceRecord::value("end").key("away/x"),
    ]);
    assert_eq!(
        witness.messages(),
        ["away/x|alive|1|0||", "away/x|end|1|0||"]
    );

    let client = SessionClient::start(&sluice, "dev-x", &["resume", "2"]);
    assert_eq!(client.wait("connected")["session_present"], true);
    let events = client.finish();
    assert_eq!(payloads(&events), ["alive", "end"]);
    let alive = events.iter().find(|e| e["payload"] == "alive").unwrap();
    assert!(fifty_s_left(alive, "expiry"), "{alive}");
}

#[test]
fn reverse_routes_deliver_other_kafka_topics_under_the_mqtt_topic_their_template_names() {
    let broker = Broker::start().expect("broker");
    let config = common::config(&broker.bootstrap(), "")
        + "\n[[reverse_routes]]\nkafka_topic = \"orders\"\nmqtt_topic = \"shop/{header.region}/orders/{key}\"\n";
    let sluice = Sluice::start(&config).expect("sluice");
    let sub = Subscriber::start(&sluice, "shop/+/orders/#", 1, "mqttv5", 3);
    // A service writes orders to Kafka, all to one partition so that they stay in order:
    // the two without a usable region reach no one, and the marker comes last.
    let order = |key: &str, value: &str| ProduceRecord::value(value).key(key).partition(0);
    broker
        .kafka()
        .produce(
            "orders",
            &[
                order("o-1", "first").header("region", Some(b"eu")),
                order("o-2", "no region"),
                order("o-3", "wildcard").header("region", Some(b"e+u")),
                order("o-4", "second")
                    .header("region", Some(b"us"))
                    .header("mqtt.qos", Some(b"0")),
                order("o-5", "end").header("region", Some(b"eu")),
            ],
        )
        .expect("confluent-kafka produces");
    // The record's other headers arrive as user properties, its mqtt.qos caps the QoS.
    assert_eq!(
        sub.messages(),
        [
            "shop/eu/orders/o-1|first|1|0||region:eu",
            "shop/eu/orders/o-5|end|1|0||region:eu",
            "shop/us/orders/o-4|second|0|0||region:us",
        ]
    );
}
