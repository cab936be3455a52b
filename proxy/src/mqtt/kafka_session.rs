//! The MQTT connection's session in Kafka: the claim every CONNECT makes, resuming a
//! persistent session, saving its subscriptions, cursor and deliveries in flight, ending
//! it, and the will (routed at CONNECT, published here or by another process).

use std::rc::Rc;
use std::time::Duration;

use codecs::mqtt::{MqttString, ProtocolVersion, QoS, TopicFilter};
use kafka_wire::ProducerRecord;
use tracing::{debug, warn};

use super::publish::Origin;
use super::subscriber::Subscriber;
use super::{Conn, Core};
use crate::delivery::{Granted, Mailbox};
use crate::runtime;
use crate::sessions::{InFlight, StoredSub, StoredWill, TakeoverSignal};
use crate::shard::Shard;

/// The Kafka-kept session this connection serves (every connected client has one, so it
/// is kept within mimalloc's 48-byte class).
pub(super) struct Owned {
    pub(super) gen: u64,
    /// Seconds the session outlives the connection; 0: it ends with it.
    pub(super) expiry_s: u32,
    pub(super) takeover: TakeoverSignal,
    /// Subscriptions, as stored.
    pub(super) subs: Subs,
    /// Deliveries completed since the state was last saved, and when that was.
    pub(super) since_save: u32,
    /// On the shard's clock ([`Shard::now_ms`]): 8 bytes where an `Instant` takes 16.
    pub(super) saved_at_ms: u64,
    /// The will, routed, while the connection may still end abnormally.
    pub(super) will: Option<Box<StoredWill>>,
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Owned>() <= 48);

/// A session's stored subscriptions: one pointer, null for none (most sessions), where a
/// `Vec` would take 24 bytes of every connection's [`Owned`].
#[derive(Default)]
#[expect(
    clippy::box_collection,
    reason = "a thin pointer: 8 bytes where a Vec or a boxed slice takes 24 or 16"
)]
pub(super) struct Subs(Option<Box<Vec<StoredSub>>>);

impl Subs {
    fn new(subs: Vec<StoredSub>) -> Subs {
        Subs((!subs.is_empty()).then(|| Box::new(subs)))
    }

    pub(super) fn to_vec(&self) -> Vec<StoredSub> {
        self.0.as_deref().cloned().unwrap_or_default()
    }

    pub(super) fn retain(&mut self, keep: impl FnMut(&StoredSub) -> bool) {
        if let Some(subs) = &mut self.0 {
            subs.retain(keep);
            if subs.is_empty() {
                self.0 = None;
            }
        }
    }

    pub(super) fn push(&mut self, sub: StoredSub) {
        self.0.get_or_insert_default().push(sub);
    }
}

/// A persistent session's cursor is saved after this many completed deliveries, or this
/// long after the first one since the last save: what a crash makes the next owner deliver
/// again.
pub(super) const SAVE_EVERY: u32 = 256;
pub(super) const SAVE_AFTER: Duration = Duration::from_secs(1);

impl Owned {
    pub(super) fn save_due(&self, now_ms: u64) -> bool {
        self.expiry_s > 0
            && (self.since_save >= SAVE_EVERY
                || (self.since_save > 0 && self.save_after(now_ms).is_zero()))
    }

    /// How long until a save is due by time (given completed deliveries to save).
    pub(super) fn save_after(&self, now_ms: u64) -> Duration {
        let at = self.saved_at_ms + SAVE_AFTER.as_millis() as u64;
        Duration::from_millis(at.saturating_sub(now_ms))
    }
}

