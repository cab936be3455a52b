//! Membership of a classic Kafka consumer group: find the coordinator, join, sync (the
//! leader assigns), heartbeat, commit and fetch offsets, leave.
//!
//! A [`GroupMember`] is one member, driven by its owner's task: it performs one request at
//! a time and never runs anything in the background, so the owner decides when to
//! heartbeat (at least every `session_timeout / 3`) and what to do when a heartbeat says
//! the group is rebalancing (stop, commit what is done, [`join`](GroupMember::join) again).
//!
//! The protocol is Kafka's "consumer" protocol type with the `range` and `roundrobin`
//! assignors ([`assign`]), so a Java or librdkafka consumer can be in the same group. The
//! coordinator may answer JoinGroup at once with a partial member list (tansu) or hold it
//! until every member rejoined (Kafka); both converge: a member whose SyncGroup is
//! answered REBALANCE_IN_PROGRESS joins again.
//!
//! The group requests are sent on the coordinator's connection of the member's own
//! [`Client`]: JoinGroup may be held by the coordinator for up to the rebalance timeout,
//! and must not hold up the fetches or produces of other clients behind it.

pub mod assign;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use tracing::debug;

pub use assign::Assignor;

use crate::client::Client;
use crate::conn::Connection;
use crate::error::{check, Context, Error, KafkaCode, Result};
use crate::rt;

/// The group's settings; names in brackets follow the Kafka consumer's properties.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.id`.
    pub group_id: String,
    /// The topics this member subscribes to.
    pub topics: Vec<String>,
    /// A member not heard from for this long is removed (`session.timeout.ms`).
    pub session_timeout: Duration,
    /// How long the coordinator waits for members to rejoin (`max.poll.interval.ms` in
    /// the Java consumer).
    pub rebalance_timeout: Duration,
}

/// One generation of the group as this member sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The generation id (commits carry it).
    pub id: i32,
    /// This member's id.
    pub member_id: String,
    /// Whether this member computed the assignment.
    pub leader: bool,
    /// The members the leader assigned to (only known to the leader).
    pub members: usize,
    /// This member's partitions, by topic.
    pub assignment: BTreeMap<String, Vec<i32>>,
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The generation stands.
    Stable,
    /// The group is rebalancing (or forgot this member): join again.
    Rejoin,
}

/// A member of one consumer group.
#[derive(Debug)]
pub struct GroupMember {
    client: Client,
    config: GroupConfig,
    member_id: StrBytes,
    generation: i32,
    coordinator: Option<Connection>,
    /// The last heartbeat said the group is rebalancing.
    rebalancing: bool,
    /// The next join leaves first and joins as a new member.
    force_new: bool,
}

impl GroupMember {
    /// A member that has not joined yet.
    pub fn new(client: Client, config: GroupConfig) -> GroupMember {
        GroupMember {
            client,
            config,
            member_id: StrBytes::default(),
            generation: -1,
            coordinator: None,
            rebalancing: false,
            force_new: false,
        }
    }

    /// The group id.
    pub fn group_id(&self) -> &str {
        &self.config.group_id
    }

    /// The member id the coordinator gave us (empty before the first join).
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    fn ctx(&self) -> Context {
        self.coordinator
            .as_ref()
            .map(|c| Context::broker(c.broker()))
            .unwrap_or_default()
    }

    /// The coordinator's connection, found with FindCoordinator when not known.
    async fn coordinator(&mut self) -> Result<Connection> {
        if let Some(c) = self.coordinator.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let conn = self.client.any_connection().await?;
        let mut request = FindCoordinatorRequest::default();
        request.key = StrBytes::from_string(self.config.group_id.clone());
        request.key_type = 0;
        let response = conn.request(&request).await?;
        check(
            response.error_code,
            response.error_message.as_deref(),
            || Context::broker(conn.broker()),
        )?;
        let id = response.node_id.0;
        let coordinator = match self.client.broker(id).await {
            Ok(c) => c,
            Err(_) => {
                self.client.refresh_metadata(&[]).await?;
                self.client.broker(id).await?
            }
        };
        debug!(group = %self.config.group_id, broker = %coordinator.broker(), "group coordinator found");
        self.coordinator = Some(coordinator.clone());
        Ok(coordinator)
    }

