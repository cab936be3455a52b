//! The decoder's defences: truncation, damage, limits and malformed records.

use bytes::{BufMut, Bytes, BytesMut};

use super::seal;
use crate::record::*;

fn build(codec: Compression, n: usize, value_len: usize) -> Bytes {
    let mut b = BatchBuilder::new(codec, usize::MAX);
    let value = vec![b'v'; value_len];
    for i in 0..n {
        let key = format!("key-{i}");
        b.try_push(i as i64, Some(key.as_bytes()), Some(&value), &[])
            .unwrap();
    }
    b.finish(ProducerFields::NONE).unwrap()
}

fn errors(data: Bytes, limit: usize) -> RecordError {
    decode_batches_with_limit(data, limit)
        .find_map(Result::err)
        .expect("an error")
}

#[test]
fn truncated_last_batch_ends_cleanly() {
    let (a, b) = (
        build(Compression::None, 3, 10),
        build(Compression::Zstd, 4, 10),
    );
    let mut all = BytesMut::new();
    all.put_slice(&a);
    all.put_slice(&b);
    let all = all.freeze();
    for cut in a.len()..all.len() {
        let mut it = decode_batches(all.slice(..cut));
        let first = it.next().unwrap().unwrap();
        assert_eq!(first.record_count, 3);
        assert!(it.next().is_none(), "cut at {cut} must end cleanly");
        assert_eq!(it.remaining_bytes(), cut - a.len());
    }
    let both: Vec<_> = decode_batches(all).map(Result::unwrap).collect();
    assert_eq!(both.len(), 2);
    assert_eq!(both[1].compression, Compression::Zstd);
}

#[test]
fn damaged_batch_fails_crc() {
    let good = build(Compression::None, 5, 20);
    for at in [21, 30, 61, good.len() - 1] {
        let mut bad = BytesMut::from(&good[..]);
        bad[at] ^= 0x40;
        match errors(bad.freeze(), usize::MAX) {
            RecordError::CrcMismatch {
                base_offset,
                expected,
                actual,
            } => {
                assert_eq!(base_offset, 0);
                assert_ne!(expected, actual);
            }
            other => panic!("byte {at}: {other}"),
        }
    }
}

#[test]
fn legacy_magic_is_refused_by_name() {
    let mut old = BytesMut::from(&build(Compression::None, 1, 1)[..]);
    old[16] = 1;
    let err = errors(old.freeze(), usize::MAX);
    assert!(matches!(err, RecordError::UnsupportedMagic(1)));
    assert!(err.to_string().contains("v0/v1"), "{err}");
}

#[test]
fn batch_length_is_checked_before_use() {
    let mut neg = BytesMut::from(&build(Compression::None, 1, 1)[..]);
    neg[8..12].copy_from_slice(&(-5i32).to_be_bytes());
    assert!(matches!(
        errors(neg.freeze(), usize::MAX),
        RecordError::Corrupt(_)
    ));

    let mut short = BytesMut::from(&build(Compression::None, 1, 1)[..]);
    short[8..12].copy_from_slice(&20i32.to_be_bytes());
    assert!(matches!(
        errors(short.freeze(), usize::MAX),
        RecordError::Corrupt(_)
    ));

    // A huge declared length over the limit is refused even though the data is cut off.
    let mut huge = BytesMut::from(&build(Compression::None, 1, 1)[..]);
    huge[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
    assert!(matches!(
        errors(huge.freeze(), 1 << 20),
        RecordError::TooLarge { .. }
    ));

    let big = build(Compression::None, 100, 100);
    assert!(matches!(
        errors(big.clone(), 1000),
        RecordError::TooLarge { .. }
    ));
    assert!(decode_batches_with_limit(big, 100_000).all(|b| b.is_ok()));
}

#[test]
fn decompression_is_bounded() {
    let limit = 1 << 20;
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let bomb = build(codec, 4, 1 << 20);
        assert!(bomb.len() < limit, "{codec} bomb is {} bytes", bomb.len());
        match errors(bomb.clone(), limit) {
            RecordError::TooLarge {
                limit: l,
                size,
                what,
            } => {
                assert_eq!(l, limit);
                assert!(size > limit, "{codec} reported {size}");
                assert!(what.contains("uncompressed"), "{codec}: {what}");
            }
            other => panic!("{codec}: {other}"),
        }
        assert!(decode_batches_with_limit(bomb, 8 << 20).all(|b| b.is_ok()));
    }
    // A raw snappy block that claims 4 GiB is refused before anything is allocated.
    let claim = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
    let err = errors(seal(&claim, 1, Compression::Snappy.attribute_bits()), limit);
    assert!(
        matches!(
            err,
            RecordError::TooLarge {
                size: 0xffff_ffff,
                ..
            }
        ),
        "{err}"
    );
}

fn xerial(chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
    for chunk in chunks {
        let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
        out.put_u32(block.len() as u32);
        out.put_slice(&block);
    }
    out
}

