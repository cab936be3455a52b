//! WebSocket and TLS listeners end to end: paho-mqtt and MQTT.js over ws:// and wss://,
//! mosquitto_pub over TLS with and without client certificates, curl over HTTPS, and raw
//! WebSocket producers (npm `ws`) whose acknowledgements name the offsets confluent-kafka
//! then reads. Bad frames and refused upgrades get their protocol's answer.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{header, node_modules, run, script, Sluice};
use sluice_tests::{python, Broker, ClientAuth, ConsumedRecord, TlsFiles};

const CONSUME: Duration = Duration::from_secs(60);

/// The test config plus `extra` listeners and routes.
fn config(broker: &Broker, extra: &str) -> String {
    format!("{}\n{extra}\n", common::config(&broker.bootstrap(), ""))
}

fn mqtt_listener(name: &str, keys: &str) -> String {
    format!(
        r##"
[[listeners]]
name = "{name}"
listen = "127.0.0.1:0"
protocol = "mqtt"
{keys}

[[routes]]
listener = "{name}"
mqtt_topic = "#"
kafka_topic = "mqtt-messages"
key = "{{topic}}"
headers = ["client_id", "listener"]
"##
    )
}

fn tls_keys(files: &TlsFiles) -> String {
    format!(
        "tls = {{ cert_file = {:?}, key_file = {:?} }}",
        files.server_cert, files.server_key
    )
}

fn by_key(records: &[ConsumedRecord]) -> BTreeMap<String, &ConsumedRecord> {
    let mut map = BTreeMap::new();
    for r in records {
        let key = String::from_utf8(r.key.clone().unwrap_or_default()).unwrap();
        assert!(map.insert(key.clone(), r).is_none(), "{key} arrived twice");
    }
    map
}

fn paho(addr: SocketAddr, prefix: &str, transport: &str, ca: Option<&TlsFiles>) {
    let mut cmd = Command::new(python());
    cmd.arg(script("paho_publish.py")).args([
        &addr.ip().to_string(),
        &addr.port().to_string(),
        prefix,
        transport,
    ]);
    if let Some(files) = ca {
        cmd.env("SLUICE_CA", &files.ca_cert);
    }
    run(cmd, &format!("paho-mqtt over {transport}"));
}

fn mqttjs(addr: SocketAddr, prefix: &str, transport: &str, ca: Option<&TlsFiles>) {
    let mut cmd = Command::new("node");
    cmd.arg(script("mqttjs_publish.js"))
        .args([
            &addr.ip().to_string(),
            &addr.port().to_string(),
            prefix,
            transport,
        ])
        .env("NODE_PATH", node_modules());
    if let Some(files) = ca {
        cmd.env("SLUICE_CA", &files.ca_cert);
    }
    run(cmd, &format!("MQTT.js over {transport}"));
}

/// The keys paho_publish.py and mqttjs_publish.js write under `prefix`.
fn client_keys(paho: &str, mqttjs: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for v in ["v311", "v5"] {
        for q in 0..3 {
            keys.push(format!("{paho}/{v}/q{q}"));
        }
    }
    for k in ["v5/q1", "v5/q2", "v311/q1"] {
        keys.push(format!("{mqttjs}/{k}"));
    }
    keys
}

