//! The MQTT produce path end to end: mosquitto_pub (MQTT 3.1.1 and 5) publishes through the
//! sluice binary into a real broker, and confluent-kafka checks topic, key, headers, payload
//! and the exact count. PUBACK waits for Kafka; shutdown drains; bad config is refused.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{publish, Sluice};
use sluice_tests::{wait_until, Broker, ConsumedRecord};

fn header<'a>(r: &'a ConsumedRecord, name: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
}

#[test]
fn mosquitto_pub_messages_land_in_kafka_with_topic_key_headers_and_exact_count() {
    let broker = Broker::start().expect("broker");
    let sluice = Sluice::start(&common::config(&broker.bootstrap(), "")).expect("sluice starts");
    let a = sluice.mqtt;
    for (version, id) in [("mqttv311", "pub-311"), ("mqttv5", "pub-5")] {
        for qos in ["0", "1", "2"] {
            let topic = format!("dev/{id}/q{qos}");
            let msg = format!("{version}-qos{qos}");
            publish(
                a,
                &["-V", version, "-i", id, "-q", qos, "-t", &topic, "-m", &msg],
                None,
            )
            .unwrap();
        }
    }
    publish(
        a,
        &[
            "-V",
            "mqttv5",
            "-i",
            "props",
            "-q",
            "1",
            "-t",
            "dev/props",
            "-m",
            "{\"t\":21.5}",
            "-D",
            "publish",
            "user-property",
            "site",
            "north",
            "-D",
            "publish",
            "content-type",
            "application/json",
        ],
        None,
    )
    .unwrap();
    let lines: String = (0..500).map(|i| format!("line-{i}\n")).collect();
    publish(
        a,
        &[
            "-V", "mqttv5", "-i", "bulk", "-q", "1", "-t", "bulk/1", "-l",
        ],
        Some(&lines),
    )
    .unwrap();

    let expected = 6 + 1 + 500;
    let records = broker
        .kafka()
        .consume_all("mqtt-messages", expected, Duration::from_secs(60))
        .expect("confluent-kafka reads mqtt-messages");
    assert_eq!(records.len(), expected, "exact count, no duplicates");

    let by_value: HashMap<Vec<u8>, &ConsumedRecord> = records
        .iter()
        .map(|r| (r.value.clone().unwrap_or_default(), r))
        .collect();
    assert_eq!(by_value.len(), expected, "every payload once");
    for (version, id) in [("mqttv311", "pub-311"), ("mqttv5", "pub-5")] {
        for qos in ["0", "1", "2"] {
            let r = by_value[format!("{version}-qos{qos}").as_bytes()];
            assert_eq!(
                r.key.as_deref(),
                Some(format!("dev/{id}/q{qos}").as_bytes()),
                "key is the MQTT topic"
            );
            assert_eq!(header(r, "mqtt.client_id"), Some(id.as_bytes()));
        }
    }
    let r = by_value[&b"{\"t\":21.5}"[..]];
    assert_eq!(
        header(r, "site"),
        Some(&b"north"[..]),
        "MQTT 5 user property as a header"
    );
    assert_eq!(header(r, "content-type"), Some(&b"application/json"[..]));

    // The 500 lines share a key, so one partition, in publish order.
    let bulk: Vec<&ConsumedRecord> = records
        .iter()
        .filter(|r| r.key.as_deref() == Some(b"bulk/1"))
        .collect();
    assert_eq!(bulk.len(), 500);
    for (i, r) in bulk.iter().enumerate() {
        assert_eq!(
            r.value.as_deref(),
            Some(format!("line-{i}").as_bytes()),
            "order kept"
        );
    }

    let produced = sluice.metric("sluice_records_produced_total").unwrap();
    assert!(
        produced >= expected as u64 - 2,
        "metrics count produced records ({produced})"
    );
    assert_eq!(sluice.admin_get("/healthz").unwrap().0, 200);
    assert_eq!(sluice.admin_get("/readyz").unwrap().0, 200);
}