    /// Sends a group request to the coordinator; forgets the coordinator when the answer
    /// says it moved or the connection broke.
    async fn request<R: Request>(&mut self, request: &R) -> Result<R::Response> {
        let conn = self.coordinator().await?;
        let result = conn.request(request).await;
        if result.as_ref().is_err_and(Error::is_retriable) {
            self.coordinator = None;
        }
        result
    }

    /// Forgets the coordinator after an error code that says it is not (or not yet) it.
    fn after_error(&mut self, e: &Error) {
        if matches!(
            e.kafka_code(),
            Some(
                KafkaCode::NotCoordinator
                    | KafkaCode::CoordinatorNotAvailable
                    | KafkaCode::CoordinatorLoadInProgress
            )
        ) {
            self.coordinator = None;
        }
        if matches!(e.kafka_code(), Some(KafkaCode::UnknownMemberId)) {
            self.member_id = StrBytes::default();
        }
    }

    fn version(&self, key: ApiKey) -> i16 {
        self.coordinator
            .as_ref()
            .and_then(|c| c.version(key))
            .unwrap_or(0)
    }

    /// Joins (or rejoins) the group and returns this member's assignment for the new
    /// generation. Retries what is retriable (coordinator moves, rebalances in progress)
    /// until twice the rebalance timeout has passed.
    pub async fn join(&mut self) -> Result<Generation> {
        if std::mem::take(&mut self.force_new) {
            self.leave_for_new_generation().await;
        }
        let (before, rebalancing) = (self.generation, std::mem::take(&mut self.rebalancing));
        let generation = self.join_retrying().await?;
        // Heartbeats sent while joining say nothing about the generation just joined.
        self.rebalancing = false;
        if rebalancing && generation.id == before && before >= 0 {
            // A rebalance always ends in a new generation. A coordinator that announced
            // one and then hands back the old generation (tansu 0.6, after it expelled a
            // member that stopped heartbeating) would leave the expelled member's
            // partitions unassigned: leaving and joining as a new member forces the new
            // generation.
            debug!(group = %self.config.group_id, generation = before, "the rebalance kept the generation; joining as a new member");
            self.leave_for_new_generation().await;
            return self.join_retrying().await;
        }
        Ok(generation)
    }

    /// Makes the next [`join`](Self::join) leave and join as a new member, which makes
    /// the coordinator start a new generation: for a group the coordinator left
    /// rebalancing without telling its members (see [`state`](Self::state)).
    pub fn force_new_generation(&mut self) {
        self.force_new = true;
    }

    async fn leave_for_new_generation(&mut self) {
        if let Err(e) = self.leave().await {
            debug!(group = %self.config.group_id, error = %e, "LeaveGroup failed");
        }
        self.member_id = StrBytes::default();
    }

    /// The group's state as the coordinator describes it (DescribeGroups): `Stable` while
    /// a generation stands. A group that stays in another state while heartbeats say all
    /// is well is stuck: tansu 0.6 moves a group whose member stopped heartbeating back to
    /// assigning without a new generation and without telling the others.
    pub async fn state(&mut self) -> Result<String> {
        let mut request = DescribeGroupsRequest::default();
        request.groups = vec![GroupId(StrBytes::from_string(self.config.group_id.clone()))];
        let response = self.request(&request).await?;
        let group = response.groups.into_iter().next().ok_or_else(|| {
            Error::protocol("DescribeGroups answered without our group", self.ctx())
        })?;
        check(group.error_code, None, || self.ctx()).inspect_err(|e| self.after_error(e))?;
        Ok(group.group_state.to_string())
    }

    async fn join_retrying(&mut self) -> Result<Generation> {
        let deadline = Instant::now() + 2 * self.config.rebalance_timeout;
        let backoff = self.client.config().retry_backoff;
        loop {
            let result = self.join_once().await;
            match result {
                Ok(Some(generation)) => return Ok(generation),
                Ok(None) => {}
                Err(e) => {
                    self.after_error(&e);
                    let again = e.is_retriable()
                        || matches!(
                            e.kafka_code(),
                            Some(
                                KafkaCode::RebalanceInProgress
                                    | KafkaCode::UnknownMemberId
                                    | KafkaCode::IllegalGeneration
                            )
                        );
                    if !again || Instant::now() + backoff >= deadline {
                        return Err(e);
                    }
                    debug!(group = %self.config.group_id, error = %e, "joining again");
                    // Waiting for the leader's assignment can take a while: a coordinator
                    // that counts only heartbeats as signs of life (tansu) must not time
                    // this member out meanwhile. The answer (likely "rebalancing") is
                    // what we know already.
                    if !self.member_id.is_empty() {
                        let _ = self.heartbeat().await;
                    }
                }
            }
            rt::sleep(backoff).await;
        }
    }

