//! The WebSocket opening handshake: one test per refusal with its exact HTTP status.

mod common;

use bytes::BytesMut;
use codecs::ws::handshake::accept_key;
use codecs::ws::{HandshakeDecoder, HandshakeError, Subprotocol};
use codecs::{Decoder, ErrorAnswer, ProtocolError};
use common::decode_bytewise;

const GOOD: &str = "GET /mqtt HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, mqtt\r\n\r\n";

fn decode(
    mode: Subprotocol,
    req: &str,
) -> Result<Option<codecs::ws::UpgradeRequest>, HandshakeError> {
    HandshakeDecoder::new(mode, 1024, 8).decode(&mut BytesMut::from(req.as_bytes()))
}

#[test]
fn the_rfc_example_key_gives_the_rfc_accept_value() {
    // RFC 6455 §1.3.
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn an_mqtt_listener_selects_mqtt_and_leaves_following_frames_in_the_buffer() {
    let mut buf = BytesMut::from(format!("{GOOD}\u{82}").as_bytes());
    let req = HandshakeDecoder::new(Subprotocol::Mqtt, 1024, 8)
        .decode(&mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(req.path, "/mqtt");
    assert_eq!(req.offered_protocols, ["chat", "mqtt"]);
    assert_eq!(req.selected_protocol.as_deref(), Some("mqtt"));
    assert_eq!(&buf[..], "\u{82}".as_bytes());
    let mut out = BytesMut::new();
    req.write_accept(&mut out);
    assert_eq!(
        &out[..],
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
}

#[test]
fn a_raw_listener_selects_no_subprotocol() {
    let req = decode(Subprotocol::Raw, GOOD).unwrap().unwrap();
    assert_eq!(req.selected_protocol, None);
}

#[test]
fn byte_at_a_time_decodes_the_same_and_consumes_nothing_until_complete() {
    let got = decode_bytewise(
        &mut HandshakeDecoder::new(Subprotocol::Mqtt, 1024, 8),
        GOOD.as_bytes(),
    )
    .unwrap();
    assert_eq!(got, [decode(Subprotocol::Mqtt, GOOD).unwrap().unwrap()]);
}

#[test]
fn every_refusal_has_its_status() {
    let many_headers = GOOD.replace("\r\n\r\n", "\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
    let long_head = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(1100));
    let cases: Vec<(&str, String, u16)> = vec![
        ("POST instead of GET", GOOD.replace("GET", "POST"), 405),
        ("HTTP/1.0", GOOD.replace("HTTP/1.1", "HTTP/1.0"), 505),
        (
            "HTTP/2.0 request line",
            GOOD.replace("HTTP/1.1", "HTTP/2.0"),
            505,
        ),
        (
            "no Upgrade header",
            GOOD.replace("Upgrade: websocket\r\n", ""),
            426,
        ),
        (
            "Upgrade to something else",
            GOOD.replace("Upgrade: websocket", "Upgrade: h2c"),
            426,
        ),
        (
            "Connection without Upgrade",
            GOOD.replace("keep-alive, Upgrade", "keep-alive"),
            400,
        ),
        ("version 8", GOOD.replace("Version: 13", "Version: 8"), 426),
        (
            "no version",
            GOOD.replace("Sec-WebSocket-Version: 13\r\n", ""),
            426,
        ),
        (
            "version repeated",
            GOOD.replace(
                "Version: 13\r\n",
                "Version: 13\r\nSec-WebSocket-Version: 13\r\n",
            ),
            426,
        ),
        (
            "no key",
            GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            400,
        ),
        (
            "a key of 15 bytes",
            GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25j"),
            400,
        ),
        (
            "a key that is not base64",
            GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "!!!!!!!!!!!!!!!!!!!!!!=="),
            400,
        ),
        (
            "the key twice",
            GOOD.replace(
                "Version: 13\r\n",
                "Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            ),
            400,
        ),
        ("no Host", GOOD.replace("Host: example.com\r\n", ""), 400),
        (
            "mqtt not offered on an MQTT listener",
            GOOD.replace("chat, mqtt", "chat"),
            400,
        ),
        ("more headers than the limit", many_headers, 431),
        ("a head longer than the limit, unterminated", long_head, 431),
        ("not HTTP", "HELLO\r\n\r\n".to_owned(), 400),
    ];
    for (name, req, status) in cases {
        let err = match decode(Subprotocol::Mqtt, &req) {
            Err(e) => e,
            Ok(r) => panic!("{name}: accepted as {r:?}"),
        };
        assert_eq!(err.status(), status, "{name}: {err}");
        assert_eq!(err.answer(), ErrorAnswer::HttpStatus(status), "{name}");
        let mut out = BytesMut::new();
        err.write_response(&mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "{name}: {text}"
        );
        assert!(text.contains("Connection: close\r\n"), "{name}");
    }
}

#[test]
fn refusals_carry_the_headers_their_status_requires() {
    let response = |req: String| {
        let mut out = BytesMut::new();
        decode(Subprotocol::Mqtt, &req)
            .unwrap_err()
            .write_response(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    };
    assert!(response(GOOD.replace("Version: 13", "Version: 8"))
        .contains("\r\nSec-WebSocket-Version: 13\r\n"));
    assert!(response(GOOD.replace("GET", "PUT")).contains("\r\nAllow: GET\r\n"));
    assert!(
        response(GOOD.replace("Upgrade: websocket\r\n", "")).contains("\r\nUpgrade: websocket\r\n")
    );
    let r = response(GOOD.replace("GET", "PUT"));
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
}

#[test]
fn an_incomplete_head_under_the_limit_waits() {
    assert_eq!(
        decode(Subprotocol::Raw, &GOOD[..GOOD.len() - 2]).unwrap(),
        None
    );
}
