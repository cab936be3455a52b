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
//! Shared subscriptions are not fanned out here: each share reads through its own Kafka
//! consumer group (`crate::share`) and only uses the connection's [`Mailbox`].
//!
//! What this slice does not do yet (docs/architecture.md, "Delivery"): sessions that
//! outlive their connection (cursors in Kafka) and one fetch per process: every shard with
//! subscribers fetches the partitions itself.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use codecs::mqtt::{MqttString, PublishProperties, QoS, SubscriptionIndex, TopicFilter};
use kafka_wire::fetch::OffsetReset;
use kafka_wire::record::Record;
use kafka_wire::{Client, FetchOptions, OffsetSpec, PartitionReader};
use tracing::debug;

use crate::metrics::ShardMetrics;
use crate::runtime;
use crate::table;

/// Messages a connection may have queued before it counts as a slow consumer.
pub const MAILBOX_LIMIT: usize = 4096;

/// One message for one subscriber.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The MQTT topic (the record's key), checked once for all subscribers.
    pub topic: MqttString,
    /// The payload (the record's value).
    pub payload: Bytes,
    /// The QoS it is delivered with: the subscription's granted QoS.
    pub qos: QoS,
    /// MQTT 5 properties from the record's headers, shared by every subscriber.
    pub properties: Rc<PublishProperties>,
    /// A retained message sent because of a new subscription.
    pub retain: bool,
    /// Where it came from (`None` for retained messages): the session cursor moves past
    /// it once it was delivered and acknowledged.
    pub source: Option<Source>,
    /// MQTT 5 subscription identifiers of the matching subscriptions (usually none).
    pub subscription_ids: Vec<u32>,
    /// A resumed session's unacknowledged delivery: resent with DUP under this packet
    /// identifier.
    pub redelivery: Option<u16>,
    /// A shared subscription's delivery: acknowledge it once written (QoS 0) or
    /// acknowledged by the client (QoS 1/2), else it goes to another member.
    pub share: Option<crate::share::Ticket>,
}

/// A record's place in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Topic and partition.
    pub partition: TopicPartition,
    /// Offset.
    pub offset: i64,
}

/// A Kafka topic and partition.
pub type TopicPartition = (Rc<str>, i32);

/// A persistent session's delivery bookkeeping: what is queued or unacknowledged per
/// partition, and how far its catch-up has read.
#[derive(Debug, Default)]
struct Tracking {
    pending: HashMap<TopicPartition, BTreeSet<i64>>,
    /// While catching up: the next offset the catch-up reader will look at.
    catch_up: HashMap<TopicPartition, i64>,
    /// Live messages held back until the catch-up finished (keeps per-partition order).
    held: VecDeque<Outgoing>,
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
    /// `mqtt.retain` = 1: published retained (for retain-as-published).
    pub retain: bool,
    /// `mqtt.client_id`: the publishing client (for no-local).
    pub client_id: Option<Bytes>,
}

/// Reads a record's headers.
pub fn from_headers(headers: &kafka_wire::record::Headers) -> FromHeaders {
    let mut props = PublishProperties::default();
    let mut qos = QoS::ExactlyOnce;
    let (mut retain, mut client_id) = (false, None);
    for header in headers.iter().flatten() {
        let (key, value) = header;
        let Some(value) = value else { continue };
        match &key[..] {
            b"mqtt.retain" => retain = &value[..] == b"1",
            b"mqtt.client_id" => client_id = Some(value.clone()),
            _ => {}
        }
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
        retain,
        client_id,
    }
}

/// A connection's queue of messages to deliver.
#[derive(Debug, Default)]
pub struct Mailbox {
    queue: RefCell<VecDeque<Outgoing>>,
    waker: RefCell<Option<Waker>>,
    /// Set when the queue hit [`MAILBOX_LIMIT`]: the connection cannot keep up.
    overflowed: Cell<bool>,
    /// Persistent sessions only.
    tracking: Option<RefCell<Tracking>>,
    catching_up: Cell<bool>,
    /// Woken when the queue drains below half its limit (the catch-up waits on it).
    room: RefCell<Option<Waker>>,
    /// The subscriber's client identifier (for no-local).
    client_id: RefCell<String>,
}

impl Mailbox {
    /// A mailbox for a persistent session, which tracks what it still owes the client.
    pub fn persistent() -> Mailbox {
        Mailbox {
            tracking: Some(RefCell::new(Tracking::default())),
            ..Mailbox::default()
        }
    }

