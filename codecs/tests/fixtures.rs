//! Golden fixtures captured from real peers (see `fixtures/*/README.md`): they must decode
//! to exactly what the peer meant, and frames must re-encode to the same bytes.

mod common;

use bytes::{Bytes, BytesMut};
use codecs::http::{ProduceRequest, RequestDecoder};
use codecs::ws::{
    CloseFrame, FrameDecoder, FrameEncoder, HandshakeDecoder, HandshakeError, MaskSource, Message,
    MessageAssembler, Role, Subprotocol,
};
use codecs::{Decoder, Encoder};
use common::{decode_bytewise, decode_whole, is_slice_of};

const CHROMIUM_HANDSHAKE: &[u8] = include_bytes!("fixtures/ws/chromium.handshake");
const CHROMIUM_FRAMES: &[u8] = include_bytes!("fixtures/ws/chromium.frames");
const CURL_POST: &[u8] = include_bytes!("fixtures/http/curl_post.bin");
const CURL_CHUNKED: &[u8] = include_bytes!("fixtures/http/curl_chunked.bin");

#[test]
fn chromium_upgrade_request_is_accepted_with_the_right_key() {
    let mut dec = HandshakeDecoder::new(Subprotocol::Raw, 8192, 64);
    let reqs = decode_whole(&mut dec, CHROMIUM_HANDSHAKE).unwrap();
    let [req] = &reqs[..] else {
        panic!("expected one request, got {reqs:?}")
    };
    assert_eq!(req.path, "/ws");
    assert_eq!(req.host, "127.0.0.1:56117");
    assert_eq!(req.origin.as_deref(), Some("http://127.0.0.1:56117"));
    assert_eq!(req.key, "FHFqPHGlVij72cZ7GBSSLQ==");
    assert!(req.offered_protocols.is_empty());
    assert_eq!(req.selected_protocol, None);
    // Computed independently with Python's hashlib and base64 modules.
    assert_eq!(req.accept_key(), "6f/qpuSP85MwKgTSzunrI+VvBFk=");
    let mut out = BytesMut::new();
    req.write_accept(&mut out);
    assert_eq!(
        &out[..],
        &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: 6f/qpuSP85MwKgTSzunrI+VvBFk=\r\n\r\n"[..]
    );
    let bytewise = decode_bytewise(
        &mut HandshakeDecoder::new(Subprotocol::Raw, 8192, 64),
        CHROMIUM_HANDSHAKE,
    )
    .unwrap();
    assert_eq!(&bytewise, &reqs);
}

#[test]
fn chromium_without_the_mqtt_subprotocol_is_refused_on_an_mqtt_listener() {
    let mut dec = HandshakeDecoder::new(Subprotocol::Mqtt, 8192, 64);
    let err = dec
        .decode(&mut BytesMut::from(CHROMIUM_HANDSHAKE))
        .unwrap_err();
    assert_eq!(err, HandshakeError::SubprotocolRequired);
    assert_eq!(err.status(), 400);
}

#[test]
fn chromium_frames_decode_to_the_page_messages_and_re_encode_identically() {
    let frames = decode_whole(
        &mut FrameDecoder::new(Role::Server, 1 << 20),
        CHROMIUM_FRAMES,
    )
    .unwrap();
    assert_eq!(frames.len(), 6);
    assert!(frames.iter().all(|f| f.fin && f.mask.is_some()));

    let mut asm = MessageAssembler::new(1 << 20);
    let messages: Vec<Message> = frames
        .iter()
        .map(|f| asm.push(f.clone()).unwrap().unwrap())
        .collect();
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        messages,
        [
            Message::Text(Bytes::from_static(b"hello sluice")),
            Message::Text(Bytes::from("h\u{e9}llo \u{2713} \u{1f600}")),
            Message::Binary(Bytes::from_static(&[0, 1, 2, 3, 254, 255])),
            Message::Text(Bytes::from("x".repeat(300))),
            Message::Binary(Bytes::from(big)),
            Message::Close(Some(CloseFrame {
                code: 1000,
                reason: Bytes::from_static(b"bye")
            })),
        ]
    );

    // The client encoder keeps each frame's captured mask, so the bytes come back exactly.
    let mut enc = FrameEncoder::client(MaskSource::new(1));
    let mut out = BytesMut::new();
    for f in &frames {
        enc.encode(f, &mut out).unwrap();
    }
    assert_eq!(&out[..], CHROMIUM_FRAMES);
}