#[test]
fn mqtt_over_websocket_and_tls_from_paho_mqttjs_and_mosquitto() {
    let broker = Broker::start().expect("broker");
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles::generate(dir.path(), ClientAuth::None).unwrap();
    let tls = tls_keys(&files);
    let extra = [
        mqtt_listener("ws", "websocket = { path = \"/mqtt\" }"),
        mqtt_listener("mqtts", &tls),
        mqtt_listener("wss", &format!("{tls}\nwebsocket = {{ path = \"/mqtt\" }}")),
    ]
    .concat();
    let sluice = Sluice::start(&config(&broker, &extra)).expect("sluice starts");
    let at = |name: &str| sluice.listeners[name];

    paho(at("ws"), "paho-ws", "ws", None);
    mqttjs(at("ws"), "js-ws", "ws", None);
    paho(at("mqtts"), "paho-tls", "tls", Some(&files));
    mqttjs(at("mqtts"), "js-tls", "mqtts", Some(&files));
    paho(at("wss"), "paho-wss", "wss", Some(&files));
    mqttjs(at("wss"), "js-wss", "wss", Some(&files));
    let mosquitto = |args: &[&str]| {
        let ca = files.ca_cert.to_str().unwrap();
        let mut all = vec!["--cafile", ca, "-q", "1", "-i", "mosq-tls"];
        all.extend_from_slice(args);
        common::publish(at("mqtts"), &all, None)
    };
    mosquitto(&["-t", "mosq/tls/v311", "-m", "over tls", "-V", "mqttv311"]).unwrap();
    mosquitto(&["-t", "mosq/tls/v5", "-m", "over tls 5", "-V", "mqttv5"]).unwrap();

    let mut keys = Vec::new();
    for (p, j) in [
        ("paho-ws", "js-ws"),
        ("paho-tls", "js-tls"),
        ("paho-wss", "js-wss"),
    ] {
        keys.extend(client_keys(p, j));
    }
    keys.extend(["mosq/tls/v311".to_owned(), "mosq/tls/v5".to_owned()]);
    let records = broker
        .kafka()
        .consume_all("mqtt-messages", keys.len(), CONSUME)
        .expect("confluent-kafka reads mqtt-messages");
    assert_eq!(records.len(), keys.len(), "exact count");
    let records = by_key(&records);
    for key in &keys {
        assert!(records.contains_key(key), "{key} missing");
    }
    let r = records["paho-wss/v5/q2"];
    assert_eq!(r.value.as_deref(), Some(&b"v5-q2"[..]));
    assert_eq!(header(r, "sluice.listener"), Some(&b"wss"[..]));
    assert_eq!(header(r, "mqtt.client_id"), Some(&b"paho-v5"[..]));
    let r = records["js-ws/v5/q1"];
    assert_eq!(
        r.value.as_deref(),
        Some(&b"{\"lib\":\"mqtt.js\",\"qos\":1}"[..])
    );
    assert_eq!(header(r, "sluice.listener"), Some(&b"ws"[..]));
    assert_eq!(
        records["mosq/tls/v5"].value.as_deref(),
        Some(&b"over tls 5"[..])
    );
}

#[test]
fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    let broker = Broker::start().expect("broker");
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles::generate(dir.path(), ClientAuth::Required).unwrap();
    let keys = format!(
        "tls = {{ cert_file = {:?}, key_file = {:?}, client_ca_file = {:?}, alpn = [\"mqtt\"] }}",
        files.server_cert, files.server_key, files.ca_cert
    );
    let sluice =
        Sluice::start(&config(&broker, &mqtt_listener("mtls", &keys))).expect("sluice starts");
    let addr = sluice.listeners["mtls"];
    let ca = files.ca_cert.to_str().unwrap();
    let (cert, key) = files.client_identity().unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());

    let without = common::publish(
        addr,
        &["--cafile", ca, "-q", "1", "-t", "no/cert", "-m", "x"],
        None,
    );
    assert!(without.is_err(), "a client without a certificate got in");
    common::publish(
        addr,
        &[
            "--cafile",
            ca,
            "--cert",
            cert,
            "--key",
            key,
            "-q",
            "1",
            "-t",
            "with/cert",
            "-m",
            "admitted",
        ],
        None,
    )
    .expect("a client with a certificate from the CA publishes");

    let records = broker
        .kafka()
        .consume_all("mqtt-messages", 1, CONSUME)
        .expect("confluent-kafka reads mqtt-messages");
    assert_eq!(records.len(), 1, "only the certified client's message");
    assert_eq!(records[0].key.as_deref(), Some(&b"with/cert"[..]));
    assert_eq!(records[0].value.as_deref(), Some(&b"admitted"[..]));
    sluice_tests::wait_until(
        Duration::from_secs(10),
        "the refused handshake is counted",
        || sluice.metric("sluice_connection_errors_total").unwrap_or(0) >= 1,
    );
    let (_, metrics) = sluice.admin_get("/metrics").unwrap();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("sluice_connection_errors_total{kind=\"tls\"") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
}

