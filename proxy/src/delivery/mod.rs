//! Kafka → MQTT delivery, for clean and persistent (non-shared) subscriptions.
//!
//! The Kafka topics that back MQTT subscriptions are those the MQTT routes write with the
//! key `{topic}` (by default `mqtt-messages`): a record whose key is an MQTT topic name is
//! delivered to every subscription whose filter matches it, whoever produced it (a client
//! of this process, of another process, or any Kafka producer); and those of reverse
//! routes, whose records' MQTT topics a template names ([`topics`]).
//!
//! # The path of a record
//!
//! 1. **Fetch, once per process** ([`feed`]): from the first SUBSCRIBE on, one reader per
//!    delivery topic (on shard 0) tails every partition from the end, and sends each fetch
//!    response's records, shared `Bytes` slices of the response, to every shard.
//! 2. **Match, once per shard** ([`Delivery`], this file): each shard keeps its
//!    subscriptions in a [`SubscriptionIndex`] (a topic-filter trie) and matches each
//!    record's key against it. A record that matches decodes its headers once on that
//!    shard into one [`Message`] (topic, payload, MQTT 5 properties) and goes into each
//!    matching connection's [`Mailbox`] as an [`Outgoing`] holding an `Rc` of it. A
//!    client whose filters overlap gets one copy, at the highest granted QoS.
//! 3. **Encode, once per variant** ([`message`]): the connection's task writes its
//!    mailbox within the client's in-flight window; a fresh delivery copies the
//!    message's PUBLISH encoded once for its (version, QoS, retain) variant and writes its
//!    own packet identifier into it.
//!
//! A SUBACK is sent only after the shard has seen the readers' start offsets
//! ([`feed::Update::Started`], which every shard receives in order with the records), so
//! everything produced after the SUBACK is delivered.
//!
//! Retained messages live in a compacted topic (`mqtt.retained_topic`; key = MQTT topic, a
//! null or empty value deletes). The process's reader loads it from the beginning before
//! `Started` and keeps tailing it; each shard keeps the last value per key (which is also
//! right on a broker that does not compact).
//!
//! Persistent sessions resume from their stored cursor with a reader of their own
//! ([`catch_up`]) up to where this shard's view of the live reader is
//! ([`Delivery::positions`]), then continue with the live fan-out.
//!
//! Shared subscriptions are not fanned out here: each share reads through its own Kafka
//! consumer group (`crate::share`) and only uses the connection's [`Mailbox`].

mod catch_up;
pub mod feed;
mod headers;
mod mailbox;
mod message;
mod topics;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Poll, Waker};

use bytes::Bytes;
use codecs::mqtt::{MqttString, PublishProperties, QoS, SubscriptionIndex, TopicFilter};
use futures::StreamExt;
use kafka_wire::record::Record;
use kafka_wire::Client;

pub use feed::DeliveryFeed;
pub use headers::from_headers;
pub use mailbox::{Mailbox, Outgoing, Source, TopicPartition, MAILBOX_LIMIT};
pub use message::{Message, Recipient};
pub use topics::{keyed_by_topic, DeliveryTopics, TopicTemplate};

use crate::metrics::ShardMetrics;
use crate::runtime;

/// Fetches of a partition's end that a reader repeats when the answer skips offsets
/// ([`kafka_wire::FetchOptions::gap_retries`]): tansu 0.6 answers a reader tailing a
/// partition that several producers append to with batches after one not yet readable;
/// without these, subscribers lost up to a fifth of their messages with 5 ms fetch waits
/// (docs/benchmarks.md, "MQTT subscribers through sluice"). On Kafka they never happen.
pub const GAP_RETRIES: u32 = 3;

/// The last retained message of an MQTT topic.
#[derive(Debug, Clone)]
struct Retained {
    payload: Bytes,
    qos: QoS,
    properties: Rc<PublishProperties>,
    /// Milliseconds since the Unix epoch (MQTT 5 Message Expiry Interval).
    expires_at: Option<u64>,
}

/// A subscription as the index keeps it: granted QoS and MQTT 5 options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Granted {
    /// Granted QoS.
    pub qos: QoS,
    /// Not delivered the client's own messages.
    pub no_local: bool,
    /// Delivered with the retain flag they were published with.
    pub retain_as_published: bool,
    /// Subscription identifier, sent with every message it matches.
    pub id: Option<u32>,
}

/// The process's readers as this shard has seen them: not asked for, asked for (SUBACKs
/// wait), or started (this shard has their start offsets).
#[derive(Debug)]
enum Readers {
    Idle,
    Starting(Vec<Waker>),
    Running,
}