impl Conn {
    /// Claims the client's session in Kafka (every CONNECT does: that is how a second
    /// connection with the same client identifier, anywhere, takes over). Returns the
    /// stored state when a persistent session is resumed.
    pub(super) async fn claim(
        &mut self,
        connect: &codecs::mqtt::Connect,
    ) -> Result<Option<crate::sessions::Stored>, crate::sessions::ClaimError> {
        let expiry_s = match connect.protocol {
            ProtocolVersion::V5 => connect.properties.session_expiry_interval.unwrap_or(0),
            // 3.1.1: clean session 0 keeps the session until a clean session 1 ends it.
            _ if connect.clean_start => 0,
            _ => u32::MAX,
        };
        let client_id = self.core.info.client_id.clone();
        let will = connect.will.as_ref().and_then(|w| self.route_will(w));
        // A will must be in Kafka before the CONNACK, or no other process could publish it
        // if this one died; a clean session without one claims in the background.
        if connect.clean_start && expiry_s == 0 && will.is_none() {
            let takeover =
                self.core
                    .shard
                    .sessions
                    .claim_clean(&client_id, self.core.id, will.clone());
            self.core.owned = Some(Box::new(Owned {
                gen: 0,
                expiry_s,
                takeover,
                subs: Subs::default(),
                since_save: 0,
                saved_at_ms: self.core.shard.now_ms(),
                will: will.clone().map(Box::new),
            }));
            return Ok(None);
        }
        let (claim, takeover) = self
            .core
            .shard
            .sessions
            .claim(
                &client_id,
                self.core.id,
                connect.clean_start,
                expiry_s,
                will.clone(),
            )
            .await?;
        let subs = claim
            .resumed
            .as_ref()
            .map(|s| s.subs.clone())
            .unwrap_or_default();
        self.core.owned = Some(Box::new(Owned {
            gen: claim.gen,
            expiry_s,
            takeover,
            subs: Subs::new(subs),
            since_save: 0,
            saved_at_ms: self.core.shard.now_ms(),
            will: will.clone().map(Box::new),
        }));
        Ok(claim.resumed)
    }

    /// The Kafka record a will becomes, by this listener's routes (`None`: no route, so
    /// no other process could publish it either).
    pub(super) fn route_will(&self, will: &codecs::mqtt::Will) -> Option<StoredWill> {
        use base64::Engine as _;
        let base64 = &base64::engine::general_purpose::STANDARD;
        let route = self.core.listener.routes.find(will.topic.as_str())?;
        let mut key = Vec::new();
        let key = (!route.key.is_empty()).then(|| {
            route
                .key
                .render(will.topic.as_str(), &self.core.info, None, &mut key);
            String::from_utf8_lossy(&key).into_owned()
        });
        let publish = will_publish(will);
        let (mut headers, mut digits) = (Vec::new(), crate::route::Digits::default());
        crate::route::headers(route, &publish, &self.core.info, &mut digits, &mut headers);
        let headers = headers
            .iter()
            .map(|h| (h.key.to_owned(), base64.encode(h.value.unwrap_or_default())))
            .collect();
        Some(StoredWill {
            topic: will.topic.as_str().to_owned(),
            payload: base64.encode(&will.payload),
            qos: will.qos as u8,
            retain: will.retain,
            delay_s: will.properties.will_delay_interval.unwrap_or(0),
            kafka_topic: route.kafka_topic.clone(),
            key,
            headers: Some(headers),
        })
    }

    /// The connection ended without DISCONNECT: publishes its will now, or after its MQTT
    /// 5 will delay unless the session is claimed again meanwhile.
    pub(super) async fn publish_will(&mut self, will: codecs::mqtt::Will) {
        let delay = will.properties.will_delay_interval.unwrap_or(0);
        let stored = self
            .core
            .owned
            .as_ref()
            .and_then(|o| o.will.clone())
            .map(|w| *w);
        match (delay, stored) {
            // MQTT 5 will delay: published later, unless the session was
            // claimed again meanwhile (the client came back, here or elsewhere).
            (1.., Some(stored)) => self.delay_will(stored),
            _ => {
                // Its record's timestamp, where its Message Expiry Interval
                // starts, is now, not the shard's last read.
                self.core.shard.mark_read();
                self.publish(will_publish(&will), Origin::Will).await;
            }
        }
        // Published (or scheduled): the session record no longer carries it.
        if let Some(o) = &mut self.core.owned {
            o.will = None;
        }
    }

    /// Publishes the will after its delay, unless the session was claimed again by then.
    pub(super) fn delay_will(&self, will: StoredWill) {
        if self.core.owned.is_none() {
            return;
        }
        let (shard, client_id, owner) = (
            self.core.shard.clone(),
            self.core.info.client_id.clone(),
            self.core.shard.sessions.owner(self.core.id),
        );
        runtime::spawn(async move {
            runtime::sleep(Duration::from_secs(u64::from(will.delay_s))).await;
            if !shard.sessions.is_current(&client_id, &owner) {
                debug!(client_id, "will not published: the session was resumed");
                return;
            }
            if let Err(e) = publish_stored_will(shard, client_id.to_string(), will).await {
                warn!(client_id, error = %e, "cannot publish a delayed will");
            }
        });
    }

