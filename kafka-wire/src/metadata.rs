//! The cluster as this client last saw it: brokers, topics, partitions and their leaders.
//!
//! Sans-IO: [`Cluster::apply`] folds a Metadata response in; [`crate::Client`] decides when to
//! ask (on first use of a topic, when an error says a leader moved or a topic vanished, when
//! a connection is lost, and when the view is older than `metadata.max.age.ms`).

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::messages::MetadataResponse;

use crate::error::KafkaCode;

/// One partition's placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition number.
    pub id: i32,
    /// The leader's broker id, or -1 while there is none.
    pub leader: i32,
    /// The leader epoch, or -1 when the broker does not report it.
    pub leader_epoch: i32,
}

/// A topic and its partitions, in partition order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic name.
    pub name: Arc<str>,
    /// Partitions, indexed by partition number.
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// Number of partitions.
    pub fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }
}

#[derive(Debug, Clone)]
enum TopicState {
    Known(Rc<TopicInfo>),
    /// The broker answered for this topic with an error (usually UNKNOWN_TOPIC_OR_PARTITION).
    Failed(KafkaCode),
}

/// Brokers and topics as last reported by the cluster.
#[derive(Debug, Default)]
pub struct Cluster {
    brokers: HashMap<i32, Arc<str>>,
    controller: Option<i32>,
    topics: HashMap<Arc<str>, TopicState>,
    refreshed: Option<Instant>,
}

impl Cluster {
    /// Folds a Metadata response in. Topics the response does not mention keep their state.
    pub fn apply(&mut self, response: &MetadataResponse, now: Instant) {
        if !response.brokers.is_empty() {
            self.brokers = response
                .brokers
                .iter()
                .map(|b| {
                    (
                        b.node_id.0,
                        Arc::from(format!("{}:{}", b.host.as_str(), b.port)),
                    )
                })
                .collect();
        }
        self.controller = (response.controller_id.0 >= 0).then_some(response.controller_id.0);
        for topic in &response.topics {
            let Some(name) = topic.name.as_ref() else {
                continue;
            };
            let name: Arc<str> = Arc::from(name.as_str());
            let state = if topic.error_code != 0 {
                TopicState::Failed(
                    KafkaCode::try_from_code(topic.error_code)
                        .unwrap_or(KafkaCode::Unknown(topic.error_code)),
                )
            } else {
                let mut partitions: Vec<PartitionInfo> = topic
                    .partitions
                    .iter()
                    .map(|p| PartitionInfo {
                        id: p.partition_index,
                        leader: if p.error_code == 0 || p.leader_id.0 >= 0 {
                            p.leader_id.0
                        } else {
                            -1
                        },
                        leader_epoch: p.leader_epoch,
                    })
                    .collect();
                partitions.sort_by_key(|p| p.id);
                // A response with holes in the partition numbers cannot be indexed by
                // partition; treat the topic as not (yet) usable.
                if partitions.iter().enumerate().any(|(i, p)| p.id != i as i32) {
                    TopicState::Failed(KafkaCode::LeaderNotAvailable)
                } else if partitions.is_empty() {
                    TopicState::Failed(KafkaCode::UnknownTopicOrPartition)
                } else {
                    TopicState::Known(Rc::new(TopicInfo {
                        name: name.clone(),
                        partitions,
                    }))
                }
            };
            self.topics.insert(name, state);
        }
        self.refreshed = Some(now);
    }

    /// The topic, if the last answer for it was a success.
    pub fn topic(&self, name: &str) -> Option<&Rc<TopicInfo>> {
        match self.topics.get(name) {
            Some(TopicState::Known(t)) => Some(t),
            _ => None,
        }
    }

    /// The error the cluster gave for `name`, if its last answer was one.
    pub fn topic_error(&self, name: &str) -> Option<KafkaCode> {
        match self.topics.get(name) {
            Some(TopicState::Failed(code)) => Some(*code),
            _ => None,
        }
    }

    /// Forgets what we knew of `name`, so the next use asks the cluster again.
    pub fn invalidate(&mut self, name: &str) {
        self.topics.remove(name);
    }

    /// `host:port` of a broker.
    pub fn broker(&self, id: i32) -> Option<&Arc<str>> {
        self.brokers.get(&id)
    }

    /// Every known broker.
    pub fn brokers(&self) -> impl Iterator<Item = (i32, &Arc<str>)> {
        self.brokers.iter().map(|(id, addr)| (*id, addr))
    }

    /// The controller's broker id, where admin requests go.
    pub fn controller(&self) -> Option<i32> {
        self.controller
    }

    /// When the last response was applied.
    pub fn refreshed(&self) -> Option<Instant> {
        self.refreshed
    }

    /// Names of the topics known (successfully or not).
    pub fn topic_names(&self) -> Vec<Arc<str>> {
        self.topics.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn response(partitions: &[(i32, i32)], topic_error: i16) -> MetadataResponse {
        let mut r = MetadataResponse::default();
        let mut b = MetadataResponseBroker::default();
        b.node_id = BrokerId(7);
        b.host = StrBytes::from_static_str("127.0.0.1");
        b.port = 9092;
        r.brokers.push(b);
        r.controller_id = BrokerId(7);
        let mut t = MetadataResponseTopic::default();
        t.name = Some(TopicName(StrBytes::from_static_str("t")));
        t.error_code = topic_error;
        for &(id, leader) in partitions {
            let mut p = MetadataResponsePartition::default();
            p.partition_index = id;
            p.leader_id = BrokerId(leader);
            t.partitions.push(p);
        }
        r.topics.push(t);
        r
    }

    #[test]
    fn applies_brokers_topics_and_sorts_partitions() {
        let mut c = Cluster::default();
        c.apply(&response(&[(1, 7), (0, 7)], 0), Instant::now());
        assert_eq!(c.broker(7).map(|s| &**s), Some("127.0.0.1:9092"));
        let t = c.topic("t").expect("known");
        assert_eq!(t.partition_count(), 2);
        assert_eq!(t.partitions[0].id, 0);
        assert_eq!(c.controller(), Some(7));
    }

    #[test]
    fn topic_errors_and_holes_are_not_usable() {
        let mut c = Cluster::default();
        c.apply(&response(&[], 3), Instant::now());
        assert!(c.topic("t").is_none());
        assert_eq!(c.topic_error("t"), Some(KafkaCode::UnknownTopicOrPartition));
        c.apply(&response(&[(0, 7), (2, 7)], 0), Instant::now());
        assert!(c.topic("t").is_none());
        c.apply(&response(&[(0, 7), (1, 7)], 0), Instant::now());
        assert!(c.topic("t").is_some());
        c.invalidate("t");
        assert!(c.topic("t").is_none() && c.topic_error("t").is_none());
    }
}