#[test]
fn snappy_is_read_raw_and_xerial_framed() {
    let plain = build(Compression::None, 50, 30);
    let records = &plain[BATCH_HEADER_LEN..];
    let (a, b) = records.split_at(records.len() / 3);
    let attrs = Compression::Snappy.attribute_bits();
    for framed in [xerial(&[a, b]), xerial(&[records]), xerial(&[])] {
        let expect = if framed.len() == 16 { &[][..] } else { records };
        let count = if expect.is_empty() { 0 } else { 50 };
        let batch = decode_batches(seal(&framed, count, attrs))
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(&batch.records_bytes()[..], expect);
        assert_eq!(
            batch.records().filter(|r| r.is_ok()).count(),
            count as usize
        );
    }
    let raw = snap::raw::Encoder::new().compress_vec(records).unwrap();
    let batch = decode_batches(seal(&raw, 50, attrs))
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(&batch.records_bytes()[..], records);

    let mut cut = xerial(&[records]);
    cut.truncate(cut.len() - 3);
    assert!(matches!(
        errors(seal(&cut, 50, attrs), usize::MAX),
        RecordError::Corrupt(_)
    ));
}

/// One record body (without its length prefix) with the given fields.
fn record(key_len: i32, key: &[u8], headers: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8, 0, 0];
    varint::put_varint(&mut body, key_len);
    body.put_slice(key);
    varint::put_varint(&mut body, -1);
    body.put_slice(headers);
    let mut out = Vec::new();
    varint::put_varint(&mut out, body.len() as i32);
    out.put_slice(&body);
    out
}

fn first_record_error(records: &[u8], count: i32) -> Option<RecordError> {
    let batch = decode_batches(seal(records, count, 0))
        .next()
        .unwrap()
        .unwrap();
    batch.records().find_map(Result::err)
}

#[test]
fn malformed_records_are_errors() {
    let ok = record(1, b"k", &[0]);
    assert!(first_record_error(&ok, 1).is_none());
    // More records announced than present, and bytes after the last one.
    assert!(first_record_error(&ok, 2).is_some());
    let mut extra = ok.clone();
    extra.push(0);
    assert!(first_record_error(&extra, 1).is_some());
    // Key longer than the record, negative key length other than -1.
    assert!(first_record_error(&record(9, b"k", &[0]), 1).is_some());
    assert!(first_record_error(&record(-2, b"", &[0]), 1).is_some());
    // Header count that cannot fit, negative header count.
    assert!(first_record_error(&record(-1, b"", &[100]), 1).is_some());
    assert!(first_record_error(&record(-1, b"", &[1]), 1).is_some());
    // Record length past the end of the section.
    assert!(first_record_error(&[0x7e, 0, 0], 1).is_some());
}

#[test]
fn malformed_headers_are_errors_on_iteration() {
    let header = |key: &[u8], extra: &[u8]| {
        let mut h = vec![2u8];
        varint::put_varint(&mut h, key.len() as i32);
        h.put_slice(key);
        h.push(1); // null value
        h.put_slice(extra);
        h
    };
    let check = |headers: Vec<u8>| {
        let batch = decode_batches(seal(&record(-1, b"", &headers), 1, 0))
            .next()
            .unwrap()
            .unwrap();
        let rec = batch.records().next().unwrap().unwrap();
        assert_eq!(rec.headers.len(), 1);
        let items: Vec<_> = rec.headers.iter().collect();
        items.into_iter().find_map(Result::err)
    };
    assert!(check(header(b"ok", &[])).is_none());
    assert!(check(header(b"\xff\xfe", &[])).is_some(), "non-UTF-8 key");
    assert!(
        check(header(b"ok", &[0])).is_some(),
        "bytes after the last header"
    );
    let null_key = vec![2u8, 1, 1];
    assert!(check(null_key).is_some(), "null key");
}

/// A fetch response's records field from kafka-protocol's documentation, written by a broker:
/// one record at offset 1 with attributes 1, key "hello", value "world".
#[test]
fn decodes_broker_fixture() {
    const RECORD: [u8; 79] = [
        0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x43, 0x0, 0x0, 0x0, 0x0, 0x2, 0x73,
        0x6d, 0x29, 0x7b, 0x0, 0x0, 0x0, 0x0, 0x0, 0x3, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0,
        0x0, 0x0, 0x1, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0,
        0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x1, 0x22, 0x1, 0xd0, 0xf, 0x2, 0xa, 0x68, 0x65, 0x6c,
        0x6c, 0x6f, 0xa, 0x77, 0x6f, 0x72, 0x6c, 0x64, 0x0,
    ];
    let batch = decode_batches(Bytes::from_static(&RECORD))
        .next()
        .unwrap()
        .unwrap();
    assert_eq!((batch.base_offset, batch.record_count), (0, 1));
    let rec = batch.records().next().unwrap().unwrap();
    assert_eq!(rec.offset, 1);
    assert_eq!(rec.timestamp, batch.first_timestamp + 1000);
    assert_eq!(rec.key.as_deref(), Some(&b"hello"[..]));
    assert_eq!(rec.value.as_deref(), Some(&b"world"[..]));
    assert!(rec.headers.is_empty());
}

#[test]
fn log_append_time_overrides_record_timestamps() {
    let mut raw = BytesMut::from(&build(Compression::None, 3, 5)[..]);
    raw[21..23].copy_from_slice(&8i16.to_be_bytes());
    raw[35..43].copy_from_slice(&777i64.to_be_bytes());
    let crc = crc32c::crc32c(&raw[21..]);
    raw[17..21].copy_from_slice(&crc.to_be_bytes());
    let batch = decode_batches(raw.freeze()).next().unwrap().unwrap();
    assert_eq!(batch.timestamp_type, TimestampType::LogAppendTime);
    assert!(batch.records().all(|r| r.unwrap().timestamp == 777));
}
