//! A resumed persistent session's backlog: what was published between its stored cursor
//! and where the process's live reader is, read by a reader of its own (the live reader
//! does not go back), then the live messages held meanwhile.

use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use codecs::mqtt::{QoS, TopicFilter};
use kafka_wire::fetch::OffsetReset;
use kafka_wire::{Client, FetchOptions, PartitionReader};
use tracing::debug;

use super::{
    from_headers, DeliveryTopics, Granted, Mailbox, Message, Outgoing, Source, TopicPartition,
};
use crate::metrics::ShardMetrics;
use crate::runtime;

/// Delivers a resumed session's backlog: for each partition, the records in `[from, to)`
/// whose keys match its filters, waiting for room in the mailbox; then lets the live
/// messages held meanwhile through. Stops when the connection is gone.
pub(super) async fn catch_up(
    client: Client,
    mailbox: Weak<Mailbox>,
    filters: Vec<(TopicFilter, Granted)>,
    plan: Vec<(TopicPartition, i64, i64)>,
    in_flight: HashMap<(TopicPartition, i64), u16>,
    topics: Rc<DeliveryTopics>,
    metrics: Arc<ShardMetrics>,
) {
    let options = FetchOptions {
        max_wait: Duration::from_millis(100),
        ..FetchOptions::default()
    };
    for ((topic, partition), from, to) in plan {
        let tp = (topic.clone(), partition);
        let Some(template) = topics.template(&topic) else {
            continue;
        };
        let mut reader = PartitionReader::at(
            client.clone(),
            &topic,
            partition,
            from,
            options.clone(),
            OffsetReset::Earliest,
        );
        while reader.position() < to {
            let Some(m) = mailbox.upgrade() else { return };
            m.wait_room().await;
            drop(m);
            let fetched = match reader.poll().await {
                Ok(f) => f,
                Err(e) => {
                    debug!(error = %e, "catch-up fetch failed; retrying");
                    runtime::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Some(m) = mailbox.upgrade() else { return };
            for record in fetched.records.iter().filter(|r| r.offset < to) {
                let Some(topic) = template.topic(record.key.as_ref(), &record.headers) else {
                    continue;
                };
                let name = topic.as_str();
                let meta = from_headers(&record.headers);
                let own = meta
                    .client_id
                    .as_deref()
                    .is_some_and(|c| c == m.client_id.borrow().as_bytes());
                let (mut qos, mut retain, mut ids, mut any) =
                    (QoS::AtMostOnce, false, Vec::new(), false);
                for (_, g) in filters
                    .iter()
                    .filter(|(f, g)| f.matches(name) && !(g.no_local && own))
                {
                    any = true;
                    qos = qos.max(g.qos);
                    retain |= g.retain_as_published && meta.retain;
                    ids.extend(g.id);
                }
                if !any {
                    continue;
                }
                // Expired while the client was away: the cursor moves past it unsent.
                let expires_at = meta.expires_at(record.timestamp);
                if super::message::expired(expires_at, crate::sessions::now_ms()) {
                    metrics.expired.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                m.enqueue(Outgoing {
                    message: Rc::new(Message::new(
                        topic.clone(),
                        record.value.clone().unwrap_or_default(),
                        Rc::new(meta.properties),
                        expires_at,
                    )),
                    qos: qos.min(meta.qos),
                    retain,
                    source: Some(Source {
                        partition: tp.clone(),
                        offset: record.offset,
                    }),
                    subscription_ids: ids,
                    redelivery: in_flight.get(&(tp.clone(), record.offset)).copied(),
                    share: None,
                });
            }
            if let Some(t) = &m.tracking {
                t.borrow_mut()
                    .catch_up
                    .insert(tp.clone(), reader.position().min(to));
            }
        }
        if let Some(m) = mailbox.upgrade() {
            if let Some(t) = &m.tracking {
                t.borrow_mut().catch_up.remove(&tp);
            }
        }
    }
    if let Some(m) = mailbox.upgrade() {
        m.caught_up();
    }
}
