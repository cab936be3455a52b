//! Shared subscriptions (`$share/{name}/{filter}`, MQTT 5 §4.8.2): each message to exactly
//! one member of the share, across shards, processes and machines.
//!
//! A share is backed by a classic Kafka consumer group, one per share name and filter
//! (`{mqtt.share_group_prefix}{name}/{filter}`), subscribed to every delivery topic. In
//! each shard that has at least one local member, a [`Group`] task is one member of that
//! Kafka group; Kafka's group protocol splits the partitions among those shards, so each
//! record is read by one shard only. That shard hands each record whose key matches the
//! filter to exactly one local MQTT member (round robin among those with room in their
//! in-flight window), and commits a partition's offset only up to the oldest record not
//! yet acknowledged (QoS 1/2) or written (QoS 0). So:
//!
//! - a member whose connection ends returns what it held ([`Ticket`] dropped unacknowledged)
//!   and the shard gives it to another local member;
//! - the last local member leaving makes the shard leave the Kafka group (LeaveGroup): its
//!   partitions move to the other shards at once;
//! - on a rebalance the shard stops handing out records, waits a moment for the
//!   acknowledgements still coming, commits, and joins again; a record it handed out and
//!   that was not acknowledged by then is delivered again by the partition's next owner;
//! - a process that dies loses nothing: its partitions go to the others after the session
//!   timeout, from the last commit, so what it delivered since is delivered again.
//!
//! Duplicates are therefore possible (at least once, never lost); exactly one member gets
//! each message as long as no rebalance or crash happens between its delivery and its
//! commit. Retained messages are never sent to shared subscriptions (§4.8.2).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use codecs::mqtt::{MqttString, PublishProperties, QoS, TopicFilter};
use kafka_wire::{Client, ClientConfig, GroupConfig, GroupMember};
use tracing::{debug, info, warn};

use crate::delivery::{DeliveryTopics, Granted, Mailbox, TopicPartition, MAILBOX_LIMIT};
use crate::metrics::ShardMetrics;
use crate::runtime;

mod generation;

use generation::serve;

/// How often acknowledged progress is committed (also on every rebalance and leave).
const COMMIT_INTERVAL: Duration = Duration::from_millis(200);
/// How long a fetch waits at the broker for records.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// Heartbeats between two checks of the group's state (DescribeGroups).
const STATE_CHECK_EVERY: u32 = 3;
/// Pause after a Kafka error before trying again.
const RETRY: Duration = Duration::from_secs(1);

/// Settings of shared subscriptions (`[mqtt]` keys `share_*`).
#[derive(Debug, Clone)]
pub struct ShareSettings {
    /// Kafka group ids are this prefix, the share name, `/` and the filter.
    pub group_prefix: String,
    /// The consumer group session timeout: a process that died loses its partitions
    /// after this long.
    pub session_timeout: Duration,
    /// How often a member heartbeats (and so how soon it notices a rebalance).
    pub heartbeat_interval: Duration,
}

/// A shard's shared subscriptions.
#[derive(Debug)]
pub struct Shares {
    client_config: ClientConfig,
    topics: Rc<DeliveryTopics>,
    settings: ShareSettings,
    metrics: Arc<ShardMetrics>,
    /// By subscription (`$share/{name}/{filter}`).
    groups: RefCell<HashMap<Rc<str>, Rc<Group>>>,
    /// QoS 1/2 deliveries written and not yet acknowledged, by connection and packet id.
    in_flight: RefCell<HashMap<(u64, u16), Ticket>>,
}

impl Shares {
    /// Shared subscriptions over `topics` (the MQTT delivery topics).
    pub fn new(
        client_config: ClientConfig,
        topics: Rc<DeliveryTopics>,
        settings: ShareSettings,
        metrics: Arc<ShardMetrics>,
    ) -> Shares {
        Shares {
            client_config,
            topics,
            settings,
            metrics,
            groups: RefCell::new(HashMap::new()),
            in_flight: RefCell::new(HashMap::new()),
        }
    }

