use super::*;

/// `UtilsTest.testMurmur2` in Apache Kafka, plus values for the remaining tail lengths checked
/// against the reference below.
#[test]
fn murmur2_matches_kafka_vectors() {
    for (key, expected) in [
        (&b"21"[..], -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        (b"abc", 479_470_107),
    ] {
        assert_eq!(murmur2(key), expected, "{:?}", String::from_utf8_lossy(key));
    }
}

/// A line-by-line transcription of the Java method, signed `i32` arithmetic and `>>>` included,
/// kept separate from the implementation so the tail handling is checked against the switch.
fn java_murmur2(data: &[u8]) -> i32 {
    let length = data.len() as i32;
    let seed = 0x9747_b28c_u32 as i32;
    let m: i32 = 0x5bd1_e995;
    let r = 24;
    let mut h = seed ^ length;
    let length4 = length / 4;
    let b = |i: i32| i32::from(data[i as usize]) & 0xff;
    for i in 0..length4 {
        let i4 = i * 4;
        let mut k = b(i4)
            .wrapping_add(b(i4 + 1) << 8)
            .wrapping_add(b(i4 + 2) << 16)
            .wrapping_add(b(i4 + 3) << 24);
        k = k.wrapping_mul(m);
        k ^= ((k as u32) >> r) as i32;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    let rem = length % 4;
    let base = length & !3;
    if rem >= 3 {
        h ^= b(base + 2) << 16;
    }
    if rem >= 2 {
        h ^= b(base + 1) << 8;
    }
    if rem >= 1 {
        h ^= b(base);
        h = h.wrapping_mul(m);
    }
    h ^= ((h as u32) >> 13) as i32;
    h = h.wrapping_mul(m);
    h ^= ((h as u32) >> 15) as i32;
    h
}

#[test]
fn murmur2_empty_and_every_tail_length() {
    // Derived from the Java algorithm (no Kafka test pins it): seed ^ 0, then the finaliser.
    assert_eq!(murmur2(b""), 275_646_681);
    assert_eq!(java_murmur2(b""), 275_646_681);
    let data: Vec<u8> = (0..=255u8).rev().chain(0..=255).collect();
    for len in 0..data.len() {
        assert_eq!(
            murmur2(&data[..len]),
            java_murmur2(&data[..len]),
            "len {len}"
        );
    }
}

#[test]
fn partition_for_key_uses_to_positive_not_abs() {
    // murmur2("21") is negative: Java masks the sign bit (abs would give 973932308 % 7 = 4).
    let h = murmur2(b"21");
    assert!(h < 0);
    let expected = (h & 0x7fff_ffff) as u32 % 7;
    assert_eq!(partition_for_key(b"21", 7), expected);
    assert_eq!(expected, 1_173_551_340 % 7);
    assert_eq!(partition_for_key(b"foobar", 1), 0);
    assert_eq!(partition_for_key(b"anything", 0), 0);
}

#[test]
fn partition_for_key_is_in_range_and_stable() {
    for partitions in [1, 2, 3, 7, 12, 64, 1000] {
        for i in 0..500 {
            let key = format!("user-{i}");
            let p = partition_for_key(key.as_bytes(), partitions);
            assert!(p < partitions);
            assert_eq!(p, partition_for_key(key.as_bytes(), partitions));
        }
    }
}

#[test]
fn key_distribution_is_roughly_uniform() {
    const PARTITIONS: u32 = 12;
    const KEYS: usize = 120_000;
    let mut counts = [0usize; PARTITIONS as usize];
    for i in 0..KEYS {
        counts[partition_for_key(format!("order-{i}").as_bytes(), PARTITIONS) as usize] += 1;
    }
    let expected = KEYS / PARTITIONS as usize;
    for (p, &count) in counts.iter().enumerate() {
        // ±5% of 10_000 is about 5 standard deviations.
        assert!(
            count.abs_diff(expected) < expected / 20,
            "partition {p} got {count} of {KEYS}: {counts:?}"
        );
    }
}

#[test]
fn sticky_stays_until_a_new_batch() {
    let mut sticky = StickyPartitioner::with_seed(7);
    assert_eq!(sticky.current(), None);
    let first = sticky.partition(10);
    assert!(first < 10);
    for _ in 0..100 {
        assert_eq!(sticky.partition(10), first);
    }
    sticky.on_new_batch(10, first);
    let second = sticky.partition(10);
    assert_ne!(second, first);
    assert!(second < 10);
    for _ in 0..100 {
        assert_eq!(sticky.partition(10), second);
    }
}

#[test]
fn sticky_ignores_reports_for_other_partitions() {
    let mut sticky = StickyPartitioner::with_seed(1);
    let current = sticky.partition(8);
    // A batch for a partition we are no longer sticking to completed late: nothing moves.
    sticky.on_new_batch(8, (current + 1) % 8);
    assert_eq!(sticky.partition(8), current);
}

#[test]
fn sticky_always_changes_partition_when_it_can() {
    let mut sticky = StickyPartitioner::with_seed(42);
    let mut previous = sticky.partition(2);
    for _ in 0..200 {
        sticky.on_new_batch(2, previous);
        let next = sticky.partition(2);
        assert_ne!(next, previous);
        previous = next;
    }
}

#[test]
fn sticky_with_one_or_zero_partitions() {
    let mut sticky = StickyPartitioner::with_seed(3);
    assert_eq!(sticky.partition(1), 0);
    sticky.on_new_batch(1, 0);
    assert_eq!(sticky.partition(1), 0);
    assert_eq!(sticky.partition(0), 0);
    sticky.on_new_batch(0, 0);
    assert_eq!(sticky.current(), None);
}

#[test]
fn sticky_repicks_when_partition_count_shrinks() {
    let mut sticky = StickyPartitioner::with_seed(5);
    // Find a seed state where the choice is beyond the smaller count.
    let mut p = sticky.partition(100);
    while p < 4 {
        sticky.on_new_batch(100, p);
        p = sticky.partition(100);
    }
    let q = sticky.partition(4);
    assert!(q < 4);
    assert_eq!(sticky.partition(4), q);
}

#[test]
fn sticky_new_batches_spread_over_all_partitions() {
    const PARTITIONS: u32 = 6;
    let mut sticky = StickyPartitioner::with_seed(9);
    let mut counts = [0u32; PARTITIONS as usize];
    for _ in 0..60_000 {
        let p = sticky.partition(PARTITIONS);
        counts[p as usize] += 1;
        sticky.on_new_batch(PARTITIONS, p);
    }
    for &c in &counts {
        assert!(c.abs_diff(10_000) < 500, "{counts:?}");
    }
}

#[test]
fn unseeded_partitioners_work() {
    let mut sticky = StickyPartitioner::new();
    assert!(sticky.partition(3) < 3);
    let mut topic = TopicPartitioner::new();
    assert!(topic.partition(Partitioning::Key, None, 3) < 3);
}

#[test]
fn topic_partitioner_modes() {
    let mut t = TopicPartitioner::with_seed(11);
    assert_eq!(
        t.partition(Partitioning::Key, Some(b"foobar"), 9),
        partition_for_key(b"foobar", 9)
    );
    assert_eq!(
        t.partition(Partitioning::Explicit(4), Some(b"foobar"), 9),
        4
    );
    assert_eq!(t.partition(Partitioning::Explicit(40), None, 9), 40);

    let keyless = t.partition(Partitioning::Key, None, 9);
    assert_eq!(t.partition(Partitioning::Sticky, Some(b"k"), 9), keyless);
    t.on_new_batch(9, keyless);
    assert_ne!(t.partition(Partitioning::Key, None, 9), keyless);

    let rr: Vec<u32> = (0..7)
        .map(|_| t.partition(Partitioning::RoundRobin, Some(b"k"), 3))
        .collect();
    assert_eq!(rr, [0, 1, 2, 0, 1, 2, 0]);
    assert_eq!(t.partition(Partitioning::RoundRobin, None, 0), 0);
}
