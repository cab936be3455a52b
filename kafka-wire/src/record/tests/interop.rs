//! Cross-checks against the `kafka-protocol` crate: batches we build must decode there with
//! every field intact, and batches it builds (xerial snappy, lz4 with checksums) must decode
//! here, for every codec and random records.

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records as kp;
use proptest::prelude::*;

use crate::record::*;

#[derive(Debug, Clone)]
struct TestRecord {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn test_record() -> impl Strategy<Value = TestRecord> {
    let bytes = |max| prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..max));
    (
        -100_000i64..100_000,
        bytes(40),
        bytes(300),
        prop::collection::btree_map("\\PC{0,10}", bytes(20), 0..4),
    )
        .prop_map(|(ts, key, value, headers)| TestRecord {
            timestamp: 1_700_000_000_000 + ts,
            key,
            value,
            headers: headers.into_iter().collect(),
        })
}

fn codec() -> impl Strategy<Value = Compression> {
    prop::sample::select(Compression::ALL.to_vec())
}

fn producer() -> impl Strategy<Value = ProducerFields> {
    prop_oneof![
        Just(ProducerFields::NONE),
        (
            0i64..1 << 40,
            0i16..100,
            0i32..i32::MAX - 1000,
            any::<bool>()
        )
            .prop_map(
                |(producer_id, producer_epoch, base_sequence, transactional)| ProducerFields {
                    producer_id,
                    producer_epoch,
                    base_sequence,
                    transactional,
                }
            ),
    ]
}

fn to_kp(c: Compression) -> kp::Compression {
    match c {
        Compression::None => kp::Compression::None,
        Compression::Gzip => kp::Compression::Gzip,
        Compression::Snappy => kp::Compression::Snappy,
        Compression::Lz4 => kp::Compression::Lz4,
        Compression::Zstd => kp::Compression::Zstd,
    }
}

fn kp_headers(r: &TestRecord) -> IndexMap<StrBytes, Option<Bytes>> {
    r.headers
        .iter()
        .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone().map(Bytes::from)))
        .collect()
}

