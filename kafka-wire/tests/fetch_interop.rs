//! kafka-wire's fetch reads what an independent producer (confluent-kafka, i.e. librdkafka)
//! wrote, with every compression.
//!
//! Two fetch behaviours cannot be shown against tansu 0.6.0 and are unit-tested instead
//! (src/fetch/tests.rs): a fetch from the middle of a batch (tansu returns only batches
//! that start at or after the fetch offset) and OFFSET_OUT_OF_RANGE (tansu answers a fetch
//! past the end with no records and no error). See docs/kafka-wire.md.

mod common;

use std::time::Duration;

use common::{assert_exactly, expected, on_shard};
use kafka_wire::fetch::OffsetReset;
use kafka_wire::{Error, FetchOptions, PartitionReader};
use sluice_tests::{Broker, ConsumedRecord, ProduceRecord};

const RECORDS: usize = 5_000;

fn read_partition(
    bootstrap: String,
    topic: String,
    start: i64,
    reset: OffsetReset,
) -> Result<Vec<ConsumedRecord>, Error> {
    on_shard(move || async move {
        let client = common::client(&bootstrap).await;
        let options = FetchOptions {
            max_wait: Duration::from_millis(100),
            ..FetchOptions::default()
        };
        let mut reader = PartitionReader::at(client, &topic, 0, start, options, reset);
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "no progress past {}",
                reader.position()
            );
            let fetched = reader.poll().await?;
            out.extend(fetched.records.into_iter().map(|r| common::consumed(0, r)));
            if reader.position() >= fetched.high_watermark {
                return Ok(out);
            }
        }
    })
}

fn librdkafka_batches_decode(codec: Option<&str>) {
    let broker = Broker::start().expect("broker starts");
    let name = codec.unwrap_or("none");
    let topic = format!("from-librdkafka-{name}");
    let tag = format!("rd-{name}");
    let mut kafka = broker.kafka().timeout(Duration::from_secs(120));
    if let Some(c) = codec {
        kafka = kafka.compression(c);
    }
    kafka.create_topic(&topic, 1, &[]).unwrap();
    let records: Vec<ProduceRecord> = (0..RECORDS)
        .map(|i| {
            let e = expected(&tag, i);
            let mut r = ProduceRecord::value(e.value.clone().unwrap_or_default()).key(&e.key);
            r.value = e.value.clone();
            for (k, v) in &e.headers {
                r = r.header(k, v.as_deref());
            }
            r.partition(0)
        })
        .collect();
    let delivered = kafka
        .produce(&topic, &records)
        .expect("librdkafka produces");
    assert_eq!(delivered.len(), RECORDS);
    let got = read_partition(broker.bootstrap(), topic, 0, OffsetReset::Fail).expect("fetch");
    assert_exactly(&tag, RECORDS, &got);
    let offsets: Vec<i64> = got.iter().map(|r| r.offset).collect();
    assert!(
        offsets.windows(2).all(|w| w[1] == w[0] + 1),
        "offsets dense and ordered"
    );
}

#[test]
fn reads_uncompressed_batches_from_librdkafka() {
    librdkafka_batches_decode(None);
}

#[test]
fn reads_gzip_batches_from_librdkafka() {
    librdkafka_batches_decode(Some("gzip"));
}

#[test]
fn reads_snappy_batches_from_librdkafka() {
    librdkafka_batches_decode(Some("snappy"));
}

#[test]
fn reads_lz4_batches_from_librdkafka() {
    librdkafka_batches_decode(Some("lz4"));
}

#[test]
fn reads_zstd_batches_from_librdkafka() {
    librdkafka_batches_decode(Some("zstd"));
}
