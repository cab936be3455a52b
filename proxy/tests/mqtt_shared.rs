//! Shared subscriptions (`$share/{name}/{filter}`) across two sluice processes, with real
//! mosquitto_sub members (MQTT 3.1.1 and 5) and records produced by confluent-kafka and
//! mosquitto_pub: each message reaches exactly one member, members on both processes get
//! some, and members (or a whole process) going away lose nothing at QoS 1.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::Sluice;
use sluice_tests::{Broker, ProduceRecord};

const SHARE: &str = "$share/workers/jobs/#";

/// A config with a shorter share session timeout than the default, so a killed process's
/// partitions move within seconds. Not much shorter: tansu holds a follower's JoinGroup for
/// 3 s, during which it cannot heartbeat, and expels members silent for a session timeout.
fn config(broker: &Broker) -> String {
    format!(
        "{}\n[mqtt]\nshare_session_timeout_ms = 6000\nshare_heartbeat_ms = 500\n",
        common::config(&broker.bootstrap(), "")
    )
}

/// A broker whose `mqtt-messages` has `partitions` partitions, and two sluice processes.
fn start(partitions: i32) -> (Broker, Sluice, Sluice) {
    let broker = Broker::start().expect("broker");
    broker
        .kafka()
        .create_topic("mqtt-messages", partitions, &[])
        .expect("confluent-kafka creates the topic");
    let config = config(&broker);
    let one = Sluice::start(&config).expect("first sluice");
    let two = Sluice::start(&config).expect("second sluice");
    (broker, one, two)
}

