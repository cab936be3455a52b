//! Choosing a partition for a record the way the Java client does, so that keyed records from
//! sluice land on the same partitions as those from Java, librdkafka (`murmur2_random`) or
//! franz-go producers.
//!
//! - Keyed records: [`partition_for_key`], Kafka's `murmur2` hash of the key bytes.
//! - Keyless records: [`StickyPartitioner`] (KIP-480), which fills one batch per partition before
//!   moving on, instead of scattering tiny batches over every partition.
//! - [`TopicPartitioner`] combines both with explicit and round-robin choices.
//!
//! State is per topic: create one [`StickyPartitioner`] / [`TopicPartitioner`] per topic the
//! producer writes to (the producer already keeps per-topic state, so a map here would only
//! duplicate its lookup). What this module does not do: look at broker availability (the Java
//! client's "available partitions" refinement and KIP-794's adaptive, load-aware choice), or hold
//! metadata; callers pass the current partition count.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[cfg(test)]
mod tests;

/// Kafka's `Utils.murmur2`: 32-bit MurmurHash2 with seed `0x9747b28c`, returned as Java's `int`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java computes in wrapping `int`; u32 wrapping arithmetic gives the same bits, and `>>>`
    // (unsigned shift) is a plain shift on u32. Java's `seed ^ length` truncates the length to
    // `int`, hence the `as u32`.
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    // Java's switch falls through from case 3 to case 1, and only case 1 multiplies, so any
    // non-empty tail is xored in byte by byte and then multiplied once.
    let tail = chunks.remainder();
    if tail.len() == 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The Java client's key partitioning: `toPositive(murmur2(key)) % partitions`.
///
/// Metadata with zero partitions (a topic error) yields partition 0 rather than a panic; the
/// broker then answers with its own error for that partition.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    if partitions == 0 {
        return 0;
    }
    // toPositive masks the sign bit (it is not abs), which is what keeps the mapping identical.
    (murmur2(key) & 0x7fff_ffff) as u32 % partitions
}

/// Sticky partitioning for keyless records of one topic (KIP-480).
///
/// [`partition`](Self::partition) keeps returning the same partition until the producer reports,
/// through [`on_new_batch`](Self::on_new_batch), that the batch for it was completed; the next
/// partition is then chosen at random among the others.
#[derive(Debug)]
pub struct StickyPartitioner {
    current: Option<u32>,
    rng: StdRng,
}

impl Default for StickyPartitioner {
    fn default() -> Self {
        Self::new()
    }
}

impl StickyPartitioner {
    pub fn new() -> Self {
        StickyPartitioner {
            current: None,
            rng: StdRng::from_entropy(),
        }
    }

    /// A partitioner whose random choices are reproducible, for tests and simulations.
    pub fn with_seed(seed: u64) -> Self {
        StickyPartitioner {
            current: None,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The partition for the next keyless record. Picks one at random the first time, and again
    /// if the partition count shrank below the sticky choice (stale metadata). Zero partitions
    /// yield 0, as in [`partition_for_key`].
    pub fn partition(&mut self, topic_partitions: u32) -> u32 {
        if topic_partitions == 0 {
            return 0;
        }
        match self.current {
            Some(p) if p < topic_partitions => p,
            _ => {
                let p = self.rng.gen_range(0..topic_partitions);
                self.current = Some(p);
                p
            }
        }
    }

    /// Tells the partitioner that the batch for `previous` is complete, so keyless records should
    /// move on. Like Java's `StickyPartitionCache.nextPartition`, a report about a partition that
    /// is no longer the sticky one is ignored, so two batches completing back to back move the
    /// choice only once.
    pub fn on_new_batch(&mut self, partitions: u32, previous: u32) {
        if self.current.is_some_and(|p| p != previous) {
            return;
        }
        self.current = match partitions {
            0 => None,
            1 => Some(0),
            _ => {
                // Draw among the other partitions directly instead of Java's retry loop: same
                // distribution, bounded time.
                let mut p = self.rng.gen_range(0..partitions - 1);
                if p >= previous {
                    p += 1;
                }
                Some(p)
            }
        };
    }

    /// The current sticky partition, if one was chosen.
    pub fn current(&self) -> Option<u32> {
        self.current
    }
}

/// How to place one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Partitioning {
    /// The Java default: murmur2 of the key, or sticky when the record has no key.
    Key,
    /// Sticky even for keyed records (keys do not decide placement).
    Sticky,
    /// This partition, whatever the key.
    Explicit(u32),
    /// Cycle through the partitions record by record, like Java's `RoundRobinPartitioner`.
    RoundRobin,
}

/// Per-topic partitioning state: sticky choice and round-robin counter.
#[derive(Debug, Default)]
pub struct TopicPartitioner {
    sticky: StickyPartitioner,
    next_round_robin: u32,
}

impl TopicPartitioner {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_seed(seed: u64) -> Self {
        TopicPartitioner {
            sticky: StickyPartitioner::with_seed(seed),
            next_round_robin: 0,
        }
    }

    /// The partition for one record. `Explicit` is returned as given, even when out of range, so
    /// that the broker reports the mistake instead of the record silently moving elsewhere.
    pub fn partition(&mut self, how: Partitioning, key: Option<&[u8]>, partitions: u32) -> u32 {
        match (how, key) {
            (Partitioning::Explicit(p), _) => p,
            (Partitioning::Key, Some(key)) => partition_for_key(key, partitions),
            (Partitioning::Key, None) | (Partitioning::Sticky, _) => {
                self.sticky.partition(partitions)
            }
            (Partitioning::RoundRobin, _) => {
                let n = self.next_round_robin;
                self.next_round_robin = n.wrapping_add(1);
                n.checked_rem(partitions).unwrap_or(0)
            }
        }
    }

    /// Forwards to [`StickyPartitioner::on_new_batch`].
    pub fn on_new_batch(&mut self, partitions: u32, previous: u32) {
        self.sticky.on_new_batch(partitions, previous);
    }
}
