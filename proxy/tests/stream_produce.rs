//! Record streams over raw TCP: a framed client (length-prefixed records with keys, acked
//! per record once Kafka has them) and a line client (newline-delimited, no acks), checked
//! by confluent-kafka.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Sluice;
use sluice_tests::Broker;

fn config(bootstrap: &str) -> String {
    format!(
        r##"
[server]
shards = 2

[kafka]
"bootstrap.servers" = "{bootstrap}"

[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "mqtt"
listen = "127.0.0.1:0"
protocol = "mqtt"

[[listeners]]
name = "framed"
listen = "127.0.0.1:0"
protocol = "stream"
codec = "framed"
codec_settings = {{ prefix = "u32", key = "true" }}
acks = true

[[listeners]]
name = "lines"
listen = "127.0.0.1:0"
protocol = "stream"
codec = "lines"

[[routes]]
listener = "mqtt"
mqtt_topic = "#"
kafka_topic = "mqtt-messages"

[[routes]]
listener = "framed"
kafka_topic = "tcp-records"
headers = ["listener"]

[[routes]]
listener = "lines"
kafka_topic = "tcp-lines"
key = ""
"##
    )
}

/// [u32 length][u16 key length][key][value]
fn frame(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&((2 + key.len() + value.len()) as u32).to_be_bytes());
    f.extend_from_slice(&(key.len() as u16).to_be_bytes());
    f.extend_from_slice(key);
    f.extend_from_slice(value);
    f
}

#[test]
fn framed_records_are_acked_after_kafka_and_lines_flow_without_acks() {
    let broker = Broker::start().expect("broker");
    let sluice = Sluice::start(&config(&broker.bootstrap())).expect("sluice starts");

    let mut framed = TcpStream::connect(sluice.listeners["framed"]).unwrap();
    framed
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut batch = Vec::new();
    for i in 0..1000 {
        batch.extend(frame(
            format!("k{}", i % 10).as_bytes(),
            format!("v{i}").as_bytes(),
        ));
    }
    framed.write_all(&batch).unwrap();
    // One ack frame per record, each `[0 0 0 1][0]` (accepted), only once Kafka has it.
    let mut acks = vec![0u8; 5 * 1000];
    framed.read_exact(&mut acks).expect("1000 acks");
    for ack in acks.chunks(5) {
        assert_eq!(ack, [0, 0, 0, 1, 0], "accepted");
    }

    let mut lines = TcpStream::connect(sluice.listeners["lines"]).unwrap();
    let text: String = (0..500).map(|i| format!("line-{i}\n")).collect();
    lines.write_all(text.as_bytes()).unwrap();
    drop(lines);

    let kafka = broker.kafka().timeout(Duration::from_secs(60));
    let records = kafka
        .consume_all("tcp-records", 1000, Duration::from_secs(60))
        .unwrap();
    assert_eq!(records.len(), 1000, "exact count");
    let mut seen = vec![false; 1000];
    for r in &records {
        let value = String::from_utf8(r.value.clone().unwrap()).unwrap();
        let i: usize = value[1..].parse().unwrap();
        assert!(!seen[i], "{value} twice");
        seen[i] = true;
        assert_eq!(r.key.as_deref(), Some(format!("k{}", i % 10).as_bytes()));
        assert!(r
            .headers
            .contains(&("sluice.listener".into(), Some(b"framed".to_vec()))));
    }
    let lines = kafka
        .consume_all("tcp-lines", 500, Duration::from_secs(60))
        .unwrap();
    assert_eq!(lines.len(), 500);
    let mut values: Vec<String> = lines
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect();
    values.sort_by_key(|v| v[5..].parse::<usize>().unwrap());
    assert_eq!(
        values,
        (0..500).map(|i| format!("line-{i}")).collect::<Vec<_>>()
    );
    assert!(
        lines.iter().all(|r| r.key.is_none()),
        "key = \"\" means no key"
    );
}

#[test]
fn a_malformed_frame_closes_only_its_own_connection() {
    let broker = Broker::start().expect("broker");
    let sluice = Sluice::start(&config(&broker.bootstrap())).expect("sluice starts");
    let mut good = TcpStream::connect(sluice.listeners["framed"]).unwrap();
    good.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut bad = TcpStream::connect(sluice.listeners["framed"]).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // A key length longer than the frame: malformed.
    bad.write_all(&[0, 0, 0, 3, 0, 9, b'x']).unwrap();
    let mut rest = Vec::new();
    let n = bad
        .read_to_end(&mut rest)
        .expect("sluice closes the bad connection");
    assert_eq!(n, 0, "no ack for a malformed frame");
    good.write_all(&frame(b"k", b"still-fine")).unwrap();
    let mut ack = [0u8; 5];
    good.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0, 0, 0, 1, 0]);
    let records = broker
        .kafka()
        .consume_all("tcp-records", 1, Duration::from_secs(60))
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value.as_deref(), Some(&b"still-fine"[..]));
}

#[test]
fn a_framed_route_with_acks_0_acks_records_kafka_has_not_answered() {
    let mut broker = Broker::start().expect("broker");
    let topic = "kafka_topic = \"tcp-records\"\n";
    let config = config(&broker.bootstrap()).replace(topic, &format!("{topic}acks = \"0\"\n"));
    let sluice = Sluice::start(&config).expect("sluice starts");
    // One connection, so one shard: the first record warms up its route producer (metadata,
    // broker connection) before Kafka stops.
    let mut framed = TcpStream::connect(sluice.listeners["framed"]).unwrap();
    framed
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut ack = [0u8; 5];
    framed.write_all(&frame(b"k", b"before")).unwrap();
    framed.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0, 0, 0, 1, 0]);
    broker.pause().unwrap();
    // The route's producer waits for no Produce response, so the ack comes with Kafka
    // stopped (an acks = all route's would not: puback_is_sent_only_after_kafka_acknowledged).
    framed.write_all(&frame(b"k", b"while-paused")).unwrap();
    framed
        .read_exact(&mut ack)
        .expect("an ack while Kafka is paused");
    assert_eq!(ack, [0, 0, 0, 1, 0], "accepted");
    broker.resume().unwrap();
    let records = broker
        .kafka()
        .consume_all("tcp-records", 2, Duration::from_secs(60))
        .unwrap();
    let values: Vec<&[u8]> = records.iter().filter_map(|r| r.value.as_deref()).collect();
    assert_eq!(
        values,
        [&b"before"[..], b"while-paused"],
        "once each, in order"
    );
}