/// A mosquitto_sub share member; the payloads it printed, in order.
struct Member {
    child: Child,
    got: Arc<Mutex<Vec<String>>>,
    /// Set once everything mosquitto_sub printed has been read.
    eof: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Member {
    /// Subscribes to [`SHARE`] and waits for a successful SUBACK.
    fn join(sluice: &Sluice, version: &str, qos: u8) -> Member {
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(["-h", &sluice.mqtt.ip().to_string()])
            .args(["-p", &sluice.mqtt.port().to_string()])
            .args(["-t", SHARE, "-q", &qos.to_string(), "-V", version])
            .args(["-F", "M|%p", "-d"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub runs");
        let stdout = child.stdout.take().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let (sink, eof) = (
            got.clone(),
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
        );
        let done = eof.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(payload) = line.strip_prefix("M|") {
                    sink.lock().unwrap().push(payload.to_owned());
                } else if line.starts_with("Subscribed") {
                    let _ = tx.send(line);
                }
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a SUBACK within 30 s");
        let code: u8 = line
            .rsplit(' ')
            .next()
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(255);
        assert!(code <= 2, "shared subscription refused: {line}");
        Member { child, got, eof }
    }

    /// Kills the client and returns everything it printed (it acknowledged all of it).
    fn kill(&mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        sluice_tests::wait_until(
            Duration::from_secs(10),
            "mosquitto_sub's output read",
            || self.eof.load(std::sync::atomic::Ordering::SeqCst),
        );
        self.got()
    }

    fn got(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

/// `count` records keyed `jobs/{i % 7}` with payloads `{tag}-{i}`, written by confluent-kafka
/// straight into the delivery topic (the partitioner spreads the keys).
fn produce(broker: &Broker, tag: &str, range: std::ops::Range<usize>) {
    let records: Vec<ProduceRecord> = range
        .map(|i| ProduceRecord::value(format!("{tag}-{i}")).key(format!("jobs/{}", i % 7)))
        .collect();
    broker
        .kafka()
        .produce("mqtt-messages", &records)
        .expect("confluent-kafka produces");
}

/// Every payload with how many times it was received, over all members.
fn tally(members: &[&Member]) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for m in members {
        for p in m.got() {
            *t.entry(p).or_default() += 1;
        }
    }
    t
}

#[test]
fn each_message_reaches_exactly_one_member_across_processes() {
    let (broker, one, two) = start(4);

    // Members on both processes, MQTT 3.1.1 and 5, QoS 0 and 1.
    let members = [
        Member::join(&one, "mqttv311", 1),
        Member::join(&one, "mqttv5", 1),
        Member::join(&two, "mqttv5", 1),
        Member::join(&two, "mqttv311", 0),
    ];
    // Messages that match no share member's filter are not delivered to them.
    common::publish(
        one.mqtt,
        &["-t", "elsewhere/x", "-m", "no", "-q", "1"],
        None,
    )
    .unwrap();
    produce(&broker, "k", 0..300);
    for i in 0..20 {
        let process = if i % 2 == 0 { &one } else { &two };
        let payload = format!("p-{i}");
        let topic = format!("jobs/mqtt/{i}");
        common::publish(
            process.mqtt,
            &["-t", &topic, "-m", &payload, "-q", "1"],
            None,
        )
        .unwrap();
    }
    let expected: Vec<String> = (0..300)
        .map(|i| format!("k-{i}"))
        .chain((0..20).map(|i| format!("p-{i}")))
        .collect();

    let refs: Vec<&Member> = members.iter().collect();
    sluice_tests::wait_until(Duration::from_secs(60), "every message delivered", || {
        tally(&refs).len() == expected.len()
    });
    // Every message was handed out once in total (no redelivery happened), so no
    // duplicate can still be on its way.
    sluice_tests::wait_until(Duration::from_secs(10), "deliveries counted", || {
        let handed = one.metric("sluice_share_deliveries_total").unwrap_or(0)
            + two.metric("sluice_share_deliveries_total").unwrap_or(0);
        handed >= expected.len() as u64
    });
    let handed = one.metric("sluice_share_deliveries_total").unwrap()
        + two.metric("sluice_share_deliveries_total").unwrap();
    assert_eq!(handed, expected.len() as u64, "one hand-out per message");
    let t = tally(&refs);
    let mut want = expected.clone();
    want.sort();
    assert_eq!(t.keys().cloned().collect::<Vec<_>>(), want, "no loss");
    let dups: Vec<_> = t.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "duplicates: {dups:?}");
    assert!(!t.contains_key("no"));

    // Both processes' members took part (four partitions, two processes, two shards each).
    let on_one = members[0].count() + members[1].count();
    let on_two = members[2].count() + members[3].count();
    assert!(
        on_one > 0 && on_two > 0,
        "process one got {on_one}, process two {on_two}"
    );
    assert!(one.metric("sluice_share_partitions").unwrap() > 0);
    assert!(two.metric("sluice_share_partitions").unwrap() > 0);
    assert_eq!(one.metric("sluice_share_members").unwrap(), 2);
}

#[test]
fn members_and_processes_going_away_lose_nothing_at_qos1() {
    let (broker, one, mut two) = start(4);

    let stays = Member::join(&one, "mqttv5", 1);
    let mut leaves = Member::join(&one, "mqttv311", 1);
    let dies_a = Member::join(&two, "mqttv5", 1);
    let dies_b = Member::join(&two, "mqttv311", 1);

    // First: everyone is there.
    produce(&broker, "a", 0..200);
    let all = [&stays, &leaves, &dies_a, &dies_b];
    sluice_tests::wait_until(Duration::from_secs(60), "the first batch delivered", || {
        tally(&all).len() == 200
    });

    // A member leaves mid-stream (its client killed, the TCP connection closes): what it
    // held unacknowledged goes to the others.
    let producer = {
        let bootstrap = broker.bootstrap();
        std::thread::spawn(move || {
            let kafka = sluice_tests::PyClient::new(&bootstrap);
            for chunk in 0..4 {
                let records: Vec<ProduceRecord> = (chunk * 100..chunk * 100 + 100)
                    .map(|i| ProduceRecord::value(format!("b-{i}")).key(format!("jobs/{}", i % 7)))
                    .collect();
                kafka.produce("mqtt-messages", &records).expect("produce");
            }
        })
    };
    sluice_tests::wait_until(Duration::from_secs(60), "the second batch flowing", || {
        tally(&all).keys().any(|p| p.starts_with("b-"))
    });
    let left_with = leaves.kill();

    // Then the second process dies (SIGKILL) while its members are receiving.
    let before_kill = dies_a.count() + dies_b.count();
    sluice_tests::wait_until(Duration::from_secs(60), "process two delivering", || {
        dies_a.count() + dies_b.count() > before_kill
            || tally(&[&stays, &dies_a, &dies_b]).len() + left_with.len() >= 600
    });
    let killed_at = Instant::now();
    let pid = two.pid().to_string();
    let status = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    assert!(status.success());
    let _ = two.wait_exit();
    producer.join().expect("producer thread");

    // The survivor gets everything still owed, after the session timeout moves the dead
    // process's partitions.
    let everyone = [&stays, &dies_a, &dies_b];
    let received = |t: &BTreeMap<String, usize>| {
        let mut all: std::collections::BTreeSet<&String> = t.keys().collect();
        all.extend(left_with.iter());
        all.len()
    };
    let complete = sluice_tests::poll_until(Duration::from_secs(60), || {
        received(&tally(&everyone)) == 600
    });
    if !complete {
        let t = tally(&everyone);
        let missing: Vec<String> = (0..200)
            .map(|i| format!("a-{i}"))
            .chain((0..400).map(|i| format!("b-{i}")))
            .filter(|p| !t.contains_key(p) && !left_with.contains(p))
            .collect();
        panic!(
            "{} messages never arrived: {missing:?}; the survivor's shards hold {} partitions",
            missing.len(),
            one.metric("sluice_share_partitions").unwrap_or(0)
        );
    }
    println!("survivor complete {:?} after the kill", killed_at.elapsed());

    // At least once: nothing lost. A message is delivered again only when the member or
    // process that had it went away before its acknowledgement was committed, or when it
    // shared a fetch with such a message (commits go back to where a fetch started); with
    // two departures here, each message arrives at most three times.
    let mut t = tally(&everyone);
    for p in &left_with {
        *t.entry(p.clone()).or_default() += 1;
    }
    let at_risk: std::collections::BTreeSet<String> = left_with
        .iter()
        .chain(dies_a.got().iter())
        .chain(dies_b.got().iter())
        .cloned()
        .collect();
    for (payload, n) in &t {
        assert!(*n <= 3, "{payload} delivered {n} times");
    }
    let duplicates = t.values().filter(|n| **n > 1).count();
    println!("duplicates: {duplicates} (of {} at risk)", at_risk.len());
}

/// proxy/tests/clients/session_client.py (MQTT 5, persistent session), run to completion.
fn session_client(sluice: &Sluice, client_id: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let mut cmd = Command::new(sluice_tests::python());
    cmd.arg(common::script("session_client.py"))
        .args([
            &sluice.mqtt.ip().to_string(),
            &sluice.mqtt.port().to_string(),
            client_id,
        ])
        .args(args);
    let out = common::run(cmd, "session_client.py");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON event"))
        .collect()
}

#[test]
fn a_persistent_session_keeps_its_share_and_resumes_it_on_another_process() {
    let (broker, one, two) = start(2);

    // Subscribe on process one and take one message; the session (and its share) stays.
    let mut first = Command::new(sluice_tests::python())
        .arg(common::script("session_client.py"))
        .args([
            &one.mqtt.ip().to_string(),
            &one.mqtt.port().to_string(),
            "share-worker",
            "subscribe",
            SHARE,
            "1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python runs");
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let mut events = Vec::new();
    for line in lines.by_ref() {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let subscribed = event["event"] == "subscribed";
        events.push(event);
        if subscribed {
            break;
        }
    }
    assert_eq!(
        events.last().unwrap()["codes"],
        serde_json::json!([1]),
        "{events:?}"
    );
    produce(&broker, "first", 0..1);
    events.extend(lines.map(|l| serde_json::from_str::<serde_json::Value>(&l.unwrap()).unwrap()));
    assert!(first.wait().unwrap().success(), "{events:?}");
    assert!(
        events.iter().any(|e| e["payload"] == "first-0"),
        "{events:?}"
    );

    // While it is away (the share has no member, its group keeps its offsets), two jobs.
    sluice_tests::wait_until(Duration::from_secs(20), "the share's group left", || {
        one.metric("sluice_share_partitions").unwrap_or(1) == 0
    });
    produce(&broker, "away", 0..2);

    // It comes back on process two without subscribing: the stored share is joined again
    // and what was published meanwhile is delivered.
    let events = session_client(&two, "share-worker", &["resume", "2"]);
    assert_eq!(events[0]["session_present"], true, "{events:?}");
    let mut got: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "message")
        .map(|e| e["payload"].as_str().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, ["away-0", "away-1"], "{events:?}");
}

#[test]
fn a_kafka_consumer_in_the_same_group_shares_the_partitions() {
    let (broker, one, _two) = start(4);
    let member = Member::join(&one, "mqttv5", 1);
    // A confluent-kafka (librdkafka) consumer joins the share's consumer group.
    let mut consumer = Command::new(sluice_tests::python())
        .arg(common::script("group_consumer.py"))
        .args([
            &broker.bootstrap(),
            "sluice-share-workers/jobs/#",
            "mqtt-messages",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python runs");
    let stdout = consumer.stdout.take().unwrap();
    let (assigned, values) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    );
    let (a, v) = (assigned.clone(), values.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let e: serde_json::Value = serde_json::from_str(&line).expect("JSON");
            if e["event"] == "assigned" {
                *a.lock().unwrap() = e["partitions"].as_array().unwrap().clone();
            } else if let Some(value) = e["value"].as_str() {
                v.lock().unwrap().push(value.to_owned());
            }
        }
    });
    let _guard = common::Guard(consumer);
    // Both sides settled on one generation: the consumer has part of the partitions and
    // sluice the rest.
    sluice_tests::wait_until(Duration::from_secs(60), "the group split", || {
        let n = assigned.lock().unwrap().len();
        n > 0 && n < 4 && one.metric("sluice_share_partitions").unwrap_or(0) as usize + n == 4
    });
    produce(&broker, "x", 0..100);
    sluice_tests::wait_until(Duration::from_secs(60), "every message consumed", || {
        member.count() + values.lock().unwrap().len() >= 100
    });
    let mut all = member.got();
    all.extend(values.lock().unwrap().iter().cloned());
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 100);
    assert!(member.count() > 0 && !values.lock().unwrap().is_empty());
}
