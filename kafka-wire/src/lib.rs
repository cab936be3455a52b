//! kafka-wire: sluice's own Kafka client, on the Kafka wire protocol, for thread-per-core
//! shards. No librdkafka, no JVM.
//!
//! Request and response messages are the `kafka-protocol` crate's; the hot path (building
//! RecordBatch v2 straight into the outgoing buffer, slicing records out of fetch responses)
//! is this crate's own, cross-checked against `kafka-protocol` in tests.
//!
//! # Layout
//!
//! Sans-IO, testable without a socket:
//! - [`record`]: RecordBatch v2 building and decoding, compression, varints, CRC-32C.
//! - `protocol`: request/response framing, correlation ids, the in-flight queue, version
//!   negotiation.
//! - [`metadata`]: the cluster as last seen (brokers, topics, leaders).
//! - [`partitioner`]: Java-compatible murmur2 and sticky partitioning.
//! - [`sasl`]: SASL PLAIN and SCRAM-SHA-256/512 client exchanges.
//! - [`tls`]: rustls client configuration (CA file, mTLS, SNI).
//!
//! Driven over a shard's async runtime:
//! - `rt`: the only module that names the runtime (glommio): spawn, timers, TCP connect.
//! - [`Connection`]: one broker connection: pipelined requests, timeouts, TLS, SASL.
//! - [`Client`]: connections per broker, metadata refresh, admin requests.
//! - [`Producer`]: per-partition batching, idempotence, retries, delivery reports.
//! - [`fetch`]: reading partitions from an offset.
//! - [`group`]: classic consumer group membership (join, assign, heartbeat, commit);
//!   its assignors and embedded messages ([`group::assign`]) are sans-IO.
//!
//! Everything is shard-local (`Rc`, not `Send`): each shard has its own client, as it has
//! its own sockets.

pub mod client;
mod conn;
pub mod error;
pub mod fetch;
pub mod group;
pub mod metadata;
pub mod partitioner;
pub mod producer;
mod protocol;
mod read_buffer;
pub mod record;
mod rt;
pub mod sasl;
pub mod tls;
mod trim;

pub use client::{Client, ClientConfig, NewTopic, OffsetSpec};
pub use conn::Connection;
pub use error::{Error, KafkaCode, Result};
pub use fetch::{FetchOptions, FetchedPartition, IsolationLevel, PartitionReader, TopicReader};
pub use group::{Assignor, Generation, GroupConfig, GroupMember, Heartbeat};
pub use producer::{
    Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata,
};
