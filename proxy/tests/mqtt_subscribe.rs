//! Kafka → MQTT delivery: mosquitto_sub subscribers with wildcards, on two sluice processes,
//! receive what mosquitto_pub published through either process and what confluent-kafka
//! wrote straight into `mqtt-messages`, at the QoS they were granted.

mod common;

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::Sluice;
use sluice_tests::{Broker, ProduceRecord};

/// A mosquitto_sub that exits after `count` messages, printing
/// `topic|payload|qos|retain|content type|user properties` lines.
struct Subscriber {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Subscriber {
    /// A failed assertion must not leave mosquitto_sub running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Subscriber {
    /// Subscribes and waits for the SUBACK (sluice sends it once its Kafka readers are
    /// tailing, so everything produced afterwards is delivered).
    fn start(sluice: &Sluice, filter: &str, qos: u8, version: &str, count: usize) -> Subscriber {
        Subscriber::with_args(sluice, filter, qos, version, count, &[])
    }

    /// [`Subscriber::start`] with more mosquitto_sub arguments.
    fn with_args(
        sluice: &Sluice,
        filter: &str,
        qos: u8,
        version: &str,
        count: usize,
        extra: &[&str],
    ) -> Subscriber {
        // Line-buffered, so the SUBACK line arrives when it is printed.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(["-h", &sluice.mqtt.ip().to_string()])
            .args(["-p", &sluice.mqtt.port().to_string()])
            .args(["-t", filter, "-q", &qos.to_string(), "-V", version])
            .args(["-C", &count.to_string(), "-F", "%t|%p|%q|%r|%C|%P", "-d"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx.recv_timeout(left).expect("a SUBACK within 30 s");
            if line.contains("received SUBACK") {
                break;
            }
        }
        Subscriber { child, lines: rx }
    }

    /// The messages, once mosquitto_sub received its count and exited.
    fn messages(self) -> Vec<String> {
        let (out, status) = self.finish();
        assert!(
            status.success(),
            "mosquitto_sub exited with {status}: got {out:?}"
        );
        out
    }

    /// The messages and how mosquitto_sub exited (27: its `-W` timeout passed).
    fn finish(mut self) -> (Vec<String>, std::process::ExitStatus) {
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            // Debug lines start with "Client " or "Subscribed "; messages are
            // topic|payload|qos.
            if !line.starts_with("Client ") && !line.starts_with("Subscribed ") {
                out.push(line);
            }
        }
        // Its stdout closed: it is exiting (or the deadline passed and it is killed below).
        let mut exited = None;
        sluice_tests::poll_until(Duration::from_secs(5), || {
            exited = self.child.try_wait().unwrap();
            exited.is_some()
        });
        let _ = self.child.kill();
        let status = exited.unwrap_or_else(|| panic!("mosquitto_sub still waiting; got {out:?}"));
        out.sort();
        (out, status)
    }
}

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

/// proxy/tests/clients/session_client.py, running: its JSON events line by line.
struct SessionClient {
    child: Child,
    events: mpsc::Receiver<serde_json::Value>,
}

impl Drop for SessionClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SessionClient {
    fn start(sluice: &Sluice, client_id: &str, args: &[&str]) -> SessionClient {
        let mut child = Command::new(sluice_tests::python())
            .arg(common::script("session_client.py"))
            .args([
                &sluice.mqtt.ip().to_string(),
                &sluice.mqtt.port().to_string(),
                client_id,
            ])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line).expect("a JSON event");
                if tx.send(event).is_err() {
                    return;
                }
            }
        });
        SessionClient { child, events: rx }
    }

    /// Waits for the next event named `name`, returning it.
    fn wait(&self, name: &str) -> serde_json::Value {
        loop {
            let event = self
                .events
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no {name} event within 30 s"));
            if event["event"] == name {
                return event;
            }
        }
    }

    /// Every event until the client exits; it must exit 0.
    fn finish(mut self) -> Vec<serde_json::Value> {
        let events: Vec<_> =
            std::iter::from_fn(|| self.events.recv_timeout(Duration::from_secs(60)).ok()).collect();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "session client failed: {events:?}");
        events
    }
}

fn payloads(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "message")
        .map(|e| e["payload"].as_str().unwrap().to_owned())
        .collect()
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
    let port = first.mqtt.port();
    let shared = config.replace(
        "name = \"mqtt\"\nlisten = \"127.0.0.1:0\"",
        &format!("name = \"mqtt\"\nlisten = \"127.0.0.1:{port}\""),
    );
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

/// A paho-mqtt script of proxy/tests/clients connected to `sluice` (its arguments: host
/// and port), and its output lines.
fn paho_script(sluice: &Sluice, name: &str) -> (common::Guard, Lines<BufReader<ChildStdout>>) {
    let mut child = common::Guard(
        Command::new(sluice_tests::python())
            .arg(common::script(name))
            .args([sluice.mqtt.ip().to_string(), sluice.mqtt.port().to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python runs"),
    );
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// The next line, a JSON object.
fn next_json(lines: &mut Lines<BufReader<ChildStdout>>) -> serde_json::Value {
    serde_json::from_str(&lines.next().expect("a line").unwrap()).unwrap()
}

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