    /// Adds connection `conn` to the share `subscription` (`$share/{name}/{filter}`), or
    /// updates its options. Waits until this shard is a member of the share's Kafka group
    /// with its positions committed, so that what is produced after this returns is
    /// delivered; false if that did not happen within three session timeouts.
    pub async fn subscribe(
        self: &Rc<Self>,
        conn: u64,
        mailbox: &Rc<Mailbox>,
        subscription: &str,
        granted: Granted,
        window: usize,
    ) -> bool {
        let Some(group) = self.group(subscription) else {
            return false;
        };
        {
            let mut members = group.members.borrow_mut();
            match members.iter_mut().find(|m| m.conn == conn) {
                Some(m) => m.granted = granted,
                None => {
                    members.push(Member {
                        conn,
                        mailbox: Rc::downgrade(mailbox),
                        granted,
                        // Within the mailbox's limit, whatever the client announces.
                        window: window.clamp(1, MAILBOX_LIMIT / 4),
                        outstanding: 0,
                    });
                    self.metrics.share_members.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        group.poke();
        let deadline = 3 * self.settings.session_timeout;
        let ready = futures::future::poll_fn(|cx| {
            if group.ready.get() {
                return Poll::Ready(());
            }
            group.ready_wakers.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        });
        let timer = runtime::sleep(deadline);
        futures::future::select(std::pin::pin!(ready), std::pin::pin!(timer)).await;
        if group.ready.get() {
            return true;
        }
        warn!(group = %group.group_id, "the shared subscription's consumer group did not form in time");
        self.unsubscribe(conn, subscription);
        false
    }

    /// The share's group on this shard, created (and its task started) if needed.
    fn group(self: &Rc<Self>, subscription: &str) -> Option<Rc<Group>> {
        if let Some(g) = self.groups.borrow().get(subscription) {
            return Some(g.clone());
        }
        // Matching uses the filter after `$share/{name}/`.
        let filter = MqttString::try_from(subscription)
            .ok()
            .and_then(|f| TopicFilter::new(f).ok())?;
        let (name, inner) = filter.shared()?;
        let group_id = format!("{}{name}/{inner}", self.settings.group_prefix);
        let group = Rc::new(Group {
            subscription: Rc::from(subscription),
            filter,
            group_id,
            members: RefCell::new(Vec::new()),
            next: Cell::new(0),
            events: RefCell::new(Vec::new()),
            waker: RefCell::new(None),
            poked: Cell::new(false),
            ready: Cell::new(false),
            ready_wakers: RefCell::new(Vec::new()),
            epoch: Cell::new(0),
        });
        self.groups
            .borrow_mut()
            .insert(group.subscription.clone(), group.clone());
        runtime::spawn(run(self.clone(), group.clone()));
        Some(group)
    }

    /// Removes `conn` from the share `subscription`; true when it was a member.
    pub fn unsubscribe(&self, conn: u64, subscription: &str) -> bool {
        let Some(group) = self.groups.borrow().get(subscription).cloned() else {
            return false;
        };
        let removed = group.remove(conn);
        if removed {
            self.metrics.share_members.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// A shared delivery was written as QoS 1/2 PUBLISH `packet_id` on `conn`.
    pub fn sent(&self, conn: u64, packet_id: u16, ticket: Ticket) {
        self.in_flight
            .borrow_mut()
            .insert((conn, packet_id), ticket);
    }

    /// `conn` acknowledged `packet_id` (PUBACK, or PUBCOMP for QoS 2).
    pub fn delivered(&self, conn: u64, packet_id: u16) {
        let ticket = self.in_flight.borrow_mut().remove(&(conn, packet_id));
        if let Some(t) = ticket {
            t.ack();
        }
    }

    /// `conn` ended: it leaves every share, and what it had not acknowledged goes to other
    /// members.
    pub fn disconnect(&self, conn: u64) {
        let groups: Vec<Rc<Group>> = self.groups.borrow().values().cloned().collect();
        for g in groups {
            if g.remove(conn) {
                self.metrics.share_members.fetch_sub(1, Ordering::Relaxed);
            }
        }
        // Dropped unacknowledged: returned to their groups.
        let returned: Vec<Ticket> = {
            let mut in_flight = self.in_flight.borrow_mut();
            let keys: Vec<(u64, u16)> = in_flight.keys().filter(|k| k.0 == conn).copied().collect();
            keys.iter().filter_map(|k| in_flight.remove(k)).collect()
        };
        drop(returned);
    }
}

/// One share on one shard: its local members and its membership of the Kafka group.
#[derive(Debug)]
struct Group {
    subscription: Rc<str>,
    filter: TopicFilter,
    group_id: String,
    members: RefCell<Vec<Member>>,
    /// Round-robin position.
    next: Cell<usize>,
    /// Acknowledgements and returns from tickets, for the group's task.
    events: RefCell<Vec<Event>>,
    waker: RefCell<Option<Waker>>,
    /// Members changed: the task should look again.
    poked: Cell<bool>,
    /// In the Kafka group, positions known: SUBACKs may go.
    ready: Cell<bool>,
    ready_wakers: RefCell<Vec<Waker>>,
    /// Changes at every (re)join: tickets of an older epoch no longer count.
    epoch: Cell<u64>,
}

#[derive(Debug)]
struct Member {
    conn: u64,
    mailbox: Weak<Mailbox>,
    granted: Granted,
    /// At most this many deliveries queued or unacknowledged.
    window: usize,
    outstanding: usize,
}

#[derive(Debug)]
enum Event {
    Acked {
        epoch: u64,
        conn: u64,
        partition: TopicPartition,
        offset: i64,
    },
    Returned {
        epoch: u64,
        conn: u64,
        message: Message,
    },
}

/// A record on its way to one member.
#[derive(Debug, Clone)]
struct Message {
    partition: TopicPartition,
    offset: i64,
    topic: MqttString,
    payload: Bytes,
    qos: QoS,
    retain: bool,
    properties: Rc<PublishProperties>,
    /// Milliseconds since the Unix epoch (MQTT 5 Message Expiry Interval).
    expires_at: Option<u64>,
}

impl Group {
    fn poke(&self) {
        self.poked.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    fn remove(&self, conn: u64) -> bool {
        let mut members = self.members.borrow_mut();
        let before = members.len();
        members.retain(|m| m.conn != conn);
        let removed = members.len() < before;
        drop(members);
        if removed {
            self.poke();
        }
        removed
    }

    fn push_event(&self, event: Event) {
        self.events.borrow_mut().push(event);
        self.poke();
    }

    fn set_ready(&self, ready: bool) {
        self.ready.set(ready);
        if ready {
            self.ready_wakers
                .borrow_mut()
                .drain(..)
                .for_each(Waker::wake);
        }
    }

    /// The next member, in turn, with room in its window.
    fn pick(&self) -> Option<usize> {
        let members = self.members.borrow();
        let n = members.len();
        (0..n).map(|k| (self.next.get() + k) % n).find(|&i| {
            members[i].outstanding < members[i].window && members[i].mailbox.strong_count() > 0
        })
    }

    /// Waits until something happened (an event, a member change) or `timeout` passed.
    async fn wait(&self, timeout: Duration) {
        let event = futures::future::poll_fn(|cx| {
            if self.poked.replace(false) {
                return Poll::Ready(());
            }
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        });
        let timer = runtime::sleep(timeout);
        futures::future::select(std::pin::pin!(event), std::pin::pin!(timer)).await;
    }
}

/// A shared delivery's claim on its member: acknowledged, it lets the group commit past
/// the record; dropped unacknowledged (connection gone, queue overflowed), it returns the
/// record to the group for another member.
#[derive(Debug, Clone)]
pub struct Ticket(Rc<TicketInner>);

#[derive(Debug)]
struct TicketInner {
    group: Weak<Group>,
    epoch: u64,
    conn: u64,
    message: Message,
    done: Cell<bool>,
}

impl Ticket {
    /// The member acknowledged the message (or, QoS 0, it was written).
    pub fn ack(&self) {
        let t = &self.0;
        if t.done.replace(true) {
            return;
        }
        if let Some(g) = t.group.upgrade() {
            g.push_event(Event::Acked {
                epoch: t.epoch,
                conn: t.conn,
                partition: t.message.partition.clone(),
                offset: t.message.offset,
            });
        }
    }
}

impl Drop for TicketInner {
    fn drop(&mut self) {
        if self.done.get() {
            return;
        }
        if let Some(g) = self.group.upgrade() {
            g.push_event(Event::Returned {
                epoch: self.epoch,
                conn: self.conn,
                message: self.message.clone(),
            });
        }
    }
}

/// A group's task: joins the Kafka group while the share has local members, serves each
/// generation, and leaves when the last member left.
async fn run(shares: Rc<Shares>, group: Rc<Group>) {
    let client = loop {
        match Client::connect(shares.client_config.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                warn!(group = %group.group_id, error = %e, "cannot connect to Kafka for a shared subscription; retrying");
                runtime::sleep(RETRY).await;
            }
        }
    };
    let settings = &shares.settings;
    let mut member = GroupMember::new(
        client.clone(),
        GroupConfig {
            group_id: group.group_id.clone(),
            topics: shares.topics.names(),
            session_timeout: settings.session_timeout,
            rebalance_timeout: settings.session_timeout,
        },
    );
    loop {
        while !group.members.borrow().is_empty() {
            let generation = match member.join().await {
                Ok(g) => g,
                Err(e) => {
                    warn!(group = %group.group_id, error = %e, "cannot join the share's consumer group; retrying");
                    runtime::sleep(RETRY).await;
                    continue;
                }
            };
            serve(&shares, &group, &mut member, &client, generation).await;
        }
        group.set_ready(false);
        match member.leave().await {
            Ok(()) => info!(group = %group.group_id, "left the share's consumer group"),
            Err(e) => {
                debug!(group = %group.group_id, error = %e, "LeaveGroup failed; the session timeout will end the membership")
            }
        }
        // A member may have come while we were leaving.
        if group.members.borrow().is_empty() {
            shares.groups.borrow_mut().remove(&group.subscription);
            return;
        }
    }
}
