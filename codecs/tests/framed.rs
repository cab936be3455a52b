//! Length-prefixed framing: round trips, byte-at-a-time decoding, limits before bodies.

mod common;

use bytes::{Bytes, BytesMut};
use codecs::framed::{FramedCodec, FramedConfig, FramedError, FramedRecord, LengthPrefix};
use codecs::registry::Ack;
use codecs::{Decoder, Encoder, ErrorAnswer, ProtocolError};
use common::{decode_bytewise, decode_whole, is_slice_of};
use proptest::prelude::*;

fn config(prefix: LengthPrefix, keyed: bool, max: usize) -> FramedConfig {
    FramedConfig {
        prefix,
        keyed,
        max_frame_size: max,
    }
}

fn arb_record(keyed: bool) -> impl Strategy<Value = FramedRecord> {
    let key = if keyed {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 1..40)).boxed()
    } else {
        Just(None).boxed()
    };
    (key, proptest::collection::vec(any::<u8>(), 0..300)).prop_map(|(k, v)| FramedRecord {
        key: k.map(Bytes::from),
        value: Bytes::from(v),
    })
}

fn arb_case() -> impl Strategy<Value = (FramedConfig, Vec<FramedRecord>)> {
    (
        prop_oneof![Just(LengthPrefix::U16), Just(LengthPrefix::U32)],
        any::<bool>(),
    )
        .prop_flat_map(|(p, keyed)| {
            (
                Just(config(p, keyed, 4096)),
                proptest::collection::vec(arb_record(keyed), 1..5),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn records_round_trip_whole_and_byte_at_a_time((cfg, records) in arb_case()) {
        let mut codec = FramedCodec::new(cfg);
        let mut wire = BytesMut::new();
        for r in &records {
            codec.encode(r, &mut wire).unwrap();
        }
        let whole = decode_whole(&mut FramedCodec::new(cfg), &wire).unwrap();
        prop_assert_eq!(&whole, &records);
        let bytewise = decode_bytewise(&mut FramedCodec::new(cfg), &wire).unwrap();
        prop_assert_eq!(&bytewise, &records);
        // Re-encoding the decoded records gives the same bytes.
        let mut again = BytesMut::new();
        for r in &whole {
            codec.encode(r, &mut again).unwrap();
        }
        prop_assert_eq!(again, wire);
    }
}

#[test]
fn the_documented_layout_decodes() {
    let wire = [0, 0, 0, 7, 0, 2, b'i', b'd', b'a', b'b', b'c'];
    let mut buf = BytesMut::from(&wire[..]);
    let (start, len) = (buf.as_ptr(), buf.len());
    let r = FramedCodec::new(config(LengthPrefix::U32, true, 64))
        .decode(&mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(r.key.as_deref(), Some(&b"id"[..]));
    assert_eq!(&r.value[..], b"abc");
    assert!(
        is_slice_of(&r.value, start, len) && is_slice_of(r.key.as_deref().unwrap(), start, len)
    );
    // A zero key length is a null key.
    let wire = [0, 3, 0, 0, b'v'];
    let r = FramedCodec::new(config(LengthPrefix::U16, true, 64))
        .decode(&mut BytesMut::from(&wire[..]))
        .unwrap()
        .unwrap();
    assert_eq!((r.key, &r.value[..]), (None, &b"v"[..]));
}

#[test]
fn every_rule_is_checked_before_the_body_arrives() {
    let cases: Vec<(&str, FramedConfig, Vec<u8>, FramedError)> = vec![
        (
            "u32 length over the limit, prefix only",
            config(LengthPrefix::U32, false, 100),
            vec![0, 0, 0, 101],
            FramedError::FrameTooLarge { len: 101, max: 100 },
        ),
        (
            "u32 length of 4 GiB - 1",
            config(LengthPrefix::U32, false, 100),
            vec![0xFF; 4],
            FramedError::FrameTooLarge {
                len: u64::from(u32::MAX),
                max: 100,
            },
        ),
        (
            "u16 length over the limit",
            config(LengthPrefix::U16, false, 10),
            vec![0, 11],
            FramedError::FrameTooLarge { len: 11, max: 10 },
        ),
        (
            "keyed frame too short for a key length",
            config(LengthPrefix::U16, true, 10),
            vec![0, 1],
            FramedError::MissingKeyHeader { len: 1 },
        ),
        (
            "key length past the frame, no body yet",
            config(LengthPrefix::U32, true, 100),
            vec![0, 0, 0, 10, 0, 9],
            FramedError::KeyOverrun {
                key_len: 9,
                len: 10,
            },
        ),
    ];
    for (name, cfg, wire, want) in cases {
        let err = FramedCodec::new(cfg)
            .decode(&mut BytesMut::from(&wire[..]))
            .unwrap_err();
        assert_eq!(err, want, "{name}");
        assert_eq!(err.answer(), ErrorAnswer::Close, "{name}");
    }
}

#[test]
fn a_key_exactly_filling_the_frame_is_accepted() {
    let wire = [0, 4, 0, 2, b'k', b'k'];
    let r = FramedCodec::new(config(LengthPrefix::U16, true, 10))
        .decode(&mut BytesMut::from(&wire[..]))
        .unwrap()
        .unwrap();
    assert_eq!((r.key.as_deref(), r.value.len()), (Some(&b"kk"[..]), 0));
}

#[test]
fn the_encoder_refuses_what_the_decoder_would() {
    let rec = |k: Option<&'static [u8]>, v: usize| FramedRecord {
        key: k.map(Bytes::from_static),
        value: Bytes::from(vec![0u8; v]),
    };
    let mut out = BytesMut::new();
    let mut plain = FramedCodec::new(config(LengthPrefix::U16, false, 1 << 20));
    assert!(matches!(
        plain.encode(&rec(Some(b"k"), 1), &mut out),
        Err(FramedError::KeyNotEncodable(_))
    ));
    assert!(matches!(
        plain.encode(&rec(None, 65536), &mut out),
        Err(FramedError::FrameTooLarge { .. })
    ));
    let mut small = FramedCodec::new(config(LengthPrefix::U32, true, 10));
    assert!(matches!(
        small.encode(&rec(Some(b"key"), 6), &mut out),
        Err(FramedError::FrameTooLarge { len: 11, max: 10 })
    ));
    assert!(out.is_empty(), "a refused record wrote bytes");
}

#[test]
fn acks_are_status_frames_in_the_listener_prefix() {
    let mut out = BytesMut::new();
    let c16 = FramedCodec::new(config(LengthPrefix::U16, true, 64));
    c16.encode_ack(Ack::Accepted, &mut out).unwrap();
    assert_eq!(&out[..], [0, 1, 0]);
    out.clear();
    let c32 = FramedCodec::new(config(LengthPrefix::U32, false, 64));
    c32.encode_ack(Ack::Rejected { reason: "no" }, &mut out)
        .unwrap();
    assert_eq!(&out[..], [0, 0, 0, 3, 1, b'n', b'o']);
}