    /// One JoinGroup and SyncGroup. `None` when the coordinator gave us a member id to
    /// join with (MEMBER_ID_REQUIRED).
    async fn join_once(&mut self) -> Result<Option<Generation>> {
        self.coordinator().await?;
        let metadata = assign::subscription_bytes(&self.config.topics);
        let mut request = JoinGroupRequest::default();
        request.group_id = GroupId(StrBytes::from_string(self.config.group_id.clone()));
        request.session_timeout_ms = millis(self.config.session_timeout);
        if self.version(ApiKey::JoinGroup) >= 1 {
            request.rebalance_timeout_ms = millis(self.config.rebalance_timeout);
        }
        request.member_id = self.member_id.clone();
        request.protocol_type = StrBytes::from_static_str("consumer");
        request.protocols = Assignor::ALL
            .iter()
            .map(|a| {
                let mut p = JoinGroupRequestProtocol::default();
                p.name = StrBytes::from_static_str(a.name());
                p.metadata = metadata.clone();
                p
            })
            .collect();
        let response = self.request(&request).await?;
        debug!(group = %self.config.group_id, member = %response.member_id, generation = response.generation_id, code = response.error_code, leader = %response.leader, "JoinGroup answered");
        if response.error_code == KafkaCode::MemberIdRequired.code() {
            self.member_id = response.member_id;
            return Ok(None);
        }
        check(response.error_code, None, || self.ctx())?;
        self.member_id = response.member_id.clone();
        self.generation = response.generation_id;
        let leader = response.leader == response.member_id;
        let assignments = if leader {
            self.leader_assignments(&response).await?
        } else {
            Vec::new()
        };
        let members = assignments.len();

        let mut sync = SyncGroupRequest::default();
        sync.group_id = request.group_id.clone();
        sync.generation_id = response.generation_id;
        sync.member_id = self.member_id.clone();
        if self.version(ApiKey::SyncGroup) >= 5 {
            sync.protocol_type = Some(StrBytes::from_static_str("consumer"));
            sync.protocol_name = response.protocol_name.clone();
        }
        sync.assignments = assignments;
        let synced = self.request(&sync).await?;
        check(synced.error_code, None, || self.ctx())?;
        let assignment = assign::parse_assignment(&synced.assignment)
            .map_err(|e| Error::protocol(e.to_string(), self.ctx()))?;
        Ok(Some(Generation {
            id: self.generation,
            member_id: self.member_id.to_string(),
            leader,
            members,
            assignment,
        }))
    }

    /// The leader's work: split the partitions of every member's topics among them.
    async fn leader_assignments(
        &mut self,
        response: &JoinGroupResponse,
    ) -> Result<Vec<SyncGroupRequestAssignment>> {
        let name = response.protocol_name.as_deref().unwrap_or("range");
        let assignor = Assignor::from_name(name).ok_or_else(|| {
            Error::protocol(
                format!("the group chose the assignor {name:?}, which we do not implement"),
                self.ctx(),
            )
        })?;
        let mut members = Vec::with_capacity(response.members.len());
        let mut counts = BTreeMap::new();
        for m in &response.members {
            let topics = assign::parse_subscription(&m.metadata)
                .map_err(|e| Error::protocol(e.to_string(), self.ctx()))?;
            for t in &topics {
                if !counts.contains_key(t) {
                    let info = self.client.topic(t).await?;
                    counts.insert(t.clone(), info.partition_count() as i32);
                }
            }
            members.push((m.member_id.to_string(), topics));
        }
        Ok(assignor
            .assign(&members, &counts)
            .into_iter()
            .map(|(member, assignment)| {
                let mut a = SyncGroupRequestAssignment::default();
                a.member_id = StrBytes::from_string(member);
                a.assignment = assign::assignment_bytes(&assignment);
                a
            })
            .collect())
    }