/// A shard's subscriptions, fed by the process's readers.
#[derive(Debug)]
pub struct Delivery {
    /// For persistent sessions' catch-up.
    client: Client,
    feed: Arc<DeliveryFeed>,
    /// The Kafka topics that back subscriptions, and their records' MQTT topics.
    topics: Rc<DeliveryTopics>,
    metrics: Arc<ShardMetrics>,
    index: RefCell<SubscriptionIndex<u64, Granted>>,
    mailboxes: RefCell<HashMap<u64, Rc<Mailbox>>>,
    readers: RefCell<Readers>,
    retained_topic: String,
    /// Retained messages by MQTT topic.
    retained: RefCell<HashMap<Bytes, Retained>>,
    /// Scratch for [`Delivery::fan_out`].
    matched: RefCell<Vec<(u64, Granted)>>,
    /// The delivery partitions, in the order [`feed::Update::Started`] listed them, with
    /// their topic's template.
    slots: RefCell<Vec<(TopicPartition, Rc<TopicTemplate>)>>,
    /// Per message partition: everything before this offset has been fanned out.
    positions: RefCell<HashMap<TopicPartition, i64>>,
}

impl Delivery {
    /// Delivery of `topics`, fed by `feed`.
    pub fn new(
        client: Client,
        feed: Arc<DeliveryFeed>,
        topics: Rc<DeliveryTopics>,
        retained_topic: String,
        metrics: Arc<ShardMetrics>,
    ) -> Delivery {
        Delivery {
            client,
            feed,
            topics,
            retained_topic,
            retained: RefCell::new(HashMap::new()),
            metrics,
            index: RefCell::new(SubscriptionIndex::new()),
            mailboxes: RefCell::new(HashMap::new()),
            readers: RefCell::new(Readers::Idle),
            matched: RefCell::new(Vec::new()),
            slots: RefCell::new(Vec::new()),
            positions: RefCell::new(HashMap::new()),
        }
    }

    /// The compacted topic of retained messages.
    pub fn retained_topic(&self) -> &str {
        &self.retained_topic
    }

    /// Whether any Kafka topic backs subscriptions.
    pub fn available(&self) -> bool {
        !self.topics.is_empty()
    }

    /// Applies what the process's readers send, for the shard's life.
    pub async fn follow(self: Rc<Self>, mut updates: feed::Receiver) {
        while let Some(update) = updates.next().await {
            match update {
                feed::Update::Retained(records) => {
                    records.iter().for_each(|r| self.apply_retained(r));
                }
                feed::Update::Started(partitions) => {
                    let slots: Vec<(TopicPartition, Rc<TopicTemplate>)> = partitions
                        .iter()
                        .map(|(topic, partition, _)| {
                            let template = self
                                .topics
                                .template(topic)
                                .expect("the feed reads the delivery topics");
                            ((Rc::from(&**topic), *partition), template)
                        })
                        .collect();
                    let mut positions = self.positions.borrow_mut();
                    for ((tp, _), (_, _, offset)) in slots.iter().zip(partitions.iter()) {
                        positions.insert(tp.clone(), *offset);
                    }
                    *self.slots.borrow_mut() = slots;
                    let waiting =
                        std::mem::replace(&mut *self.readers.borrow_mut(), Readers::Running);
                    if let Readers::Starting(wakers) = waiting {
                        wakers.into_iter().for_each(Waker::wake);
                    }
                }
                feed::Update::Records {
                    slot,
                    records,
                    next,
                } => {
                    let Some((tp, template)) = self.slots.borrow().get(slot).cloned() else {
                        continue;
                    };
                    if !self.index.borrow().is_empty() {
                        for record in records.iter() {
                            self.fan_out(record, &tp, &template);
                        }
                    }
                    // Synchronously with the fan-out above: `resume` relies on it.
                    self.positions.borrow_mut().insert(tp, next);
                }
            }
        }
    }

    /// Adds (or replaces) connection `conn`'s subscription to `filter`, and returns its
    /// mailbox and whether the subscription is new. Waits until this shard has the
    /// readers' start offsets (and the retained messages), so that what is produced after
    /// this returns is delivered.
    pub async fn subscribe(
        self: &Rc<Self>,
        conn: u64,
        client_id: &str,
        filter: &str,
        granted: Granted,
    ) -> (Rc<Mailbox>, bool) {
        let new = self
            .index
            .borrow_mut()
            .insert(filter, conn, granted)
            .is_none();
        let mailbox = self.mailboxes.borrow_mut().entry(conn).or_default().clone();
        mailbox.set_client_id(client_id);
        self.start_readers().await;
        (mailbox, new)
    }

