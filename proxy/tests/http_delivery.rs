//! Kafka → HTTP clients end to end: curl reads Server-Sent Events and a node `ws` client
//! reads WebSocket messages of records that confluent-kafka and raw WebSocket producers
//! wrote. Every event's position is checked against where the producer was told the record
//! landed, and resuming from a mid-stream position (`Last-Event-ID`, `?position=`) must give
//! exactly the records after it: none lost, none twice.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{node_modules, script, Lines, Sluice};
use serde_json::Value;
use sluice_tests::{Broker, ProduceRecord};

const WAIT: Duration = Duration::from_secs(60);

/// The test config plus an HTTP listener `http` allowing `topics`, with WebSocket on.
fn start(broker: &Broker, topics: &str) -> Sluice {
    let keys = format!("topics = {topics}\nwebsocket = {{ acks = true }}");
    Sluice::start(&common::config_with_http(&broker.bootstrap(), "", &keys)).expect("sluice")
}

/// One block of an event stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Event {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

/// `curl -N` on an event stream.
fn sse(addr: SocketAddr, path: &str, headers: &[&str]) -> Lines {
    let mut cmd = Command::new("curl");
    cmd.args(["-sSN", "--max-time", "120"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.arg(format!("http://{addr}{path}"));
    Lines::spawn(cmd)
}

/// The next block of the stream (comments skipped), parsed as the SSE spec says.
fn next_event(stream: &Lines, until: Instant) -> Option<Event> {
    let mut event = Event::default();
    let mut any = false;
    loop {
        let line = stream.next(until, "an SSE event")?;
        if line.is_empty() {
            if any {
                return Some(event);
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(": ").unwrap_or((&line, ""));
        any = true;
        match field {
            "id" => event.id = Some(value.to_owned()),
            "event" => event.event = Some(value.to_owned()),
            "data" => {
                let data = event.data.get_or_insert_with(String::new);
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            other => panic!("unexpected SSE field {other:?}"),
        }
    }
}

/// `n` events that carry data (id-only blocks, which only move the position, are skipped).
fn events(stream: &Lines, n: usize) -> Vec<Event> {
    let until = Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < n {
        let e = next_event(stream, until).expect("the stream ended early");
        if e.data.is_some() {
            out.push(e);
        }
    }
    out
}

/// Parses `0:15,1:22` into offsets by partition.
fn position(text: &str) -> BTreeMap<i32, i64> {
    text.split(',')
        .map(|pair| {
            let (p, o) = pair.split_once(':').expect("partition:offset");
            (p.parse().unwrap(), o.parse().unwrap())
        })
        .collect()
}

/// Runs a curl GET and returns (status, body as JSON).
fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "30", "-w", "\n%{http_code}"])
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').expect("status line");
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{body:?}: {e}"));
    (status.parse().unwrap(), body)
}

#[test]
fn sse_streams_what_confluent_kafka_produced_and_resumes_after_last_event_id() {
    let broker = Broker::start().expect("broker");
    let kafka = broker.kafka();
    kafka.create_topic("feed", 3, &[]).unwrap();
    let sluice = start(&broker, "[\"feed\"]");
    let addr = sluice.listeners["http"];
    // Records from before the stream opens: the default start (latest) skips them.
    let old: Vec<ProduceRecord> = (0..3)
        .map(|p| ProduceRecord::value(format!("old-{p}")).partition(p))
        .collect();
    kafka.produce("feed", &old).unwrap();

    let first = sse(addr, "/topics/feed/events", &[]);
    let until = Instant::now() + WAIT;
    let opening = next_event(&first, until).expect("the stream opens");
    assert_eq!(
        opening,
        Event {
            id: Some("0:1,1:1,2:1".into()),
            ..Event::default()
        },
        "an id-only block with the start position"
    );

    // Everything produced from here on is delivered: text, binary and a tombstone.
    let mut records: Vec<ProduceRecord> = (0..10)
        .map(|i| {
            ProduceRecord::value(format!("rec-{i} é"))
                .key(format!("k{i}"))
                .partition(i % 3)
        })
        .collect();
    records.push(ProduceRecord::value([0xff, 0x00, 0xfe]).partition(1));
    records.push(ProduceRecord::default().key("gone").partition(2));
    let delivered = kafka.produce("feed", &records).unwrap();
    let got = events(&first, records.len());

    // Expected: each record's data and where it is in Kafka, by data.
    let mut expected: BTreeMap<(Option<String>, String), (i32, i64)> = BTreeMap::new();
    for (i, d) in delivered.iter().enumerate().take(10) {
        expected.insert((None, format!("rec-{i} é")), (d.partition, d.offset));
    }
    let binary = base64::engine::general_purpose::STANDARD.encode([0xff, 0x00, 0xfe]);
    expected.insert((Some("binary".into()), binary), (1, delivered[10].offset));
    expected.insert(
        (Some("tombstone".into()), String::new()),
        (2, delivered[11].offset),
    );
    let mut seen = BTreeMap::new();
    for e in &got {
        let key = (e.event.clone(), e.data.clone().unwrap());
        let &(p, o) = expected
            .get(&key)
            .unwrap_or_else(|| panic!("unexpected event {e:?}"));
        // The id is the position after this record.
        let id = position(e.id.as_deref().expect("every event has an id"));
        assert_eq!(id.get(&p), Some(&(o + 1)), "{e:?} is at {p}:{o}");
        assert!(seen.insert(key, e.id.clone()).is_none(), "{e:?} twice");
    }
    assert_eq!(seen.len(), expected.len(), "exactly the new records");
    let metrics = sluice.metric("sluice_deliveries_total").unwrap();
    assert!(
        metrics >= records.len() as u64,
        "deliveries counted: {metrics}"
    );

    // A reconnect from a mid-stream id gets exactly what came after it, plus what was
    // produced while the client was away.
    let mid = 5;
    let resume_id = got[mid].id.clone().unwrap();
    drop(first);
    let later: Vec<ProduceRecord> = (0..6)
        .map(|i| ProduceRecord::value(format!("later-{i}")).partition(i % 3))
        .collect();
    let later_delivered = kafka.produce("feed", &later).unwrap();
    let mut rest: Vec<String> = got[mid + 1..]
        .iter()
        .map(|e| e.data.clone().unwrap())
        .collect();
    rest.extend((0..6).map(|i| format!("later-{i}")));
    let header = format!("Last-Event-ID: {resume_id}");
    let second = sse(addr, "/topics/feed/events?from=earliest", &[&header]);
    let resumed = events(&second, rest.len());
    let mut resumed_data: Vec<String> = resumed.iter().map(|e| e.data.clone().unwrap()).collect();
    resumed_data.sort();
    rest.sort();
    assert_eq!(resumed_data, rest, "exactly the records after {resume_id}");
    // Nothing more is pending: the last id covers every record produced.
    let mut end = position(&resume_id);
    for d in delivered.iter().chain(&later_delivered) {
        let next = end.entry(d.partition).or_default();
        *next = (*next).max(d.offset + 1);
    }
    let last_ids: Vec<BTreeMap<i32, i64>> = resumed
        .iter()
        .map(|e| position(e.id.as_deref().unwrap()))
        .collect();
    let mut reached = position(&resume_id);
    for id in &last_ids {
        for (p, o) in id {
            let r = reached.entry(*p).or_default();
            *r = (*r).max(*o);
        }
    }
    assert_eq!(
        reached, end,
        "the resumed stream reached the end of every partition"
    );
}

#[test]
fn key_filters_json_events_refusals_and_a_clean_end_at_shutdown() {
    let broker = Broker::start().expect("broker");
    let kafka = broker.kafka();
    kafka.create_topic("feed-keys", 3, &[]).unwrap();
    kafka.create_topic("secret", 1, &[]).unwrap();
    let mut sluice = start(&broker, "[\"feed*\"]");
    let addr = sluice.listeners["http"];

    let keys = ["a", "b", "a", "c", "a", "b"];
    let records: Vec<ProduceRecord> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            ProduceRecord::value(format!("{k}-{i}"))
                .key(k)
                .header("source", Some(b"test"))
                .partition(i as i32 % 3)
        })
        .collect();
    let delivered = kafka.produce("feed-keys", &records).unwrap();

    let stream = sse(
        addr,
        "/topics/feed-keys/events?from=earliest&key=a&format=json",
        &[],
    );
    let got = events(&stream, 3);
    let mut values = Vec::new();
    for e in &got {
        let v: Value = serde_json::from_str(e.data.as_deref().unwrap()).unwrap();
        assert_eq!(v["key"], "a", "{v}");
        assert_eq!(v["headers"]["source"], "test", "{v}");
        assert_eq!(v["position"].as_str(), e.id.as_deref(), "{v}");
        let i: usize = v["value"].as_str().unwrap()[2..].parse().unwrap();
        let d = delivered[i];
        assert_eq!(
            (v["partition"].as_i64(), v["offset"].as_i64()),
            (Some(d.partition.into()), Some(d.offset))
        );
        values.push(v["value"].as_str().unwrap().to_owned());
    }
    values.sort();
    assert_eq!(values, ["a-0", "a-2", "a-4"]);

    let (status, body) = get(addr, "/topics/secret/events");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["status"], 403);
    let (status, body) = get(addr, "/topics/feed-missing/events");
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(addr, "/topics/feed-keys/events?position=0:1,7:2");
    assert_eq!(status, 400, "{body}");
    let (status, _) = get(addr, "/topics/feed-keys/events?from=yesterday");
    assert_eq!(status, 400);

    // Shutdown ends the stream cleanly: curl sees the end of the body, not an error.
    let mut stream = stream;
    sluice.sigterm().unwrap();
    assert!(
        stream.wait_success(Duration::from_secs(30)),
        "curl ended cleanly"
    );
    assert!(sluice.wait_exit().unwrap().success());
}

