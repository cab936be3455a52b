//! The server side of an MQTT connection as a plain state machine.
//!
//! The connection driver feeds it decoded packets with [`Session::handle`] and results from
//! elsewhere ([`Session::accept`] / [`Session::refuse`] after authentication,
//! [`Session::on_kafka_ack`] when Kafka acknowledged a record, [`Session::suback`] when
//! subscriptions are decided, [`Session::on_timeout`] when the deadline from
//! [`Session::deadline`] passes). Each call appends [`Effect`]s to a caller-owned `Vec`,
//! which the driver executes in order. Time is a `u64` of milliseconds from any monotonic
//! origin the driver picks; the session never reads a clock.
//!
//! # Flows
//!
//! - CONNECT → [`Effect::Authenticate`]; the driver stops decoding until it calls `accept`
//!   (→ CONNACK, keepalive armed) or `refuse` (→ CONNACK refusal, close).
//! - Keepalive: the deadline is 1.5 × keepalive after the last packet received; missing it
//!   closes with Keep Alive timeout (0x8D) and publishes the will. Before CONNECT the
//!   deadline is the configured connect timeout.
//! - PUBLISH QoS 0 → [`Effect::Publish`]. QoS 1 and 2 → [`Effect::Publish`] with the packet
//!   id, then `on_kafka_ack` → PUBACK / PUBREC (a failure reason code on MQTT 5; on 3.1.1,
//!   which cannot refuse a message, the connection is closed so the client retries). A QoS 2
//!   PUBLISH whose id is awaiting PUBREL is answered with PUBREC again and not re-published
//!   (exactly once into Kafka); PUBREL → PUBCOMP frees the id.
//! - More unacknowledged QoS > 0 PUBLISHes than the receive maximum → Receive Maximum
//!   exceeded (0x93). Topic aliases above the maximum → Topic Alias invalid (0x94).
//! - DISCONNECT 0x00 discards the will, 0x04 publishes it; any other end publishes it too.

use std::num::NonZeroU32;
use std::sync::Arc;

use super::connect::{ConnAck, Connect, Will};
use super::disconnect::{Auth, Disconnect};
use super::packet::Packet;
use super::publish::{PubAck, Publish};
use super::reason;
use super::subscribe::{SubAck, Subscribe, UnsubAck, Unsubscribe};
use super::types::{MqttString, ProtocolVersion, QoS};

/// Limits the server announces and enforces.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Unacknowledged inbound QoS 1/2 PUBLISHes allowed (announced on MQTT 5, also bounds
    /// memory on 3.1.1).
    pub receive_maximum: u16,
    /// Highest inbound topic alias accepted; 0 disables aliases.
    pub topic_alias_maximum: u16,
    /// Largest packet accepted (announced on MQTT 5; the codec enforces it).
    pub max_packet_size: u32,
    /// Keepalive imposed on MQTT 5 clients (Server Keep Alive), if any.
    pub server_keep_alive: Option<u16>,
    /// Milliseconds a connection may take to send CONNECT.
    pub connect_timeout_ms: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            receive_maximum: 64,
            topic_alias_maximum: 16,
            max_packet_size: 1 << 20,
            server_keep_alive: None,
            connect_timeout_ms: 10_000,
        }
    }
}

/// What the proxy decided about an authenticated CONNECT.
#[derive(Debug, Clone, Default)]
pub struct Accept {
    /// Whether a stored session was resumed.
    pub session_present: bool,
    /// The client identifier assigned to an MQTT 5 client that sent an empty one.
    pub assigned_client_id: Option<MqttString>,
}

/// How Kafka answered the record of a QoS 1/2 PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaAck {
    /// Written with the configured acks.
    Written,
    /// Not written; `reason_code` is the MQTT 5 PUBACK/PUBREC reason to send
    /// (for example 0x80 Unspecified error, 0x87 Not authorized, 0x97 Quota exceeded).
    Failed {
        /// The reason code.
        reason_code: u8,
    },
}