    /// Queues the retained messages whose topics `filter` matches, flagged retained, at
    /// most at `qos`; expired ones are forgotten instead.
    pub fn send_retained(&self, filter: &TopicFilter, qos: QoS, mailbox: &Mailbox) {
        let now = crate::sessions::now_ms();
        self.retained
            .borrow_mut()
            .retain(|_, r| !message::expired(r.expires_at, now));
        for (topic, r) in self.retained.borrow().iter() {
            let Ok(name) = MqttString::from_bytes(topic.clone()) else {
                continue;
            };
            if filter.matches(name.as_str()) {
                let message =
                    Message::new(name, r.payload.clone(), r.properties.clone(), r.expires_at);
                mailbox.push(Outgoing {
                    message: Rc::new(message),
                    qos: qos.min(r.qos),
                    retain: true,
                    source: None,
                    subscription_ids: Vec::new(),
                    redelivery: None,
                    share: None,
                });
            }
        }
    }

    /// The live readers' positions as this shard has fanned them out (for session
    /// cursors).
    pub fn positions(&self) -> HashMap<TopicPartition, i64> {
        self.positions.borrow().clone()
    }

    /// Resumes a persistent session on connection `conn`: registers its subscriptions
    /// with `mailbox`, and delivers what was published while it was away, from `cursor`
    /// up to where the live fan-out is, before (in order) what it fans out from then on.
    pub async fn resume(
        self: &Rc<Self>,
        conn: u64,
        mailbox: &Rc<Mailbox>,
        subs: &[(String, Granted)],
        cursor: &BTreeMap<String, BTreeMap<i32, i64>>,
        in_flight: HashMap<(TopicPartition, i64), u16>,
    ) {
        self.start_readers().await;
        // From here to the spawn nothing awaits: the snapshot of the live positions and the
        // registration are one step, so the catch-up and the live fan-out neither overlap
        // nor leave a gap.
        let live = self.positions.borrow().clone();
        self.mailboxes.borrow_mut().insert(conn, mailbox.clone());
        let mut filters = Vec::new();
        for (filter, granted) in subs {
            self.index.borrow_mut().insert(filter, conn, *granted);
            if let Some(f) = MqttString::try_from(filter.as_str())
                .ok()
                .and_then(|f| TopicFilter::new(f).ok())
            {
                filters.push((f, *granted));
            }
        }
        let mut plan = Vec::new();
        for (tp, to) in live {
            let from = cursor.get(&*tp.0).and_then(|c| c.get(&tp.1)).copied();
            if let Some(from) = from.filter(|f| f < &to) {
                plan.push((tp, from, to));
            }
        }
        if plan.is_empty() || filters.is_empty() {
            return;
        }
        mailbox.catching_up.set(true);
        if let Some(t) = &mailbox.tracking {
            let mut t = t.borrow_mut();
            for (tp, from, _) in &plan {
                t.catch_up.insert(tp.clone(), *from);
            }
        }
        runtime::spawn(catch_up::catch_up(
            self.client.clone(),
            Rc::downgrade(mailbox),
            filters,
            plan,
            in_flight,
            self.topics.clone(),
            self.metrics.clone(),
        ));
    }

    /// Registers `mailbox` as connection `conn`'s before it subscribes (persistent
    /// sessions track what they owe).
    pub fn attach(&self, conn: u64, mailbox: Rc<Mailbox>) {
        self.mailboxes.borrow_mut().insert(conn, mailbox);
    }

    /// Connection `conn`'s mailbox, created if it has none yet (for a shared subscription,
    /// which needs no readers of the shard's own).
    pub fn mailbox(&self, conn: u64, client_id: &str) -> Rc<Mailbox> {
        let mailbox = self.mailboxes.borrow_mut().entry(conn).or_default().clone();
        mailbox.set_client_id(client_id);
        mailbox
    }

    /// Removes a subscription; true when it existed.
    pub fn unsubscribe(&self, conn: u64, filter: &str) -> bool {
        self.index.borrow_mut().remove(filter, conn).is_some()
    }

    /// Forgets everything about a connection that ended.
    pub fn disconnect(&self, conn: u64) {
        self.index.borrow_mut().remove_all(conn);
        self.mailboxes.borrow_mut().remove(&conn);
    }

