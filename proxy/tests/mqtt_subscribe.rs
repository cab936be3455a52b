//! Kafka → MQTT delivery: mosquitto_sub subscribers with wildcards, on two sluice processes,
//! receive what mosquitto_pub published through either process and what confluent-kafka
//! wrote straight into `mqtt-messages`, at the QoS they were granted.

mod common;

use std::time::Duration;

use common::subscribers::{payloads, SessionClient, Subscriber};
use common::Sluice;
use sluice_tests::{Broker, ProduceRecord};

#[test]
fn subscribers_get_matching_messages_from_mqtt_clients_other_processes_and_kafka() {
    let broker = Broker::start().expect("broker");
    let config = common::config(&broker.bootstrap(), "");
    let one = Sluice::start(&config).expect("first sluice");
    let two = Sluice::start(&config).expect("second sluice");

    // Wildcards on process one (QoS 1 and 0, 3.1.1 and 5), and one on process two.
    let temps = Subscriber::start(&one, "sensors/+/temp", 1, "mqttv311", 3);
    let all = Subscriber::start(&one, "sensors/#", 0, "mqttv5", 4);
    let remote = Subscriber::start(&two, "sensors/+/temp", 2, "mqttv5", 3);
    let other = Subscriber::start(&two, "other/#", 1, "mqttv5", 1);

    common::publish(
        one.mqtt,
        &["-t", "sensors/1/temp", "-m", "21.5", "-q", "1"],
        None,
    )
    .unwrap();
    common::publish(
        two.mqtt,
        &["-t", "sensors/2/temp", "-m", "19.0", "-q", "1"],
        None,
    )
    .unwrap();
    common::publish(
        one.mqtt,
        &["-t", "sensors/1/humidity", "-m", "40", "-q", "0"],
        None,
    )
    .unwrap();
    broker
        .kafka()
        .produce(
            "mqtt-messages",
            &[ProduceRecord {
                key: Some(b"sensors/kafka/temp".to_vec()),
                value: Some(b"from kafka".to_vec()),
                headers: vec![
                    ("content-type".into(), Some(b"text/plain".to_vec())),
                    ("origin".into(), Some(b"kafka".to_vec())),
                ],
                ..ProduceRecord::default()
            }],
        )
        .expect("confluent-kafka produces");
    common::publish(two.mqtt, &["-t", "other/x", "-m", "last", "-q", "1"], None).unwrap();

    // Delivered at the lower of the subscription's QoS and the publisher's (`mqtt.qos`;
    // a record without it counts as QoS 2). MQTT 5 subscribers get the record's
    // content-type and other headers as properties; 3.1.1 has no properties.
    let temps_v311 = [
        "sensors/1/temp|21.5|1|0||",
        "sensors/2/temp|19.0|1|0||",
        "sensors/kafka/temp|from kafka|1|0||",
    ];
    assert_eq!(temps.messages(), temps_v311, "sensors/+/temp at QoS 1");
    let remote_v5 = [
        "sensors/1/temp|21.5|1|0||",
        "sensors/2/temp|19.0|1|0||",
        "sensors/kafka/temp|from kafka|2|0|text/plain|origin:kafka",
    ];
    assert_eq!(remote.messages(), remote_v5, "QoS 2 on the second process");
    let all_v5 = [
        "sensors/1/humidity|40|0|0||",
        "sensors/1/temp|21.5|0|0||",
        "sensors/2/temp|19.0|0|0||",
        "sensors/kafka/temp|from kafka|0|0|text/plain|origin:kafka",
    ];
    assert_eq!(all.messages(), all_v5, "sensors/# at QoS 0");
    assert_eq!(other.messages(), ["other/x|last|1|0||"]);

    // Each process counted exactly the deliveries its subscribers were owed.
    sluice_tests::wait_until(Duration::from_secs(10), "deliveries counted", || {
        one.metric("sluice_deliveries_total").unwrap_or(0) == 7
            && two.metric("sluice_deliveries_total").unwrap_or(0) == 4
    });
}