/// An action for the connection driver, executed in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Encode this packet and write it to the client.
    Send(Packet),
    /// A valid CONNECT: authenticate it and load the session, then call
    /// [`Session::accept`] or [`Session::refuse`]. Do not decode further packets meanwhile.
    Authenticate(Box<Connect>),
    /// Produce this message to Kafka. Its topic alias is already resolved. For QoS 1 and 2
    /// call [`Session::on_kafka_ack`] with its `packet_id` once Kafka answered.
    Publish(Publish),
    /// Publish the client's will message (the connection ended abnormally).
    PublishWill(Will),
    /// Add these subscriptions, then call [`Session::suback`].
    Subscribe(Subscribe),
    /// Remove these subscriptions, then call [`Session::unsuback`].
    Unsubscribe(Unsubscribe),
    /// An MQTT 5 AUTH exchange step for the authentication method of the CONNECT.
    Auth(Auth),
    /// The client acknowledged a message delivered to it (PUBACK, or PUBCOMP for QoS 2):
    /// its delivery cursor may advance.
    Delivered {
        /// The delivery's packet identifier.
        packet_id: u16,
        /// The client's reason code (≥ 0x80: it refused the message).
        reason_code: u8,
    },
    /// Flush what was sent and close the connection. `reason_code` is 0 for a normal end.
    Close {
        /// Why, as an MQTT 5 reason code.
        reason_code: u8,
    },
}

// Effects are moved out of the effects buffer one by one: keep them as small as a packet.
const _: () = assert!(std::mem::size_of::<Effect>() <= 88);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingConnect,
    Authenticating,
    Connected,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// QoS 1 or 2, waiting for Kafka.
    Kafka(QoS),
    /// QoS 2, PUBREC sent, waiting for PUBREL.
    AwaitingRelease,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    packet_id: u16,
    stage: Stage,
}

/// Server-side MQTT session state of one connection.
///
/// An idle connection keeps its session (a proxy holds millions of them), so it is packed
/// into 40 bytes: the listener's limits shared, the deadline without an `Option`, the
/// keepalive window in a `u32`, and the will, the inbound QoS and the topic-alias state
/// in one box that only clients with a will or publishing at QoS 1/2 have (two empty
/// `Vec`s were 48 bytes on every connection).
#[derive(Debug)]
pub struct Session {
    /// The same for every connection of a listener.
    config: Arc<SessionConfig>,
    state: State,
    version: ProtocolVersion,
    /// 1.5 × keepalive in milliseconds (at most 98,302,500); 0 when keepalive is off.
    keep_alive_window: u32,
    /// [`NO_DEADLINE`] or when [`Session::on_timeout`] is due.
    deadline: u64,
    session_expiry: u32,
    enhanced_auth: bool,
    /// The decoder refuses a Maximum Packet Size of 0.
    client_max_packet_size: Option<NonZeroU32>,
    /// Created by a will, the first QoS 1/2 PUBLISH or topic alias.
    rare: Option<Box<Rare>>,
}

/// `Session::deadline` when there is none (a deadline that far away never comes).
const NO_DEADLINE: u64 = u64::MAX;

/// What only some clients' sessions hold.
#[derive(Debug, Default)]
struct Rare {
    /// Boxed again: the will is large, and more clients publish at QoS 1/2 than have one.
    will: Option<Box<Will>>,
    /// QoS 1/2 publishes not yet PUBACKed / PUBCOMPed; bounded by receive maximum.
    in_flight: Vec<InFlight>,
    /// Topic aliases (index = alias - 1), grown on first use up to the maximum.
    aliases: Vec<Option<MqttString>>,
}

// Every idle connection keeps one (see the type's docs).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Session>() <= 40);

impl Session {
    /// A session for a connection accepted at `now` (give every connection of a listener
    /// the same `Arc`).
    pub fn new(config: impl Into<Arc<SessionConfig>>, now: u64) -> Self {
        let config = config.into();
        let deadline = now.saturating_add(u64::from(config.connect_timeout_ms));
        Self {
            config,
            state: State::AwaitingConnect,
            version: ProtocolVersion::V3_1_1,
            keep_alive_window: 0,
            deadline,
            session_expiry: 0,
            enhanced_auth: false,
            client_max_packet_size: None,
            rare: None,
        }
    }

    /// The connection's protocol version (3.1.1 until CONNECT arrives).
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Whether CONNACK was sent and the session is live.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Whether the session ended (a [`Effect::Close`] was emitted).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// When [`Session::on_timeout`] must be called, if ever.
    pub fn deadline(&self) -> Option<u64> {
        (self.deadline != NO_DEADLINE).then_some(self.deadline)
    }

    /// The client's MQTT 5 Maximum Packet Size: give it to
    /// [`MqttCodec::set_peer_max_packet_size`](super::MqttCodec::set_peer_max_packet_size).
    pub fn client_max_packet_size(&self) -> Option<u32> {
        self.client_max_packet_size.map(NonZeroU32::get)
    }