/// Warms sluice up, pauses the broker, and has mosquitto_pub send one QoS 1 PUBLISH of
/// `message` that sluice has received (its CONNECT and PUBLISH are decoded) but Kafka has
/// not seen. Returns the waiting mosquitto_pub.
fn publish_while_kafka_is_paused(
    broker: &mut Broker,
    sluice: &Sluice,
    message: &str,
) -> std::process::Child {
    // The topic exists and the producer is warm before the broker stops.
    publish(sluice.mqtt, &["-q", "1", "-t", "warm", "-m", "up"], None).unwrap();
    let frames_before = sluice.metric("sluice_frames_in_total").unwrap();
    broker.pause().unwrap();
    let mut client = common::mosquitto_pub(
        sluice.mqtt,
        &["-d", "-V", "mqttv5", "-q", "1", "-t", "held", "-m", message],
    )
    .unwrap();
    drop(client.stdin.take());
    wait_until(
        Duration::from_secs(20),
        "sluice received the PUBLISH",
        || sluice.metric("sluice_frames_in_total").unwrap_or(0) >= frames_before + 2,
    );
    client
}

/// Checks that the waiting mosquitto_pub `client` gets no PUBACK for 2 s while the broker is
/// paused, then resumes the broker and waits for the PUBACK.
fn no_puback_until_kafka_resumes(client: &mut std::process::Child, broker: &mut Broker) {
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        assert!(
            client.try_wait().unwrap().is_none(),
            "mosquitto_pub got a PUBACK while Kafka was paused"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    broker.resume().unwrap();
    wait_until(
        Duration::from_secs(60),
        "mosquitto_pub got its PUBACK",
        || client.try_wait().unwrap().is_some(),
    );
    assert!(client.wait().unwrap().success());
}

#[test]
fn puback_is_sent_only_after_kafka_acknowledged() {
    let mut broker = Broker::start().expect("broker");
    let sluice = Sluice::start(&common::config(&broker.bootstrap(), "")).expect("sluice starts");
    let mut client = publish_while_kafka_is_paused(&mut broker, &sluice, "held-1");
    // ... and, with Kafka silent, no PUBACK: the client keeps waiting.
    no_puback_until_kafka_resumes(&mut client, &mut broker);
    let records = broker
        .kafka()
        .consume_all("mqtt-messages", 2, Duration::from_secs(30))
        .unwrap();
    let held: Vec<_> = records
        .iter()
        .filter(|r| r.value.as_deref() == Some(b"held-1"))
        .collect();
    assert_eq!(held.len(), 1, "exactly once");
}

#[test]
fn sigterm_finishes_what_was_accepted_then_exits_zero() {
    let mut broker = Broker::start().expect("broker");
    let mut sluice =
        Sluice::start(&common::config(&broker.bootstrap(), "")).expect("sluice starts");
    let client = publish_while_kafka_is_paused(&mut broker, &sluice, "in-flight");
    sluice.sigterm().unwrap();
    // Every shard is draining, with the record still waiting for Kafka ...
    wait_until(Duration::from_secs(20), "sluice drains", || {
        sluice.metric("sluice_draining").unwrap_or(0) == 2
    });
    // ... when Kafka comes back, within the shutdown deadline.
    broker.resume().unwrap();
    let status = sluice.wait_exit().expect("sluice exits");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    // The client got its PUBACK before sluice said goodbye (DISCONNECT 0x8B may then reach
    // it before its own DISCONNECT, so its exit status is not the measure).
    let out = client.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("received PUBACK"),
        "the in-flight PUBLISH was acknowledged:\n{log}"
    );
    assert!(!log.contains("reason code: 128"), "not refused:\n{log}");
    let records = broker
        .kafka()
        .consume_all("mqtt-messages", 2, Duration::from_secs(30))
        .unwrap();
    assert_eq!(
        records
            .iter()
            .filter(|r| r.value.as_deref() == Some(b"in-flight"))
            .count(),
        1
    );
}

