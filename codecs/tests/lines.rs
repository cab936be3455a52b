//! Newline-delimited records: round trips, CRLF, byte-at-a-time decoding, early limits.

mod common;

use bytes::{Bytes, BytesMut};
use codecs::lines::{LinesCodec, LinesError};
use codecs::registry::Ack;
use codecs::{Decoder, Encoder};
use common::{decode_bytewise, decode_whole};
use proptest::prelude::*;

fn arb_line() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>().prop_filter("no LF", |b| *b != b'\n'), 0..100)
        .prop_filter("no trailing CR", |l| l.last() != Some(&b'\r'))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn lines_round_trip_with_lf_and_crlf(lines in proptest::collection::vec(arb_line(), 1..6), crlf: bool) {
        let mut wire = BytesMut::new();
        let mut codec = LinesCodec::new(100);
        for l in &lines {
            codec.encode(&l[..], &mut wire).unwrap();
        }
        if crlf {
            let s: Vec<u8> = wire.iter().flat_map(|&b| if b == b'\n' { vec![b'\r', b'\n'] } else { vec![b] }).collect();
            wire = BytesMut::from(&s[..]);
        }
        let expected: Vec<Bytes> = lines.into_iter().map(Bytes::from).collect();
        prop_assert_eq!(&decode_whole(&mut LinesCodec::new(100), &wire).unwrap(), &expected);
        prop_assert_eq!(&decode_bytewise(&mut LinesCodec::new(100), &wire).unwrap(), &expected);
    }
}

#[test]
fn limits_are_exact_and_checked_before_the_newline_arrives() {
    let max = 8;
    let ok = |s: &[u8]| decode_whole(&mut LinesCodec::new(max), s).map(|v| v.len());
    assert_eq!(ok(b"12345678\n"), Ok(1));
    assert_eq!(ok(b"12345678\r\n"), Ok(1));
    assert_eq!(ok(b"123456789\n"), Err(LinesError::LineTooLong { max }));
    assert_eq!(ok(b"12345678\r\r\n"), Err(LinesError::LineTooLong { max }));
    // Ten bytes with no newline cannot become a line of eight, even with CRLF next.
    let mut buf = BytesMut::from(&b"1234567890"[..]);
    assert_eq!(
        LinesCodec::new(max).decode(&mut buf),
        Err(LinesError::LineTooLong { max })
    );
    // Nine bytes might still be eight plus CR.
    let mut buf = BytesMut::from(&b"12345678\r"[..]);
    assert_eq!(LinesCodec::new(max).decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), 9);
}

#[test]
fn empty_lines_are_empty_records() {
    let got = decode_whole(&mut LinesCodec::new(8), b"\n\r\na\n").unwrap();
    assert_eq!(got, [Bytes::new(), Bytes::new(), Bytes::from_static(b"a")]);
}

#[test]
fn a_long_line_arriving_in_pieces_is_found() {
    let mut codec = LinesCodec::new(1000);
    let mut buf = BytesMut::new();
    for _ in 0..9 {
        buf.extend_from_slice(&[b'a'; 100]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
    }
    buf.extend_from_slice(b"\nnext");
    assert_eq!(codec.decode(&mut buf).unwrap().map(|l| l.len()), Some(900));
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    assert_eq!(&buf[..], b"next");
}

#[test]
fn records_with_line_breaks_cannot_be_encoded_and_acks_are_lines() {
    let mut out = BytesMut::new();
    let mut c = LinesCodec::new(8);
    assert_eq!(
        c.encode(&b"a\nb"[..], &mut out),
        Err(LinesError::NewlineInRecord)
    );
    assert_eq!(
        c.encode(&b"a\r"[..], &mut out),
        Err(LinesError::NewlineInRecord)
    );
    c.encode_ack(Ack::Accepted, &mut out);
    c.encode_ack(
        Ack::Rejected {
            reason: "topic\r\nmissing",
        },
        &mut out,
    );
    assert_eq!(&out[..], b"OK\nERR topic  missing\n");
}
