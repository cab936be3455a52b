//! Kafka topics read by the proxy itself: opening one reader per partition, and loading a
//! compacted topic (retained messages, sessions) from its beginning to its end as of now.
//! Kafka errors are retried, with a warning, until Kafka answers: these readers run for
//! the shard's whole life, and what waits on them (a SUBACK, a CONNACK) has its own
//! deadline.

use std::time::Duration;

use kafka_wire::fetch::OffsetReset;
use kafka_wire::record::Record;
use kafka_wire::{Client, FetchOptions, OffsetSpec, PartitionReader};
use tracing::warn;

use crate::runtime;

/// How long a fetch waits at the broker for records to arrive.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// Pause before retrying after a Kafka error.
const RETRY: Duration = Duration::from_secs(1);

/// One reader per partition of `topic`, starting at `start`. A reader whose position is
/// deleted (retention) moves to the log's start when it started there, else to its end.
pub async fn open(client: &Client, topic: &str, start: OffsetSpec) -> Vec<PartitionReader> {
    let options = FetchOptions {
        max_wait: MAX_WAIT,
        ..FetchOptions::default()
    };
    let reset = match start {
        OffsetSpec::Earliest => OffsetReset::Earliest,
        _ => OffsetReset::Latest,
    };
    let partitions = loop {
        match client.topic(topic).await {
            Ok(info) => break info.partitions.len() as i32,
            Err(e) => {
                warn!(%topic, error = %e, "cannot read the topic's metadata; retrying");
                runtime::sleep(RETRY).await;
            }
        }
    };
    let mut readers = Vec::with_capacity(partitions as usize);
    for partition in 0..partitions {
        let reader = loop {
            let opened = PartitionReader::new(
                client.clone(),
                topic,
                partition,
                start,
                options.clone(),
                reset,
            )
            .await;
            match opened {
                Ok(r) => break r,
                Err(e) => {
                    warn!(%topic, partition, error = %e, "cannot open a reader; retrying");
                    runtime::sleep(RETRY).await;
                }
            }
        };
        readers.push(reader);
    }
    readers
}

/// Reads `topic` from its beginning up to its end as of now, handing every record to
/// `apply` in log order per partition, and returns the readers, positioned there, for
/// tailing.
pub async fn load(
    client: &Client,
    topic: &str,
    mut apply: impl FnMut(&Record),
) -> Vec<PartitionReader> {
    let mut readers = open(client, topic, OffsetSpec::Earliest).await;
    for reader in &mut readers {
        let partition = reader.partition();
        let end = loop {
            match client
                .list_offset(topic, partition, OffsetSpec::Latest)
                .await
            {
                Ok(end) => break end,
                Err(e) => {
                    warn!(%topic, partition, error = %e, "cannot read the topic's end; retrying");
                    runtime::sleep(RETRY).await;
                }
            }
        };
        while reader.position() < end {
            match reader.poll().await {
                Ok(fetched) => fetched.records.iter().for_each(&mut apply),
                Err(e) => {
                    warn!(%topic, partition, error = %e, "cannot read the topic; retrying");
                    runtime::sleep(RETRY).await;
                }
            }
        }
    }
    readers
}