    /// Resumes a persistent session's subscriptions and delivers what it missed.
    pub(super) async fn resume(&mut self, mut state: crate::sessions::Stored) {
        // The ACL may have changed since the session was stored (a restart with other
        // rules, or another principal using the client id): it drops what it now refuses.
        if let Some(acl) = self.core.acl() {
            let allowed = |s: &StoredSub| {
                let filter = MqttString::try_from(s.filter.clone()).ok();
                let filter = filter.and_then(|f| TopicFilter::new(f).ok());
                let allowed = filter.is_some_and(|f| acl.may_subscribe(&f));
                if !allowed {
                    debug!(
                        filter = s.filter,
                        "stored subscription dropped: the ACL refuses it"
                    );
                }
                allowed
            };
            state.subs.retain(allowed);
            if let Some(o) = &mut self.core.owned {
                o.subs
                    .retain(|s| state.subs.iter().any(|r| r.filter == s.filter));
            }
        }
        if state.subs.is_empty() {
            self.save_session().await;
            return;
        }
        let mailbox = Rc::new(Mailbox::persistent());
        let client_id = self.core.info.client_id.clone();
        mailbox.set_client_id(&client_id);
        let in_flight = state
            .in_flight
            .iter()
            .map(|f| {
                (
                    ((Rc::from(f.topic.as_str()), f.partition), f.offset),
                    f.packet_id,
                )
            })
            .collect();
        let subs: Vec<(String, Granted)> = state
            .subs
            .iter()
            .filter_map(|s| {
                let granted = Granted {
                    qos: QoS::from_bits(s.qos)?,
                    no_local: s.no_local,
                    retain_as_published: s.retain_as_published,
                    id: s.id,
                };
                Some((s.filter.clone(), granted))
            })
            .collect();
        // Shared subscriptions resume through their consumer groups, not the cursor.
        let (shared, subs): (Vec<_>, Vec<_>) = subs
            .into_iter()
            .partition(|(f, _)| super::shared::is_shared(f));
        self.core
            .shard
            .delivery
            .resume(self.core.id, &mailbox, &subs, &state.cursor, in_flight)
            .await;
        self.core.subscriber = Some(Box::new(Subscriber {
            mailbox,
            in_flight: Vec::new(),
            window: usize::from(self.core.client_receive_maximum),
            // New identifiers start after the ones being redelivered.
            next_packet_id: state
                .in_flight
                .iter()
                .map(|f| f.packet_id)
                .max()
                .unwrap_or(0),
        }));
        self.resume_shared(&shared).await;
        // The claim record carried no subscriptions: store the resumed state now.
        self.save_session().await;
    }

    /// Writes a persistent session's state (subscriptions, cursor) to Kafka and waits for
    /// it. A failure is logged: the previous state stands, and what was delivered since
    /// may be delivered again.
    pub(super) async fn save_session(&mut self) {
        let Some(state) = self.core.stored(true) else {
            return;
        };
        if state.expiry_s == 0 {
            return;
        }
        let client_id = self.core.info.client_id.clone();
        if let Err(e) = self
            .core
            .shard
            .sessions
            .save(&client_id, Some(&state))
            .await
        {
            warn!(client_id, error = %e, "cannot save the session state");
        }
        if let Some(o) = &mut self.core.owned {
            o.since_save = 0;
            o.saved_at_ms = self.core.shard.now_ms();
        }
    }
}

impl Core {
    /// The session's state as it stands, for saving.
    pub(super) fn stored(&self, connected: bool) -> Option<crate::sessions::Stored> {
        let o = self.owned.as_ref()?;
        let positions = self.shard.delivery.positions();
        let cursor = self
            .subscriber
            .as_ref()
            .map(|s| s.mailbox.cursor(&positions))
            .unwrap_or_default();
        Some(crate::sessions::Stored {
            gen: o.gen,
            owner: self.shard.sessions.owner(self.id),
            subs: o.subs.to_vec(),
            cursor,
            expiry_s: o.expiry_s,
            connected,
            at_ms: crate::sessions::now_ms(),
            will: o.will.clone().filter(|_| connected),
            // A save states the whole session; only claims carry the previous one over.
            resumes: false,
            in_flight: self
                .subscriber
                .iter()
                .flat_map(|s| s.in_flight.iter())
                .filter_map(|(packet_id, source)| {
                    let source = source.as_ref()?;
                    Some(InFlight {
                        topic: source.partition.0.to_string(),
                        partition: source.partition.1,
                        offset: source.offset,
                        packet_id: *packet_id,
                    })
                })
                .collect(),
        })
    }

