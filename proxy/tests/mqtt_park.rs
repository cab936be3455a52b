//! Parked connections: idle MQTT connections give up their task after `park_after_ms`, and
//! everything that concerns them still reaches them: data from the client (publishes,
//! PINGREQs), deliveries from Kafka, keepalive expiry, a session takeover and shutdown.
//! paho-mqtt clients and a raw-socket client see it; confluent-kafka checks the records.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Sluice;
use sluice_tests::Broker;

/// park_clients.py: commands in, JSON events out.
struct Clients {
    _child: common::Guard,
    stdin: ChildStdin,
    events: mpsc::Receiver<serde_json::Value>,
}

impl Clients {
    fn start(sluice: &Sluice) -> Clients {
        let mut child = common::Guard(
            Command::new(sluice_tests::python())
                .arg(common::script("park_clients.py"))
                .args([
                    &sluice.mqtt.ip().to_string(),
                    &sluice.mqtt.port().to_string(),
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("python runs"),
        );
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line).expect("park_clients.py prints JSON");
                if tx.send(event).is_err() {
                    return;
                }
            }
        });
        Clients {
            _child: child,
            stdin,
            events,
        }
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next event, which must be `name`.
    fn expect(&self, name: &str) -> serde_json::Value {
        let event = self
            .events
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no {name:?} event within 60 s"));
        assert_eq!(event["event"], name, "{event}");
        event
    }
}

fn parked(sluice: &Sluice) -> u64 {
    sluice.metric("sluice_connections_parked").unwrap()
}

#[test]
fn parked_connections_wake_for_data_deliveries_keepalive_takeover_and_shutdown() {
    let broker = Broker::start().expect("broker");
    // One shard: the takeover below then always meets the old connection on the shard
    // of the new one (a case that once went unnoticed: the new connection replaced the
    // old one's entry and nobody took the old one over).
    let config = common::config(&broker.bootstrap(), "")
        .replace("shards = 2", "shards = 1")
        .replace(
            "receive_maximum = 100",
            "receive_maximum = 100\npark_after_ms = 200",
        );
    let mut sluice = Sluice::start(&config).expect("sluice");
    let mut clients = Clients::start(&sluice);
    clients.expect("ready");
    let ready_at = Instant::now();

    // sub, pub and owner are idle: they park (pinger and silent come and go).
    assert!(
        sluice_tests::poll_until(Duration::from_secs(10), || parked(&sluice) >= 3),
        "idle connections park; parked = {}",
        parked(&sluice)
    );

    // A parked publisher's PUBLISHes wake it; a parked subscriber's deliveries wake it.
    clients.send("publish 20");
    assert_eq!(clients.expect("published")["acked"], 20);
    let received = clients.expect("received");
    let mut want: Vec<String> = (0..20).map(|i| format!("m-{i}")).collect();
    want.sort();
    let got: Vec<String> = serde_json::from_value(received["payloads"].clone()).unwrap();
    assert_eq!(got, want, "every message delivered once");
    let records = broker
        .kafka()
        .consume_all("mqtt-messages", 20, Duration::from_secs(30))
        .expect("confluent-kafka reads mqtt-messages");
    assert_eq!(records.len(), 20, "exact count in Kafka");
    for r in &records {
        let value = String::from_utf8(r.value.clone().unwrap()).unwrap();
        let i = value.strip_prefix("m-").unwrap();
        assert_eq!(r.key.as_deref(), Some(format!("park/{i}").as_bytes()));
    }

    // Once idle again they park again; a takeover reaches the parked owner.
    assert!(
        sluice_tests::poll_until(Duration::from_secs(10), || parked(&sluice) >= 3),
        "connections park again after the exchange"
    );
    clients.send("takeover");
    assert_eq!(
        clients.expect("taken_over")["reason"],
        0x8E,
        "session taken over"
    );

    // The pinger keeps its parked connection alive for several keepalive periods; the
    // silent client's is closed at 1.5 × its keepalive even though it is parked.
    let mut status = serde_json::Value::Null;
    let done = sluice_tests::poll_until(Duration::from_secs(20), || {
        clients.send("status");
        status = clients.expect("status");
        !status["silent_closed_after_s"].is_null() && ready_at.elapsed() >= Duration::from_secs(4)
    });
    assert!(done, "the silent client's connection closes: {status}");
    assert_eq!(status["pinger_disconnects"], 0, "{status}");
    let closed_after = status["silent_closed_after_s"].as_f64().unwrap();
    assert!(
        (1.0..6.0).contains(&closed_after),
        "keepalive 1 s closes within 1.5 s and some slack: {closed_after}"
    );

    // Shutdown reaches parked connections: MQTT 5 DISCONNECT "server shutting down".
    assert!(
        sluice_tests::poll_until(Duration::from_secs(10), || parked(&sluice) >= 1),
        "the subscriber is parked before shutdown"
    );
    sluice.sigterm().unwrap();
    clients.send("await-shutdown");
    assert_eq!(clients.expect("shutdown")["reason"], 0x8B);
    assert!(sluice.wait_exit().unwrap().success(), "exit 0");
}
