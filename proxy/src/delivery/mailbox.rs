//! A subscribing connection's queue of messages, bounded: a connection that falls
//! [`MAILBOX_LIMIT`] messages behind is a slow consumer and is disconnected rather than
//! buffered for. A persistent session's mailbox also tracks what it still owes the client,
//! per partition, which is what its cursor in Kafka says.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use codecs::mqtt::QoS;

use super::Message;

/// Messages a connection may have queued before it counts as a slow consumer.
pub const MAILBOX_LIMIT: usize = 4096;

/// One message for one subscriber.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Topic, payload and properties, shared with every subscriber of the shard it matched.
    pub message: Rc<Message>,
    /// The QoS it is delivered with: the subscription's granted QoS.
    pub qos: QoS,
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
pub(super) struct Tracking {
    pending: HashMap<TopicPartition, BTreeSet<i64>>,
    /// While catching up: the next offset the catch-up reader will look at.
    pub(super) catch_up: HashMap<TopicPartition, i64>,
    /// Live messages held back until the catch-up finished (keeps per-partition order).
    held: VecDeque<Outgoing>,
}

/// A connection's queue of messages to deliver.
#[derive(Debug, Default)]
pub struct Mailbox {
    queue: RefCell<VecDeque<Outgoing>>,
    waker: RefCell<Option<Waker>>,
    /// Set when the queue hit [`MAILBOX_LIMIT`]: the connection cannot keep up.
    overflowed: Cell<bool>,
    /// Persistent sessions only.
    pub(super) tracking: Option<RefCell<Tracking>>,
    pub(super) catching_up: Cell<bool>,
    /// Woken when the queue drains below half its limit (the catch-up waits on it).
    room: RefCell<Option<Waker>>,
    /// The subscriber's client identifier (for no-local).
    pub(super) client_id: RefCell<String>,
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

    pub(super) fn push(&self, message: Outgoing) {
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

    pub(super) fn enqueue(&self, message: Outgoing) {
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

    pub(super) async fn wait_room(&self) {
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
    pub(super) fn caught_up(&self) {
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