/// Writes `toml` to `path` and runs `sluice --check` on it: it must refuse it (exit 2).
/// Returns what it printed on stderr.
fn check_refuses(path: &std::path::Path, toml: &str) -> String {
    std::fs::write(path, toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--check", "--config"])
        .arg(path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_configuration_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let config = common::config("127.0.0.1:9092", "");
    let stderr = check_refuses(
        &bad,
        &config.replace("receive_maximum = 100", "receive_maximum = 0"),
    );
    assert!(stderr.contains("listeners[0].receive_maximum"), "{stderr}");

    let stderr = check_refuses(
        &bad,
        "[kafka]\n\"bootstrap.servers\" = \"x:1\"\nlinger = 5\n",
    );
    assert!(stderr.contains("linger"), "{stderr}");

    let stderr = check_refuses(
        &bad,
        &config.replace(
            "kafka_topic = \"mqtt-messages\"",
            "kafka_topic = \"mqtt-messages\"\nacks = \"2\"",
        ),
    );
    assert!(stderr.contains("`routes[0].acks`"), "{stderr}");

    let default = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("print-default-config")
        .output()
        .unwrap();
    let good = dir.path().join("default.toml");
    std::fs::write(&good, &default.stdout).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn routes_choose_partitions_round_robin_or_pin_one() {
    let broker = Broker::start().expect("broker");
    // Two routes ahead of the catch-all one (the first route that matches wins).
    let catch_all = "[[routes]]\nlistener = \"mqtt\"\nmqtt_topic = \"#\"";
    let config = common::config(&broker.bootstrap(), "").replace(
        catch_all,
        &format!(
            "[[routes]]\nlistener = \"mqtt\"\nmqtt_topic = \"spread/#\"\nkafka_topic = \"spread\"\npartitioner = \"round_robin\"\n\n\
             [[routes]]\nlistener = \"mqtt\"\nmqtt_topic = \"pinned/#\"\nkafka_topic = \"pinned\"\npartition = 2\n\n{catch_all}"
        ),
    );
    let sluice = Sluice::start(&config).expect("sluice");
    // One connection, so one shard's producer: one topic (so one key) six times.
    let six: String = (0..6).map(|i| format!("m-{i}\n")).collect();
    publish(
        sluice.mqtt,
        &["-q", "1", "-t", "spread/a", "-l"],
        Some(&six),
    )
    .unwrap();
    for device in ["a", "b", "c", "d"] {
        let topic = format!("pinned/{device}");
        publish(sluice.mqtt, &["-q", "1", "-t", &topic, "-m", device], None).unwrap();
    }

    let kafka = broker.kafka();
    let spread = kafka
        .consume_all("spread", 6, Duration::from_secs(30))
        .expect("confluent-kafka reads spread");
    let mut per_partition = [0; 3];
    for r in &spread {
        per_partition[r.partition as usize] += 1;
    }
    assert_eq!(per_partition, [2, 2, 2], "round robin, whatever the key");
    let pinned = kafka
        .consume_all("pinned", 4, Duration::from_secs(30))
        .expect("confluent-kafka reads pinned");
    assert_eq!(pinned.len(), 4);
    assert!(pinned.iter().all(|r| r.partition == 2), "{pinned:?}");
}

/// Waits up to `deadline` for mosquitto_pub to exit and returns its output, or `None` if
/// it is still waiting (it is then killed).
fn finished_within(
    mut client: std::process::Child,
    deadline: Duration,
) -> Option<std::process::Output> {
    drop(client.stdin.take());
    let done = sluice_tests::poll_until(deadline, || client.try_wait().unwrap().is_some());
    if !done {
        let _ = client.kill();
        let _ = client.wait();
        return None;
    }
    Some(client.wait_with_output().unwrap())
}

#[test]
fn a_route_with_acks_0_is_acknowledged_without_kafka_answering_the_others_wait() {
    let mut broker = Broker::start().expect("broker");
    // `fast/#` takes acks = 0, the catch-all route the process's acks = all. One shard, so
    // the warm-up below reaches the producers the held PUBLISHes use.
    let catch_all = "[[routes]]\nlistener = \"mqtt\"\nmqtt_topic = \"#\"";
    let config = common::config(&broker.bootstrap(), "")
        .replace("shards = 2", "shards = 1")
        .replace(
            catch_all,
            &format!(
                "[[routes]]\nlistener = \"mqtt\"\nmqtt_topic = \"fast/#\"\nkafka_topic = \"fast\"\nacks = \"0\"\n\n{catch_all}"
            ),
        );
    let sluice = Sluice::start(&config).expect("sluice");
    // QoS 1 to both routes, every PUBLISH PUBACKed (mosquitto_pub exits 0 only then).
    let lines = |prefix: &str| -> String { (0..200).map(|i| format!("{prefix}-{i}\n")).collect() };
    for (topic, prefix) in [("fast/bulk", "fast"), ("slow/bulk", "slow")] {
        let input = lines(prefix);
        publish(sluice.mqtt, &["-q", "1", "-t", topic, "-l"], Some(&input)).unwrap();
        if prefix == "fast" {
            // Only the route's producer has sent client records so far: the shard's
            // Produce requests count them.
            wait_until(Duration::from_secs(10), "Produce requests counted", || {
                sluice.metric("sluice_produce_requests_total").unwrap_or(0) >= 1
            });
        }
    }

    broker.pause().unwrap();
    // With Kafka silent, the acks = 0 route still answers QoS 1 and QoS 2: its producer
    // waits for no Produce response ...
    for (qos, message) in [("1", "fast-held-q1"), ("2", "fast-held-q2")] {
        let client = common::mosquitto_pub(
            sluice.mqtt,
            &["-V", "mqttv5", "-q", qos, "-t", "fast/held", "-m", message],
        )
        .unwrap();
        let out = finished_within(client, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("no acknowledgement for QoS {qos} on the acks = 0 route"));
        assert!(out.status.success(), "QoS {qos}: {out:?}");
    }
    // ... while the catch-all route's PUBACK waits for Kafka, as before.
    let mut slow = common::mosquitto_pub(
        sluice.mqtt,
        &[
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            "slow/held",
            "-m",
            "slow-held",
        ],
    )
    .unwrap();
    drop(slow.stdin.take());
    no_puback_until_kafka_resumes(&mut slow, &mut broker);

    // Everything reached Kafka, once, in order per key.
    let kafka = broker.kafka();
    let fast = kafka
        .consume_all("fast", 202, Duration::from_secs(60))
        .expect("confluent-kafka reads fast");
    let values = |records: &[ConsumedRecord], key: &[u8]| -> Vec<String> {
        records
            .iter()
            .filter(|r| r.key.as_deref() == Some(key))
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into())
            .collect()
    };
    assert_eq!(fast.len(), 202, "exact count");
    assert_eq!(
        values(&fast, b"fast/bulk"),
        lines("fast").lines().collect::<Vec<_>>()
    );
    assert_eq!(
        values(&fast, b"fast/held"),
        ["fast-held-q1", "fast-held-q2"]
    );
    let slow = kafka
        .consume_all("mqtt-messages", 201, Duration::from_secs(60))
        .expect("confluent-kafka reads mqtt-messages");
    assert_eq!(slow.len(), 201, "exact count");
    assert_eq!(
        values(&slow, b"slow/bulk"),
        lines("slow").lines().collect::<Vec<_>>()
    );
    assert_eq!(values(&slow, b"slow/held"), ["slow-held"]);
}
