//! Tests of the record layer: varints, CRC, builder limits and the decoder's defences.
//! Cross-checks against the `kafka-protocol` crate live in `tests/interop.rs`.

mod decode;
mod interop;

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::varint::*;
use super::*;

fn varint_bytes(v: i32) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, v);
    out
}

fn varlong_bytes(v: i64) -> Vec<u8> {
    let mut out = Vec::new();
    put_varlong(&mut out, v);
    out
}

#[test]
fn varint_known_vectors() {
    let cases: &[(i32, &[u8])] = &[
        (0, &[0x00]),
        (-1, &[0x01]),
        (1, &[0x02]),
        (-2, &[0x03]),
        (63, &[0x7e]),
        (-64, &[0x7f]),
        (64, &[0x80, 0x01]),
        (300, &[0xd8, 0x04]),
        (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
        (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
    ];
    for &(v, bytes) in cases {
        assert_eq!(varint_bytes(v), bytes, "encoding {v}");
        assert_eq!(varint_len(v), bytes.len());
        let mut pos = 0;
        assert_eq!(read_varint(bytes, &mut pos), Ok(v));
        assert_eq!(pos, bytes.len());
    }
    let min = varlong_bytes(i64::MIN);
    assert_eq!(
        min,
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
    );
    assert_eq!(varlong_bytes(1000), [0xd0, 0x0f]);
}

#[test]
fn varint_rejects_overflow_and_truncation() {
    let overflows: &[&[u8]] = &[
        &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        &[0xff, 0xff, 0xff, 0xff, 0x1f],
        &[0xff, 0xff, 0xff, 0xff, 0x10],
    ];
    for bytes in overflows {
        let mut pos = 0;
        assert_eq!(read_varint(bytes, &mut pos), Err(VarintError::Overflow(32)));
        assert_eq!(pos, 0, "a failed read must not move the cursor");
    }
    let mut long = vec![0xff; 9];
    long.push(0x02);
    assert_eq!(read_varlong(&long, &mut 0), Err(VarintError::Overflow(64)));
    let eleven = [0x80; 11];
    assert_eq!(
        read_varlong(&eleven, &mut 0),
        Err(VarintError::Overflow(64))
    );
    for truncated in [&[][..], &[0x80], &[0xff, 0xff, 0xff, 0xff]] {
        let mut pos = 0;
        assert_eq!(
            read_varint(truncated, &mut pos),
            Err(VarintError::Truncated)
        );
        assert_eq!(pos, 0);
    }
}

proptest! {
    #[test]
    fn varint_round_trips(v: i32, prefix in 0usize..3) {
        let mut buf = vec![0xaa; prefix];
        put_varint(&mut buf, v);
        prop_assert_eq!(buf.len() - prefix, varint_len(v));
        let mut pos = prefix;
        prop_assert_eq!(read_varint(&buf, &mut pos), Ok(v));
        prop_assert_eq!(pos, buf.len());
    }

    #[test]
    fn varlong_round_trips(v: i64) {
        let buf = varlong_bytes(v);
        prop_assert_eq!(buf.len(), varlong_len(v));
        let mut pos = 0;
        prop_assert_eq!(read_varlong(&buf, &mut pos), Ok(v));
        prop_assert_eq!(pos, buf.len());
    }

    /// A 32-bit varint read from any bytes is also the same 64-bit varint of the same length.
    #[test]
    fn varint_and_varlong_agree(bytes in prop::collection::vec(any::<u8>(), 0..12)) {
        let (mut p32, mut p64) = (0, 0);
        if let Ok(v) = read_varint(&bytes, &mut p32) {
            prop_assert_eq!(read_varlong(&bytes, &mut p64), Ok(i64::from(v)));
            prop_assert_eq!(p32, p64);
        }
    }
}

#[test]
fn crc32c_known_vectors() {
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    // RFC 3720 appendix B.4.
    assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8A91_36AA);
    assert_eq!(crc32c::crc32c(&[0xffu8; 32]), 0x62A8_AB43);
    let ascending: Vec<u8> = (0..32).collect();
    assert_eq!(crc32c::crc32c(&ascending), 0x46DD_794E);
}

#[test]
fn compression_names_and_bits() {
    for (i, c) in Compression::ALL.into_iter().enumerate() {
        assert_eq!(c.attribute_bits(), i as i16);
        assert_eq!(
            Compression::from_attributes(c.attribute_bits() | 0x30).unwrap(),
            c
        );
        assert_eq!(c.to_string().parse::<Compression>().unwrap(), c);
    }
    assert_eq!("ZSTD".parse::<Compression>().unwrap(), Compression::Zstd);
    for bad in ["producer", "", "lz5"] {
        let err = bad.parse::<Compression>().unwrap_err();
        assert!(err.to_string().contains("gzip"), "{err}");
    }
    assert!(matches!(
        Compression::from_attributes(5),
        Err(RecordError::UnknownCodec(5))
    ));
}

fn single_batch(bytes: Bytes) -> Batch {
    let mut it = decode_batches(bytes);
    let batch = it.next().expect("one batch").expect("valid batch");
    assert!(it.next().is_none());
    batch
}

#[test]
fn builder_counts_sizes_and_timestamps() {
    let mut b = BatchBuilder::new(Compression::None, 1 << 20);
    assert!(b.is_empty());
    assert_eq!(b.size_bytes(), BATCH_HEADER_LEN);
    assert_eq!(b.first_timestamp(), None);
    let h = [Header {
        key: "k",
        value: None,
    }];
    assert_eq!(b.try_push(1_000, Some(b"a"), Some(b"x"), &[]), Ok(0));
    assert_eq!(b.try_push(400, None, Some(b"y"), &h), Ok(1));
    assert_eq!(b.try_push(2_000, Some(b""), None, &[]), Ok(2));
    assert_eq!(
        (b.len(), b.first_timestamp(), b.max_timestamp()),
        (3, Some(1_000), Some(2_000))
    );
    let size = b.size_bytes();
    let bytes = b.finish(ProducerFields::NONE).unwrap();
    assert_eq!(bytes.len(), size);
    let batch = single_batch(bytes);
    assert_eq!((batch.first_timestamp, batch.max_timestamp), (1_000, 2_000));
    assert_eq!(
        (
            batch.last_offset_delta,
            batch.record_count,
            batch.last_offset()
        ),
        (2, 3, 2)
    );
    let records: Vec<Record> = batch.records().map(Result::unwrap).collect();
    assert_eq!(records[1].timestamp, 400, "negative delta");
    assert_eq!(records[1].key, None);
    assert_eq!(records[2].key.as_deref(), Some(&b""[..]));
    assert_eq!(records[2].value, None);
    let hs: Vec<_> = records[1].headers.iter().map(Result::unwrap).collect();
    assert_eq!(hs, [(Bytes::from_static(b"k"), None)]);
}

#[test]
fn builder_limits_size_but_takes_first_record() {
    let mut b = BatchBuilder::new(Compression::Lz4, 200);
    let big = vec![7u8; 1000];
    assert_eq!(
        b.try_push(0, None, Some(&big), &[]),
        Ok(0),
        "first record always fits"
    );
    assert_eq!(b.try_push(0, None, Some(b"x"), &[]), Err(Full));
    assert_eq!(b.len(), 1);

    let mut b = BatchBuilder::new(Compression::None, 100);
    let value = [1u8; 10];
    let mut n = 0;
    while b.try_push(n, None, Some(&value), &[]).is_ok() {
        n += 1;
    }
    // 61-byte header, then 3 records of 17 bytes (1 length + 16 body) would make 112.
    assert_eq!(n, 2);
    assert!(b.size_bytes() <= 100);
    let batch = single_batch(b.finish(ProducerFields::NONE).unwrap());
    assert_eq!(batch.records().count(), 2);
}

#[test]
fn empty_builder_cannot_finish() {
    let b = BatchBuilder::new(Compression::Gzip, 1000);
    assert!(matches!(
        b.finish(ProducerFields::NONE),
        Err(RecordError::EmptyBatch)
    ));
}

#[test]
fn producer_fields_are_written_and_rewritten() {
    for codec in Compression::ALL {
        let mut b = BatchBuilder::new(codec, 1 << 20);
        for i in 0..5 {
            b.try_push(i, Some(b"key"), Some(b"value"), &[]).unwrap();
        }
        let p = ProducerFields {
            producer_id: 42,
            producer_epoch: 3,
            base_sequence: 100,
            transactional: true,
        };
        let bytes = b.finish(p).unwrap();
        let batch = single_batch(bytes.clone());
        assert_eq!(batch.compression, codec);
        assert!(batch.transactional && !batch.control);
        assert_eq!(
            (batch.producer_id, batch.producer_epoch, batch.base_sequence),
            (42, 3, 100)
        );
        assert_eq!((batch.base_offset, batch.partition_leader_epoch), (0, -1));

        let mut raw = BytesMut::from(&bytes[..]);
        rewrite_producer_fields(
            &mut raw,
            ProducerFields {
                producer_epoch: 4,
                base_sequence: 0,
                transactional: false,
                ..p
            },
        );
        let batch = single_batch(raw.freeze());
        assert!(!batch.transactional);
        assert_eq!(batch.compression, codec);
        assert_eq!(
            (batch.producer_id, batch.producer_epoch, batch.base_sequence),
            (42, 4, 0)
        );
        assert_eq!(batch.records().filter(|r| r.is_ok()).count(), 5);
    }
}

/// Wraps a records section in a valid header (CRC included), for malformed-record tests.
pub(super) fn seal(records: &[u8], count: i32, attrs: i16) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i64(0);
    b.put_i32((BATCH_HEADER_LEN - 12 + records.len()) as i32);
    b.put_i32(-1);
    b.put_i8(2);
    b.put_u32(0);
    b.put_i16(attrs);
    b.put_i32(count - 1);
    b.put_i64(0);
    b.put_i64(0);
    b.put_i64(-1);
    b.put_i16(-1);
    b.put_i32(-1);
    b.put_i32(count);
    b.put_slice(records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}
