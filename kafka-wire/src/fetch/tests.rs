//! The record-selection half of fetch, which tansu cannot exercise (it returns only whole
//! batches starting at or after the fetch offset, and has no transactions): mid-batch
//! offsets, control batches and aborted transactions.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ProducerId;

use super::*;
use crate::record::{rewrite_producer_fields, BatchBuilder, Compression, ProducerFields};

const CONTROL_BIT: u8 = 0x20;

/// A batch of `values` at `base_offset`, from `producer` (transactional or not).
fn batch(base_offset: i64, values: &[&str], producer: i64, transactional: bool) -> BytesMut {
    let mut b = BatchBuilder::new(Compression::None, 1 << 20);
    for v in values {
        b.try_push(0, None, Some(v.as_bytes()), &[]).unwrap();
    }
    let fields = ProducerFields {
        producer_id: producer,
        producer_epoch: 0,
        base_sequence: 0,
        transactional,
    };
    let mut data = BytesMut::from(&b.finish(fields).unwrap()[..]);
    // The base offset is outside the CRC: the broker assigns it.
    data[..8].copy_from_slice(&base_offset.to_be_bytes());
    data
}

/// A transaction marker (control batch) at `offset`: commit or abort.
fn marker(offset: i64, producer: i64, commit: bool) -> BytesMut {
    let mut key = BytesMut::new();
    key.put_i16(0);
    key.put_i16(i16::from(commit));
    let mut b = BatchBuilder::new(Compression::None, 1 << 20);
    b.try_push(0, Some(&key), Some(&[0, 0, 0, 0, 0, 0]), &[])
        .unwrap();
    let fields = ProducerFields {
        producer_id: producer,
        producer_epoch: 0,
        base_sequence: -1,
        transactional: true,
    };
    let mut data = BytesMut::from(&b.finish(fields).unwrap()[..]);
    data[..8].copy_from_slice(&offset.to_be_bytes());
    // Attributes are the i16 at byte 21; set the control bit, then recompute the CRC.
    data[22] |= CONTROL_BIT;
    rewrite_producer_fields(&mut data, fields);
    data
}

fn concat(parts: &[BytesMut]) -> Bytes {
    let mut all = BytesMut::new();
    for p in parts {
        all.extend_from_slice(p);
    }
    all.freeze()
}

fn values(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.value.as_deref().unwrap().to_vec()).unwrap())
        .collect()
}

fn select(data: Bytes, offset: i64, aborted: Vec<AbortedTransaction>) -> (Vec<Record>, i64) {
    let (records, next, _) = records_from(data, offset, aborted, 1 << 20).unwrap();
    (records, next)
}

#[test]
fn a_fetch_from_the_middle_of_a_batch_skips_earlier_records() {
    let data = concat(&[batch(0, &["a", "b", "c", "d", "e"], -1, false)]);
    let (records, next) = select(data, 3, vec![]);
    assert_eq!(values(&records), ["d", "e"]);
    assert_eq!(records[0].offset, 3);
    assert_eq!(next, 5);
}

#[test]
fn offsets_span_batches() {
    let data = concat(&[
        batch(0, &["a", "b"], -1, false),
        batch(2, &["c", "d"], -1, false),
    ]);
    let (records, next) = select(data, 1, vec![]);
    assert_eq!(values(&records), ["b", "c", "d"]);
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [1, 2, 3]);
    assert_eq!(next, 4);
}

#[test]
fn control_batches_are_never_returned_but_move_the_position() {
    let data = concat(&[batch(0, &["a", "b"], 7, true), marker(2, 7, true)]);
    let (records, next) = select(data, 0, vec![]);
    assert_eq!(values(&records), ["a", "b"]);
    assert_eq!(next, 3, "past the marker");
}

fn aborted(producer: i64, first_offset: i64) -> AbortedTransaction {
    let mut a = AbortedTransaction::default();
    a.producer_id = ProducerId(producer);
    a.first_offset = first_offset;
    a
}

#[test]
fn read_committed_drops_aborted_transactions_only() {
    // Producer 7 aborts its first transaction and commits its second; producer 8 writes
    // without transactions in between.
    let data = concat(&[
        batch(0, &["aborted-1", "aborted-2"], 7, true),
        batch(2, &["plain"], 8, false),
        marker(3, 7, false),
        batch(4, &["committed"], 7, true),
        marker(5, 7, true),
    ]);
    let (records, next) = select(data.clone(), 0, vec![aborted(7, 0)]);
    assert_eq!(values(&records), ["plain", "committed"]);
    assert_eq!(next, 6);
    // read_uncommitted (no aborted list) returns everything but the markers.
    let (records, _) = select(data, 0, vec![]);
    assert_eq!(
        values(&records),
        ["aborted-1", "aborted-2", "plain", "committed"]
    );
}

#[test]
fn an_abort_reported_later_in_the_log_does_not_drop_earlier_batches() {
    let data = concat(&[
        batch(0, &["committed"], 7, true),
        marker(1, 7, true),
        batch(2, &["aborted"], 7, true),
        marker(3, 7, false),
    ]);
    let (records, _) = select(data, 0, vec![aborted(7, 2)]);
    assert_eq!(values(&records), ["committed"]);
}

#[test]
fn an_answer_that_starts_after_the_position_is_fetched_again_up_to_gap_retries() {
    // Asked for offset 3; the answer starts at 5 (tansu, while 3 and 4 are not readable).
    let answer = || {
        let data = concat(&[batch(5, &["f", "g"], -1, false)]);
        let (records, next_offset, first_batch_offset) =
            records_from(data, 3, vec![], 1 << 20).unwrap();
        FetchedPartition {
            records,
            next_offset,
            high_watermark: 7,
            last_stable_offset: -1,
            log_start_offset: 0,
            first_batch_offset,
        }
    };
    let options = FetchOptions {
        gap_retries: 2,
        ..FetchOptions::default()
    };
    let mut tries = 0;
    for _ in 0..2 {
        let mut f = answer();
        assert_eq!(keep_new(3, &mut f, &mut tries, &options), 3, "asked again");
        assert!(f.records.is_empty());
    }
    let mut f = answer();
    assert_eq!(
        keep_new(3, &mut f, &mut tries, &options),
        7,
        "taken after 2 tries"
    );
    assert_eq!(values(&f.records), ["f", "g"]);
    assert_eq!(tries, 0);
    // The default takes a gap at once (compacted topics have real ones).
    let mut f = answer();
    assert_eq!(keep_new(3, &mut f, &mut 0, &FetchOptions::default()), 7);
    // A gap before the end of the log is Kafka's compaction: taken at once.
    let mut f = answer();
    f.high_watermark = 100;
    assert_eq!(keep_new(3, &mut f, &mut tries, &options), 7);
    // An answer from the position on is no gap.
    let data = concat(&[batch(3, &["d", "e"], -1, false)]);
    let (records, next_offset, first_batch_offset) =
        records_from(data, 3, vec![], 1 << 20).unwrap();
    let mut f = FetchedPartition {
        records,
        next_offset,
        high_watermark: 5,
        last_stable_offset: -1,
        log_start_offset: 0,
        first_batch_offset,
    };
    assert_eq!(keep_new(3, &mut f, &mut tries, &options), 5);
}