    /// Number of inbound QoS 1/2 messages not yet fully acknowledged.
    pub fn in_flight(&self) -> usize {
        self.rare.as_ref().map_or(0, |r| r.in_flight.len())
    }

    /// Frees the memory of inbound bookkeeping that holds nothing (no will, no message
    /// in flight, no topic alias): for a connection about to idle. It grows again when
    /// needed.
    pub fn shrink(&mut self) {
        if let Some(rare) = &mut self.rare {
            if rare.will.is_none() && rare.in_flight.is_empty() && rare.aliases.is_empty() {
                self.rare = None;
            } else {
                rare.in_flight.shrink_to_fit();
            }
        }
    }

    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Forgets the will (it is not to be published).
    fn drop_will(&mut self) {
        if let Some(rare) = &mut self.rare {
            rare.will = None;
        }
    }

    /// Handles one packet received at `now`.
    pub fn handle(&mut self, now: u64, packet: Packet, out: &mut Vec<Effect>) {
        match self.state {
            State::Closed => {}
            State::AwaitingConnect => match packet {
                Packet::Connect(connect) => self.on_connect(connect, out),
                _ => self.close(reason::PROTOCOL_ERROR, out),
            },
            State::Authenticating => match packet {
                Packet::Auth(auth) if self.enhanced_auth => out.push(Effect::Auth(auth)),
                _ => self.fail(reason::PROTOCOL_ERROR, out),
            },
            State::Connected => {
                if self.keep_alive_window > 0 {
                    self.deadline = now.saturating_add(u64::from(self.keep_alive_window));
                }
                self.on_packet(packet, out);
            }
        }
    }

    fn on_connect(&mut self, connect: Box<Connect>, out: &mut Vec<Effect>) {
        self.version = connect.protocol;
        if let Some(will) = &connect.will {
            self.rare().will = Some(Box::new(will.clone()));
        }
        let props = &connect.properties;
        self.session_expiry = props.session_expiry_interval.unwrap_or(0);
        self.enhanced_auth = props.authentication_method.is_some();
        self.client_max_packet_size = props.maximum_packet_size.and_then(NonZeroU32::new);
        let keep_alive = match self.config.server_keep_alive {
            Some(server) if self.version.is_v5() => server,
            _ => connect.keep_alive,
        };
        self.keep_alive_window = u32::from(keep_alive) * 1500;
        self.state = State::Authenticating;
        out.push(Effect::Authenticate(connect));
    }

    /// Accepts the CONNECT at `now`: sends CONNACK and arms the keepalive.
    pub fn accept(&mut self, now: u64, accept: Accept, out: &mut Vec<Effect>) {
        if self.state != State::Authenticating {
            return;
        }
        let mut connack = ConnAck {
            session_present: accept.session_present,
            ..ConnAck::default()
        };
        if self.version.is_v5() {
            let props = &mut connack.properties;
            if self.config.receive_maximum != u16::MAX {
                props.receive_maximum = Some(self.config.receive_maximum);
            }
            if self.config.topic_alias_maximum > 0 {
                props.topic_alias_maximum = Some(self.config.topic_alias_maximum);
            }
            props.maximum_packet_size = Some(self.config.max_packet_size);
            props.assigned_client_identifier = accept.assigned_client_id;
            props.server_keep_alive = self.config.server_keep_alive;
        }
        self.state = State::Connected;
        self.deadline = match self.keep_alive_window {
            0 => NO_DEADLINE,
            window => now.saturating_add(u64::from(window)),
        };
        out.push(Effect::Send(Packet::ConnAck(Box::new(connack))));
    }

    /// Refuses the CONNECT with an MQTT 5 reason code (mapped to a 3.1.1 return code when
    /// needed) and closes.
    pub fn refuse(&mut self, reason_code: u8, out: &mut Vec<Effect>) {
        if self.state != State::Authenticating {
            return;
        }
        if let Some(connack) = ConnAck::refusal(self.version, reason_code) {
            out.push(Effect::Send(Packet::ConnAck(Box::new(connack))));
        }
        self.drop_will();
        self.close(reason_code, out);
    }

