//! The HTTP produce path end to end: curl POSTs single records and JSON / NDJSON batches
//! through the sluice binary into a real broker, and confluent-kafka checks the exact count,
//! keys, values, headers and that the offsets in each 200 are where the records are.
//! Refusals (404, 405, 413, 400, 403) and 503 under backpressure are checked too.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::Sluice;
use serde_json::Value;
use sluice_tests::{wait_until, Broker, ConsumedRecord};

/// curl with `args` against `http://{addr}{path}`s; each transfer prints its body, a
/// newline and its status.
fn curl_cmd(addr: SocketAddr, paths: &[&str], args: &[&str]) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "60", "-w", "\n%{http_code}\n"])
        .args(args)
        .args(paths.iter().map(|p| format!("http://{addr}{p}")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// (status, body as JSON) of each transfer.
fn responses(out: &Output) -> Vec<(u16, Value)> {
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .map(|pair| {
            let body = serde_json::from_str(pair[0])
                .unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", pair[0]));
            (pair[1].trim().parse().expect("status"), body)
        })
        .collect()
}

fn post(addr: SocketAddr, path: &str, args: &[&str]) -> (u16, Value) {
    let out = curl_cmd(addr, &[path], args).output().expect("curl runs");
    let mut r = responses(&out);
    assert_eq!(r.len(), 1, "{out:?}");
    r.remove(0)
}

fn header<'a>(r: &'a ConsumedRecord, name: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
}

/// The (partition, offset) pairs of a 200 body.
fn offsets(body: &Value) -> Vec<(i32, i64)> {
    body["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| {
            (
                o["partition"].as_i64().unwrap() as i32,
                o["offset"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// A listener counter of the `http` listener, summed over shards.
fn http_metric(sluice: &Sluice, name: &str) -> u64 {
    let (_, text) = sluice.admin_get("/metrics").unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{listener=\"http\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn curl_records_and_batches_land_in_kafka_at_the_offsets_sluice_reported() {
    let broker = Broker::start().expect("broker");
    broker.kafka().create_topic("orders", 3, &[]).unwrap();
    let sluice = Sluice::start(&common::config_with_http(&broker.bootstrap(), "", ""))
        .expect("sluice starts");
    let a = sluice.listeners["http"];

    let (status, single) = post(
        a,
        "/topics/orders",
        &[
            "-H",
            "Sluice-Key: order-1",
            "-H",
            "Sluice-Header-source: curl",
            "-H",
            "sluice-header-trace: t-1",
            "--data-binary",
            "hello kafka",
        ],
    );
    assert_eq!(status, 200, "{single}");
    assert_eq!(single["topic"], "orders");

    let batch = r#"[
        {"key": "order-2", "value": "two", "headers": {"kind": "text", "empty": null}},
        {"key": "order-3", "value": {"amount": 12.5, "items": [1, 2]}},
        {"value": "line\nbreak \u00e9"}
    ]"#;
    let (status, json) = post(
        a,
        "/topics/orders",
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            batch,
        ],
    );
    assert_eq!(status, 200, "{json}");

    let ndjson = "{\"key\":\"order-4\",\"value\":\"four\"}\n{\"key\":\"order-5\",\"value\":[5]}\n";
    let (status, nd) = post(
        a,
        "/topics/orders",
        &[
            "-H",
            "Content-Type: application/x-ndjson",
            "-H",
            "Sluice-Header-batch: nd",
            "--data-binary",
            ndjson,
        ],
    );
    assert_eq!(status, 200, "{nd}");

    let records = broker
        .kafka()
        .consume_all("orders", 6, Duration::from_secs(60))
        .expect("confluent-kafka reads orders");
    assert_eq!(records.len(), 6, "exact count, no duplicates");
    let at = |(partition, offset): (i32, i64)| -> &ConsumedRecord {
        records
            .iter()
            .find(|r| r.partition == partition && r.offset == offset)
            .unwrap_or_else(|| panic!("no record at {partition}/{offset}: {records:?}"))
    };

    let r = at(offsets(&single)[0]);
    assert_eq!(r.value.as_deref(), Some(&b"hello kafka"[..]));
    assert_eq!(r.key.as_deref(), Some(&b"order-1"[..]));
    assert_eq!(header(r, "source"), Some(&b"curl"[..]));
    assert_eq!(header(r, "trace"), Some(&b"t-1"[..]));

    let o = offsets(&json);
    assert_eq!(o.len(), 3);
    let r = at(o[0]);
    assert_eq!(
        (r.key.as_deref(), r.value.as_deref()),
        (Some(&b"order-2"[..]), Some(&b"two"[..]))
    );
    assert_eq!(header(r, "kind"), Some(&b"text"[..]));
    assert!(
        r.headers.iter().any(|(k, v)| k == "empty" && v.is_none()),
        "a null header value stays null: {:?}",
        r.headers
    );
    let r = at(o[1]);
    assert_eq!(r.key.as_deref(), Some(&b"order-3"[..]));
    assert_eq!(
        r.value.as_deref(),
        Some(&br#"{"amount": 12.5, "items": [1, 2]}"#[..]),
        "JSON values are stored as their text"
    );
    let r = at(o[2]);
    assert_eq!(r.key, None);
    assert_eq!(r.value.as_deref(), Some("line\nbreak é".as_bytes()));

    let o = offsets(&nd);
    assert_eq!(o.len(), 2);
    let r = at(o[0]);
    assert_eq!(
        (r.key.as_deref(), r.value.as_deref()),
        (Some(&b"order-4"[..]), Some(&b"four"[..]))
    );
    assert_eq!(
        header(r, "batch"),
        Some(&b"nd"[..]),
        "request headers apply"
    );
    assert_eq!(at(o[1]).value.as_deref(), Some(&b"[5]"[..]));

    assert!(sluice.metric("sluice_records_produced_total").unwrap() >= 6);
    assert_eq!(http_metric(&sluice, "sluice_frames_in_total"), 3);
}

#[test]
fn keep_alive_reuses_the_connection_and_bad_requests_get_json_errors() {
    let broker = Broker::start().expect("broker");
    broker.kafka().create_topic("orders", 1, &[]).unwrap();
    broker.kafka().create_topic("secret", 1, &[]).unwrap();
    let config = common::config_with_http(
        &broker.bootstrap(),
        "",
        "max_body_bytes = 4096\ntopics = [\"orders\", \"events.*\"]",
    );
    let sluice = Sluice::start(&config).expect("sluice starts");
    let a = sluice.listeners["http"];

    // Two URLs, one curl: the second request goes on the same connection.
    let before = http_metric(&sluice, "sluice_connections_total");
    let out = curl_cmd(
        a,
        &["/topics/orders", "/topics/orders"],
        &["-v", "--data-binary", "same"],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Re-using existing connection"), "{stderr}");
    let r = responses(&out);
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].0, r[1].0), (200, 200));
    let (first, second) = (offsets(&r[0].1)[0], offsets(&r[1].1)[0]);
    assert_eq!((first.0, second.0), (0, 0));
    assert_eq!(second.1, first.1 + 1, "in order, one after the other");
    assert_eq!(http_metric(&sluice, "sluice_connections_total"), before + 1);

    // Pipelined: a produce (answered after Kafka) then a 404 (answered at once) in one
    // write; the answers come back in request order.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(a).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(
            b"POST /topics/orders HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\npip\
              POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let ok = text.find("HTTP/1.1 200").expect("a 200");
        let missing = text.find("HTTP/1.1 404").expect("a 404");
        assert!(ok < missing, "responses in request order: {text}");
    }

    let status_and_message = |(status, body): (u16, Value)| {
        assert_eq!(body["error"]["status"], status, "{body}");
        (
            status,
            body["error"]["message"].as_str().unwrap().to_owned(),
        )
    };
    let (s, m) = status_and_message(post(a, "/topics/events.nope", &["-d", "x"]));
    assert_eq!(s, 404);
    assert!(m.contains("does not exist"), "{m}");
    assert_eq!(status_and_message(post(a, "/other", &["-d", "x"])).0, 404);
    assert_eq!(status_and_message(post(a, "/topics/orders", &[])).0, 405);
    let (s, m) = status_and_message(post(a, "/topics/secret", &["-d", "x"]));
    assert_eq!(s, 403);
    assert!(m.contains("secret"), "{m}");
    assert_eq!(
        status_and_message(post(a, "/topics/a$b", &["-d", "x"])).0,
        400
    );
    let big = "x".repeat(5000);
    assert_eq!(
        status_and_message(post(a, "/topics/orders", &["--data-binary", &big])).0,
        413
    );
    let (s, m) = status_and_message(post(
        a,
        "/topics/orders",
        &[
            "-H",
            "Content-Type: application/json",
            "-d",
            "[{\"value\": ",
        ],
    ));
    assert_eq!(s, 400);
    assert!(m.contains("JSON"), "{m}");

    // Nothing refused reached Kafka: only the two keep-alive records and the pipelined one.
    let records = broker
        .kafka()
        .consume_all("orders", 3, Duration::from_secs(30))
        .unwrap();
    assert_eq!(records.len(), 3);
}

#[test]
fn a_full_producer_buffer_gets_503_and_nothing_acknowledged_is_lost() {
    let mut broker = Broker::start().expect("broker");
    broker.kafka().create_topic("orders", 1, &[]).unwrap();
    let config = common::config_with_http(
        &broker.bootstrap(),
        "\"buffer.memory\" = 4096",
        "max_body_bytes = 3000",
    )
    // One shard, so that both requests meet the same producer buffer.
    .replace("shards = 2", "shards = 1");
    let sluice = Sluice::start(&config).expect("sluice starts");
    let a = sluice.listeners["http"];
    assert_eq!(post(a, "/topics/orders", &["-d", "warm"]).0, 200);

    broker.pause().unwrap();
    let held = "h".repeat(2000);
    let frames = http_metric(&sluice, "sluice_frames_in_total");
    let waiting: Child = curl_cmd(a, &["/topics/orders"], &["--data-binary", &held])
        .spawn()
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        "sluice took the first request",
        || http_metric(&sluice, "sluice_frames_in_total") > frames,
    );
    // The buffer holds ~2 KB of 4 KB: another 2.5 KB request must be refused, not queued.
    let out = curl_cmd(
        a,
        &["/topics/orders"],
        &["-D", "-", "--data-binary", &"r".repeat(2500)],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("Retry-After: 1"), "{text}");

    broker.resume().unwrap();
    let out = waiting.wait_with_output().unwrap();
    let (status, body) = responses(&out).remove(0);
    assert_eq!(status, 200, "{body}");
    let records = broker
        .kafka()
        .consume_all("orders", 2, Duration::from_secs(60))
        .unwrap();
    assert_eq!(records.len(), 2, "warm-up and the held record, once each");
    let r = &records[offsets(&body)[0].1 as usize];
    assert_eq!(r.value.as_deref(), Some(held.as_bytes()));
}
