//! Kafka → MQTT delivery, for clean (non-persistent) sessions.
//!
//! The Kafka topics that back MQTT subscriptions are those the MQTT routes write with the
//! key `{topic}` (by default `mqtt-messages`): a record whose key is an MQTT topic name is
//! delivered to every subscription whose filter matches it, whoever produced it (a client
//! of this process, of another process, or any Kafka producer).
//!
//! Each shard keeps its subscriptions in a [`SubscriptionIndex`] and, from its first
//! subscription on, tails every partition of those topics from the end. A matching record
//! goes into the subscribing connection's [`Mailbox`] as shared `Bytes` (no copy per
//! subscriber); the connection's task encodes and writes it. A SUBACK is sent only after
//! the shard's readers know their start offsets, so everything produced after the SUBACK
//! is delivered.
//!
//! Retained messages live in a compacted topic (`mqtt.retained_topic`; key = MQTT topic, a
//! null or empty value deletes). A shard with subscribers reads it from the beginning
//! before its first SUBACK and keeps tailing it, so its map holds the last value per key
//! (which is also right on a broker that does not compact).
//!
//! What this slice does not do yet (docs/architecture.md, "Delivery"): sessions that
//! outlive their connection (cursors in Kafka), shared subscriptions, and one fetch per
//! process: every shard with subscribers fetches the partitions itself.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use codecs::mqtt::{MqttString, PublishProperties, QoS, SubscriptionIndex, TopicFilter};
use kafka_wire::fetch::OffsetReset;
use kafka_wire::record::Record;
use kafka_wire::{Client, FetchOptions, OffsetSpec, PartitionReader};
use tracing::{debug, warn};

use crate::metrics::ShardMetrics;
use crate::runtime;

/// Messages a connection may have queued before it counts as a slow consumer.
pub const MAILBOX_LIMIT: usize = 4096;

/// One message for one subscriber.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The MQTT topic (the record's key).
    pub topic: Bytes,
    /// The payload (the record's value).
    pub payload: Bytes,
    /// The QoS it is delivered with: the subscription's granted QoS.
    pub qos: QoS,
    /// MQTT 5 properties from the record's headers, shared by every subscriber.
    pub properties: Rc<PublishProperties>,
    /// A retained message sent because of a new subscription.
    pub retain: bool,
}

/// What a record's headers say about its MQTT delivery.
#[derive(Debug, Default)]
pub struct FromHeaders {
    /// `content-type` becomes the content type, and every header that is not sluice's own
    /// (`mqtt.*`, `sluice.*`) a user property, in order; headers that are not valid MQTT
    /// strings are skipped.
    pub properties: PublishProperties,
    /// `mqtt.qos`: the QoS it was published with; records without it count as QoS 2.
    pub qos: QoS,
}

/// Reads a record's headers.
pub fn from_headers(headers: &kafka_wire::record::Headers) -> FromHeaders {
    let mut props = PublishProperties::default();
    let mut qos = QoS::ExactlyOnce;
    for header in headers.iter().flatten() {
        let (key, value) = header;
        let Some(value) = value else { continue };
        if &key[..] == b"mqtt.qos" {
            qos = match &value[..] {
                b"0" => QoS::AtMostOnce,
                b"1" => QoS::AtLeastOnce,
                _ => QoS::ExactlyOnce,
            };
            continue;
        }
        let Ok(value) = MqttString::from_bytes(value) else {
            continue;
        };
        match &key[..] {
            b"content-type" => props.content_type = Some(value),
            k if k.starts_with(b"mqtt.") || k.starts_with(b"sluice.") => {}
            _ => {
                if let Ok(name) = MqttString::from_bytes(key) {
                    props.user_properties.push((name, value));
                }
            }
        }
    }
    FromHeaders {
        properties: props,
        qos,
    }
}

/// A connection's queue of messages to deliver.
#[derive(Debug, Default)]
pub struct Mailbox {
    queue: RefCell<VecDeque<Outgoing>>,
    waker: RefCell<Option<Waker>>,
    /// Set when the queue hit [`MAILBOX_LIMIT`]: the connection cannot keep up.
    overflowed: Cell<bool>,
}