#[test]
fn raw_websocket_messages_become_records_acknowledged_with_their_offsets() {
    let broker = Broker::start().expect("broker");
    let kafka = broker.kafka();
    kafka.create_topic("ws-events", 3, &[]).expect("topic");
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles::generate(dir.path(), ClientAuth::None).unwrap();
    let http = |name: &str, keys: &str| {
        format!(
            "[[listeners]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"http\"\ntopics = [\"ws-*\"]\nwebsocket = {{ acks = true }}\n{keys}\n"
        )
    };
    let extra = http("http", "") + &http("https", &tls_keys(&files));
    let sluice = Sluice::start(&config(&broker, &extra)).expect("sluice starts");
    let addr = sluice.listeners["http"];

    let produce = |url: String, count: usize, prefix: &str, ca: bool| -> Vec<(i32, i64)> {
        let mut cmd = Command::new("node");
        cmd.arg(script("ws_produce.js"))
            .args([url, count.to_string(), prefix.to_owned()])
            .env("NODE_PATH", node_modules());
        if ca {
            cmd.env("NODE_EXTRA_CA_CERTS", &files.ca_cert);
        }
        let out = run(cmd, "ws_produce.js");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let (p, o) = l
                    .strip_prefix("{\"partition\":")
                    .and_then(|l| l.strip_suffix('}'))
                    .and_then(|l| l.split_once(",\"offset\":"))
                    .unwrap_or_else(|| panic!("not an acknowledgement: {l}"));
                (p.parse().unwrap(), o.parse().unwrap())
            })
            .collect()
    };
    let acks = produce(format!("ws://{addr}/topics/ws-events"), 300, "plain", false);
    let tls_addr = sluice.listeners["https"];
    let tls_acks = produce(
        format!("wss://localhost:{}/topics/ws-events", tls_addr.port()),
        20,
        "tls",
        true,
    );
    assert_eq!((acks.len(), tls_acks.len()), (300, 20));

    let records = kafka
        .consume_all("ws-events", 320, CONSUME)
        .expect("confluent-kafka reads ws-events");
    assert_eq!(records.len(), 320, "exact count");
    let at: BTreeMap<(i32, i64), &ConsumedRecord> = records
        .iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect();
    for (prefix, acks) in [("plain", &acks), ("tls", &tls_acks)] {
        for (i, position) in acks.iter().enumerate() {
            let r = at
                .get(position)
                .unwrap_or_else(|| panic!("no record at acknowledged {position:?}"));
            let value = format!("{prefix}-{i}");
            assert_eq!(
                r.value.as_deref(),
                Some(value.as_bytes()),
                "at {position:?}"
            );
        }
    }

    // Refusals are plain HTTP answers to the upgrade request.
    let refused = |status: u16, url: String| {
        let mut cmd = Command::new("node");
        cmd.arg(script("ws_produce.js"))
            .args([
                format!("expect-refusal:{status}:{url}"),
                "0".into(),
                "x".into(),
            ])
            .env("NODE_PATH", node_modules());
        run(cmd, &format!("upgrade refused with {status}"));
    };
    refused(403, format!("ws://{addr}/topics/other"));
    refused(404, format!("ws://{addr}/elsewhere"));
}

/// Sends `bytes` after a valid upgrade request to `path` and returns everything the server
/// wrote until it closed the connection.
fn raw_session(addr: SocketAddr, path: &str, protocol: Option<&str>, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let proto = protocol.map_or(String::new(), |p| {
        format!("Sec-WebSocket-Protocol: {p}\r\n")
    });
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{proto}\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// The close code of the close frame that ends `reply` (after the 101 head).
fn close_code(reply: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(reply);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    let body = &reply[reply.windows(4).position(|w| w == b"\r\n\r\n")? + 4..];
    // Server frames are unmasked; walk to the close frame (opcode 8).
    let mut at = 0;
    while at + 2 <= body.len() {
        let (op, len) = (body[at] & 0x0F, (body[at + 1] & 0x7F) as usize);
        if op == 8 && len >= 2 {
            return Some(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        }
        at += 2 + len;
    }
    None
}

#[test]
fn bad_websocket_frames_get_their_close_code_and_spare_other_connections() {
    let broker = Broker::start().expect("broker");
    let extra = mqtt_listener("ws", "websocket = { path = \"/mqtt\" }")
        + "[[listeners]]\nname = \"http\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"http\"\nmax_body_bytes = 1024\nwebsocket = {}\n";
    let sluice = Sluice::start(&config(&broker, &extra)).expect("sluice starts");
    let ws = sluice.listeners["ws"];
    let http = sluice.listeners["http"];

    // An unmasked client frame is a protocol error (1002).
    let unmasked = [0x82, 0x02, 0x10, 0x00];
    assert_eq!(
        close_code(&raw_session(ws, "/mqtt", Some("mqtt"), &unmasked)),
        Some(1002)
    );
    // MQTT must travel in binary frames: text is unsupported data (1003).
    let text = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
    assert_eq!(
        close_code(&raw_session(ws, "/mqtt", Some("mqtt"), &text)),
        Some(1003)
    );
    // A raw message over max_body_bytes is too big (1009), refused from its header.
    let big = [0x82, 0xFE, 0x08, 0x00, 9, 9, 9, 9];
    let topic_path = "/topics/ws-big";
    assert_eq!(
        close_code(&raw_session(http, topic_path, None, &big)),
        Some(1009)
    );
    // MQTT over WebSocket without the mqtt subprotocol is refused before the upgrade.
    let reply = raw_session(ws, "/mqtt", None, &[]);
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 400"));

    // Meanwhile a well-behaved client on the same listener is unaffected.
    mqttjs(ws, "after-errors", "ws", None);
    let records = broker
        .kafka()
        .consume_all("mqtt-messages", 3, CONSUME)
        .expect("confluent-kafka reads mqtt-messages");
    assert_eq!(records.len(), 3);
}
