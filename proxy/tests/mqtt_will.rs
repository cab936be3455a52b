//! Will messages: published when a client's connection ends without DISCONNECT, and, when
//! the sluice process serving the client dies, by another process that notices its
//! heartbeats stopped. A mosquitto_sub on another process receives both, with the will's
//! MQTT 5 properties.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Sluice;
use sluice_tests::Broker;

/// will_client.py connected to `sluice`, once it printed that it is connected.
fn will_client(sluice: &Sluice, client_id: &str, topic: &str, payload: &str) -> common::Guard {
    let mut child = common::Guard(
        Command::new(sluice_tests::python())
            .arg(common::script("will_client.py"))
            .args([
                &sluice.mqtt.ip().to_string(),
                &sluice.mqtt.port().to_string(),
            ])
            .args([client_id, topic, payload])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python runs"),
    );
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("\"connected\""), "{line}");
    child
}

#[test]
fn wills_are_published_when_a_client_or_its_process_dies() {
    let broker = Broker::start().expect("broker");
    let config = common::config_with_mqtt5_headers(&broker.bootstrap());
    let first = Sluice::start(&config).expect("first sluice");
    let second = Sluice::start(&config).expect("second sluice");

    // Line-buffered, so the SUBACK line arrives when it is printed.
    let mut sub = common::Guard(
        Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub", "-h", "127.0.0.1"])
            .args(["-p", &second.mqtt.port().to_string()])
            .args(["-t", "wills/#", "-q", "1", "-C", "2", "-V", "mqttv5", "-d"])
            // Topic, payload, QoS, content type, correlation data, response topic, user
            // properties, message expiry interval.
            .args(["-F", "%t|%p|%q|%C|%D|%R|%P|%E"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub runs"),
    );
    let stdout = sub.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let next = |what: &str| {
        lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("mosquitto_sub printed nothing for 30 s waiting for {what}"))
    };
    while !next("its SUBACK").contains("received SUBACK") {}

    // A client killed without DISCONNECT: its own process publishes the will.
    let mut a = will_client(&first, "will-a", "wills/a", "a-gone");
    a.kill().unwrap();
    a.wait().unwrap();
    // Delivered before the next step, so the second will cannot overtake it.
    sluice_tests::wait_until(Duration::from_secs(30), "the first will delivered", || {
        second.metric("sluice_deliveries_total").unwrap_or(0) >= 1
    });

    // A client whose sluice process is killed: the other process publishes it, once the
    // dead process's heartbeats have been missing for 5 s.
    let mut b = will_client(&first, "will-b", "wills/b", "b-gone");
    drop(first);

    let mut messages = Vec::new();
    while messages.len() < 2 {
        let line = next("the wills");
        if line.starts_with("wills/") {
            messages.push(line);
        }
    }
    messages.sort();
    let status = sub.wait().unwrap();
    let _ = b.kill();
    let _ = b.wait();
    assert!(
        status.success(),
        "mosquitto_sub: {status}, got {messages:?}"
    );
    // The expiry left of the will's 600 s: the dead process's will waited ~5 s.
    let (with_expiry, expiry): (Vec<&str>, Vec<u32>) = messages
        .iter()
        .map(|m| m.rsplit_once('|').unwrap())
        .map(|(m, e)| (m, e.parse::<u32>().unwrap_or(0)))
        .unzip();
    assert_eq!(
        with_expiry,
        [
            "wills/a|a-gone|1|text/plain|c-1|status/req|why:gone",
            "wills/b|b-gone|1|text/plain|c-1|status/req|why:gone",
        ]
    );
    assert!(
        expiry.iter().all(|e| (540..=600).contains(e)),
        "{messages:?}"
    );
}