    /// Kafka answered the record of the QoS 1/2 PUBLISH `packet_id`.
    pub fn on_kafka_ack(&mut self, packet_id: u16, ack: KafkaAck, out: &mut Vec<Effect>) {
        if self.state != State::Connected {
            return;
        }
        let Some(index) = self.find(packet_id) else {
            return;
        };
        let Stage::Kafka(qos) = self.rare().in_flight[index].stage else {
            return;
        };
        let reason_code = match ack {
            KafkaAck::Written => reason::SUCCESS,
            // 3.1.1 has no negative acknowledgement: closing makes the client resend.
            KafkaAck::Failed { .. } if !self.version.is_v5() => {
                return self.fail(reason::UNSPECIFIED_ERROR, out);
            }
            KafkaAck::Failed { reason_code } => reason_code,
        };
        let mut reply = PubAck::new(packet_id);
        reply.reason_code = reason_code;
        let in_flight = &mut self.rare().in_flight;
        if qos == QoS::ExactlyOnce && reason_code < 0x80 {
            in_flight[index].stage = Stage::AwaitingRelease;
        } else {
            in_flight.swap_remove(index);
        }
        out.push(Effect::Send(match qos {
            QoS::ExactlyOnce => Packet::PubRec(reply),
            _ => Packet::PubAck(reply),
        }));
    }

    /// Answers the SUBSCRIBE `packet_id` with one code per subscription (granted QoS or a
    /// failure reason code).
    pub fn suback(&mut self, packet_id: u16, reason_codes: Vec<u8>, out: &mut Vec<Effect>) {
        out.push(Effect::Send(Packet::SubAck(SubAck {
            packet_id,
            reason_codes,
            properties: Default::default(),
        })));
    }

    /// Answers the UNSUBSCRIBE `packet_id` (the codes are dropped on 3.1.1).
    pub fn unsuback(&mut self, packet_id: u16, mut reason_codes: Vec<u8>, out: &mut Vec<Effect>) {
        if !self.version.is_v5() {
            reason_codes.clear();
        }
        out.push(Effect::Send(Packet::UnsubAck(UnsubAck {
            packet_id,
            reason_codes,
            properties: Default::default(),
        })));
    }

    /// Call when `now` reached [`Session::deadline`].
    pub fn on_timeout(&mut self, now: u64, out: &mut Vec<Effect>) {
        if self.deadline == NO_DEADLINE || now < self.deadline {
            return;
        }
        match self.state {
            State::Connected => self.fail(reason::KEEP_ALIVE_TIMEOUT, out),
            State::AwaitingConnect | State::Authenticating => {
                self.drop_will();
                self.close(reason::KEEP_ALIVE_TIMEOUT, out);
            }
            State::Closed => {}
        }
    }

    /// The connection broke or its input could not be decoded (`reason_code` from
    /// [`MqttError::reason_code`](super::MqttError::reason_code)): publishes the will of a
    /// connected session and closes. The decoder's own reply comes from
    /// [`MqttCodec::error_reply`](super::MqttCodec::error_reply).
    pub fn connection_lost(&mut self, reason_code: u8, out: &mut Vec<Effect>) {
        if self.state != State::Connected {
            self.drop_will();
        }
        self.close(reason_code, out);
    }

