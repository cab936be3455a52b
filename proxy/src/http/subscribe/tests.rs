use bytes::{Bytes, BytesMut};
use codecs::http::{HttpLimits, RequestDecoder};
use codecs::Decoder;
use kafka_wire::record::{decode_batches, BatchBuilder, Compression, Header, ProducerFields};

use super::*;
use crate::config::ListenerConfig;

fn listener() -> HttpListener {
    let config: ListenerConfig = toml::from_str(
        "name = \"http\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"http\"\ntopics = [\"orders\", \"ev.*\"]",
    )
    .unwrap();
    HttpListener::new(0, config)
}

fn request(target: &str, headers: &str) -> Request {
    let text = format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
    let mut buf = BytesMut::from(text.as_bytes());
    RequestDecoder::new(HttpLimits::default())
        .decode(&mut buf)
        .unwrap()
        .unwrap()
}

fn subscribe(target: &str, headers: &str) -> Result<Subscribe, Refusal> {
    let req = request(target, headers);
    let (endpoint, topic) = endpoint(req.path()).expect("a subscribe path");
    Subscribe::from_request(&req, endpoint, topic, &listener())
}

#[test]
fn paths_name_the_endpoint_and_topic() {
    assert_eq!(
        endpoint("/topics/orders/events"),
        Some((Endpoint::Events, "orders"))
    );
    assert_eq!(
        endpoint("/topics/ev.a/ws"),
        Some((Endpoint::Socket, "ev.a"))
    );
    assert_eq!(endpoint("/topics/orders"), None);
    assert_eq!(endpoint("/topics/orders/other"), None);
    assert_eq!(endpoint("/other/orders/events"), None);
}

#[test]
fn defaults_are_latest_every_key_and_the_endpoints_format() {
    let s = subscribe("/topics/orders/events", "").unwrap();
    assert_eq!(s.topic, "orders");
    assert_eq!(s.start, Start::Latest);
    assert!(s.keys.is_empty());
    assert_eq!(s.format, Format::Value);
    assert_eq!(
        subscribe("/topics/orders/ws", "").unwrap().format,
        Format::Json
    );
}

#[test]
fn the_query_chooses_start_keys_and_format() {
    let s = subscribe(
        "/topics/ev.x/events?from=earliest&key=a%2Bb&key=c+d&format=json",
        "",
    )
    .unwrap();
    assert_eq!(s.start, Start::Earliest);
    assert_eq!(s.keys, vec![b"a+b".to_vec(), b"c d".to_vec()]);
    assert_eq!(s.format, Format::Json);
    let s = subscribe("/topics/orders/ws?position=1:5,0:2&format=value", "").unwrap();
    assert_eq!(s.start, Start::At(PositionText::parse("0:2,1:5").unwrap()));
    assert_eq!(s.format, Format::Value);
}

#[test]
fn last_event_id_wins_over_the_query_for_event_streams_only() {
    let header = "Last-Event-ID: 0:7,1:8\r\n";
    let at = Start::At(PositionText::parse("0:7,1:8").unwrap());
    let s = subscribe("/topics/orders/events?position=0:1,1:1", header).unwrap();
    assert_eq!(s.start, at);
    let s = subscribe("/topics/orders/events?from=earliest", header).unwrap();
    assert_eq!(s.start, at);
    let s = subscribe("/topics/orders/ws?from=earliest", header).unwrap();
    assert_eq!(s.start, Start::Earliest);
    let s = subscribe("/topics/orders/events", "Last-Event-ID: \r\n").unwrap();
    assert_eq!(s.start, Start::Latest);
}

#[test]
fn refusals_carry_their_status() {
    let status = |target: &str, headers: &str| subscribe(target, headers).unwrap_err().0;
    assert_eq!(status("/topics/secret/events", ""), 403);
    assert_eq!(status("/topics/a%20b/events", ""), 400);
    assert_eq!(status("/topics/orders/events?from=start", ""), 400);
    assert_eq!(status("/topics/orders/events?form=earliest", ""), 400);
    assert_eq!(status("/topics/orders/events?format=xml", ""), 400);
    assert_eq!(status("/topics/orders/events?key=%zz", ""), 400);
    assert_eq!(status("/topics/orders/events?position=0:x", ""), 400);
    assert_eq!(
        status("/topics/orders/events?from=latest&position=0:1", ""),
        400
    );
    assert_eq!(
        status("/topics/orders/events", "Last-Event-ID: 42\r\n"),
        400
    );
    let req = {
        let mut buf =
            BytesMut::from(&b"DELETE /topics/orders/events HTTP/1.1\r\nHost: x\r\n\r\n"[..]);
        RequestDecoder::new(HttpLimits::default())
            .decode(&mut buf)
            .unwrap()
            .unwrap()
    };
    let refused = Subscribe::from_request(&req, Endpoint::Events, "orders", &listener());
    assert_eq!(refused.unwrap_err().0, 405);
}

fn record(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header<'_>]) -> Record {
    let mut b = BatchBuilder::new(Compression::None, 1 << 20);
    b.try_push(1_700_000_000_000, key, value, headers).unwrap();
    let batch: Bytes = b.finish(ProducerFields::NONE).unwrap();
    decode_batches(batch)
        .next()
        .unwrap()
        .unwrap()
        .records()
        .next()
        .unwrap()
        .unwrap()
}

fn json(r: &Record) -> serde_json::Value {
    let mut out = BytesMut::new();
    write_json(&mut out, r, 2, "0:1,1:0,2:1");
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn records_become_json_with_text_or_base64_fields() {
    let headers = [
        Header {
            key: "kind",
            value: Some(b"a \"quoted\"\nline"),
        },
        Header {
            key: "raw",
            value: Some(&[0xff, 0x00]),
        },
        Header {
            key: "none",
            value: None,
        },
    ];
    let v = json(&record(
        Some(b"k\xe9"),
        Some("h\u{e9}llo\r\n".as_bytes()),
        &headers,
    ));
    assert_eq!(
        v,
        serde_json::json!({
            "position": "0:1,1:0,2:1",
            "partition": 2,
            "offset": 0,
            "timestamp": 1_700_000_000_000i64,
            "key": {"base64": "a+k="},
            "value": "h\u{e9}llo\r\n",
            "headers": {"kind": "a \"quoted\"\nline", "raw": {"base64": "/wA="}, "none": null},
        })
    );
    let tombstone = json(&record(None, None, &[]));
    assert_eq!(tombstone["key"], serde_json::Value::Null);
    assert_eq!(tombstone["value"], serde_json::Value::Null);
    assert_eq!(tombstone["headers"], serde_json::json!({}));
}
