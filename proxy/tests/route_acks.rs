//! A route's `acks` as it goes on the wire: sluice's Kafka connections run through a relay
//! that decodes every Produce request (with `kafka-protocol`, not sluice's `kafka-wire`), so
//! the test sees the acks each topic's records were sent with. Behaviour alone cannot tell
//! acks=1 from acks=all on a one-node tansu. confluent-kafka reads every record first, which
//! also means every Produce request that carried one has been logged.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{publish, Sluice};
use sluice_tests::{Broker, ChaosProxy};

/// Records published to each route.
const PER_ROUTE: usize = 50;

#[test]
fn each_route_s_produce_requests_carry_its_acks_and_no_other_route_s_topics() {
    let relay = ChaosProxy::start_observing().expect("relay starts");
    let broker = Broker::builder()
        .behind(&relay)
        .start()
        .expect("broker behind the relay");
    // (MQTT topic, Kafka topic, the route's `acks`, the acks its Produce requests must carry).
    // The process keeps `kafka.acks = "all"`: "all" and "-1" routes take its producer, as
    // does the catch-all route without `acks`.
    let routes = [
        ("zero", "acks-0", Some("0"), 0),
        ("one", "acks-1", Some("1"), 1),
        ("all", "acks-all", Some("all"), -1),
        ("minus-one", "acks-minus-1", Some("-1"), -1),
        ("other", "mqtt-messages", None, -1),
    ];
    let catch_all = "[[routes]]\nlistener = \"mqtt\"\nmqtt_topic = \"#\"";
    let own_routes: String = routes
        .iter()
        .filter_map(|&(mqtt, kafka, acks, _)| {
            let acks = acks?;
            Some(format!(
                "[[routes]]\nlistener = \"mqtt\"\nmqtt_topic = \"{mqtt}/#\"\nkafka_topic = \"{kafka}\"\nacks = \"{acks}\"\n\n"
            ))
        })
        .collect();
    // One shard: every route's producer shares one process, one set of connections.
    let config = common::config(&broker.bootstrap(), "")
        .replace("shards = 2", "shards = 1")
        .replace(catch_all, &format!("{own_routes}{catch_all}"));
    let sluice = Sluice::start(&config).expect("sluice");

    // QoS 1 to every route at once (mosquitto_pub exits 0 once every PUBLISH was PUBACKed),
    // so that records of different routes wait in the shard together.
    let lines =
        |mqtt: &str| -> String { (0..PER_ROUTE).map(|i| format!("{mqtt}-{i}\n")).collect() };
    std::thread::scope(|s| {
        for &(mqtt, ..) in &routes {
            let addr = sluice.mqtt;
            s.spawn(move || {
                let topic = format!("{mqtt}/bulk");
                publish(addr, &["-q", "1", "-t", &topic, "-l"], Some(&lines(mqtt)))
                    .unwrap_or_else(|e| panic!("publishing to {topic}: {e:#}"));
            });
        }
    });

    // Every record is in Kafka, read by an independent client (through the relay too) ...
    let kafka = broker.kafka();
    for &(mqtt, topic, ..) in &routes {
        let records = kafka
            .consume_all(topic, PER_ROUTE, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("confluent-kafka reads {topic}: {e:#}"));
        let mut values: Vec<String> = records
            .iter()
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into())
            .collect();
        values.sort();
        let mut sent: Vec<String> = lines(mqtt).lines().map(str::to_owned).collect();
        sent.sort();
        assert_eq!(values, sent, "{topic}: every record once");
    }

    // ... so every Produce request that carried one went through the relay, which logs a
    // request before forwarding it.
    assert_eq!(
        relay.request_errors(),
        Vec::<String>::new(),
        "the relay decoded every request"
    );
    let requests = relay.produce_requests();
    let expected: BTreeMap<&str, i16> = routes
        .iter()
        .map(|&(_, topic, _, acks)| (topic, acks))
        .collect();
    // Topics no route names (sluice's own, e.g. sessions) go with the process's acks = all.
    let acks_of = |topic: &str| expected.get(topic).copied().unwrap_or(-1);
    let mut seen: BTreeMap<&str, BTreeSet<i16>> = BTreeMap::new();
    for request in &requests {
        let levels: BTreeSet<i16> = request.topics.iter().map(|t| acks_of(t)).collect();
        assert_eq!(
            levels.len(),
            1,
            "one Produce request mixes topics of different acks levels: {request:?}"
        );
        for topic in &request.topics {
            assert_eq!(
                request.acks,
                acks_of(topic),
                "a Produce request carrying {topic}: {request:?}"
            );
            if let Some((&name, _)) = expected.get_key_value(topic.as_str()) {
                seen.entry(name).or_default().insert(request.acks);
            }
        }
    }
    // Each acks level's producer has broker connections of its own (docs/configuration.md),
    // so that the broker does not hold an acks=0 request behind acks=all ones.
    let mut levels_per_connection: BTreeMap<u64, BTreeSet<i16>> = BTreeMap::new();
    for request in &requests {
        levels_per_connection
            .entry(request.connection)
            .or_default()
            .insert(request.acks);
    }
    assert!(
        levels_per_connection
            .values()
            .all(|levels| levels.len() == 1),
        "a connection carried Produce requests of several acks levels: {levels_per_connection:?}"
    );
    for (&topic, &acks) in &expected {
        assert_eq!(
            seen.get(topic)
                .map(|levels| levels.iter().copied().collect()),
            Some(vec![acks]),
            "every Produce request carrying {topic} has acks {acks}; requests: {requests:#?}"
        );
    }
}
