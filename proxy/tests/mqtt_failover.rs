//! Failover: a sluice process serving persistent MQTT sessions is killed (SIGKILL); its
//! clients (paho, automatic reconnect) come back through the same port to the process that
//! remains and resume their sessions from Kafka with nothing lost.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::Sluice;
use sluice_tests::{Broker, ProduceRecord};

const CLIENTS: usize = 20;
const MESSAGES: usize = 20;

fn produce(broker: &Broker, range: std::ops::Range<usize>) {
    let records: Vec<ProduceRecord> = (0..CLIENTS)
        .flat_map(|i| {
            range
                .clone()
                .map(move |j| ProduceRecord::value(format!("m-{j}")).key(format!("fo/fo-{i}/x")))
        })
        .collect();
    broker
        .kafka()
        .produce("mqtt-messages", &records)
        .expect("confluent-kafka produces");
}

#[test]
fn persistent_sessions_survive_the_death_of_their_process() {
    let broker = Broker::start().expect("broker");
    let config = common::config(&broker.bootstrap(), "");
    let first = Sluice::start(&config).expect("first sluice");
    // The second process listens on the same port (SO_REUSEPORT): the kernel spreads new
    // connections over both, and sends everything to the survivor once one is gone.
    let shared = common::on_mqtt_port_of(&config, &first);
    let second = Sluice::start(&shared).expect("second sluice on the same port");
    let port = first.mqtt.port();
    assert_eq!(second.mqtt.port(), port);

    let mut clients = common::Guard(
        Command::new(sluice_tests::python())
            .arg(common::script("failover_clients.py"))
            .args(["127.0.0.1", &port.to_string(), "fo"])
            .args([CLIENTS.to_string(), MESSAGES.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python runs"),
    );
    let stdout = clients.stdout.take().unwrap();
    let (tx, events) = mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(serde_json::from_str(&line).expect("JSON"));
        }
    });
    let ready = events
        .recv_timeout(Duration::from_secs(60))
        .expect("clients ready");
    assert_eq!(ready["event"], "ready");
    let on_first = first.metric("sluice_connections_open").unwrap();
    assert!(
        on_first > 0,
        "the kernel put no client on the first process"
    );
    // Every session's claim and SUBSCRIBE save went through the session producers
    // (mqtt.sessions_linger_ms), which count them (copied to the metrics each second).
    let session_writes =
        |name: &str| first.metric(name).unwrap_or(0) + second.metric(name).unwrap_or(0);
    sluice_tests::wait_until(
        Duration::from_secs(10),
        "the session producers count the claims and saves",
        || session_writes("sluice_session_records_total") >= 2 * CLIENTS as u64,
    );
    let batches = session_writes("sluice_session_batches_total");
    assert!(
        batches >= 1 && batches <= session_writes("sluice_session_records_total"),
        "{batches} session batches"
    );

    // Half the messages while both run; wait until they were delivered...
    produce(&broker, 0..MESSAGES / 2);
    let half = (CLIENTS * MESSAGES / 2) as u64;
    sluice_tests::wait_until(Duration::from_secs(60), "the first half delivered", || {
        first.metric("sluice_deliveries_total").unwrap_or(0)
            + second.metric("sluice_deliveries_total").unwrap_or(0)
            >= half
    });
    // ...then SIGKILL the first process (Sluice's drop kills with SIGKILL) and send the rest.
    drop(first);
    produce(&broker, MESSAGES / 2..MESSAGES);

    let done = events
        .recv_timeout(Duration::from_secs(150))
        .expect("the clients finish");
    let status = clients.wait().unwrap();
    assert_eq!(done["event"], "done", "{done}");
    assert!(status.success());
    assert!(
        done["reconnects"].as_u64().unwrap() >= on_first,
        "every client of the killed process reconnected: {done}"
    );
    eprintln!("failover of {on_first} sessions: {done}");
}