#[test]
fn retained_messages_live_in_kafka_across_restarts() {
    let broker = Broker::start().expect("broker");
    let config = common::config(&broker.bootstrap(), "");
    let first = Sluice::start(&config).expect("sluice");
    let retain = |sluice: &Sluice, topic: &str, message: Option<&str>| {
        let mut args = vec!["-r", "-q", "1", "-t", topic];
        match message {
            Some(m) => args.extend(["-m", m]),
            None => args.push("-n"),
        }
        common::publish(sluice.mqtt, &args, None).unwrap();
    };
    retain(&first, "status/dev1", Some("online"));
    retain(&first, "status/dev2", Some("offline"));
    broker
        .kafka()
        .produce(
            "mqtt-retained",
            &[ProduceRecord::value("from kafka").key("status/dev3")],
        )
        .expect("confluent-kafka writes a retained message");
    drop(first);

    // A new process serves them: retained flag set, QoS at most the subscription's.
    let second = Sluice::start(&config).expect("sluice again");
    let sub = Subscriber::start(&second, "status/#", 1, "mqttv5", 3);
    let expected = [
        "status/dev1|online|1|1||",
        "status/dev2|offline|1|1||",
        "status/dev3|from kafka|1|1||",
    ];
    assert_eq!(sub.messages(), expected);

    // An empty retained PUBLISH deletes; a process started afterwards no longer has it.
    // mosquitto_sub waits for a fourth message that must not come (-W: its deadline).
    retain(&second, "status/dev2", None);
    retain(&second, "status/dev4", Some("new"));
    drop(second);
    let third = Sluice::start(&config).expect("sluice a third time");
    let sub = Subscriber::with_args(&third, "status/#", 0, "mqttv311", 4, &["-W", "3"]);
    let (messages, status) = sub.finish();
    assert_eq!(
        messages,
        [
            "status/dev1|online|0|1||",
            "status/dev3|from kafka|0|1||",
            "status/dev4|new|0|1||",
        ]
    );
    assert_eq!(
        status.code(),
        Some(27),
        "mosquitto_sub's -W timeout, not a fourth message"
    );
}

#[test]
fn persistent_sessions_resume_on_another_process_with_what_they_missed() {
    let broker = Broker::start().expect("broker");
    let config = common::config(&broker.bootstrap(), "");
    let one = Sluice::start(&config).expect("first sluice");
    let two = Sluice::start(&config).expect("second sluice");
    let send = |sluice: &Sluice, message: &str| {
        common::publish(
            sluice.mqtt,
            &["-q", "1", "-t", "cmd/dev-a/run", "-m", message],
            None,
        )
        .unwrap()
    };

    // A persistent session subscribes on process one and gets a live message.
    let client = SessionClient::start(&one, "dev-a", &["subscribe", "cmd/dev-a/#", "1"]);
    assert_eq!(client.wait("connected")["session_present"], false);
    client.wait("subscribed");
    send(&two, "live-1");
    assert_eq!(payloads(&client.finish()), ["live-1"]);

    // While it is away, messages arrive through process two and straight into Kafka.
    for i in 1..=5 {
        send(&two, &format!("offline-{i}"));
    }
    broker
        .kafka()
        .produce(
            "mqtt-messages",
            &[ProduceRecord::value("offline-6").key("cmd/dev-a/run")],
        )
        .unwrap();

    // It reconnects to process two: the session is there, with exactly what it missed, in
    // order, and nothing it had already acknowledged.
    let client = SessionClient::start(&two, "dev-a", &["resume", "6"]);
    assert_eq!(client.wait("connected")["session_present"], true);
    let got = payloads(&client.finish());
    // confluent-kafka's partitioner (CRC32) may put offline-6 on another partition than
    // sluice's (murmur2, Java's) puts offline-1..5, and Kafka orders only within one.
    let mut sorted = got.clone();
    sorted.sort();
    let expected: Vec<String> = (1..=6).map(|i| format!("offline-{i}")).collect();
    assert_eq!(sorted, expected, "exactly the missed messages");
    let through_sluice: Vec<&String> = got.iter().filter(|p| *p != "offline-6").collect();
    assert_eq!(
        through_sluice,
        expected[..5].iter().collect::<Vec<_>>(),
        "in order"
    );

    // Back on process one: only what is new.
    let client = SessionClient::start(&one, "dev-a", &["resume", "1"]);
    assert_eq!(client.wait("connected")["session_present"], true);
    send(&two, "live-2");
    assert_eq!(payloads(&client.finish()), ["live-2"]);
}