    /// Records whose client it belongs to.
    pub fn set_client_id(&self, client_id: &str) {
        if self.client_id.borrow().as_str() != client_id {
            *self.client_id.borrow_mut() = client_id.to_owned();
        }
    }

    /// Queues a message from outside the shard's fan-out (a shared subscription's).
    pub fn deliver(&self, message: Outgoing) {
        self.push(message);
    }

    fn push(&self, message: Outgoing) {
        if self.catching_up.get() {
            if let Some(t) = &self.tracking {
                let mut t = t.borrow_mut();
                if t.held.len() < MAILBOX_LIMIT {
                    t.held.push_back(message);
                    return;
                }
            }
        }
        self.enqueue(message);
    }

    fn enqueue(&self, message: Outgoing) {
        let mut queue = self.queue.borrow_mut();
        if let (Some(t), Some(source)) = (&self.tracking, &message.source) {
            // A dropped message stays pending, so the cursor never moves past it.
            let mut t = t.borrow_mut();
            let pending = t.pending.entry(source.partition.clone()).or_default();
            pending.insert(source.offset);
        }
        if queue.len() >= MAILBOX_LIMIT {
            self.overflowed.set(true);
        } else {
            queue.push_back(message);
        }
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// The message from `source` was delivered (QoS 0) or acknowledged (QoS 1/2).
    pub fn done(&self, source: &Source) {
        if let Some(t) = &self.tracking {
            if let Some(p) = t.borrow_mut().pending.get_mut(&source.partition) {
                p.remove(&source.offset);
            }
        }
    }

    /// The session cursor: per partition, the oldest offset still owed to the client
    /// (queued, in flight or not yet read by the catch-up), else the live readers'
    /// position.
    pub fn cursor(
        &self,
        live: &HashMap<TopicPartition, i64>,
    ) -> BTreeMap<String, BTreeMap<i32, i64>> {
        let mut cursor: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
        let Some(t) = &self.tracking else {
            return cursor;
        };
        let t = t.borrow();
        for ((topic, partition), position) in live {
            let tp = (topic.clone(), *partition);
            let mut at = *position;
            if let Some(c) = t.catch_up.get(&tp) {
                at = at.min(*c);
            }
            if let Some(first) = t.pending.get(&tp).and_then(|p| p.first()) {
                at = at.min(*first);
            }
            cursor
                .entry(topic.to_string())
                .or_default()
                .insert(*partition, at);
        }
        cursor
    }

    async fn wait_room(&self) {
        futures::future::poll_fn(|cx| {
            if self.queue.borrow().len() < MAILBOX_LIMIT / 2 {
                return Poll::Ready(());
            }
            *self.room.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }

    /// Ends the catch-up: the live messages held meanwhile join the queue.
    fn caught_up(&self) {
        self.catching_up.set(false);
        if let Some(t) = &self.tracking {
            let held = std::mem::take(&mut t.borrow_mut().held);
            t.borrow_mut().catch_up.clear();
            for m in held {
                self.enqueue(m);
            }
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
        let mut queue = self.queue.borrow_mut();
        let m = queue.pop_front();
        if queue.len() < MAILBOX_LIMIT / 2 {
            if let Some(w) = self.room.borrow_mut().take() {
                w.wake();
            }
        }
        m
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
    matched: RefCell<Vec<(u64, Granted)>>,
    /// Per message partition: everything before this offset has been fanned out.
    positions: RefCell<HashMap<TopicPartition, i64>>,
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

    /// Adds (or replaces) connection `conn`'s subscription to `filter`, and returns its
    /// mailbox and whether the subscription is new. Waits until the readers are tailing
    /// (and the retained messages loaded), so that what is produced after this returns is
    /// delivered.
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
    /// most at `qos`.
    pub fn send_retained(&self, filter: &TopicFilter, qos: QoS, mailbox: &Mailbox) {
        for (topic, r) in self.retained.borrow().iter() {
            let Ok(name) = MqttString::from_bytes(topic.clone()) else {
                continue;
            };
            if filter.matches(name.as_str()) {
                mailbox.push(Outgoing {
                    topic: name,
                    payload: r.payload.clone(),
                    qos: qos.min(r.qos),
                    properties: r.properties.clone(),
                    retain: true,
                    source: None,
                    subscription_ids: Vec::new(),
                    redelivery: None,
                    share: None,
                });
            }
        }
    }

    /// The live readers' positions (for session cursors).
    pub fn positions(&self) -> HashMap<TopicPartition, i64> {
        self.positions.borrow().clone()
    }

    /// Resumes a persistent session on connection `conn`: registers its subscriptions
    /// with `mailbox`, and delivers what was published while it was away, from `cursor`
    /// up to where the live readers are, before (in order) what they fan out from then on.
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
        runtime::spawn(catch_up(
            self.client.clone(),
            Rc::downgrade(mailbox),
            filters,
            plan,
            in_flight,
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
            // Boxed, like the session store's load: only the first subscriber runs these.
            let readers = Box::pin(self.open_readers()).await;
            let retained = Box::pin(self.load_retained()).await;
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
            readers.extend(table::open(&self.client, topic, OffsetSpec::Latest).await);
        }
        readers
    }

    /// Reads the retained topic from its beginning up to its end as of now, and returns its
    /// readers, positioned there, for tailing.
    async fn load_retained(&self) -> Vec<PartitionReader> {
        table::load(&self.client, &self.retained_topic, |r| {
            self.apply_retained(r)
        })
        .await
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

    /// Hands a record to every matching subscription's mailbox.
    fn fan_out(
        &self,
        topic: &Bytes,
        payload: &Bytes,
        meta: &Published,
        properties: &Rc<PublishProperties>,
        source: &Source,
    ) {
        // A key that is not an MQTT topic name reaches no one; checked once, not per
        // subscriber.
        let Ok(topic) = MqttString::from_bytes(topic.clone()) else {
            return;
        };
        let name = topic.as_str();
        let mailboxes = self.mailboxes.borrow();
        let mut matched = self.matched.borrow_mut();
        matched.clear();
        self.index.borrow().matches(name, |conn, granted, _filter| {
            let own = granted.no_local
                && meta.client_id.as_deref().is_some_and(|publisher| {
                    mailboxes
                        .get(conn)
                        .is_some_and(|m| m.client_id.borrow().as_bytes() == publisher)
                });
            if !own {
                matched.push((*conn, *granted));
            }
        });
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
                    topic: topic.clone(),
                    payload: payload.clone(),
                    qos: qos.min(meta.qos),
                    properties: properties.clone(),
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

/// How a record was published, from its headers.
#[derive(Debug)]
struct Published {
    qos: QoS,
    retain: bool,
    client_id: Option<Bytes>,
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
    let tp: TopicPartition = (Rc::from(reader.topic()), reader.partition());
    if kind == Kind::Messages {
        delivery
            .positions
            .borrow_mut()
            .insert(tp.clone(), reader.position());
    }
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
                        let published = Published {
                            qos: meta.qos,
                            retain: meta.retain,
                            client_id: meta.client_id,
                        };
                        let source = Source {
                            partition: tp.clone(),
                            offset: record.offset,
                        };
                        delivery.fan_out(key, &payload, &published, &properties, &source);
                    }
                }
                if kind == Kind::Messages {
                    // Synchronously with the fan-out above: `resume` relies on it.
                    delivery
                        .positions
                        .borrow_mut()
                        .insert(tp.clone(), reader.position());
                }
            }
            Err(e) => {
                debug!(error = %e, "delivery fetch failed; retrying");
                runtime::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Delivers a resumed session's backlog: for each partition, the records in `[from, to)`
/// whose keys match its filters, waiting for room in the mailbox; then lets the live
/// messages held meanwhile through. Stops when the connection is gone.
async fn catch_up(
    client: Client,
    mailbox: std::rc::Weak<Mailbox>,
    filters: Vec<(TopicFilter, Granted)>,
    plan: Vec<(TopicPartition, i64, i64)>,
    in_flight: HashMap<(TopicPartition, i64), u16>,
) {
    let options = FetchOptions {
        max_wait: Duration::from_millis(100),
        ..FetchOptions::default()
    };
    for ((topic, partition), from, to) in plan {
        let tp = (topic.clone(), partition);
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
                let Some(key) = &record.key else { continue };
                let Ok(topic) = MqttString::from_bytes(key.clone()) else {
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
                m.enqueue(Outgoing {
                    topic: topic.clone(),
                    payload: record.value.clone().unwrap_or_default(),
                    qos: qos.min(meta.qos),
                    properties: Rc::new(meta.properties),
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