#[test]
fn chromium_frames_decode_the_same_byte_at_a_time() {
    // The first five frames (all but the 70,000-byte one and the close): byte-at-a-time
    // decoding clones the buffer at every step to prove nothing was consumed.
    // The 70,000-byte frame has a 10-byte header and a mask; the close frame is 2+4+5.
    let prefix_len = CHROMIUM_FRAMES.len() - (10 + 4 + 70_000) - (2 + 4 + 5);
    let prefix = &CHROMIUM_FRAMES[..prefix_len];
    let whole = decode_whole(&mut FrameDecoder::new(Role::Server, 1 << 20), prefix).unwrap();
    let bytewise = decode_bytewise(&mut FrameDecoder::new(Role::Server, 1 << 20), prefix).unwrap();
    assert_eq!(whole.len(), 4);
    assert_eq!(whole, bytewise);
}

#[test]
fn curl_post_decodes_field_by_field() {
    let mut buf = BytesMut::from(CURL_POST);
    let (start, len) = (buf.as_ptr(), buf.len());
    let req = RequestDecoder::default().decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty());
    assert_eq!(
        (req.method(), req.target(), req.path(), req.version()),
        ("POST", "/topics/orders", "/topics/orders", 1)
    );
    let headers: Vec<(&str, &[u8])> = req.headers().collect();
    assert_eq!(
        headers,
        [
            ("Host", &b"127.0.0.1:40771"[..]),
            ("User-Agent", b"curl/7.88.1"),
            ("Accept", b"*/*"),
            ("Sluice-Key", b"order-42"),
            ("Sluice-Header-trace-id", b"abc123"),
            ("Content-Type", b"application/json"),
            ("Content-Length", b"24"),
        ]
    );
    assert_eq!(&req.body()[..], br#"{"id":42,"total":"9.99"}"#);
    assert!(req.keep_alive() && !req.is_chunked());
    assert_eq!(&req.head_bytes()[..], &CURL_POST[..CURL_POST.len() - 24]);
    assert!(is_slice_of(req.body(), start, len), "the body was copied");

    let p = ProduceRequest::from_request(&req, "/topics/").unwrap();
    assert_eq!(p.topic, "orders");
    assert_eq!(p.key.as_deref(), Some(&b"order-42"[..]));
    assert_eq!(
        p.headers,
        [("trace-id".to_owned(), Bytes::from_static(b"abc123"))]
    );
    assert_eq!(p.value, req.body().clone());
}

#[test]
fn curl_chunked_post_decodes_to_its_body() {
    let mut buf = BytesMut::from(CURL_CHUNKED);
    let (start, len) = (buf.as_ptr(), buf.len());
    let req = RequestDecoder::default().decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty());
    assert_eq!((req.method(), req.path()), ("POST", "/topics/orders"));
    assert!(req.is_chunked() && req.keep_alive());
    assert_eq!(req.header("transfer-encoding"), Some(&b"chunked"[..]));
    assert_eq!(
        req.header("content-type"),
        Some(&b"application/x-ndjson"[..])
    );
    assert_eq!(&req.body()[..], b"{\"id\":43}\n{\"id\":44}\n");
    assert!(
        is_slice_of(req.body(), start, len),
        "a one-chunk body was copied"
    );
    let p = ProduceRequest::from_request(&req, "/topics/").unwrap();
    assert_eq!(p.key.as_deref(), Some(&b"order-43"[..]));
}

#[test]
fn curl_requests_pipelined_decode_in_order_byte_at_a_time() {
    let both = [CURL_POST, CURL_CHUNKED].concat();
    let whole = decode_whole(&mut RequestDecoder::default(), &both).unwrap();
    let bytewise = decode_bytewise(&mut RequestDecoder::default(), &both).unwrap();
    assert_eq!(whole.len(), 2);
    assert_eq!(whole, bytewise);
    assert_eq!(&whole[1].body()[..], b"{\"id\":43}\n{\"id\":44}\n");
}