#[test]
fn a_session_moves_between_three_processes_on_one_port_and_misses_nothing() {
    let broker = Broker::start().expect("broker");
    let config = common::config(&broker.bootstrap(), "");
    let first = Sluice::start(&config).expect("sluice");
    // Two more on the same port (SO_REUSEPORT): the kernel picks a process per connection.
    let shared = common::on_mqtt_port_of(&config, &first);
    let mut p = vec![first];
    for _ in 0..2 {
        p.push(Sluice::start(&shared).expect("sluice on the same port"));
    }
    let send = |m: &str| {
        common::publish(
            p[0].mqtt,
            &["-q", "1", "-t", "cmd/dev-t/run", "-m", m],
            None,
        )
        .unwrap()
    };
    let accepted = || -> Vec<u64> {
        p.iter()
            .map(|s| s.metric("sluice_connections_total").unwrap())
            .collect()
    };
    let client = SessionClient::start(&p[0], "dev-t", &["subscribe", "cmd/dev-t/#", "1"]);
    client.wait("subscribed");
    send("m-0");
    assert_eq!(payloads(&client.finish()), ["m-0"]);
    // While it is away a message goes through whichever process the kernel picks; the
    // session comes back on whichever it picks then, which reads the message from Kafka.
    // Until every process has served it (each pick is one of three).
    let mut served = std::collections::BTreeSet::new();
    for i in 1..=12 {
        let message = format!("m-{i}");
        send(&message);
        let before = accepted();
        let client = SessionClient::start(&p[0], "dev-t", &["resume", "1"]);
        assert_eq!(client.wait("connected")["session_present"], true);
        assert_eq!(payloads(&client.finish()), [message]);
        let after = accepted();
        served.extend((0..3).filter(|&k| after[k] > before[k]));
        if served.len() == 3 {
            break;
        }
    }
    assert!(
        served.len() >= 2,
        "the session was served by {served:?} only"
    );
}

#[test]
fn a_second_connection_takes_the_session_over_across_processes() {
    let broker = Broker::start().expect("broker");
    let config = common::config(&broker.bootstrap(), "");
    let one = Sluice::start(&config).expect("first sluice");
    let two = Sluice::start(&config).expect("second sluice");

    let first = SessionClient::start(&one, "dev-b", &["subscribe", "cmd/dev-b/#", "1"]);
    first.wait("subscribed");
    let second = SessionClient::start(&two, "dev-b", &["resume", "1"]);
    assert_eq!(second.wait("connected")["session_present"], true);
    // The first connection is closed with "session taken over" (0x8E).
    assert_eq!(first.wait("disconnected")["reason"], 0x8E);
    // The subscription moved with the session: the second connection gets the message.
    common::publish(
        one.mqtt,
        &["-q", "1", "-t", "cmd/dev-b/x", "-m", "to the new owner"],
        None,
    )
    .unwrap();
    assert_eq!(payloads(&second.finish()), ["to the new owner"]);
}

#[test]
fn a_claim_whose_connect_failed_does_not_cost_the_next_one_the_subscriptions() {
    // A CONNECT whose claim reached Kafka but that then failed (its claim was not read back
    // in time, or its client gave up) leaves a claim without subscriptions as the session's
    // latest record. The next CONNECT must still resume the subscriptions: in a failover of
    // 60,000 sessions, 29 came back with session present and without them.
    let broker = Broker::start().expect("broker");
    let config = common::config(&broker.bootstrap(), "");
    let one = Sluice::start(&config).expect("first sluice");
    let two = Sluice::start(&config).expect("second sluice");
    let client = SessionClient::start(&one, "dev-c", &["subscribe", "cmd/dev-c/#", "1"]);
    client.wait("subscribed");
    common::publish(
        one.mqtt,
        &["-q", "1", "-t", "cmd/dev-c/x", "-m", "live"],
        None,
    )
    .unwrap();
    assert_eq!(payloads(&client.finish()), ["live"]);

    // The failed CONNECT's claim, as sluice writes it: the next generation, resuming, on
    // the partition sluice's own partitioner (murmur2) puts the client's records in, so it
    // comes after them in the log. Its owner's process never beat: nobody will end it.
    let claim = serde_json::json!({
        "gen": 2,
        "owner": "gone-1/0/7",
        "expiry_s": 300,
        "connected": true,
        "at_ms": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
        "resumes": true,
    });
    let partition = kafka_wire::partitioner::partition_for_key(b"dev-c", 3) as i32;
    broker
        .kafka()
        .produce(
            "mqtt-sessions",
            &[ProduceRecord::value(claim.to_string())
                .key("dev-c")
                .partition(partition)],
        )
        .unwrap();

    // The client comes back, without subscribing, through the other process.
    let client = SessionClient::start(&two, "dev-c", &["resume", "1"]);
    assert_eq!(client.wait("connected")["session_present"], true);
    common::publish(
        one.mqtt,
        &["-q", "1", "-t", "cmd/dev-c/x", "-m", "still subscribed"],
        None,
    )
    .unwrap();
    assert_eq!(payloads(&client.finish()), ["still subscribed"]);
}