/// `node ws_subscribe.js url count`.
fn ws_subscriber(url: &str, count: usize) -> Lines {
    let mut cmd = Command::new("node");
    cmd.arg(script("ws_subscribe.js"))
        .args([url, &count.to_string()])
        .env("NODE_PATH", node_modules());
    Lines::spawn(cmd)
}

/// The subscriber's `n` messages, after its `{"open":true}` line was read.
fn messages(sub: &Lines, n: usize) -> Vec<Value> {
    let until = Instant::now() + WAIT;
    (0..n)
        .map(|_| {
            let line = sub.next(until, "a WebSocket message").expect("a message");
            serde_json::from_str(&line).unwrap()
        })
        .collect()
}

#[test]
fn websocket_subscribers_get_records_from_confluent_kafka_and_websocket_producers() {
    let broker = Broker::start().expect("broker");
    let kafka = broker.kafka();
    kafka.create_topic("ws-feed", 3, &[]).unwrap();
    kafka.create_topic("secret", 1, &[]).unwrap();
    let mut sluice = start(&broker, "[\"ws-*\"]");
    let addr = sluice.listeners["http"];

    let sub = ws_subscriber(&format!("ws://{addr}/topics/ws-feed/ws"), 7);
    let open = sub.next(Instant::now() + WAIT, "the upgrade").unwrap();
    assert_eq!(open, "{\"open\":true}");

    // Where each value landed, as its producer was told.
    let mut landed: BTreeMap<String, (i32, i64)> = BTreeMap::new();
    let records = vec![
        ProduceRecord::value("ck-0").key("k").partition(0),
        ProduceRecord::value("ck-1 ü").partition(1),
        ProduceRecord::value([0xc3, 0x28]).partition(2),
        ProduceRecord::value("ck-3").partition(2),
    ];
    let delivered = kafka.produce("ws-feed", &records).unwrap();
    let bad_utf8 = base64::engine::general_purpose::STANDARD.encode([0xc3, 0x28]);
    for (name, d) in ["ck-0", "ck-1 ü", "binary", "ck-3"].iter().zip(&delivered) {
        landed.insert(name.to_string(), (d.partition, d.offset));
    }
    let mut producer = Command::new("node");
    producer
        .arg(script("ws_produce.js"))
        .args([
            format!("ws://{addr}/topics/ws-feed"),
            "3".into(),
            "wsp".into(),
        ])
        .env("NODE_PATH", node_modules());
    let acks = common::run(producer, "ws_produce.js").stdout;
    for (i, line) in String::from_utf8(acks).unwrap().lines().enumerate() {
        let ack: Value = serde_json::from_str(line).unwrap();
        let at = (
            ack["partition"].as_i64().unwrap() as i32,
            ack["offset"].as_i64().unwrap(),
        );
        landed.insert(format!("wsp-{i}"), at);
    }

    let got = messages(&sub, 7);
    let mut seen = BTreeMap::new();
    for m in &got {
        let v: Value = serde_json::from_str(m["text"].as_str().expect("a text message")).unwrap();
        let name = match &v["value"] {
            Value::String(s) => s.clone(),
            other => {
                assert_eq!(other["base64"], bad_utf8.as_str(), "{v}");
                "binary".into()
            }
        };
        let &(p, o) = landed
            .get(&name)
            .unwrap_or_else(|| panic!("unexpected {v}"));
        assert_eq!(
            (v["partition"].as_i64(), v["offset"].as_i64()),
            (Some(p.into()), Some(o))
        );
        let pos = position(v["position"].as_str().unwrap());
        assert_eq!(pos.get(&p), Some(&(o + 1)), "{v}");
        assert!(
            seen.insert(name, v["position"].clone()).is_none(),
            "{v} twice"
        );
    }
    assert_eq!(seen.len(), landed.len(), "exactly every record");
    let close: Value =
        serde_json::from_str(&sub.next(Instant::now() + WAIT, "close").unwrap()).unwrap();
    assert_eq!(close["close"], 1000);

    // Resuming from the third message's position with ?position= gives exactly the rest, as
    // raw values (text when UTF-8, binary otherwise).
    let third: Value = serde_json::from_str(got[2]["text"].as_str().unwrap()).unwrap();
    let from = third["position"].as_str().unwrap();
    let mut rest: Vec<Value> = got[3..]
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_str(m["text"].as_str().unwrap()).unwrap();
            match &v["value"] {
                Value::String(s) => serde_json::json!({ "text": s }),
                other => serde_json::json!({ "binary": other["base64"] }),
            }
        })
        .collect();
    let url = format!("ws://{addr}/topics/ws-feed/ws?format=value&position={from}");
    let resumed_sub = ws_subscriber(&url, rest.len());
    assert_eq!(
        resumed_sub.next(Instant::now() + WAIT, "open").unwrap(),
        "{\"open\":true}"
    );
    let mut resumed = messages(&resumed_sub, rest.len());
    let key = |v: &Value| v.to_string();
    resumed.sort_by_key(key);
    rest.sort_by_key(key);
    assert_eq!(resumed, rest, "exactly the records after {from}");

    // Refused upgrades are JSON answers; a subscriber at shutdown is closed with 1001.
    for (status, path) in [(403, "secret"), (404, "ws-missing")] {
        let url = format!("expect-refusal:{status}:ws://{addr}/topics/{path}/ws");
        let out = common::run(
            {
                let mut cmd = Command::new("node");
                cmd.arg(script("ws_subscribe.js"))
                    .args([url.as_str(), "1"])
                    .env("NODE_PATH", node_modules());
                cmd
            },
            &format!("upgrade refused with {status}"),
        );
        let line: Value = serde_json::from_slice(&out.stdout).unwrap();
        let body: Value = serde_json::from_str(line["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["error"]["status"], status);
    }
    let waiting = ws_subscriber(&format!("ws://{addr}/topics/ws-feed/ws"), 1);
    assert_eq!(
        waiting.next(Instant::now() + WAIT, "open").unwrap(),
        "{\"open\":true}"
    );
    sluice.sigterm().unwrap();
    let close: Value =
        serde_json::from_str(&waiting.next(Instant::now() + WAIT, "close").unwrap()).unwrap();
    assert_eq!(close["close"], 1001, "{close}");
    assert!(sluice.wait_exit().unwrap().success());
}

#[test]
fn a_client_that_stops_reading_stops_the_fetching_and_loses_nothing() {
    use std::io::{Read, Write};

    let broker = Broker::start().expect("broker");
    let kafka = broker.kafka();
    kafka.create_topic("bulk", 3, &[]).unwrap();
    let sluice = start(&broker, "[\"bulk\"]");
    let addr = sluice.listeners["http"];
    // 24 MiB, far more than the socket buffers between sluice and the client hold.
    let value = "x".repeat(16 * 1024);
    let count = 1536;
    let records: Vec<ProduceRecord> = (0..count)
        .map(|i| ProduceRecord::value(&value).partition(i % 3))
        .collect();
    kafka.produce("bulk", &records).unwrap();
    let total = (count as u64) * value.len() as u64;

    let rss_before = sluice.rss().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut client: std::net::TcpStream = socket.into();
    client
        .write_all(b"GET /topics/bulk/events?from=earliest HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();

    // The client reads nothing: sluice writes until the socket buffers are full, then stops.
    let bytes_out = || sluice.metric("sluice_bytes_out_total").unwrap();
    let (mut last, mut since) = (0, Instant::now());
    let stalled = sluice_tests::poll_until(WAIT, || {
        let now = bytes_out();
        if now != last {
            (last, since) = (now, Instant::now());
        }
        now > 0 && since.elapsed() > Duration::from_secs(1)
    });
    assert!(stalled, "the stream never stalled");
    assert!(
        last < total / 2,
        "{last} of {total} bytes sent to a client that reads nothing"
    );
    let grown = sluice.rss().unwrap().saturating_sub(rss_before);
    eprintln!("stalled after {last} of {total} bytes; sluice grew by {grown} bytes");
    // Buffering the stream would take about 20 MiB; sluice holds one fetched record batch
    // per partition (here about 1 MiB each, as the producer batched them) and its buffers.
    assert!(
        grown < 12 << 20,
        "sluice grew by {grown} bytes holding a stalled stream"
    );

    // Reading again, the client gets every record, once.
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(client);
    let (mut events, mut line) = (0, String::new());
    while events < count {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the stream ended");
        if let Some(data) = line.strip_prefix("data: ") {
            assert_eq!(data.trim_end(), value);
            events += 1;
        }
    }
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "\n", "the last event ends");
    let mut rest = [0; 1];
    reader.get_mut().set_nonblocking(true).unwrap();
    assert!(
        matches!(reader.read(&mut rest), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "nothing after the last record"
    );
}
