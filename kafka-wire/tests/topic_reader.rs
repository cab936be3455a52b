//! `TopicReader` (one Fetch request for every partition of a topic) against a real broker:
//! records written by an independent producer (confluent-kafka) to chosen partitions come
//! back once each, in offset order per partition, while more are written between polls.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::on_shard;
use kafka_wire::fetch::OffsetReset;
use kafka_wire::{FetchOptions, OffsetSpec, TopicReader};
use sluice_tests::{Broker, ProduceRecord};

const PARTITIONS: i32 = 3;

/// `count` records per partition, valued `{tag}-{partition}-{i}`.
fn records(tag: &str, count: usize) -> Vec<ProduceRecord> {
    (0..PARTITIONS)
        .flat_map(|p| {
            (0..count).map(move |i| {
                ProduceRecord::value(format!("{tag}-{p}-{i}"))
                    .key(format!("k{i}"))
                    .partition(p)
            })
        })
        .collect()
}

/// Polls until `want` records in all came, returning the values by partition.
async fn read(reader: &mut TopicReader, want: usize) -> BTreeMap<i32, Vec<String>> {
    let mut got: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.values().map(Vec::len).sum::<usize>() < want {
        assert!(Instant::now() < deadline, "only {got:?} within 60 s");
        for (partition, records) in reader.poll().await.expect("the fetch succeeds") {
            let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
            assert!(
                offsets.windows(2).all(|w| w[0] < w[1]),
                "offsets in order, each once: {offsets:?}"
            );
            got.entry(partition).or_default().extend(
                records
                    .iter()
                    .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap()),
            );
        }
    }
    got
}

#[test]
fn a_topic_reader_reads_every_partition_with_one_request_each_record_once() {
    let broker = Broker::start().expect("broker starts");
    let kafka = broker.kafka().timeout(Duration::from_secs(60));
    kafka
        .create_topic("whole", PARTITIONS, &[])
        .expect("topic created");
    kafka
        .produce("whole", &records("a", 40))
        .expect("confluent-kafka produces");

    let bootstrap = broker.bootstrap();
    let (first, second) = on_shard(move || async move {
        let client = common::client(&bootstrap).await;
        let options = FetchOptions {
            max_wait: Duration::from_millis(100),
            ..FetchOptions::default()
        };
        let mut reader = TopicReader::new(
            client,
            "whole",
            OffsetSpec::Earliest,
            options,
            OffsetReset::Fail,
        )
        .await
        .expect("the reader starts");
        assert_eq!(reader.positions(), [(0, 0), (1, 0), (2, 0)]);
        let first = read(&mut reader, 3 * 40).await;
        assert_eq!(reader.positions(), [(0, 40), (1, 40), (2, 40)]);
        // More arrive while it tails (written from this thread: nothing else runs on it):
        // only those come, from where it stopped.
        kafka
            .produce("whole", &records("b", 5))
            .expect("confluent-kafka produces");
        (first, read(&mut reader, 3 * 5).await)
    });
    for p in 0..PARTITIONS {
        let a: Vec<String> = (0..40).map(|i| format!("a-{p}-{i}")).collect();
        assert_eq!(first[&p], a, "partition {p}, first poll");
        let b: Vec<String> = (0..5).map(|i| format!("b-{p}-{i}")).collect();
        assert_eq!(second[&p], b, "partition {p}, after more were written");
    }
}
