//! HTTP responses and Server-Sent Events: exact bytes, and round trips through parsers
//! written from the specifications.

use bytes::BytesMut;
use codecs::http::{
    write_json_string, HttpError, Response, ResponseEncoder, SseEncoder, SseError, SseEvent,
};
use codecs::Encoder;
use proptest::prelude::*;

fn encode(r: &Response) -> String {
    let mut out = BytesMut::new();
    ResponseEncoder.encode(r, &mut out).unwrap();
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn json_responses_have_exact_heads() {
    assert_eq!(
        encode(&Response::json(200, &b"{\"offset\":7}"[..], true)),
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"offset\":7}"
    );
    let mut busy = Response::error(503, "Kafka is unavailable.", true);
    busy.retry_after = Some(2);
    let text = encode(&busy);
    assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
    assert!(text.contains("\r\nRetry-After: 2\r\n"));
    assert!(!text.contains("Connection: close"));
}

#[test]
fn errors_become_closing_json_responses_with_their_status() {
    let err = HttpError::BodyTooLarge { len: 100, max: 10 };
    let text = encode(&Response::from(&err));
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 413 Content Too Large\r\n"));
    assert!(head.contains("\r\nConnection: close"));
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["error"]["status"], 413);
    assert_eq!(v["error"]["message"], err.to_string());
}

proptest! {
    #[test]
    fn json_strings_parse_back_to_the_original(s in any::<String>()) {
        let mut out = BytesMut::new();
        write_json_string(&mut out, &s);
        let back: String = serde_json::from_slice(&out).unwrap();
        prop_assert_eq!(back, s);
    }
}

/// A parsed event: id, event type, retry, data.
type Parsed = (Option<String>, Option<String>, Option<u32>, String);

/// A Server-Sent Events parser following WHATWG HTML §9.2.6, enough for the fields we send.
fn parse_sse(stream: &str) -> Vec<Parsed> {
    let mut events = Vec::new();
    let (mut id, mut event, mut retry, mut data) = (None, None, None, String::new());
    let mut has_data = false;
    for line in stream.split('\n') {
        if line.is_empty() {
            if has_data {
                data.pop();
                events.push((
                    id.take(),
                    event.take(),
                    retry.take(),
                    std::mem::take(&mut data),
                ));
            }
            has_data = false;
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match name {
            "id" => id = Some(value.to_owned()),
            "event" => event = Some(value.to_owned()),
            "retry" => retry = value.parse().ok(),
            "data" => {
                data.push_str(value);
                data.push('\n');
                has_data = true;
            }
            _ => {}
        }
    }
    events
}

#[test]
fn sse_events_have_exact_bytes() {
    let mut out = BytesMut::new();
    let ev = SseEvent {
        id: Some("7"),
        event: Some("order"),
        data: b"line one\nline two",
        retry: Some(3000),
    };
    SseEncoder.encode(&ev, &mut out).unwrap();
    SseEncoder::write_keepalive(&mut out);
    assert_eq!(
        &out[..],
        b"id: 7\nevent: order\nretry: 3000\ndata: line one\ndata: line two\n\n:\n\n"
    );
}

#[test]
fn sse_refuses_fields_that_would_break_the_stream() {
    let mut out = BytesMut::new();
    let bad = |ev: SseEvent<'_>| SseEncoder.encode(&ev, &mut BytesMut::new()).unwrap_err();
    assert_eq!(
        bad(SseEvent {
            id: Some("1\n2"),
            ..SseEvent::default()
        }),
        SseError::LineBreakInField { field: "id" }
    );
    assert_eq!(
        bad(SseEvent {
            event: Some("a\rb"),
            ..SseEvent::default()
        }),
        SseError::LineBreakInField { field: "event" }
    );
    assert_eq!(
        bad(SseEvent {
            id: Some("a\0"),
            ..SseEvent::default()
        }),
        SseError::NulInId
    );
    assert_eq!(
        bad(SseEvent {
            data: &[0xFF],
            ..SseEvent::default()
        }),
        SseError::NotUtf8
    );
    SseEncoder::write_stream_head(&mut out);
    assert!(out.starts_with(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"));
}

proptest! {
    #[test]
    fn sse_events_parse_back_with_line_breaks_as_lf(
        events in proptest::collection::vec((
            proptest::option::of("[ -~]{0,8}"),
            proptest::option::of("[ -~]{0,8}"),
            proptest::option::of(any::<u32>()),
            "(\\PC|\r|\n| ){0,30}",
        ), 1..4)
    ) {
        let mut out = BytesMut::new();
        for (id, event, retry, data) in &events {
            let ev = SseEvent { id: id.as_deref(), event: event.as_deref(), data: data.as_bytes(), retry: *retry };
            SseEncoder.encode(&ev, &mut out).unwrap();
        }
        let parsed = parse_sse(std::str::from_utf8(&out).unwrap());
        let expected: Vec<_> = events
            .into_iter()
            .map(|(id, event, retry, data)| (id, event, retry, data.replace("\r\n", "\n").replace('\r', "\n")))
            .collect();
        prop_assert_eq!(parsed, expected);
    }
}
