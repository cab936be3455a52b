//! WebSocket frames and messages: round trips, byte-at-a-time decoding, one test per rule
//! with its exact close code.

mod common;

use bytes::{Bytes, BytesMut};
use codecs::ws::{
    unmask, ByteStream, Frame, FrameDecoder, FrameEncoder, FrameHeader, MaskSource, Message,
    MessageAssembler, Opcode, Role, WsError,
};
use codecs::{Decoder, Encoder, ErrorAnswer, ProtocolError};
use common::{decode_bytewise, decode_whole, is_slice_of};
use proptest::prelude::*;

const MAX: usize = 1 << 20;

fn arb_frame() -> impl Strategy<Value = Frame> {
    let data_len = prop_oneof![0usize..130, 65530usize..65540, Just(70_000usize)];
    let data = (
        prop_oneof![
            Just(Opcode::Continuation),
            Just(Opcode::Text),
            Just(Opcode::Binary)
        ],
        any::<bool>(),
        data_len.prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n)),
    );
    let control = (
        prop_oneof![Just(Opcode::Ping), Just(Opcode::Pong), Just(Opcode::Close)],
        Just(true),
        proptest::collection::vec(any::<u8>(), 0..=125),
    );
    prop_oneof![data, control].prop_map(|(opcode, fin, payload)| Frame {
        fin,
        opcode,
        mask: None,
        payload: Bytes::from(payload),
    })
}

fn encode_all(enc: &mut FrameEncoder, frames: &[Frame]) -> BytesMut {
    let mut out = BytesMut::new();
    for f in frames {
        enc.encode(f, &mut out).expect("encodable frame");
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn client_frames_round_trip_through_server_decoder(frames in proptest::collection::vec(arb_frame(), 1..4), seed: u64) {
        let mut enc = FrameEncoder::client(MaskSource::new(seed));
        let wire = encode_all(&mut enc, &frames);
        let decoded = decode_whole(&mut FrameDecoder::new(Role::Server, MAX), &wire).unwrap();
        prop_assert_eq!(decoded.len(), frames.len());
        for (d, f) in decoded.iter().zip(&frames) {
            prop_assert!(d.mask.is_some());
            prop_assert_eq!((d.fin, d.opcode, &d.payload), (f.fin, f.opcode, &f.payload));
        }
        // Replaying the decoded frames (with their masks) gives the same bytes.
        let again = encode_all(&mut FrameEncoder::client(MaskSource::new(1)), &decoded);
        prop_assert_eq!(again, wire);
    }

    #[test]
    fn server_frames_round_trip_through_client_decoder(frames in proptest::collection::vec(arb_frame(), 1..4)) {
        let wire = encode_all(&mut FrameEncoder::server(), &frames);
        let decoded = decode_whole(&mut FrameDecoder::new(Role::Client, MAX), &wire).unwrap();
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn byte_at_a_time_decodes_the_same(frames in proptest::collection::vec(arb_frame(), 1..3), seed: u64) {
        let wire = encode_all(&mut FrameEncoder::client(MaskSource::new(seed)), &frames);
        let whole = decode_whole(&mut FrameDecoder::new(Role::Server, MAX), &wire).unwrap();
        let bytewise = decode_bytewise(&mut FrameDecoder::new(Role::Server, MAX), &wire).unwrap();
        prop_assert_eq!(whole, bytewise);
    }

    #[test]
    fn fragmented_messages_reassemble_around_pings(
        msg in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(0usize..600, 0..5),
        text: bool,
    ) {
        // Text messages must be UTF-8: use a lossy conversion of the bytes, cut anywhere
        // (including inside a character, which must still be accepted).
        let msg: Vec<u8> = if text { String::from_utf8_lossy(&msg).into_owned().into_bytes() } else { msg };
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(msg.len())).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().copied().filter(|&c| c > 0 && c < msg.len()));
        bounds.push(msg.len());
        let mut frames = Vec::new();
        for (i, w) in bounds.windows(2).enumerate() {
            let opcode = match (i, text) { (0, true) => Opcode::Text, (0, false) => Opcode::Binary, _ => Opcode::Continuation };
            frames.push(Frame { fin: i + 2 == bounds.len(), opcode, mask: None, payload: Bytes::copy_from_slice(&msg[w[0]..w[1]]) });
            frames.push(Frame::new(Opcode::Ping, Bytes::from(vec![i as u8])));
        }
        let mut asm = MessageAssembler::new(4096);
        let mut got = Vec::new();
        for f in frames {
            if let Some(m) = asm.push(f).unwrap() { got.push(m); }
        }
        let pings = bounds.len() - 1;
        prop_assert_eq!(got.len(), pings + 1);
        let expected = if text { Message::Text(Bytes::from(msg)) } else { Message::Binary(Bytes::from(msg)) };
        prop_assert_eq!(&got[got.len() - 2], &expected);
        prop_assert!(!asm.in_progress());
    }
}

fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1, 2, 3, 4];
    let mut out = BytesMut::new();
    FrameHeader {
        fin: true,
        opcode: Opcode::Binary,
        mask: Some(mask),
        payload_len: payload.len() as u64,
    }
    .write(&mut out);
    // Put in FIN, RSV bits and opcodes (even reserved ones) exactly as the case needs.
    out[0] = first;
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask);
    out.to_vec()
}

/// Runs `wire` through a server frame decoder (1024-byte frames) and an assembler
/// (2048-byte messages) and returns the close code of the first error.
fn first_error(wire: &[u8]) -> Option<u16> {
    let mut dec = FrameDecoder::new(Role::Server, 1024);
    let mut asm = MessageAssembler::new(2048);
    let mut buf = BytesMut::from(wire);
    loop {
        match dec.decode(&mut buf) {
            Err(e) => return Some(code(&e)),
            Ok(None) => return None,
            Ok(Some(f)) => {
                if let Err(e) = asm.push(f) {
                    return Some(code(&e));
                }
            }
        }
    }
}

fn code(e: &WsError) -> u16 {
    match e.answer() {
        ErrorAnswer::WebSocketClose(c) => c,
        other => panic!("a WebSocket error answered {other:?}"),
    }
}

#[test]
fn every_rule_has_its_close_code() {
    let big_header_only = [0x82u8, 0xFE, 0x04, 0x01, 1, 2, 3, 4]; // 1025 bytes declared, none sent
    let mut non_minimal16 = vec![0x82u8, 0xFE, 0x00, 0x05, 0, 0, 0, 0];
    non_minimal16.extend_from_slice(&[0; 5]);
    let non_minimal64 = [0x82u8, 0xFF, 0, 0, 0, 0, 0, 0, 0x01, 0x00];
    let top_bit64 = [0x82u8, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
    let cases: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        ("a valid masked binary frame", masked(0x82, b"ok"), None),
        ("RSV1 without an extension", masked(0xC2, b"x"), Some(1002)),
        ("RSV3 without an extension", masked(0x92, b"x"), Some(1002)),
        ("reserved data opcode 0x3", masked(0x83, b"x"), Some(1002)),
        ("reserved control opcode 0xB", masked(0x8B, b""), Some(1002)),
        (
            "an unmasked client frame",
            vec![0x82, 0x01, b'x'],
            Some(1002),
        ),
        ("a fragmented ping", masked(0x09, b""), Some(1002)),
        ("a 126-byte ping", masked(0x89, &[0; 126]), Some(1002)),
        ("a 16-bit length below 126", non_minimal16, Some(1002)),
        (
            "a 64-bit length below 65536",
            non_minimal64.to_vec(),
            Some(1002),
        ),
        (
            "a 64-bit length with the top bit",
            top_bit64.to_vec(),
            Some(1002),
        ),
        (
            "a frame over the limit, header only",
            big_header_only.to_vec(),
            Some(1009),
        ),
        (
            "a continuation with nothing to continue",
            masked(0x80, b"x"),
            Some(1002),
        ),
        (
            "a new message inside a fragmented one",
            [masked(0x02, b"a"), masked(0x82, b"b")].concat(),
            Some(1002),
        ),
        (
            "a text frame that is not UTF-8",
            masked(0x81, &[0xC3, 0x28]),
            Some(1007),
        ),
        (
            "a bad byte in the first text fragment",
            masked(0x01, &[b'a', 0xFF]),
            Some(1007),
        ),
        (
            "a truncated character in the final fragment",
            [masked(0x01, b"a"), masked(0x80, &[0xE2, 0x82])].concat(),
            Some(1007),
        ),
        (
            "fragments over the message limit",
            [
                masked(0x02, &[0; 1024]),
                masked(0x00, &[0; 1024]),
                masked(0x80, &[0; 1]),
            ]
            .concat(),
            Some(1009),
        ),
        (
            "a close frame with one byte",
            masked(0x88, &[3]),
            Some(1002),
        ),
        (
            "a close frame with code 1005",
            masked(0x88, &[0x03, 0xED]),
            Some(1002),
        ),
        (
            "a close frame with code 999",
            masked(0x88, &[0x03, 0xE7]),
            Some(1002),
        ),
        (
            "a close frame with code 5000",
            masked(0x88, &[0x13, 0x88]),
            Some(1002),
        ),
        (
            "a close reason that is not UTF-8",
            masked(0x88, &[0x03, 0xE8, 0xFF]),
            Some(1007),
        ),
        (
            "a close frame with code 1000",
            masked(0x88, &[0x03, 0xE8, b'o', b'k']),
            None,
        ),
        (
            "an application close code 4000",
            masked(0x88, &[0x0F, 0xA0]),
            None,
        ),
    ];
    for (name, wire, want) in cases {
        assert_eq!(first_error(&wire), want, "{name}");
    }
}

