//! The discard sink's answers to everything but Produce: Metadata, CreateTopics,
//! InitProducerId, FindCoordinator, ApiVersions and (empty) Fetch. Sans-IO like
//! `handler.rs`, whose dispatch calls these.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse, FetchRequest,
    FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse, InitProducerIdRequest,
    InitProducerIdResponse, MetadataRequest, MetadataResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::handler::{
    SinkState, Topic, INVALID_TOPIC, NODE_ID, SUPPORTED, UNKNOWN_TOPIC_OR_PARTITION,
};

impl SinkState {
    /// No records, at once, for every partition asked for: nothing is stored. The high
    /// watermark is the partition's next offset. (No fetch sessions: session id 0.)
    pub fn fetch(&self, request: &FetchRequest, version: i16) -> FetchResponse {
        let mut response = FetchResponse::default();
        let mut topics = self.topics.lock().expect("no panics while locked");
        for t in &request.topics {
            let mut topic_response = FetchableTopicResponse::default();
            topic_response.topic = t.topic.clone();
            let topic = topic_entry(&mut topics, t.topic.as_str(), self.default_partitions);
            for p in &t.partitions {
                let mut r = PartitionData::default();
                r.partition_index = p.partition;
                match usize::try_from(p.partition)
                    .ok()
                    .and_then(|i| topic.next_offsets.get(i))
                {
                    None => r.error_code = UNKNOWN_TOPIC_OR_PARTITION,
                    Some(&next) => {
                        r.high_watermark = next;
                        r.last_stable_offset = next;
                        if version >= 5 {
                            r.log_start_offset = 0;
                        }
                    }
                }
                topic_response.partitions.push(r);
            }
            response.responses.push(topic_response);
        }
        response
    }

    /// One broker (the sink, at the address the client reached) leading every partition of
    /// every topic asked for; topics exist as soon as they are named.
    pub fn metadata(
        &self,
        request: &MetadataRequest,
        version: i16,
        local: SocketAddr,
    ) -> MetadataResponse {
        let mut response = MetadataResponse::default();
        let mut broker = MetadataResponseBroker::default();
        broker.node_id = BrokerId(NODE_ID);
        broker.host = StrBytes::from_string(local.ip().to_string());
        broker.port = i32::from(local.port());
        response.brokers.push(broker);
        if version >= 2 {
            response.cluster_id = Some(StrBytes::from_static_str("sluice-discard-sink"));
        }
        response.controller_id = BrokerId(NODE_ID);
        let mut topics = self.topics.lock().expect("no panics while locked");
        let names: Vec<Option<String>> = match &request.topics {
            None => topics.keys().cloned().map(Some).collect(),
            Some(asked) => asked
                .iter()
                .map(|t| t.name.as_ref().map(|n| n.as_str().to_owned()))
                .collect(),
        };
        for name in names {
            let mut t = MetadataResponseTopic::default();
            match name {
                None => t.error_code = UNKNOWN_TOPIC_OR_PARTITION,
                Some(name) if name.is_empty() => {
                    t.error_code = INVALID_TOPIC;
                    t.name = Some(TopicName(StrBytes::from_string(name)));
                }
                Some(name) => {
                    let topic = topic_entry(&mut topics, &name, self.default_partitions);
                    if version >= 10 {
                        t.topic_id = topic.id;
                    }
                    for index in 0..topic.next_offsets.len() as i32 {
                        let mut p = MetadataResponsePartition::default();
                        p.partition_index = index;
                        p.leader_id = BrokerId(NODE_ID);
                        p.leader_epoch = 0;
                        p.replica_nodes = vec![BrokerId(NODE_ID)];
                        p.isr_nodes = vec![BrokerId(NODE_ID)];
                        t.partitions.push(p);
                    }
                    t.name = Some(TopicName(StrBytes::from_string(name)));
                }
            }
            response.topics.push(t);
        }
        response
    }

    /// A new producer id with epoch 0, or, when the client asks to bump its epoch (v3+), the
    /// same id with the next epoch.
    pub fn init_producer_id(
        &self,
        request: &InitProducerIdRequest,
        version: i16,
    ) -> InitProducerIdResponse {
        let mut response = InitProducerIdResponse::default();
        if version >= 3 && request.producer_id.0 >= 0 && request.producer_epoch >= 0 {
            response.producer_id = request.producer_id;
            response.producer_epoch = request.producer_epoch.checked_add(1).unwrap_or(0);
        } else {
            let id = self.next_producer_id.fetch_add(1, Ordering::Relaxed);
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        response
    }

    /// Success for every topic; a topic that exists keeps its partitions.
    pub fn create_topics(
        &self,
        request: &CreateTopicsRequest,
        version: i16,
    ) -> CreateTopicsResponse {
        let mut response = CreateTopicsResponse::default();
        let mut topics = self.topics.lock().expect("no panics while locked");
        for t in &request.topics {
            let mut r = CreatableTopicResult::default();
            r.name = t.name.clone();
            if t.name.is_empty() {
                r.error_code = INVALID_TOPIC;
                response.topics.push(r);
                continue;
            }
            let partitions = if t.num_partitions > 0 {
                t.num_partitions
            } else if !t.assignments.is_empty() {
                t.assignments.len() as i32
            } else {
                self.default_partitions
            };
            let (id, count) = match topics.get(t.name.as_str()) {
                Some(existing) => (existing.id, existing.next_offsets.len() as i32),
                None if request.validate_only => (uuid::Uuid::nil(), partitions),
                None => {
                    let topic = topic_entry(&mut topics, t.name.as_str(), partitions);
                    (topic.id, partitions)
                }
            };
            if version >= 7 {
                r.topic_id = id;
            }
            if version >= 5 {
                r.num_partitions = count;
                r.replication_factor = 1;
            }
            response.topics.push(r);
        }
        response
    }
}

/// The topic called `name`, created with `partitions` partitions if it is new.
pub(super) fn topic_entry<'a>(
    topics: &'a mut HashMap<String, Topic>,
    name: &str,
    partitions: i32,
) -> &'a mut Topic {
    if !topics.contains_key(name) {
        // Ids only need to be unique and not nil; this sink's n-th topic gets n.
        let id = uuid::Uuid::from_u128(topics.len() as u128 + 1);
        let topic = Topic {
            id,
            next_offsets: vec![0; partitions.max(1) as usize],
        };
        topics.insert(name.to_owned(), topic);
    }
    topics.get_mut(name).expect("just inserted")
}

/// The versions in [`SUPPORTED`], as ApiVersions answers them.
pub fn api_versions() -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    for (key, min, max) in SUPPORTED {
        let mut v = ApiVersion::default();
        v.api_key = key as i16;
        v.min_version = min;
        v.max_version = max;
        response.api_keys.push(v);
    }
    response
}

/// The sink coordinates everything.
pub fn find_coordinator(
    request: &FindCoordinatorRequest,
    version: i16,
    local: SocketAddr,
) -> FindCoordinatorResponse {
    let mut response = FindCoordinatorResponse::default();
    let host = StrBytes::from_string(local.ip().to_string());
    let port = i32::from(local.port());
    if version >= 4 {
        for key in &request.coordinator_keys {
            let mut c = Coordinator::default();
            c.key = key.clone();
            c.node_id = BrokerId(NODE_ID);
            c.host = host.clone();
            c.port = port;
            response.coordinators.push(c);
        }
    } else {
        response.node_id = BrokerId(NODE_ID);
        response.host = host;
        response.port = port;
    }
    response
}