/// Checks one decoded record of ours against what was written.
fn check_ours(got: &Record, want: &TestRecord, offset: i64) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.offset, offset);
    prop_assert_eq!(got.timestamp, want.timestamp);
    prop_assert_eq!(got.key.as_deref(), want.key.as_deref());
    prop_assert_eq!(got.value.as_deref(), want.value.as_deref());
    prop_assert_eq!(got.headers.len(), want.headers.len());
    for (h, (k, v)) in got.headers.iter().zip(&want.headers) {
        let (gk, gv) = h.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&gk[..], k.as_bytes());
        prop_assert_eq!(gv.as_deref(), v.as_deref());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// BatchBuilder → kafka-protocol's RecordBatchDecoder, and → our own decoder.
    #[test]
    fn ours_decode_in_kafka_protocol(
        records in prop::collection::vec(test_record(), 1..40),
        codec in codec(),
        p in producer(),
    ) {
        let mut b = BatchBuilder::new(codec, usize::MAX);
        for (i, r) in records.iter().enumerate() {
            let headers: Vec<Header<'_>> = r.headers.iter()
                .map(|(k, v)| Header { key: k, value: v.as_deref() })
                .collect();
            let delta = b.try_push(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers);
            prop_assert_eq!(delta, Ok(i as u32));
        }
        let bytes = b.finish(p).unwrap();

        let sets = kp::RecordBatchDecoder::decode_all(&mut bytes.clone()).unwrap();
        prop_assert_eq!(sets.len(), 1);
        prop_assert_eq!(sets[0].compression, to_kp(codec));
        prop_assert_eq!(sets[0].version, 2);
        prop_assert_eq!(sets[0].records.len(), records.len());
        for (i, (got, want)) in sets[0].records.iter().zip(&records).enumerate() {
            prop_assert_eq!(got.offset, i as i64);
            prop_assert_eq!(got.timestamp, want.timestamp);
            prop_assert_eq!(got.timestamp_type, kp::TimestampType::Creation);
            prop_assert_eq!(got.key.as_deref(), want.key.as_deref());
            prop_assert_eq!(got.value.as_deref(), want.value.as_deref());
            prop_assert_eq!(&got.headers, &kp_headers(want));
            prop_assert_eq!(got.producer_id, p.producer_id);
            prop_assert_eq!(got.producer_epoch, p.producer_epoch);
            prop_assert_eq!(got.sequence, p.base_sequence.wrapping_add(i as i32));
            prop_assert_eq!(got.transactional, p.transactional);
            prop_assert!(!got.control);
            prop_assert_eq!(got.partition_leader_epoch, -1);
        }

        let batch = decode_batches(bytes).next().unwrap().unwrap();
        let max_ts = records.iter().map(|r| r.timestamp).max().unwrap();
        prop_assert_eq!(batch.first_timestamp, records[0].timestamp);
        prop_assert_eq!(batch.max_timestamp, max_ts);
        prop_assert_eq!(batch.last_offset_delta, records.len() as i32 - 1);
        prop_assert_eq!(batch.record_count, records.len() as i32);
        prop_assert_eq!(batch.compression, codec);
        let mut n = 0;
        for (i, got) in batch.records().enumerate() {
            check_ours(&got.unwrap(), &records[i], i as i64)?;
            n += 1;
        }
        prop_assert_eq!(n, records.len());
    }

    /// kafka-protocol's RecordBatchEncoder → our decoder.
    #[test]
    fn kafka_protocol_batches_decode_here(
        records in prop::collection::vec(test_record(), 1..40),
        codec in codec(),
        p in producer(),
        base_offset in 0i64..1 << 50,
        leader_epoch in -1i32..1000,
    ) {
        let kp_records: Vec<kp::Record> = records.iter().enumerate().map(|(i, r)| kp::Record {
            transactional: p.transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: leader_epoch,
            producer_id: p.producer_id,
            producer_epoch: p.producer_epoch,
            timestamp_type: kp::TimestampType::Creation,
            offset: base_offset + i as i64,
            sequence: p.base_sequence.wrapping_add(i as i32),
            timestamp: r.timestamp,
            key: r.key.clone().map(Bytes::from),
            value: r.value.clone().map(Bytes::from),
            headers: kp_headers(r),
        }).collect();
        let mut buf = BytesMut::new();
        let options = kp::RecordEncodeOptions { version: 2, compression: to_kp(codec) };
        kp::RecordBatchEncoder::encode(&mut buf, &kp_records, &options).unwrap();

        let batches: Vec<Batch> = decode_batches(buf.freeze()).map(Result::unwrap).collect();
        prop_assert_eq!(batches.len(), 1);
        let batch = &batches[0];
        let min_ts = records.iter().map(|r| r.timestamp).min().unwrap();
        let max_ts = records.iter().map(|r| r.timestamp).max().unwrap();
        prop_assert_eq!(batch.base_offset, base_offset);
        prop_assert_eq!(batch.partition_leader_epoch, leader_epoch);
        prop_assert_eq!(batch.compression, codec);
        prop_assert_eq!(batch.transactional, p.transactional);
        prop_assert!(!batch.control);
        prop_assert_eq!(batch.timestamp_type, TimestampType::CreateTime);
        prop_assert_eq!(batch.last_offset_delta, records.len() as i32 - 1);
        prop_assert_eq!(batch.last_offset(), base_offset + records.len() as i64 - 1);
        prop_assert_eq!(batch.first_timestamp, min_ts);
        prop_assert_eq!(batch.max_timestamp, max_ts);
        prop_assert_eq!(batch.producer_id, p.producer_id);
        prop_assert_eq!(batch.producer_epoch, p.producer_epoch);
        prop_assert_eq!(batch.base_sequence, p.base_sequence);
        prop_assert_eq!(batch.record_count, records.len() as i32);
        let mut n = 0;
        for (i, got) in batch.records().enumerate() {
            check_ours(&got.unwrap(), &records[i], base_offset + i as i64)?;
            n += 1;
        }
        prop_assert_eq!(n, records.len());
    }
}

/// kafka-protocol writes snappy in snappy-java's xerial framing; make sure that is what this
/// suite exercises, so the framed path of our reader is covered by an independent writer.
#[test]
fn kafka_protocol_snappy_is_xerial_framed() {
    let record = kp::Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: kp::TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 5,
        key: None,
        value: Some(Bytes::from_static(b"framed")),
        headers: IndexMap::new(),
    };
    let mut buf = BytesMut::new();
    let options = kp::RecordEncodeOptions {
        version: 2,
        compression: kp::Compression::Snappy,
    };
    kp::RecordBatchEncoder::encode(&mut buf, [&record], &options).unwrap();
    assert!(buf[BATCH_HEADER_LEN..].starts_with(b"\x82SNAPPY\x00"));
    let batch = decode_batches(buf.freeze()).next().unwrap().unwrap();
    let rec = batch.records().next().unwrap().unwrap();
    assert_eq!(rec.value.as_deref(), Some(&b"framed"[..]));
}