impl Mailbox {
    fn push(&self, message: Outgoing) {
        let mut queue = self.queue.borrow_mut();
        if queue.len() >= MAILBOX_LIMIT {
            self.overflowed.set(true);
        } else {
            queue.push_back(message);
        }
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Ready when messages are waiting (or the mailbox overflowed).
    pub fn poll_ready(&self, cx: &Context<'_>) -> Poll<()> {
        if !self.queue.borrow().is_empty() || self.overflowed.get() {
            return Poll::Ready(());
        }
        *self.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Takes the next message.
    pub fn pop(&self) -> Option<Outgoing> {
        self.queue.borrow_mut().pop_front()
    }

    /// Whether messages were dropped because the queue was full.
    pub fn overflowed(&self) -> bool {
        self.overflowed.get()
    }
}

/// The last retained message of an MQTT topic.
#[derive(Debug, Clone)]
struct Retained {
    payload: Bytes,
    qos: QoS,
    properties: Rc<PublishProperties>,
}

/// A subscription as the index keeps it.
#[derive(Debug, Clone, Copy)]
struct Granted {
    qos: QoS,
}

/// Readers' state: not started, starting (SUBACKs wait), or tailing.
#[derive(Debug)]
enum Readers {
    Idle,
    Starting(Vec<Waker>),
    Running,
}

/// A shard's subscriptions and the readers that feed them.
#[derive(Debug)]
pub struct Delivery {
    client: Client,
    topics: Vec<String>,
    metrics: std::sync::Arc<ShardMetrics>,
    index: RefCell<SubscriptionIndex<u64, Granted>>,
    mailboxes: RefCell<HashMap<u64, Rc<Mailbox>>>,
    readers: RefCell<Readers>,
    retained_topic: String,
    /// Retained messages by MQTT topic.
    retained: RefCell<HashMap<Bytes, Retained>>,
    /// Scratch for [`Delivery::fan_out`].
    matched: RefCell<Vec<(u64, QoS)>>,
}

impl Delivery {
    /// Delivery from `topics` (the MQTT routes' topics keyed by MQTT topic).
    pub fn new(
        client: Client,
        topics: Vec<String>,
        retained_topic: String,
        metrics: std::sync::Arc<ShardMetrics>,
    ) -> Delivery {
        Delivery {
            client,
            topics,
            retained_topic,
            retained: RefCell::new(HashMap::new()),
            metrics,
            index: RefCell::new(SubscriptionIndex::new()),
            mailboxes: RefCell::new(HashMap::new()),
            readers: RefCell::new(Readers::Idle),
            matched: RefCell::new(Vec::new()),
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

    /// Adds (or replaces) connection `conn`'s subscription to `filter`, and returns its
    /// mailbox and whether the subscription is new. Waits until the readers are tailing
    /// (and the retained messages loaded), so that what is produced after this returns is
    /// delivered.
    pub async fn subscribe(
        self: &Rc<Self>,
        conn: u64,
        filter: &str,
        qos: QoS,
    ) -> (Rc<Mailbox>, bool) {
        let new = self
            .index
            .borrow_mut()
            .insert(filter, conn, Granted { qos })
            .is_none();
        let mailbox = self.mailboxes.borrow_mut().entry(conn).or_default().clone();
        self.start_readers().await;
        (mailbox, new)
    }

    /// Queues the retained messages whose topics `filter` matches, flagged retained, at
    /// most at `qos`.
    pub fn send_retained(&self, filter: &TopicFilter, qos: QoS, mailbox: &Mailbox) {
        for (topic, r) in self.retained.borrow().iter() {
            let Ok(name) = std::str::from_utf8(topic) else {
                continue;
            };
            if filter.matches(name) {
                mailbox.push(Outgoing {
                    topic: topic.clone(),
                    payload: r.payload.clone(),
                    qos: qos.min(r.qos),
                    properties: r.properties.clone(),
                    retain: true,
                });
            }
        }
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

    async fn start_readers(self: &Rc<Self>) {
        let start = match &mut *self.readers.borrow_mut() {
            Readers::Running => return,
            r @ Readers::Idle => {
                *r = Readers::Starting(Vec::new());
                true
            }
            Readers::Starting(_) => false,
        };
        if start {
            let readers = self.open_readers().await;
            let retained = self.load_retained().await;
            let waiting = std::mem::replace(&mut *self.readers.borrow_mut(), Readers::Running);
            for reader in readers {
                runtime::spawn(tail(self.clone(), reader, Kind::Messages));
            }
            for reader in retained {
                runtime::spawn(tail(self.clone(), reader, Kind::Retained));
            }
            if let Readers::Starting(wakers) = waiting {
                wakers.into_iter().for_each(Waker::wake);
            }
            return;
        }
        futures::future::poll_fn(|cx| match &mut *self.readers.borrow_mut() {
            Readers::Starting(wakers) => {
                wakers.push(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        })
        .await;
    }

    /// One reader per partition of every delivery topic, at the partition's end.
    async fn open_readers(&self) -> Vec<PartitionReader> {
        let mut readers = Vec::new();
        for topic in &self.topics {
            readers.extend(self.open_topic(topic, OffsetSpec::Latest).await);
        }
        readers
    }

    /// Reads the retained topic from its beginning up to its end as of now, and returns its
    /// readers, positioned there, for tailing.
    async fn load_retained(&self) -> Vec<PartitionReader> {
        let mut readers = self
            .open_topic(&self.retained_topic, OffsetSpec::Earliest)
            .await;
        for reader in &mut readers {
            let end = loop {
                let (topic, partition) = (&self.retained_topic, reader.partition());
                match self
                    .client
                    .list_offset(topic, partition, OffsetSpec::Latest)
                    .await
                {
                    Ok(end) => break end,
                    Err(e) => {
                        warn!(%topic, partition, error = %e, "cannot read the retained topic's end; retrying");
                        runtime::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            while reader.position() < end {
                match reader.poll().await {
                    Ok(fetched) => {
                        for record in &fetched.records {
                            self.apply_retained(record);
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot read retained messages; retrying");
                        runtime::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
        readers
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
                        properties: Rc::new(meta.properties),
                    },
                );
            }
            _ => {
                retained.remove(topic);
            }
        }
    }

    /// One reader per partition of `topic`, starting at `start`. Metadata and offsets are
    /// retried until Kafka answers.
    async fn open_topic(&self, topic: &str, start: OffsetSpec) -> Vec<PartitionReader> {
        let options = FetchOptions {
            max_wait: Duration::from_millis(100),
            ..FetchOptions::default()
        };
        let mut readers = Vec::new();
        {
            let partitions = loop {
                match self.client.topic(topic).await {
                    Ok(info) => break info.partitions.len() as i32,
                    Err(e) => {
                        warn!(%topic, error = %e, "cannot read the delivery topic's metadata; retrying");
                        runtime::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            for partition in 0..partitions {
                let reader = loop {
                    let opened = PartitionReader::new(
                        self.client.clone(),
                        topic,
                        partition,
                        start,
                        options.clone(),
                        // Retained messages restart from the beginning if the position was
                        // deleted; messages for subscribers from the end.
                        match start {
                            OffsetSpec::Earliest => OffsetReset::Earliest,
                            _ => OffsetReset::Latest,
                        },
                    )
                    .await;
                    match opened {
                        Ok(r) => break r,
                        Err(e) => {
                            warn!(%topic, partition, error = %e, "cannot open a delivery reader; retrying");
                            runtime::sleep(Duration::from_secs(1)).await;
                        }
                    }
                };
                readers.push(reader);
            }
        }
        readers
    }

    /// Hands a record to every matching subscription's mailbox.
    fn fan_out(
        &self,
        topic: &Bytes,
        payload: &Bytes,
        max_qos: QoS,
        properties: &Rc<PublishProperties>,
    ) {
        let Ok(name) = std::str::from_utf8(topic) else {
            return;
        };
        // A client whose filters overlap gets one copy, at the highest granted QoS
        // (MQTT 5 §3.3.4; 3.1.1 §3.3.5).
        let mut matched = self.matched.borrow_mut();
        matched.clear();
        self.index.borrow().matches(name, |conn, granted, _filter| {
            matched.push((*conn, granted.qos));
        });
        matched.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        matched.dedup_by_key(|m| m.0);
        let mailboxes = self.mailboxes.borrow();
        for (conn, qos) in matched.iter() {
            if let Some(mailbox) = mailboxes.get(conn) {
                mailbox.push(Outgoing {
                    topic: topic.clone(),
                    payload: payload.clone(),
                    qos: (*qos).min(max_qos),
                    properties: properties.clone(),
                    retain: false,
                });
            }
        }
        self.metrics
            .deliveries
            .fetch_add(matched.len() as u64, Ordering::Relaxed);
    }
}

/// What a tailed partition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Messages for subscribers.
    Messages,
    /// Retained messages.
    Retained,
}

/// Tails one partition: fans each keyed record out to the shard's subscribers, or keeps
/// the retained map current.
async fn tail(delivery: Rc<Delivery>, mut reader: PartitionReader, kind: Kind) {
    loop {
        match reader.poll().await {
            Ok(fetched) => {
                for record in fetched.records {
                    if kind == Kind::Retained {
                        delivery.apply_retained(&record);
                    } else if let Some(key) = &record.key {
                        let payload = record.value.clone().unwrap_or_default();
                        let meta = from_headers(&record.headers);
                        let properties = Rc::new(meta.properties);
                        delivery.fan_out(key, &payload, meta.qos, &properties);
                    }
                }
            }
            Err(e) => {
                debug!(error = %e, "delivery fetch failed; retrying");
                runtime::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