    /// Tells the coordinator this member is alive.
    pub async fn heartbeat(&mut self) -> Result<Heartbeat> {
        let mut request = HeartbeatRequest::default();
        request.group_id = GroupId(StrBytes::from_string(self.config.group_id.clone()));
        request.generation_id = self.generation;
        request.member_id = self.member_id.clone();
        let response = self.request(&request).await?;
        match check(response.error_code, None, || self.ctx()) {
            Ok(()) => Ok(Heartbeat::Stable),
            Err(e)
                if matches!(
                    e.kafka_code(),
                    Some(
                        KafkaCode::RebalanceInProgress
                            | KafkaCode::UnknownMemberId
                            | KafkaCode::IllegalGeneration
                    )
                ) =>
            {
                self.rebalancing = e.kafka_code() == Some(KafkaCode::RebalanceInProgress);
                self.after_error(&e);
                Ok(Heartbeat::Rejoin)
            }
            Err(e) => {
                self.after_error(&e);
                Err(e)
            }
        }
    }

    /// Commits `offsets` (topic, partition, next offset to read) in the current
    /// generation.
    pub async fn commit(&mut self, offsets: &[(&str, i32, i64)]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        self.coordinator().await?;
        let version = self.version(ApiKey::OffsetCommit);
        let mut request = OffsetCommitRequest::default();
        request.group_id = GroupId(StrBytes::from_string(self.config.group_id.clone()));
        request.generation_id_or_member_epoch = self.generation;
        request.member_id = self.member_id.clone();
        if (2..=4).contains(&version) {
            request.retention_time_ms = -1;
        }
        let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (topic, partition, offset) in offsets {
            let mut p = OffsetCommitRequestPartition::default();
            p.partition_index = *partition;
            p.committed_offset = *offset;
            by_topic.entry(topic).or_default().push(p);
        }
        request.topics = by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                let mut t = OffsetCommitRequestTopic::default();
                t.name = TopicName(StrBytes::from_string(topic.to_owned()));
                t.partitions = partitions;
                t
            })
            .collect();
        let response = self.request(&request).await?;
        for t in &response.topics {
            for p in &t.partitions {
                check(p.error_code, None, || {
                    self.ctx()
                        .with_partition(t.name.0.as_str(), p.partition_index)
                })
                .inspect_err(|e| self.after_error(e))?;
            }
        }
        Ok(())
    }

    /// The group's committed offsets of `partitions` of `topic`; `None` for a partition
    /// the group never committed.
    pub async fn committed(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<(i32, Option<i64>)>> {
        let mut request = OffsetFetchRequest::default();
        request.group_id = GroupId(StrBytes::from_string(self.config.group_id.clone()));
        let mut t = OffsetFetchRequestTopic::default();
        t.name = TopicName(StrBytes::from_string(topic.to_owned()));
        t.partition_indexes = partitions.to_vec();
        request.topics = Some(vec![t]);
        let response = self.request(&request).await?;
        check(response.error_code, None, || self.ctx()).inspect_err(|e| self.after_error(e))?;
        let mut out = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            let found = response
                .topics
                .iter()
                .filter(|t| t.name.0.as_str() == topic)
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition_index == partition);
            let Some(p) = found else {
                out.push((partition, None));
                continue;
            };
            check(p.error_code, None, || {
                self.ctx().with_partition(topic, partition)
            })?;
            out.push((
                partition,
                Some(p.committed_offset).filter(|offset| *offset >= 0),
            ));
        }
        Ok(out)
    }

    /// Leaves the group, so the coordinator reassigns this member's partitions at once
    /// instead of after the session timeout.
    pub async fn leave(&mut self) -> Result<()> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        self.coordinator().await?;
        let mut request = LeaveGroupRequest::default();
        request.group_id = GroupId(StrBytes::from_string(self.config.group_id.clone()));
        if self.version(ApiKey::LeaveGroup) >= 3 {
            let mut m = MemberIdentity::default();
            m.member_id = self.member_id.clone();
            request.members = vec![m];
        } else {
            request.member_id = self.member_id.clone();
        }
        let response = self.request(&request).await?;
        self.member_id = StrBytes::default();
        self.generation = -1;
        check(response.error_code, None, || self.ctx())
    }
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests;
