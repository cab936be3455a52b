//! The custom binary end to end: `sluice-jsonlines` (sluice plus the example `jsonlines`
//! codec, built on the library) checks a config naming the codec and its settings, then
//! takes JSON lines over TCP with acks against tansu; confluent-kafka reads the records
//! back.

#[path = "../../../proxy/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{header, Sluice};
use sluice_tests::Broker;

const BIN: &str = env!("CARGO_BIN_EXE_sluice-jsonlines");

/// The test config (an MQTT listener) plus a stream listener `json` with the codec.
fn config(bootstrap: &str, settings: &str) -> String {
    common::config(bootstrap, "")
        + &format!(
            r#"
[[listeners]]
name = "json"
listen = "127.0.0.1:0"
protocol = "stream"
codec = "jsonlines"
codec_settings = {{ {settings} }}
acks = true

[[routes]]
listener = "json"
kafka_topic = "json-records"
headers = ["listener"]
"#
        )
}

/// `--check` with this binary: its exit status and stderr.
fn check(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(BIN)
        .args(["--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_knows_the_plugged_in_codec_and_its_settings() {
    let (ok, err) = check(&config("127.0.0.1:9092", "max_line_bytes = \"4096\""));
    assert!(ok, "{err}");
    let (ok, err) = check(&config("127.0.0.1:9092", "max_lines = \"4096\""));
    assert!(!ok);
    assert!(err.contains("listeners[1].codec"), "{err}");
    assert!(err.contains("max_lines"), "{err}");
    let (ok, err) = check(&config("127.0.0.1:9092", "").replace("jsonlines", "xmllines"));
    assert!(!ok);
    assert!(err.contains("framed, jsonlines, lines"), "{err}");
}

#[test]
fn json_lines_over_tcp_become_kafka_records() {
    let broker = Broker::start().expect("broker");
    let sluice = Sluice::start_bin(BIN, &config(&broker.bootstrap(), "")).expect("starts");
    let mut conn = TcpStream::connect(sluice.listeners["json"]).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut lines = String::new();
    for i in 0..100 {
        lines.push_str(&format!(
            "{{\"key\": \"device-{}\", \"value\": {{\"t\": {i}}}, \"headers\": {{\"source\": \"lab\"}}}}\n",
            i % 7
        ));
    }
    conn.write_all(lines.as_bytes()).unwrap();
    let mut acks = BufReader::new(conn.try_clone().unwrap());
    for i in 0..100 {
        let mut ack = String::new();
        acks.read_line(&mut ack).unwrap();
        assert_eq!(ack, "{\"ok\":true}\n", "ack {i}");
    }
    // A line that is not the codec's JSON closes the connection; nothing of it is written.
    conn.write_all(b"not json\n").unwrap();
    let mut rest = String::new();
    let _ = acks.read_line(&mut rest);
    assert_eq!(rest, "", "closed without an ack");

    let records = broker
        .kafka()
        .consume_all("json-records", 100, Duration::from_secs(60))
        .unwrap();
    assert_eq!(records.len(), 100);
    let mut seen = [false; 100];
    for r in &records {
        let value = String::from_utf8(r.value.clone().unwrap()).unwrap();
        let i: usize = value
            .strip_prefix("{\"t\": ")
            .and_then(|v| v.strip_suffix('}'))
            .unwrap_or_else(|| panic!("{value}"))
            .parse()
            .unwrap();
        assert!(!seen[i], "{value} twice");
        seen[i] = true;
        assert_eq!(
            r.key.as_deref(),
            Some(format!("device-{}", i % 7).as_bytes())
        );
        assert_eq!(header(r, "source"), Some(&b"lab"[..]));
        assert_eq!(header(r, "sluice.listener"), Some(&b"json"[..]));
    }
}
