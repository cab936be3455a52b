//! A session's state as the session topic stores it (JSON), and the two rules every reader
//! applies to it: what a claim carries over from the state it supersedes, and expiry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A session's state as stored in Kafka.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// Incremented by every CONNECT that claims the session.
    pub gen: u64,
    /// Which connection serves it: `{process}/{shard}/{connection}`.
    pub owner: String,
    /// Subscriptions.
    #[serde(default)]
    pub subs: Vec<StoredSub>,
    /// Per Kafka topic, per partition: the offset from which the session still needs
    /// records (everything before it was delivered and, for QoS 1/2, acknowledged).
    #[serde(default)]
    pub cursor: BTreeMap<String, BTreeMap<i32, i64>>,
    /// Seconds the session outlives its connection (MQTT 5 session expiry; 3.1.1 with
    /// clean session 0: `u32::MAX`, never).
    #[serde(default)]
    pub expiry_s: u32,
    /// Whether a connection serves it now.
    #[serde(default)]
    pub connected: bool,
    /// When it was written, in milliseconds since the epoch.
    #[serde(default)]
    pub at_ms: u64,
    /// The will of the connection serving it, while it is connected: published by
    /// another process if this one dies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub will: Option<Box<StoredWill>>,
    /// QoS 1/2 deliveries sent and not acknowledged: resent with DUP and the same packet
    /// identifier when the session resumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_flight: Vec<InFlight>,
    /// Set on a claim that resumes the session (not a clean start): readers keep the
    /// superseded state's subscriptions, cursor and in-flight deliveries under the new
    /// generation. So a claim whose connection never got to save (its CONNECT failed
    /// after the claim was written) does not wipe the session for the next claimant.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumes: bool,
}

impl Stored {
    /// What the session is once `claim` is applied on top of `current`: the claim itself,
    /// carrying over `current`'s content when it resumes an unexpired session.
    pub(super) fn claimed(mut claim: Stored, current: Option<&Stored>) -> Stored {
        if let Some(current) = current.filter(|c| claim.resumes && !c.expired(claim.at_ms)) {
            claim.subs = current.subs.clone();
            claim.cursor = current.cursor.clone();
            claim.in_flight = current.in_flight.clone();
        }
        claim
    }
}

/// A delivery in flight: which record, under which packet identifier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// The record's topic, partition and offset.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The PUBLISH's packet identifier.
    pub packet_id: u16,
}

/// A subscription as a session record carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSub {
    /// The topic filter.
    pub filter: String,
    /// Granted QoS.
    pub qos: u8,
    /// MQTT 5 options: no local, retain as published, subscription identifier.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_local: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retain_as_published: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
}

/// A will message as a session record carries it, routed already (the Kafka record it
/// becomes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWill {
    /// The MQTT topic.
    pub topic: String,
    /// The payload, base64.
    pub payload: String,
    /// QoS and retain flag of the will.
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5 will delay, seconds.
    pub delay_s: u32,
    /// The Kafka topic and key its route gives it.
    pub kafka_topic: String,
    pub key: Option<String>,
    /// The record headers its route gives it, values base64. `None` in records of a
    /// sluice that did not store them: the will then gets `mqtt.client_id` and `mqtt.qos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<(String, String)>>,
}

impl Stored {
    /// Whether a disconnected session has outlived its expiry at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        !self.connected
            && self.expiry_s != u32::MAX
            && self.at_ms.saturating_add(u64::from(self.expiry_s) * 1000) <= now_ms
    }
}
