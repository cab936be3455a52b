//! The produce side of an MQTT connection: routing a PUBLISH to its Kafka record (and its
//! retained copy), and turning Kafka's answers into PUBACK / PUBREC or refusals, in the
//! order the PUBLISHes came in.

use std::collections::VecDeque;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use codecs::mqtt::{Effect, KafkaAck, Publish, QoS};
use kafka_wire::{DeliveryFuture, KafkaCode, ProducerRecord};
use tracing::debug;

use super::{reason, Conn, Event, PendingAck};
use crate::metrics::ErrorKind;
use crate::route;

/// Where a PUBLISH comes from, which decides the producer its record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// The client sent it: its route's producer (the route's acks).
    Client,
    /// The connection's will: the process's producer, as when another process publishes
    /// the will of a process that died.
    Will,
}

impl Conn {
    /// Routes a PUBLISH and hands its record to the producer.
    pub(super) async fn publish(&mut self, publish: Publish, origin: Origin) {
        let received = self.core.shard.read_at();
        if self
            .core
            .acl()
            .is_some_and(|acl| !acl.may_publish(publish.topic.as_str()))
        {
            debug!(
                topic = publish.topic.as_str(),
                "PUBLISH not allowed by the ACL"
            );
            self.core.shard.metrics.error(ErrorKind::Auth);
            if publish.qos == QoS::AtMostOnce {
                // Nothing to answer a QoS 0 PUBLISH with: end the session, visibly.
                self.session_close(reason::NOT_AUTHORIZED);
            } else {
                // MQTT 5: PUBACK/PUBREC 0x87; 3.1.1 cannot refuse, so the session closes.
                self.refuse(&publish, reason::NOT_AUTHORIZED);
            }
            return;
        }
        let listener = self.core.listener.clone();
        let Some(route) = listener.routes.find(publish.topic.as_str()) else {
            // No route: refuse rather than drop silently.
            self.refuse(&publish, reason::IMPLEMENTATION_SPECIFIC);
            return;
        };
        let key: &[u8] = if route.key.is_topic() {
            publish.topic.as_str().as_bytes()
        } else {
            route
                .key
                .render(publish.topic.as_str(), &self.core.info, None, &mut self.key);
            &self.key
        };
        let key = (!route.key.is_empty()).then_some(key);
        let (mut headers, mut digits) = (Vec::new(), route::Digits::default());
        route::headers(route, &publish, &self.core.info, &mut digits, &mut headers);
        let retained = if publish.retain {
            match self.retain(&publish, &headers).await {
                Ok(delivery) => Some(delivery),
                Err(e) => {
                    debug!(error = %e, "retained message refused before sending");
                    self.refuse(&publish, reason_for(&e));
                    return;
                }
            }
        } else {
            None
        };
        let record = ProducerRecord {
            topic: &route.kafka_topic,
            partition: None,
            key,
            value: Some(&publish.payload),
            headers: &headers,
            timestamp: Some(self.core.shard.read_at_unix_ms()),
            partitioning: route.partitioning,
        };
        let producer = match origin {
            Origin::Client => self.core.shard.producer_for(route),
            Origin::Will => &self.core.shard.producer,
        };
        match producer.send(record).await {
            Ok(delivery) => self.acks.push_back(PendingAck {
                retained,
                packet_id: if publish.qos == QoS::AtMostOnce {
                    0
                } else {
                    publish.packet_id
                },
                qos: publish.qos,
                received,
                delivery,
            }),
            Err(e) => {
                debug!(error = %e, topic = %route.kafka_topic, "record refused before sending");
                self.core
                    .shard
                    .metrics
                    .records_failed
                    .fetch_add(1, Ordering::Relaxed);
                self.refuse(&publish, reason_for(&e));
            }
        }
    }

