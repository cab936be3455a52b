//! The consumer protocol's embedded messages and its assignors, sans-IO.
//!
//! A classic consumer group's JoinGroup carries each member's subscription and SyncGroup
//! the leader's assignments, both as opaque bytes that the members agree on: Kafka's
//! "consumer" protocol type, `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment`
//! each behind an `i16` version, as the Java consumer and librdkafka write them. Speaking
//! that (and naming the assignors as they do) is what lets a sluice process and any other
//! Kafka consumer share one group.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// The version we write both messages at: v0 (topics and user data) is what every consumer
/// reads; readers of later versions accept it.
const WRITE_VERSION: i16 = 0;
/// The highest version of either message `kafka-protocol` knows: later versions only append
/// fields, so they are read as this one.
const READ_VERSION_MAX: i16 = 3;

/// Why the bytes of a member's subscription or assignment could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed consumer protocol {what}: {detail}")]
pub struct ProtocolBytesError {
    what: &'static str,
    detail: String,
}

/// A member's subscription: the topics it wants, for JoinGroup's protocol metadata.
pub fn subscription_bytes(topics: &[String]) -> Bytes {
    let mut s = ConsumerProtocolSubscription::default();
    s.topics = topics
        .iter()
        .map(|t| StrBytes::from_string(t.clone()))
        .collect();
    versioned(&s)
}

/// The topics of a member's subscription, from JoinGroup's member metadata.
pub fn parse_subscription(bytes: &Bytes) -> Result<Vec<String>, ProtocolBytesError> {
    let s: ConsumerProtocolSubscription = unversioned(bytes, "subscription")?;
    Ok(s.topics.iter().map(|t| t.to_string()).collect())
}

/// A member's assignment (topic → partitions), for SyncGroup.
pub fn assignment_bytes(assignment: &BTreeMap<String, Vec<i32>>) -> Bytes {
    let mut a = ConsumerProtocolAssignment::default();
    a.assigned_partitions = assignment
        .iter()
        .map(|(topic, partitions)| {
            let mut tp = TopicPartition::default();
            tp.topic = TopicName(StrBytes::from_string(topic.clone()));
            tp.partitions = partitions.clone();
            tp
        })
        .collect();
    versioned(&a)
}

/// A member's assignment from SyncGroup's answer. Empty bytes (a member the leader gave
/// nothing, as some leaders write it) is an empty assignment.
pub fn parse_assignment(bytes: &Bytes) -> Result<BTreeMap<String, Vec<i32>>, ProtocolBytesError> {
    if bytes.is_empty() {
        return Ok(BTreeMap::new());
    }
    let a: ConsumerProtocolAssignment = unversioned(bytes, "assignment")?;
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for tp in a.assigned_partitions {
        out.entry(tp.topic.0.to_string())
            .or_default()
            .extend(tp.partitions);
    }
    Ok(out)
}

fn versioned<M: Encodable>(message: &M) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(WRITE_VERSION);
    message
        .encode(&mut buf, WRITE_VERSION)
        .expect("v0 consumer protocol messages have no version-dependent fields");
    buf.freeze()
}

fn unversioned<M: Decodable>(bytes: &Bytes, what: &'static str) -> Result<M, ProtocolBytesError> {
    let err = |detail: String| ProtocolBytesError { what, detail };
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return Err(err("shorter than its version".into()));
    }
    let version = buf.get_i16();
    if version < 0 {
        return Err(err(format!("negative version {version}")));
    }
    M::decode(&mut buf, version.min(READ_VERSION_MAX)).map_err(|e| err(e.to_string()))
}

/// How the group leader splits partitions among the members, by the names the Java
/// consumer and librdkafka use for the same algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Per topic, consecutive ranges of partitions, the first members one more when the
    /// count does not divide (`range`, Java's `RangeAssignor`).
    Range,
    /// Every topic-partition dealt in turn to the members subscribed to its topic
    /// (`roundrobin`, Java's `RoundRobinAssignor`).
    RoundRobin,
}

impl Assignor {
    /// Every assignor, in our order of preference (offered in this order in JoinGroup).
    pub const ALL: [Assignor; 2] = [Assignor::Range, Assignor::RoundRobin];

    /// The protocol name in JoinGroup.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
        }
    }

    /// The assignor called `name`, if we implement it.
    pub fn from_name(name: &str) -> Option<Assignor> {
        Assignor::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Assigns the partitions of every subscribed topic: `members` are member ids with
    /// their topics, `partitions` the partition count of each topic. Every member gets an
    /// entry (possibly empty); members are ordered by id, as the Java assignors do, so
    /// every leader computes the same split.
    pub fn assign(
        self,
        members: &[(String, Vec<String>)],
        partitions: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
        let mut out: BTreeMap<String, BTreeMap<String, Vec<i32>>> = members
            .iter()
            .map(|(m, _)| (m.clone(), BTreeMap::new()))
            .collect();
        let subscribers = |topic: &str| -> Vec<&String> {
            let mut s: Vec<&String> = members
                .iter()
                .filter(|(_, topics)| topics.iter().any(|t| t == topic))
                .map(|(m, _)| m)
                .collect();
            s.sort();
            s.dedup();
            s
        };
        match self {
            Assignor::Range => {
                for (topic, &count) in partitions {
                    let subs = subscribers(topic);
                    if subs.is_empty() || count <= 0 {
                        continue;
                    }
                    let n = subs.len() as i32;
                    let (per, extra) = (count / n, count % n);
                    for (i, member) in subs.into_iter().enumerate() {
                        let i = i as i32;
                        let start = per * i + i.min(extra);
                        let len = per + i32::from(i < extra);
                        if len > 0 {
                            out.entry(member.clone())
                                .or_default()
                                .insert(topic.clone(), (start..start + len).collect());
                        }
                    }
                }
            }
            Assignor::RoundRobin => {
                let mut all: Vec<&String> = members.iter().map(|(m, _)| m).collect();
                all.sort();
                all.dedup();
                let mut next = 0usize;
                for (topic, &count) in partitions {
                    for p in 0..count.max(0) {
                        // The next member in the circle that subscribes to this topic.
                        let Some(k) = (0..all.len()).map(|k| (next + k) % all.len()).find(|&k| {
                            members
                                .iter()
                                .any(|(m, t)| m == all[k] && t.contains(topic))
                        }) else {
                            break;
                        };
                        out.entry(all[k].clone())
                            .or_default()
                            .entry(topic.clone())
                            .or_default()
                            .push(p);
                        next = k + 1;
                    }
                }
            }
        }
        out
    }
}
