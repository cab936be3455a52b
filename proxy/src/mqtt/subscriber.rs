//! The MQTT connection as a subscriber: SUBSCRIBE with the retained messages it asks for,
//! and writing what its mailbox holds within the client's in-flight window.

use std::rc::Rc;
use std::sync::atomic::Ordering;

use codecs::mqtt::{Packet, ProtocolVersion, Publish, QoS, RetainHandling};
use codecs::Encoder;
use tracing::debug;

use super::{reason, Conn};
use crate::delivery::{Granted, Mailbox, Recipient, Source};
use crate::metrics::ErrorKind;
use crate::sessions::StoredSub;

/// Deliveries in flight per subscriber when the client does not announce its Receive
/// Maximum (MQTT 3.1.1 has none).
pub(super) const DEFAULT_DELIVERY_WINDOW: u16 = 64;

/// A subscriber's delivery state (boxed: most connections never subscribe).
pub(super) struct Subscriber {
    pub(super) mailbox: Rc<Mailbox>,
    /// QoS 1/2 PUBLISHes sent and not yet acknowledged: packet identifier and source.
    pub(super) in_flight: Vec<(u16, Option<Source>)>,
    /// At most this many in flight: the client's Receive Maximum (MQTT 5), else 64.
    pub(super) window: usize,
    pub(super) next_packet_id: u16,
}

impl Subscriber {
    pub(super) fn packet_id(&mut self) -> u16 {
        loop {
            self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
            if !self
                .in_flight
                .iter()
                .any(|(id, _)| *id == self.next_packet_id)
            {
                return self.next_packet_id;
            }
        }
    }
}

impl Conn {
    /// Adds the subscriptions at the QoS asked for and answers with SUBACK once the
    /// shard's readers are tailing Kafka (or, for a shared subscription, once the shard is
    /// in the share's consumer group). A filter the ACL does not allow gets Not authorized
    /// (0x87; 3.1.1 has only Failure, 0x80), the others of the same SUBSCRIBE go on.
    pub(super) async fn subscribe(&mut self, sub: codecs::mqtt::Subscribe) {
        let v5 = self.core.codec.version() == Some(ProtocolVersion::V5);
        let delivery = self.core.shard.delivery.clone();
        let mut codes = Vec::with_capacity(sub.subscriptions.len());
        for s in &sub.subscriptions {
            let refused = if self.core.acl().is_some_and(|a| !a.may_subscribe(&s.filter)) {
                debug!(
                    filter = s.filter.as_str(),
                    "SUBSCRIBE not allowed by the ACL"
                );
                self.core.shard.metrics.error(ErrorKind::Auth);
                Some(reason::NOT_AUTHORIZED)
            } else if !delivery.available() {
                Some(reason::UNSPECIFIED_ERROR)
            } else {
                None
            };
            if let Some(code) = refused {
                codes.push(if v5 { code } else { reason::UNSPECIFIED_ERROR });
                continue;
            }
            let qos = s.options.qos;
            if self.core.subscriber.is_none()
                && self.core.owned.as_ref().is_some_and(|o| o.expiry_s > 0)
            {
                delivery.attach(self.core.id, Rc::new(Mailbox::persistent()));
            }
            let granted = Granted {
                qos,
                no_local: s.options.no_local,
                retain_as_published: s.options.retain_as_published,
                id: sub.properties.subscription_identifier,
            };
            let shared = s.filter.shared().is_some();
            let (mailbox, new) = if shared {
                match self.subscribe_shared(s.filter.as_str(), granted).await {
                    Some(mailbox) => (mailbox, false),
                    None => {
                        codes.push(reason::UNSPECIFIED_ERROR);
                        continue;
                    }
                }
            } else {
                delivery
                    .subscribe(
                        self.core.id,
                        &self.core.info.client_id,
                        s.filter.as_str(),
                        granted,
                    )
                    .await
            };
            // Retained messages go out after the SUBACK (they are written on a later
            // event), as retain handling asks (MQTT 5 §3.3.1.3; 3.1.1 always sends them);
            // never to shared subscriptions (§4.8.2).
            let send_retained = !shared
                && match s.options.retain_handling {
                    RetainHandling::OnSubscribe => true,
                    RetainHandling::OnNewSubscribe => new,
                    RetainHandling::Never => false,
                };
            if send_retained {
                delivery.send_retained(&s.filter, qos, &mailbox);
            }
            if self.core.subscriber.is_none() {
                let window = usize::from(self.core.client_receive_maximum);
                self.core.subscriber = Some(Box::new(Subscriber {
                    mailbox,
                    in_flight: Vec::new(),
                    window,
                    next_packet_id: 0,
                }));
            }
            codes.push(qos as u8);
            if let Some(o) = &mut self.core.owned {
                o.subs.retain(|stored| stored.filter != s.filter.as_str());
                o.subs.push(StoredSub {
                    filter: s.filter.as_str().to_owned(),
                    qos: qos as u8,
                    no_local: granted.no_local,
                    retain_as_published: granted.retain_as_published,
                    id: granted.id,
                });
            }
        }
        // A persistent session's subscriptions are in Kafka before the SUBACK.
        self.save_session().await;
        self.core
            .session
            .suback(sub.packet_id, codes, &mut self.effects);
    }