#[test]
fn unacknowledged_deliveries_are_resent_with_dup_and_their_packet_id_on_resume() {
    let broker = Broker::start().expect("broker");
    let config = common::config(&broker.bootstrap(), "");
    let one = Sluice::start(&config).expect("first sluice");
    let two = Sluice::start(&config).expect("second sluice");
    let send = |m: &str| {
        common::publish(one.mqtt, &["-q", "1", "-t", "cmd/dev-c/run", "-m", m], None).unwrap()
    };

    // Received, never acknowledged.
    let client = SessionClient::start(&one, "dev-c", &["noack", "cmd/dev-c/#", "2"]);
    client.wait("subscribed");
    send("first");
    send("second");
    let events = client.finish();
    let first: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["event"] == "message").collect();
    assert_eq!(payloads(&events), ["first", "second"]);
    assert!(first.iter().all(|e| e["dup"] == false));

    // On another process: both again, DUP set, same packet identifiers, in order.
    let client = SessionClient::start(&two, "dev-c", &["resume", "2"]);
    assert_eq!(client.wait("connected")["session_present"], true);
    let again = client.finish();
    let again: Vec<&serde_json::Value> = again.iter().filter(|e| e["event"] == "message").collect();
    assert_eq!(again.len(), 2, "{again:?}");
    for (before, after) in first.iter().zip(&again) {
        assert_eq!(after["payload"], before["payload"]);
        assert_eq!(after["mid"], before["mid"], "same packet identifier");
        assert_eq!(after["dup"], true, "DUP set");
    }
}

#[test]
fn one_fetch_per_process_feeds_subscribers_on_every_shard() {
    let broker = Broker::start().expect("broker");
    let config = common::config(&broker.bootstrap(), "");
    let sluice = Sluice::start(&config).expect("sluice");
    const RECORDS: usize = 60;

    // SO_REUSEPORT spreads connections over the two shards by their address: connect
    // subscribers until both shards hold some.
    let open = |shard: u32| {
        sluice
            .metric_where(
                "sluice_connections_open",
                &format!("listener=\"mqtt\",shard=\"{shard}\""),
            )
            .unwrap_or(0)
    };
    let mut subscribers = Vec::new();
    while subscribers.len() < 4 || open(0) == 0 || open(1) == 0 {
        assert!(
            subscribers.len() < 32,
            "32 connections all landed on one shard"
        );
        subscribers.push(Subscriber::start(
            &sluice, "fanout/#", 1, "mqttv311", RECORDS,
        ));
    }
    let per_shard = [open(0), open(1)];
    assert_eq!(per_shard[0] + per_shard[1], subscribers.len() as u64);

    let records: Vec<ProduceRecord> = (0..RECORDS)
        .map(|i| ProduceRecord {
            key: Some(format!("fanout/{}", i % 3).into_bytes()),
            value: Some(format!("record-{i}").into_bytes()),
            ..ProduceRecord::default()
        })
        .collect();
    broker
        .kafka()
        .produce("mqtt-messages", &records)
        .expect("confluent-kafka produces");

    // Every subscriber, on either shard, gets exactly what was produced, once, at its
    // granted QoS (a record without `mqtt.qos` counts as QoS 2).
    let mut expected: Vec<String> = (0..RECORDS)
        .map(|i| format!("fanout/{}|record-{i}|1|0||", i % 3))
        .collect();
    expected.sort();
    for s in subscribers {
        assert_eq!(s.messages(), expected);
    }

    // Each shard fanned out to its own subscribers, from the process's one reader of each
    // partition: on shard 0, the only shard that fetches.
    for (shard, subs) in per_shard.iter().enumerate() {
        let labels = format!("shard=\"{shard}\"");
        sluice_tests::wait_until(Duration::from_secs(10), "deliveries counted", || {
            sluice
                .metric_where("sluice_deliveries_total", &labels)
                .unwrap_or(0)
                == subs * RECORDS as u64
        });
    }
    let partitions = |shard: u32| {
        sluice
            .metric_where("sluice_delivery_partitions", &format!("shard=\"{shard}\""))
            .expect("metrics")
    };
    assert_eq!(
        (partitions(0), partitions(1)),
        (3, 0),
        "one reader per partition of mqtt-messages in the process"
    );
    let fetches = |shard: u32| {
        sluice
            .metric_where(
                "sluice_delivery_fetches_total",
                &format!("shard=\"{shard}\""),
            )
            .expect("metrics")
    };
    assert!(fetches(0) > 0, "shard 0 fetches");
    assert_eq!(fetches(1), 0, "shard 1 fetches nothing itself");
}
