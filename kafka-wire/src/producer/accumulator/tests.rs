use super::*;
use crate::record::decode_batches;

const LIMITS: Limits = Limits {
    batch_size: 1024,
    compression: Compression::None,
};

fn record(value: &[u8]) -> RecordRef<'_> {
    RecordRef {
        timestamp: 1_700_000_000_000,
        key: Some(b"k"),
        value: Some(value),
        headers: &[],
    }
}

struct Ids(u64);

impl Ids {
    fn source(&mut self, epoch: i16) -> SequenceSource<'_> {
        SequenceSource {
            idempotent: true,
            producer_id: 77,
            producer_epoch: epoch,
            next_batch_id: &mut self.0,
        }
    }
}

fn decoded_sequence(batch: &ReadyBatch) -> (i64, i16, i32, i32) {
    let b = decode_batches(batch.data.clone()).next().unwrap().unwrap();
    (
        b.producer_id,
        b.producer_epoch,
        b.base_sequence,
        b.record_count,
    )
}

#[test]
fn full_batches_close_and_sequences_follow_record_counts() {
    let mut q = PartitionQueue::default();
    let mut ids = Ids(0);
    let now = Instant::now();
    let value = [7u8; 200];
    let mut closed = 0;
    let mut futures = Vec::new();
    for _ in 0..12 {
        let (f, a) = q.append(0, record(&value), LIMITS, &mut ids.source(0), || now);
        closed += usize::from(a.closed);
        futures.push(f);
    }
    q.close(&mut ids.source(0));
    assert!(closed >= 2, "1 KiB batches must close under 12 × 200 B");
    let mut expected_sequence = 0;
    for b in &q.ready {
        let (pid, epoch, seq, count) = decoded_sequence(b);
        assert_eq!((pid, epoch, seq), (77, 0, expected_sequence));
        assert_eq!(b.base_sequence, seq);
        expected_sequence += count;
    }
    assert_eq!(expected_sequence, 12);
    assert_eq!(q.next_sequence, 12);
    let ids: Vec<u64> = q.ready.iter().map(|b| b.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn a_batch_starts_as_large_as_the_last_one_was() {
    let limits = Limits {
        batch_size: 1 << 20,
        ..LIMITS
    };
    let mut q = PartitionQueue::default();
    let mut ids = Ids(0);
    let now = Instant::now();
    let value = [7u8; 200];
    let fill = |q: &mut PartitionQueue, ids: &mut Ids| {
        for _ in 0..40 {
            let _ = q.append(0, record(&value), limits, &mut ids.source(0), || now);
        }
        let open = q.open.as_ref().expect("an open batch");
        (open.builder.size_bytes(), open.builder.capacity())
    };
    let (first_size, _) = fill(&mut q, &mut ids);
    q.close(&mut ids.source(0));
    let _ = q.append(0, record(&value), limits, &mut ids.source(0), || now);
    let reserved = q.open.as_ref().unwrap().builder.capacity();
    assert!(reserved >= first_size, "{reserved} < {first_size}");
    // A batch of the same size fills the reserved buffer without growing it.
    let (second_size, capacity) = fill(&mut q, &mut ids);
    assert!(second_size > first_size);
    assert_eq!(capacity, reserved);
}

#[test]
fn a_requeued_batch_goes_first_and_holds_the_partition() {
    let mut q = PartitionQueue::default();
    let mut ids = Ids(0);
    let now = Instant::now();
    for _ in 0..3 {
        let _ = q.append(0, record(b"x"), LIMITS, &mut ids.source(0), || now);
        q.close(&mut ids.source(0));
    }
    assert!(q.can_send(5, now));
    let first = q.take_next().unwrap();
    let second = q.take_next().unwrap();
    assert_eq!(q.in_flight, 2);
    // The first fails: it goes back in front of the third, and nothing is sent while the
    // second is still unanswered.
    q.in_flight -= 1;
    q.requeue(first, now);
    assert_eq!(q.ready.front().unwrap().base_sequence, 0);
    assert!(
        !q.can_send(5, now),
        "held while an earlier attempt is in flight"
    );
    q.in_flight -= 1;
    q.requeue(second, now);
    let order: Vec<i32> = q.ready.iter().map(|b| b.base_sequence).collect();
    assert_eq!(order, vec![0, 1, 2]);
    assert!(q.can_send(5, now));
    assert!(
        !q.can_send(5, now - Duration::from_millis(1)),
        "backoff respected"
    );
}

#[test]
fn old_batches_expire_but_not_young_ones() {
    let mut q = PartitionQueue::default();
    let mut ids = Ids(0);
    let start = Instant::now();
    let _ = q.append(0, record(b"old"), LIMITS, &mut ids.source(0), || start);
    q.close(&mut ids.source(0));
    let later = start + Duration::from_secs(10);
    let _ = q.append(0, record(b"young"), LIMITS, &mut ids.source(0), || later);
    q.close(&mut ids.source(0));
    let expired = q.expire(later, Duration::from_secs(5));
    assert_eq!(expired.len(), 1);
    assert_eq!(q.ready.len(), 1);
}

#[test]
fn resequencing_renumbers_from_zero_under_the_new_epoch() {
    let mut q = PartitionQueue::default();
    let mut ids = Ids(0);
    let now = Instant::now();
    for _ in 0..3 {
        let _ = q.append(0, record(b"abc"), LIMITS, &mut ids.source(0), || now);
        let _ = q.append(0, record(b"def"), LIMITS, &mut ids.source(0), || now);
        q.close(&mut ids.source(0));
    }
    let dropped = q.ready.pop_front().unwrap();
    assert_eq!(dropped.base_sequence, 0);
    q.resequence(&mut ids.source(1));
    let seqs: Vec<(i16, i32)> = q
        .ready
        .iter()
        .map(|b| {
            let (_, epoch, seq, _) = decoded_sequence(b);
            (epoch, seq)
        })
        .collect();
    assert_eq!(seqs, vec![(1, 0), (1, 2)]);
    assert_eq!(q.next_sequence, 4);
}

#[test]
fn failing_everything_completes_every_record() {
    let mut q = PartitionQueue::default();
    let mut ids = Ids(0);
    let (f1, _) = q.append(3, record(b"a"), LIMITS, &mut ids.source(0), Instant::now);
    q.close(&mut ids.source(0));
    let (f2, _) = q.append(3, record(b"b"), LIMITS, &mut ids.source(0), Instant::now);
    assert_eq!(q.fail_all(&crate::Error::Closed), 2);
    assert!(q.is_idle());
    assert!(matches!(f1.try_result(), Some(Err(crate::Error::Closed))));
    assert!(matches!(f2.try_result(), Some(Err(crate::Error::Closed))));
    assert_eq!(f1.partition(), 3);
}

#[test]
fn sequence_numbers_wrap_at_i32_max() {
    assert_eq!(next_sequence(i32::MAX - 1, 3), 1);
    assert_eq!(next_sequence(5, 10), 15);
}