    /// The connection ended: a persistent session is saved as disconnected (from when its
    /// expiry counts); any other ends (a null record). Only as the connection is dropped:
    /// it takes the client id.
    pub(super) fn release(&mut self, owned: Owned) {
        self.owned = Some(Box::new(owned));
        let state = self.stored(false);
        let owned = self.owned.take().expect("just set");
        let client_id = std::mem::take(&mut self.info.client_id);
        let sessions = self.shard.sessions.clone();
        sessions.release(&client_id, self.id);
        let state = state.filter(|s| s.expiry_s > 0);
        if state.is_none() && owned.gen == 0 {
            // A clean session claimed in the background (no will): nothing is cached for
            // it anywhere, so there is nothing to end.
            return;
        }
        let owner = sessions.owner(self.id);
        runtime::spawn(async move {
            let saved = match &state {
                Some(state) => sessions.save(&client_id, Some(state)).await,
                // Also clears the will the claim carries, so no other process publishes it.
                None => sessions.end_clean(&client_id, &owner).await,
            };
            if let Err(e) = saved {
                warn!(error = %e, client_id, "cannot save the session at disconnect");
            }
        });
    }
}

/// Writes a will that was routed at CONNECT (a delayed will, or one of a session whose
/// process died) to Kafka, and to the retained topic when it is retained; returns once
/// Kafka has it.
pub async fn publish_stored_will(
    shard: Rc<Shard>,
    client_id: String,
    will: StoredWill,
) -> kafka_wire::Result<()> {
    use base64::Engine as _;
    use kafka_wire::record::Header;
    let base64 = &base64::engine::general_purpose::STANDARD;
    let payload = base64.decode(&will.payload).unwrap_or_default();
    let stored: Vec<(&str, Vec<u8>)> = match &will.headers {
        Some(headers) => headers
            .iter()
            .map(|(key, value)| (key.as_str(), base64.decode(value).unwrap_or_default()))
            .collect(),
        // Stored by a sluice that did not keep the route's headers.
        None => {
            const QOS: [&[u8]; 3] = [b"0", b"1", b"2"];
            vec![
                ("mqtt.client_id", client_id.clone().into_bytes()),
                ("mqtt.qos", QOS[usize::from(will.qos.min(2))].to_vec()),
            ]
        }
    };
    let headers: Vec<Header<'_>> = stored
        .iter()
        .map(|(key, value)| Header {
            key,
            value: Some(value),
        })
        .collect();
    let mut deliveries = Vec::new();
    if will.retain {
        deliveries.push(
            shard
                .producer
                .send(ProducerRecord {
                    topic: shard.delivery.retained_topic(),
                    partition: None,
                    key: Some(will.topic.as_bytes()),
                    value: (!payload.is_empty()).then_some(&payload[..]),
                    headers: &headers,
                    timestamp: None,
                    partitioning: None,
                })
                .await?,
        );
    }
    deliveries.push(
        shard
            .producer
            .send(ProducerRecord {
                topic: &will.kafka_topic,
                partition: None,
                key: will.key.as_deref().map(str::as_bytes),
                value: Some(&payload),
                headers: &headers,
                timestamp: None,
                partitioning: None,
            })
            .await?,
    );
    for d in deliveries {
        d.await?;
    }
    Ok(())
}

/// The PUBLISH a will becomes: its topic, payload, QoS and retain flag, and the MQTT 5
/// properties a PUBLISH shares with a will (the will delay is not one of them).
pub(super) fn will_publish(will: &codecs::mqtt::Will) -> codecs::mqtt::Publish {
    let p = &will.properties;
    let mut properties = codecs::mqtt::PublishProperties::default();
    properties.payload_format_indicator = p.payload_format_indicator;
    properties.message_expiry_interval = p.message_expiry_interval;
    properties.content_type = p.content_type.clone();
    properties.response_topic = p.response_topic.clone();
    properties.correlation_data = p.correlation_data.clone();
    properties.user_properties = p.user_properties.clone();
    codecs::mqtt::Publish {
        topic: will.topic.clone(),
        payload: will.payload.clone(),
        qos: will.qos,
        retain: will.retain,
        properties: properties.into(),
        ..codecs::mqtt::Publish::default()
    }
}