    fn on_packet(&mut self, packet: Packet, out: &mut Vec<Effect>) {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish, out),
            Packet::PubAck(ack) | Packet::PubComp(ack) => out.push(Effect::Delivered {
                packet_id: ack.packet_id,
                reason_code: ack.reason_code,
            }),
            Packet::PubRec(rec) if rec.reason_code >= 0x80 => out.push(Effect::Delivered {
                packet_id: rec.packet_id,
                reason_code: rec.reason_code,
            }),
            Packet::PubRec(rec) => {
                out.push(Effect::Send(Packet::PubRel(PubAck::new(rec.packet_id))))
            }
            Packet::PubRel(rel) => self.on_pubrel(rel.packet_id, out),
            Packet::Subscribe(subscribe) => out.push(Effect::Subscribe(subscribe)),
            Packet::Unsubscribe(unsubscribe) => out.push(Effect::Unsubscribe(unsubscribe)),
            Packet::PingReq => out.push(Effect::Send(Packet::PingResp)),
            Packet::Disconnect(disconnect) => self.on_disconnect(disconnect, out),
            Packet::Auth(auth) if self.enhanced_auth => out.push(Effect::Auth(auth)),
            Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp
            | Packet::Auth(_) => self.fail(reason::PROTOCOL_ERROR, out),
        }
    }

    fn on_publish(&mut self, mut publish: Publish, out: &mut Vec<Effect>) {
        if !publish.properties.subscription_identifiers.is_empty() {
            return self.fail(reason::PROTOCOL_ERROR, out);
        }
        if let Some(alias) = publish
            .properties
            .get_mut()
            .and_then(|p| p.topic_alias.take())
        {
            if alias == 0 || alias > self.config.topic_alias_maximum {
                return self.fail(reason::TOPIC_ALIAS_INVALID, out);
            }
            let slot = usize::from(alias - 1);
            if publish.topic.is_empty() {
                let known = self.rare.as_ref().and_then(|r| r.aliases.get(slot));
                match known.cloned().flatten() {
                    Some(topic) => publish.topic = topic,
                    None => return self.fail(reason::PROTOCOL_ERROR, out),
                }
            } else {
                let aliases = &mut self.rare().aliases;
                if aliases.len() <= slot {
                    aliases.resize(slot + 1, None);
                }
                aliases[slot] = Some(publish.topic.clone());
            }
        }
        if publish.qos == QoS::AtMostOnce {
            return out.push(Effect::Publish(publish));
        }
        if let Some(index) = self.find(publish.packet_id) {
            let stage = self.rare().in_flight[index].stage;
            match (publish.qos, stage) {
                // Released by PUBREC already: answer again, never publish twice.
                (QoS::ExactlyOnce, Stage::AwaitingRelease) => {
                    out.push(Effect::Send(Packet::PubRec(PubAck::new(publish.packet_id))));
                }
                // Still in Kafka: the acknowledgement will follow.
                (qos, Stage::Kafka(pending)) if qos == pending => {}
                _ => self.fail(reason::PACKET_IDENTIFIER_IN_USE, out),
            }
            return;
        }
        if self.in_flight() >= usize::from(self.config.receive_maximum) {
            return self.fail(reason::RECEIVE_MAXIMUM_EXCEEDED, out);
        }
        self.rare().in_flight.push(InFlight {
            packet_id: publish.packet_id,
            stage: Stage::Kafka(publish.qos),
        });
        out.push(Effect::Publish(publish));
    }

    fn on_pubrel(&mut self, packet_id: u16, out: &mut Vec<Effect>) {
        let mut comp = PubAck::new(packet_id);
        match self.find(packet_id) {
            Some(index) if self.rare().in_flight[index].stage == Stage::AwaitingRelease => {
                self.rare().in_flight.swap_remove(index);
            }
            // Still in Kafka: a PUBREL before our PUBREC breaks the QoS 2 flow.
            Some(_) => return self.fail(reason::PROTOCOL_ERROR, out),
            // Already completed (a retransmitted PUBREL): complete again.
            None if self.version.is_v5() => comp.reason_code = reason::PACKET_IDENTIFIER_NOT_FOUND,
            None => {}
        }
        out.push(Effect::Send(Packet::PubComp(comp)));
    }

    fn on_disconnect(&mut self, disconnect: Disconnect, out: &mut Vec<Effect>) {
        let expiry = disconnect.properties.session_expiry_interval.unwrap_or(0);
        if self.session_expiry == 0 && expiry != 0 {
            return self.fail(reason::PROTOCOL_ERROR, out);
        }
        if disconnect.reason_code != reason::DISCONNECT_WITH_WILL {
            self.drop_will();
        }
        self.close(disconnect.reason_code, out);
    }

    fn find(&self, packet_id: u16) -> Option<usize> {
        let in_flight = &self.rare.as_ref()?.in_flight;
        in_flight.iter().position(|f| f.packet_id == packet_id)
    }

    /// Ends a connected session because of the client: DISCONNECT (MQTT 5), will, close.
    fn fail(&mut self, reason_code: u8, out: &mut Vec<Effect>) {
        if self.version.is_v5() && self.state == State::Connected {
            out.push(Effect::Send(Packet::Disconnect(Disconnect::new(
                reason_code,
            ))));
        }
        if self.state != State::Connected {
            self.drop_will();
        }
        self.close(reason_code, out);
    }

    fn close(&mut self, reason_code: u8, out: &mut Vec<Effect>) {
        if self.state == State::Closed {
            return;
        }
        if let Some(will) = self.rare.as_mut().and_then(|r| r.will.take()) {
            out.push(Effect::PublishWill(*will));
        }
        self.state = State::Closed;
        self.deadline = NO_DEADLINE;
        self.rare = None;
        out.push(Effect::Close { reason_code });
    }
}

#[cfg(test)]
mod tests;