    /// Removes the subscriptions (from the stored session first) and answers with UNSUBACK.
    pub(super) async fn unsubscribe(&mut self, unsub: codecs::mqtt::Unsubscribe) {
        if let Some(o) = &mut self.core.owned {
            o.subs
                .retain(|s| !unsub.filters.iter().any(|u| u.as_str() == s.filter));
        }
        Box::pin(self.save_session()).await;
        let delivery = &self.core.shard.delivery;
        let codes = unsub
            .filters
            .iter()
            .map(|f| {
                delivery.unsubscribe(self.core.id, f.as_str())
                    || self.core.shard.shares.unsubscribe(self.core.id, f.as_str())
            })
            .map(|existed| match existed {
                true => 0,
                false => reason::NO_SUBSCRIPTION_EXISTED,
            })
            .collect();
        self.core
            .session
            .unsuback(unsub.packet_id, codes, &mut self.effects);
    }

    /// The client acknowledged the delivery numbered `packet_id` (PUBACK, or PUBCOMP).
    pub(super) fn delivered(&mut self, packet_id: u16) {
        if let Some(s) = &mut self.core.subscriber {
            if let Some(i) = s.in_flight.iter().position(|(id, _)| *id == packet_id) {
                match s.in_flight.swap_remove(i) {
                    (_, Some(source)) => s.mailbox.done(&source),
                    (_, None) => self.core.shard.shares.delivered(self.core.id, packet_id),
                }
                if let Some(o) = &mut self.core.owned {
                    o.since_save += 1;
                }
            }
        }
    }

    /// Writes waiting deliveries, as many as the in-flight window allows. A subscriber
    /// whose mailbox overflowed is too slow: it is disconnected (Quota exceeded).
    pub(super) fn deliver(&mut self) {
        let Some(s) = self.core.subscriber.as_mut() else {
            return;
        };
        if s.mailbox.overflowed() {
            self.core
                .shard
                .metrics
                .slow_consumers
                .fetch_add(1, Ordering::Relaxed);
            debug!("subscriber too slow: its delivery queue is full");
            self.session_close(reason::QUOTA_EXCEEDED);
            return;
        }
        let Some(version) = self.core.codec.version() else {
            return;
        };
        let v5 = version == ProtocolVersion::V5;
        let to = Recipient {
            version,
            max_packet_size: self.core.codec.peer_max_packet_size(),
        };
        // Read once, and only when a message expires.
        let mut now = None;
        while s.in_flight.len() < s.window {
            let Some(m) = s.mailbox.pop() else { break };
            let share = m.share;
            let now_ms = match m.message.expires_at {
                Some(_) => *now.get_or_insert_with(crate::sessions::now_ms),
                None => 0,
            };
            if m.message.expired(now_ms) {
                // Not sent, and done with: MQTT 5 §3.3.2.3.3 (also for a redelivery;
                // 3.1.1 subscribers never see its expiry, but nor do they get it late).
                self.core
                    .shard
                    .metrics
                    .expired
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(ticket) = share {
                    ticket.ack();
                }
                if let Some(source) = &m.source {
                    s.mailbox.done(source);
                }
                continue;
            }
            // A resumed session's unacknowledged delivery goes again with DUP and its
            // packet identifier (MQTT 5 §4.4), unless that identifier is taken meanwhile.
            let redelivery = m
                .redelivery
                .filter(|id| m.qos != QoS::AtMostOnce && !s.in_flight.iter().any(|(i, _)| i == id));
            let packet_id = match (m.qos, redelivery) {
                (QoS::AtMostOnce, _) => 0,
                (_, Some(id)) => id,
                _ => s.packet_id(),
            };
            let written = if redelivery.is_none() && (m.subscription_ids.is_empty() || !v5) {
                // The common case: the bytes every subscriber of this variant shares.
                m.message
                    .write(to, m.qos, m.retain, packet_id, now_ms, &mut self.out)
            } else {
                let packet = Packet::Publish(Publish {
                    dup: redelivery.is_some(),
                    qos: m.qos,
                    retain: m.retain,
                    topic: m.message.topic.clone(),
                    packet_id,
                    payload: m.message.payload.clone(),
                    // MQTT 3.1.1 has no properties.
                    properties: if v5 {
                        let mut p = (*m.message.properties).clone();
                        p.subscription_identifiers = m.subscription_ids;
                        p.message_expiry_interval = m.message.expiry_left(now_ms);
                        p.into()
                    } else {
                        Default::default()
                    },
                });
                self.core.codec.encode(&packet, &mut self.out)
            };
            match written {
                Ok(()) if packet_id != 0 => {
                    s.in_flight.push((packet_id, m.source));
                    if let Some(ticket) = share {
                        self.core.shard.shares.sent(self.core.id, packet_id, ticket);
                    }
                }
                result => {
                    if let Some(ticket) = share {
                        ticket.ack();
                    }
                    // QoS 0 is done once written; a packet larger than the client's
                    // Maximum Packet Size is discarded as if sent (MQTT 5 §3.1.2.25).
                    if let Err(e) = result {
                        debug!(error = %e, "delivery not encodable; discarded");
                    }
                    if let Some(source) = &m.source {
                        s.mailbox.done(source);
                    }
                }
            }
        }
    }
}
