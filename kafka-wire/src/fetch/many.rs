//! Fetching several partitions of one topic at once: one Fetch request per leader, so a
//! reader of a whole topic costs one round trip (and one `max_wait` at most) per poll rather
//! than one per partition, and a partition with nothing new does not hold up the others
//! behind it on the connection.

use std::sync::Arc;

use crate::client::{Client, OffsetSpec};
use crate::error::{check, Context, Error, KafkaCode, Result};
use crate::record::Record;

use super::{fetch_request, keep_new, reset_position, FetchOptions, FetchedPartition, OffsetReset};

impl Client {
    /// Fetches `topic` at each `(partition, offset)`, with one Fetch request per leader; the
    /// broker answers once the partitions together have `min_bytes`, or after `max_wait`.
    /// One result per entry, in its order: a partition's own error does not fail the
    /// others.
    pub async fn fetch_many(
        &self,
        topic: &str,
        at: &[(i32, i64)],
        options: &FetchOptions,
    ) -> Result<Vec<Result<FetchedPartition>>> {
        // Entries grouped by their leader's connection.
        let mut groups: Vec<(crate::Connection, Vec<usize>)> = Vec::new();
        for (i, &(partition, _)) in at.iter().enumerate() {
            let conn = self.leader(topic, partition).await?;
            match groups.iter_mut().find(|(c, _)| c.broker() == conn.broker()) {
                Some((_, entries)) => entries.push(i),
                None => groups.push((conn, vec![i])),
            }
        }
        let mut out: Vec<Option<Result<FetchedPartition>>> = (0..at.len()).map(|_| None).collect();
        let requests = groups.iter().map(|(conn, entries)| {
            let wanted: Vec<(i32, i64)> = entries.iter().map(|&i| at[i]).collect();
            let request = fetch_request(topic, &wanted, options);
            async move { (conn, entries, conn.request(&request).await) }
        });
        for (conn, entries, response) in futures::future::join_all(requests).await {
            let ctx = || Context::broker(conn.broker()).with_topic(topic);
            let response = response.inspect_err(|e| {
                if e.invalidates_metadata() {
                    self.invalidate(topic);
                }
            })?;
            check(response.error_code, None, ctx)?;
            let mut partitions: Vec<_> = response
                .responses
                .into_iter()
                .filter(|t| t.topic.0.as_str() == topic)
                .flat_map(|t| t.partitions.into_iter())
                .collect();
            for &i in entries {
                let (partition, offset) = at[i];
                let ctx = || Context::broker(conn.broker()).with_partition(topic, partition);
                let result = match partitions
                    .iter()
                    .position(|p| p.partition_index == partition)
                {
                    Some(found) => {
                        let data = partitions.swap_remove(found);
                        self.fetched(topic, data, offset, options, ctx)
                    }
                    None => Err(Error::protocol(
                        "the Fetch response does not mention our partition",
                        ctx(),
                    )),
                };
                out[i] = Some(result);
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.expect("every entry is in one group"))
            .collect())
    }
}

/// Reads every partition of one topic from a position each, with one request per leader per
/// poll ([`Client::fetch_many`]); handles OFFSET_OUT_OF_RANGE by `reset`, like
/// [`PartitionReader`](super::PartitionReader).
#[derive(Debug)]
pub struct TopicReader {
    client: Client,
    topic: Arc<str>,
    /// `(partition, next offset)`, one per partition read.
    positions: Vec<(i32, i64)>,
    /// Per partition, answers in a row that started after its position
    /// (`FetchOptions::gap_retries`).
    gap_tries: Vec<u32>,
    options: FetchOptions,
    reset: OffsetReset,
}

impl TopicReader {
    /// A reader of `topic` at the given `(partition, offset)` positions.
    pub fn at(
        client: Client,
        topic: &str,
        positions: Vec<(i32, i64)>,
        options: FetchOptions,
        reset: OffsetReset,
    ) -> Self {
        TopicReader {
            client,
            topic: Arc::from(topic),
            gap_tries: vec![0; positions.len()],
            positions,
            options,
            reset,
        }
    }

    /// Every partition of `topic`, each from `start` (resolved with ListOffsets now).
    pub async fn new(
        client: Client,
        topic: &str,
        start: OffsetSpec,
        options: FetchOptions,
        reset: OffsetReset,
    ) -> Result<Self> {
        let partitions = client.topic(topic).await?.partitions.len() as i32;
        let mut positions = Vec::with_capacity(partitions as usize);
        for partition in 0..partitions {
            positions.push((
                partition,
                client.list_offset(topic, partition, start).await?,
            ));
        }
        Ok(Self::at(client, topic, positions, options, reset))
    }

    /// The topic it reads.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// `(partition, offset of the next record to read)`, per partition.
    pub fn positions(&self) -> &[(i32, i64)] {
        &self.positions
    }

    /// One fetch of every partition: the new records of each partition that had any, in
    /// offset order per partition. A partition whose fetch failed with a retriable error
    /// is skipped this time (its error is logged); any other error is returned.
    pub async fn poll(&mut self) -> Result<Vec<(i32, Vec<Record>)>> {
        let results = self
            .client
            .fetch_many(&self.topic, &self.positions, &self.options)
            .await?;
        let mut out = Vec::new();
        let slots = self.positions.iter_mut().zip(self.gap_tries.iter_mut());
        for ((slot, gap_tries), result) in slots.zip(results) {
            let (partition, position) = *slot;
            match result {
                Ok(mut fetched) => {
                    slot.1 = keep_new(position, &mut fetched, gap_tries, &self.options);
                    if !fetched.records.is_empty() {
                        out.push((partition, fetched.records));
                    }
                }
                Err(e) if e.kafka_code() == Some(KafkaCode::OffsetOutOfRange) => {
                    slot.1 = reset_position(
                        &self.client,
                        &self.topic,
                        (partition, position),
                        self.reset,
                        e,
                    )
                    .await?;
                }
                Err(e) if e.is_retriable() => {
                    tracing::debug!(topic = %self.topic, partition, error = %e, "fetch failed; retrying");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}
