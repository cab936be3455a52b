//! kafka-wire produces 100k records with keys, headers and each compression to a real
//! broker; an independent client (confluent-kafka, and kafka-python for one codec) reads
//! them back and every key, value, header and the count are compared; then kafka-wire's own
//! fetch reads the same records and they are compared again, along with the offsets the
//! delivery reports gave.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::{assert_exactly, expected, on_shard};
use kafka_wire::fetch::OffsetReset;
use kafka_wire::record::Compression;
use kafka_wire::{Acks, FetchOptions, OffsetSpec, PartitionReader, Producer, ProducerConfig};
use sluice_tests::{Broker, ClientLib, ConsumedRecord};

const RECORDS: usize = 100_000;
const PARTITIONS: i32 = 3;

/// Produces `count` records tagged `tag`; returns each record's (partition, offset) by index.
fn produce(
    bootstrap: String,
    topic: String,
    tag: String,
    count: usize,
    config: ProducerConfig,
) -> Vec<(i32, i64)> {
    on_shard(move || async move {
        let client = common::client(&bootstrap).await;
        let producer = Producer::new(client, config)
            .await
            .expect("producer starts");
        let mut pending = Vec::with_capacity(count);
        for i in 0..count {
            let e = expected(&tag, i);
            let headers = e.header_refs();
            let record = e.record(&topic, &headers);
            pending.push(producer.send(record).await.expect("send accepted"));
        }
        let mut placed = Vec::with_capacity(count);
        for (i, delivery) in pending.into_iter().enumerate() {
            let m = delivery
                .await
                .unwrap_or_else(|e| panic!("record {i} not delivered: {e}"));
            placed.push((m.partition, m.offset));
        }
        producer.close(Duration::from_secs(10)).await;
        placed
    })
}

/// Reads every partition from the start with kafka-wire's fetch until `count` records came
/// and every partition reached its high watermark.
fn fetch_all(bootstrap: String, topic: String, count: usize) -> Vec<ConsumedRecord> {
    on_shard(move || async move {
        let client = common::client(&bootstrap).await;
        let mut out = Vec::with_capacity(count);
        for p in 0..PARTITIONS {
            let mut reader = PartitionReader::new(
                client.clone(),
                &topic,
                p,
                OffsetSpec::Earliest,
                FetchOptions {
                    max_wait: Duration::from_millis(100),
                    ..FetchOptions::default()
                },
                OffsetReset::Fail,
            )
            .await
            .expect("reader starts");
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            loop {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no progress past {}",
                    reader.position()
                );
                let fetched = reader.poll().await.expect("fetch succeeds");
                for r in fetched.records {
                    out.push(common::consumed(p, r));
                }
                if reader.position() >= fetched.high_watermark {
                    break;
                }
            }
        }
        out
    })
}

fn round_trip(compression: Compression, checker: ClientLib) {
    let broker = Broker::start().expect("broker starts");
    let tag = format!("c-{compression}");
    let topic = format!("roundtrip-{compression}");
    let kafka = broker
        .kafka()
        .using(checker)
        .timeout(Duration::from_secs(120));
    kafka
        .create_topic(&topic, PARTITIONS, &[])
        .expect("topic created");

    let config = ProducerConfig {
        compression,
        acks: Acks::All,
        linger: Duration::from_millis(5),
        batch_size: 256 * 1024,
        ..ProducerConfig::default()
    };
    let placed = produce(
        broker.bootstrap(),
        topic.clone(),
        tag.clone(),
        RECORDS,
        config,
    );

    // Delivery reports: each (partition, offset) once, offsets dense per partition.
    let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for &(p, o) in &placed {
        per_partition.entry(p).or_default().push(o);
    }
    for (p, offsets) in &mut per_partition {
        offsets.sort_unstable();
        let want: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(*offsets, want, "offsets reported for partition {p}");
    }
    assert!(per_partition.len() > 1, "keys spread over partitions");

    let consumed = kafka
        .consume_all(&topic, RECORDS, Duration::from_secs(180))
        .expect("independent consumer reads the topic");
    assert_exactly(&tag, RECORDS, &consumed);
    // The independent client saw each record where our delivery report said it was.
    let by_key: HashMap<&[u8], (i32, i64)> = consumed
        .iter()
        .map(|r| (r.key.as_deref().unwrap(), (r.partition, r.offset)))
        .collect();
    for (i, &(p, o)) in placed.iter().enumerate() {
        let key = expected(&tag, i).key;
        assert_eq!(by_key[&key[..]], (p, o), "placement of record {i}");
    }
    // Keys were partitioned as the Java client would.
    for r in consumed.iter().take(1000) {
        let want = kafka_wire::partitioner::partition_for_key(
            r.key.as_deref().unwrap(),
            PARTITIONS as u32,
        );
        assert_eq!(r.partition as u32, want, "murmur2 partition of {:?}", r.key);
    }

    let fetched = fetch_all(broker.bootstrap(), topic, RECORDS);
    assert_exactly(&tag, RECORDS, &fetched);
}

#[test]
fn uncompressed_records_round_trip() {
    round_trip(Compression::None, ClientLib::ConfluentKafka);
}

#[test]
fn gzip_records_round_trip() {
    round_trip(Compression::Gzip, ClientLib::ConfluentKafka);
}

#[test]
fn snappy_records_round_trip() {
    round_trip(Compression::Snappy, ClientLib::ConfluentKafka);
}

#[test]
fn lz4_records_round_trip() {
    round_trip(Compression::Lz4, ClientLib::ConfluentKafka);
}

#[test]
fn zstd_records_round_trip() {
    round_trip(Compression::Zstd, ClientLib::ConfluentKafka);
}

#[test]
fn kafka_python_reads_what_we_wrote() {
    round_trip(Compression::Lz4, ClientLib::KafkaPython);
}

/// acks=1 and acks=0 (without idempotence): every record arrives; with acks=0 the
/// delivery reports carry no offset, since the broker sends no response.
#[test]
fn leader_acks_and_no_acks_deliver_everything() {
    let broker = Broker::start().expect("broker starts");
    let kafka = broker.kafka().timeout(Duration::from_secs(60));
    for (acks, topic) in [(Acks::Leader, "acks-leader"), (Acks::None, "acks-none")] {
        kafka
            .create_topic(topic, PARTITIONS, &[])
            .expect("topic created");
        let config = ProducerConfig {
            acks,
            idempotent: false,
            ..ProducerConfig::default()
        };
        let placed = produce(
            broker.bootstrap(),
            topic.to_owned(),
            topic.to_owned(),
            5_000,
            config,
        );
        if acks == Acks::None {
            assert!(
                placed.iter().all(|&(_, o)| o == -1),
                "acks=0 reports no offsets"
            );
        } else {
            assert!(placed.iter().all(|&(_, o)| o >= 0));
        }
        let consumed = kafka
            .consume_all(topic, 5_000, Duration::from_secs(60))
            .expect("independent consumer reads the topic");
        assert_exactly(topic, 5_000, &consumed);
    }
}