    /// Writes a retained PUBLISH to the retained topic (key = MQTT topic; an empty payload
    /// becomes a null value, which deletes it).
    async fn retain(
        &self,
        publish: &Publish,
        headers: &[kafka_wire::record::Header<'_>],
    ) -> Result<DeliveryFuture, kafka_wire::Error> {
        let record = ProducerRecord {
            topic: self.core.shard.delivery.retained_topic(),
            partition: None,
            key: Some(publish.topic.as_str().as_bytes()),
            value: (!publish.payload.is_empty()).then_some(&publish.payload[..]),
            headers,
            // Its expiry counts from here, as the message's does.
            timestamp: Some(self.core.shard.read_at_unix_ms()),
            partitioning: None,
        };
        self.core.shard.producer.send(record).await
    }

    pub(super) fn refuse(&mut self, publish: &Publish, reason_code: u8) {
        if publish.qos != QoS::AtMostOnce {
            self.core.session.on_kafka_ack(
                publish.packet_id,
                KafkaAck::Failed { reason_code },
                &mut self.effects,
            );
        }
    }

    /// Counts Kafka's answer for a PUBLISH and tells the session, which queues the
    /// PUBACK / PUBREC (or the refusal). `now` is when the answer was taken.
    pub(super) fn on_ack(
        &mut self,
        ack: PendingAck,
        result: Result<kafka_wire::RecordMetadata, kafka_wire::Error>,
        now: Instant,
    ) {
        let m = &self.core.shard.metrics;
        let outcome = match result {
            Ok(_) => {
                m.records_produced.fetch_add(1, Ordering::Relaxed);
                m.produce_latency(now.saturating_duration_since(ack.received));
                KafkaAck::Written
            }
            Err(e) => {
                m.records_failed.fetch_add(1, Ordering::Relaxed);
                m.error(ErrorKind::Kafka);
                debug!(error = %e, "Kafka refused a record");
                KafkaAck::Failed {
                    reason_code: reason_for(&e),
                }
            }
        };
        if ack.qos != QoS::AtMostOnce {
            self.lend_effects();
            self.core
                .session
                .on_kafka_ack(ack.packet_id, outcome, &mut self.effects);
        }
    }

    /// Runs the session's effects without awaiting when they are only replies and a close
    /// (what acknowledgements produce); `false`, untouched, when something needs
    /// [`Conn::execute`].
    pub(super) fn execute_replies(&mut self) -> bool {
        let simple = self
            .effects
            .iter()
            .all(|e| matches!(e, Effect::Send(_) | Effect::Close { .. }));
        if !simple {
            return false;
        }
        let mut effects = std::mem::take(&mut self.effects);
        for effect in effects.drain(..) {
            match effect {
                Effect::Send(packet) => self.send(&packet),
                Effect::Close { reason_code } => self.closing = Some(reason_code),
                _ => unreachable!("checked above"),
            }
        }
        self.effects = effects;
        self.return_effects();
        true
    }
}

/// Polls the oldest pending PUBLISH: acknowledgements leave in arrival order.
pub(super) fn poll_front(acks: &mut VecDeque<PendingAck>, cx: &mut Context<'_>) -> Poll<Event> {
    let Some(front) = acks.front_mut() else {
        return Poll::Pending;
    };
    if let Some(retained) = &mut front.retained {
        match Pin::new(retained).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(_)) => front.retained = None,
            Poll::Ready(Err(e)) => {
                // The PUBLISH is refused even if its message record got in: the client may
                // send it again (a duplicate, which QoS 1 allows), but never believes a
                // retained message was stored that was not.
                let ack = acks.pop_front().expect("front exists");
                return Poll::Ready(Event::Acked(ack, Err(e)));
            }
        }
    }
    match Pin::new(&mut front.delivery).poll(cx) {
        Poll::Ready(result) => {
            let ack = acks.pop_front().expect("front exists");
            Poll::Ready(Event::Acked(ack, result))
        }
        Poll::Pending => Poll::Pending,
    }
}

/// The MQTT 5 reason code for a record Kafka did not take.
fn reason_for(e: &kafka_wire::Error) -> u8 {
    match e.kafka_code() {
        Some(KafkaCode::MessageTooLarge | KafkaCode::RecordListTooLarge) => {
            reason::PACKET_TOO_LARGE
        }
        Some(KafkaCode::TopicAuthorizationFailed | KafkaCode::ClusterAuthorizationFailed) => {
            reason::NOT_AUTHORIZED
        }
        Some(KafkaCode::ThrottlingQuotaExceeded) => reason::QUOTA_EXCEEDED,
        _ => reason::UNSPECIFIED_ERROR,
    }
}