    /// Returns once this shard has the readers' start offsets, asking for the readers
    /// the first time.
    async fn start_readers(&self) {
        match &*self.readers.borrow() {
            Readers::Running => return,
            Readers::Starting(_) => {}
            Readers::Idle => self.feed.request_start(),
        }
        futures::future::poll_fn(|cx| match &mut *self.readers.borrow_mut() {
            Readers::Running => Poll::Ready(()),
            r @ Readers::Idle => {
                *r = Readers::Starting(vec![cx.waker().clone()]);
                Poll::Pending
            }
            Readers::Starting(wakers) => {
                wakers.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }

    /// Stores (or, for a null or empty value, deletes) a retained message.
    fn apply_retained(&self, record: &Record) {
        let Some(topic) = &record.key else { return };
        let mut retained = self.retained.borrow_mut();
        match &record.value {
            Some(payload) if !payload.is_empty() => {
                let meta = from_headers(&record.headers);
                retained.insert(
                    topic.clone(),
                    Retained {
                        payload: payload.clone(),
                        qos: meta.qos,
                        expires_at: meta.expires_at(record.timestamp),
                        properties: Rc::new(meta.properties),
                    },
                );
            }
            _ => {
                retained.remove(topic);
            }
        }
    }

    /// Hands a record of `tp` to every matching subscription's mailbox, under the MQTT
    /// topic `template` gives it.
    fn fan_out(&self, record: &Record, tp: &TopicPartition, template: &TopicTemplate) {
        // A record without a valid MQTT topic name reaches no one; checked once, not per
        // subscriber.
        let Some(topic) = template.topic(record.key.as_ref(), &record.headers) else {
            return;
        };
        let mut matched = self.matched.borrow_mut();
        matched.clear();
        self.index
            .borrow()
            .matches(topic.as_str(), |conn, granted, _filter| {
                matched.push((*conn, *granted));
            });
        if matched.is_empty() {
            return;
        }
        // Headers are decoded once per shard, and only for a record someone here gets.
        let meta = from_headers(&record.headers);
        let expires_at = meta.expires_at(record.timestamp);
        if message::expired(expires_at, crate::sessions::now_ms()) {
            self.metrics.expired.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mailboxes = self.mailboxes.borrow();
        if let Some(publisher) = meta.client_id.as_deref() {
            matched.retain(|(conn, granted)| {
                !(granted.no_local
                    && mailboxes
                        .get(conn)
                        .is_some_and(|m| m.client_id.borrow().as_bytes() == publisher))
            });
        }
        let message = Rc::new(Message::new(
            topic,
            record.value.clone().unwrap_or_default(),
            Rc::new(meta.properties),
            expires_at,
        ));
        let source = Source {
            partition: tp.clone(),
            offset: record.offset,
        };
        // A client whose filters overlap gets one copy, at the highest granted QoS, with
        // every matching subscription's identifier (MQTT 5 §3.3.4; 3.1.1 §3.3.5).
        matched.sort_unstable_by_key(|m| m.0);
        let mut delivered = 0;
        let mut i = 0;
        while i < matched.len() {
            let conn = matched[i].0;
            let (mut qos, mut retain, mut ids) = (QoS::AtMostOnce, false, Vec::new());
            while i < matched.len() && matched[i].0 == conn {
                let g = matched[i].1;
                qos = qos.max(g.qos);
                retain |= g.retain_as_published && meta.retain;
                ids.extend(g.id);
                i += 1;
            }
            if let Some(mailbox) = mailboxes.get(&conn) {
                mailbox.push(Outgoing {
                    message: message.clone(),
                    qos: qos.min(meta.qos),
                    retain,
                    source: Some(source.clone()),
                    subscription_ids: ids,
                    redelivery: None,
                    share: None,
                });
                delivered += 1;
            }
        }
        self.metrics
            .deliveries
            .fetch_add(delivered, Ordering::Relaxed);
    }
}

/// A record as a fetch hands it out, with `key`, the value `v` and `headers` (for tests).
#[cfg(test)]
fn test_record(key: Option<&[u8]>, headers: &[(&str, &[u8])]) -> Record {
    use kafka_wire::record::{decode_batches, BatchBuilder, Compression, Header, ProducerFields};
    let headers: Vec<Header<'_>> = headers
        .iter()
        .map(|(key, value)| Header {
            key,
            value: Some(value),
        })
        .collect();
    let mut b = BatchBuilder::new(Compression::None, 1 << 20);
    b.try_push(1_000, key, Some(b"v"), &headers).unwrap();
    let batch = decode_batches(b.finish(ProducerFields::NONE).unwrap())
        .next()
        .unwrap()
        .unwrap();
    batch.records().next().unwrap().unwrap()
}