#[test]
fn a_server_decoder_refuses_masked_frames_from_a_server() {
    let wire = masked(0x82, b"x");
    let err = FrameDecoder::new(Role::Client, 1024)
        .decode(&mut BytesMut::from(&wire[..]))
        .unwrap_err();
    assert_eq!(code(&err), 1002);
}

#[test]
fn the_byte_stream_refuses_text_and_overflow() {
    let mut dec = FrameDecoder::new(Role::Server, 1024);
    let mut stream = ByteStream::new(4);
    let mut buf = BytesMut::from(&masked(0x81, b"hi")[..]);
    let f = dec.decode_mut(&mut buf).unwrap().unwrap();
    assert_eq!(code(&stream.push(f).unwrap_err()), 1003);

    let mut stream = ByteStream::new(4);
    let mut buf = BytesMut::from(&[masked(0x82, b"abc"), masked(0x82, b"de")].concat()[..]);
    let f = dec.decode_mut(&mut buf).unwrap().unwrap();
    assert!(stream.push(f).unwrap().is_none());
    let f = dec.decode_mut(&mut buf).unwrap().unwrap();
    assert_eq!(code(&stream.push(f).unwrap_err()), 1009);
}

#[test]
fn the_byte_stream_joins_packets_across_frames_and_passes_control_frames_back() {
    // Three "packets" of 4 bytes spread over frames: [p1 p2a] [ping] [p2b p3].
    let wire = [
        masked(0x02, b"AAAAB"),
        masked(0x89, b"hb"),
        masked(0x80, b"BBBCCCC"),
    ]
    .concat();
    let mut dec = FrameDecoder::new(Role::Server, 1024);
    let mut stream = ByteStream::new(64);
    let mut buf = BytesMut::from(&wire[..]);
    let mut packets = Vec::new();
    let mut control = Vec::new();
    while let Some(f) = dec.decode_mut(&mut buf).unwrap() {
        if let Some(c) = stream.push(f).unwrap() {
            control.push(c);
        }
        while stream.buffered() >= 4 {
            packets.push(stream.buffer_mut().split_to(4).freeze());
        }
    }
    assert_eq!(packets, [&b"AAAA"[..], b"BBBB", b"CCCC"]);
    assert_eq!(control.len(), 1);
    assert_eq!(
        (control[0].opcode, &control[0].payload[..]),
        (Opcode::Ping, &b"hb"[..])
    );
    stream.release_if_empty();
    assert_eq!(stream.buffered(), 0);
}

#[test]
fn a_single_frame_message_is_a_slice_of_the_read_buffer() {
    let wire = masked(0x82, &[9; 300]);
    let mut buf = BytesMut::from(&wire[..]);
    let (start, len) = (buf.as_ptr(), buf.len());
    let f = FrameDecoder::new(Role::Server, 1024)
        .decode(&mut buf)
        .unwrap()
        .unwrap();
    let m = MessageAssembler::new(1024).push(f).unwrap().unwrap();
    let Message::Binary(payload) = m else {
        panic!("expected binary, got {m:?}")
    };
    assert_eq!(&payload[..], &[9; 300][..]);
    assert!(is_slice_of(&payload, start, len), "the payload was copied");
}

#[test]
fn the_encoder_refuses_bad_control_frames_and_uses_minimal_lengths() {
    let mut enc = FrameEncoder::server();
    let mut out = BytesMut::new();
    let big_ping = Frame::new(Opcode::Ping, vec![0u8; 126]);
    assert!(enc.encode(&big_ping, &mut out).is_err());
    for (len, header) in [(125usize, 2usize), (126, 4), (65535, 4), (65536, 10)] {
        out.clear();
        enc.encode(&Frame::binary(vec![0u8; len]), &mut out)
            .unwrap();
        assert_eq!(out.len(), header + len, "payload of {len}");
    }
    // Close reasons are cut to fit a control frame, at a character boundary.
    let close = Frame::close(1000, &"é".repeat(100));
    assert!(close.payload.len() <= 125);
    assert!(std::str::from_utf8(&close.payload[2..]).is_ok());
}
