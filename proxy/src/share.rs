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
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use codecs::mqtt::{MqttString, PublishProperties, QoS, TopicFilter};
use kafka_wire::fetch::OffsetReset;
use kafka_wire::{
    Client, ClientConfig, FetchOptions, Generation, GroupConfig, GroupMember, Heartbeat,
    OffsetSpec, PartitionReader,
};
use tracing::{debug, info, warn};

use crate::delivery::{from_headers, Granted, Mailbox, Outgoing, TopicPartition, MAILBOX_LIMIT};
use crate::metrics::ShardMetrics;
use crate::runtime;

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
    topics: Vec<String>,
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
        topics: Vec<String>,
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
            topics: shares.topics.clone(),
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

/// One partition assigned to this shard.
struct Assigned {
    reader: PartitionReader,
    /// Offsets read and matching the filter, not yet acknowledged.
    /// with the offset the fetch that read each started at.
    owed: BTreeMap<i64, i64>,
}

impl Assigned {
    /// Where the group may resume: the start of the fetch that read the oldest record
    /// owed, else the next to read. Always where a fetch started, so at a record batch's
    /// start: tansu 0.6 answers a fetch from inside a batch with the batches after it,
    /// which would skip the rest of that batch. The records of that fetch before the owed
    /// one are then delivered again by the partition's next owner.
    fn commit_point(&self) -> i64 {
        self.owed
            .first_key_value()
            .map_or(self.reader.position(), |(_, start)| *start)
    }
}

/// Serves one generation: reads the assigned partitions from the committed offsets and
/// delivers, until a rebalance or the last local member leaving; then commits.
async fn serve(
    shares: &Shares,
    group: &Rc<Group>,
    member: &mut GroupMember,
    client: &Client,
    generation: Generation,
) {
    let Some(mut parts) = positions(group, member, client, &generation).await else {
        runtime::sleep(RETRY).await;
        return;
    };
    let epoch = group.epoch.get() + 1;
    group.epoch.set(epoch);
    let metrics = &shares.metrics;
    metrics
        .share_partitions
        .fetch_add(parts.len() as u64, Ordering::Relaxed);
    info!(
        group = %group.group_id,
        kafka = %client.config().bootstrap_servers.join(","),
        generation = generation.id,
        member = %generation.member_id,
        leader = generation.leader,
        partitions = ?parts.keys().collect::<Vec<_>>(),
        "serving the share's consumer group generation"
    );
    group.set_ready(true);

    let heartbeat = shares.settings.heartbeat_interval;
    let mut queue: VecDeque<Message> = VecDeque::new();
    let mut outstanding = 0usize;
    let (mut last_heartbeat, mut last_commit, mut dirty) = (Instant::now(), Instant::now(), false);
    // The first heartbeat at once: joining may have taken most of a session timeout.
    let mut beat_now = true;
    // Heartbeats since the group's state was last checked, and checks in a row that
    // found it not stable.
    let (mut beats, mut unstable) = (0u32, 0u32);
    loop {
        dirty |= apply_events(
            group,
            epoch,
            &mut parts,
            &mut queue,
            &mut outstanding,
            shares,
        );
        if group.members.borrow().is_empty() {
            break;
        }
        dispatch(group, epoch, &mut queue, &mut outstanding, shares);
        if beat_now || last_heartbeat.elapsed() >= heartbeat {
            (last_heartbeat, beat_now) = (Instant::now(), false);
            match member.heartbeat().await {
                Ok(Heartbeat::Stable) => {
                    beats += 1;
                    if beats >= STATE_CHECK_EVERY {
                        beats = 0;
                        if stuck(group, member, &mut unstable).await {
                            member.force_new_generation();
                            break;
                        }
                    }
                }
                Ok(Heartbeat::Rejoin) => {
                    info!(group = %group.group_id, "the share's consumer group is rebalancing");
                    break;
                }
                Err(e) => {
                    warn!(group = %group.group_id, error = %e, "heartbeat failed; joining again");
                    break;
                }
            }
        }
        if dirty && last_commit.elapsed() >= COMMIT_INTERVAL {
            commit(group, member, &parts).await;
            (dirty, last_commit) = (false, Instant::now());
        }
        if queue.is_empty() && !parts.is_empty() {
            dirty |= fetch(group, &mut parts, &mut queue).await;
        } else {
            let until_heartbeat = heartbeat.saturating_sub(last_heartbeat.elapsed());
            group
                .wait(until_heartbeat.max(Duration::from_millis(1)))
                .await;
        }
    }

    // Revoke: no more deliveries from this generation; give the acknowledgements on their
    // way a moment, then commit what is done.
    let drain_until =
        Instant::now() + (shares.settings.session_timeout / 5).min(Duration::from_secs(2));
    while outstanding > 0 && Instant::now() < drain_until {
        group.wait(drain_until - Instant::now()).await;
        let mut ignored = VecDeque::new();
        apply_events(
            group,
            epoch,
            &mut parts,
            &mut ignored,
            &mut outstanding,
            shares,
        );
    }
    commit(group, member, &parts).await;
    group.epoch.set(epoch + 1);
    metrics
        .share_partitions
        .fetch_sub(parts.len() as u64, Ordering::Relaxed);
    if outstanding > 0 {
        debug!(group = %group.group_id, outstanding, "deliveries unacknowledged at the rebalance go to the partitions' next owners");
    }
}

/// Whether the group has looked unsettled on two checks in a row although the heartbeats
/// say it is stable: the coordinator dropped a member without starting a new generation
/// (tansu 0.6 does when a member's session times out), which would leave that member's
/// partitions unread. On Kafka a rebalance always reaches the members' heartbeats first.
async fn stuck(group: &Group, member: &mut GroupMember, unstable: &mut u32) -> bool {
    match member.state().await {
        Ok(state) if state == "Stable" => *unstable = 0,
        Ok(state) => {
            *unstable += 1;
            if *unstable >= 2 {
                info!(group = %group.group_id, %state, "the share's consumer group is not stable though no rebalance was announced; forcing a new generation");
                return true;
            }
        }
        Err(e) => debug!(group = %group.group_id, error = %e, "DescribeGroups failed"),
    }
    false
}

/// Readers for the assigned partitions at the group's committed offsets. A partition the
/// group never committed starts at its end, and that position is committed at once, so
/// whoever owns it next starts there too.
async fn positions(
    group: &Group,
    member: &mut GroupMember,
    client: &Client,
    generation: &Generation,
) -> Option<BTreeMap<TopicPartition, Assigned>> {
    let options = FetchOptions {
        max_wait: MAX_WAIT,
        ..FetchOptions::default()
    };
    let mut parts = BTreeMap::new();
    let mut fresh = Vec::new();
    for (topic, partitions) in &generation.assignment {
        let committed = match member.committed(topic, partitions).await {
            Ok(c) => c,
            Err(e) => {
                warn!(group = %group.group_id, error = %e, "cannot read the share's committed offsets");
                return None;
            }
        };
        for (partition, offset) in committed {
            let offset = match offset {
                Some(o) => o,
                None => match client
                    .list_offset(topic, partition, OffsetSpec::Latest)
                    .await
                {
                    Ok(o) => {
                        info!(group = %group.group_id, %topic, partition, offset = o, "no committed offset: the share starts at the partition's end");
                        fresh.push((topic.clone(), partition, o));
                        o
                    }
                    Err(e) => {
                        warn!(group = %group.group_id, %topic, partition, error = %e, "cannot find the partition's end");
                        return None;
                    }
                },
            };
            let reader = PartitionReader::at(
                client.clone(),
                topic,
                partition,
                offset,
                options.clone(),
                OffsetReset::Earliest,
            )
            .retry_for(Duration::ZERO);
            let assigned = Assigned {
                reader,
                owed: BTreeMap::new(),
            };
            parts.insert((Rc::from(topic.as_str()), partition), assigned);
        }
    }
    let fresh: Vec<(&str, i32, i64)> = fresh.iter().map(|(t, p, o)| (t.as_str(), *p, *o)).collect();
    if let Err(e) = member.commit(&fresh).await {
        warn!(group = %group.group_id, error = %e, "cannot commit the share's starting offsets");
        return None;
    }
    Some(parts)
}

/// Applies acknowledgements and returns; true when a commit point may have moved.
fn apply_events(
    group: &Group,
    epoch: u64,
    parts: &mut BTreeMap<TopicPartition, Assigned>,
    queue: &mut VecDeque<Message>,
    outstanding: &mut usize,
    shares: &Shares,
) -> bool {
    let events = std::mem::take(&mut *group.events.borrow_mut());
    let mut moved = false;
    for event in events {
        let (e, conn) = match &event {
            Event::Acked { epoch, conn, .. } | Event::Returned { epoch, conn, .. } => {
                (*epoch, *conn)
            }
        };
        if let Some(m) = group
            .members
            .borrow_mut()
            .iter_mut()
            .find(|m| m.conn == conn)
        {
            m.outstanding = m.outstanding.saturating_sub(1);
        }
        if e != epoch {
            continue;
        }
        *outstanding = outstanding.saturating_sub(1);
        match event {
            Event::Acked {
                partition, offset, ..
            } => {
                if let Some(p) = parts.get_mut(&partition) {
                    p.owed.remove(&offset);
                    moved = true;
                }
            }
            Event::Returned { message, .. } => {
                if parts.contains_key(&message.partition) {
                    shares
                        .metrics
                        .share_redeliveries
                        .fetch_add(1, Ordering::Relaxed);
                    queue.push_front(message);
                }
            }
        }
    }
    moved
}

/// Hands queued records to members with room, one member per record.
fn dispatch(
    group: &Rc<Group>,
    epoch: u64,
    queue: &mut VecDeque<Message>,
    outstanding: &mut usize,
    shares: &Shares,
) {
    while !queue.is_empty() {
        let Some(i) = group.pick() else { return };
        let message = queue.pop_front().expect("not empty");
        let (mailbox, granted, conn) = {
            let mut members = group.members.borrow_mut();
            let m = &mut members[i];
            m.outstanding += 1;
            (m.mailbox.upgrade(), m.granted, m.conn)
        };
        group.next.set(i + 1);
        *outstanding += 1;
        let Some(mailbox) = mailbox else { continue };
        let ticket = Ticket(Rc::new(TicketInner {
            group: Rc::downgrade(group),
            epoch,
            conn,
            message: message.clone(),
            done: Cell::new(false),
        }));
        shares
            .metrics
            .share_deliveries
            .fetch_add(1, Ordering::Relaxed);
        mailbox.deliver(Outgoing {
            topic: message.topic,
            payload: message.payload,
            qos: granted.qos.min(message.qos),
            properties: message.properties,
            retain: granted.retain_as_published && message.retain,
            source: None,
            subscription_ids: granted.id.into_iter().collect(),
            redelivery: None,
            share: Some(ticket),
        });
    }
}

/// One fetch of every assigned partition; records whose key matches the filter are
/// queued and owed. True when a position moved.
async fn fetch(
    group: &Group,
    parts: &mut BTreeMap<TopicPartition, Assigned>,
    queue: &mut VecDeque<Message>,
) -> bool {
    let polls = parts
        .iter_mut()
        .map(|(tp, a)| async move { (tp.clone(), a.reader.position(), a.reader.poll().await) });
    let results = futures::future::join_all(polls).await;
    let mut moved = false;
    for (tp, before, result) in results {
        let fetched = match result {
            Ok(f) => f,
            Err(e) => {
                debug!(group = %group.group_id, error = %e, "share fetch failed; trying again");
                continue;
            }
        };
        let a = parts.get_mut(&tp).expect("assigned");
        moved |= a.reader.position() != before;
        for record in fetched.records {
            let Some(key) = record.key.clone() else {
                continue;
            };
            let Ok(topic) = MqttString::from_bytes(key) else {
                continue;
            };
            if !group.filter.matches(topic.as_str()) {
                continue;
            }
            let meta = from_headers(&record.headers);
            a.owed.insert(record.offset, before);
            queue.push_back(Message {
                partition: tp.clone(),
                offset: record.offset,
                topic,
                payload: record.value.clone().unwrap_or_default(),
                qos: meta.qos,
                retain: meta.retain,
                properties: Rc::new(meta.properties),
            });
        }
    }
    if queue.is_empty() && !moved {
        // Nothing new anywhere: the broker answered without waiting (no long poll).
        group.wait(MAX_WAIT).await;
    }
    moved
}

/// Commits every assigned partition's commit point.
async fn commit(
    group: &Group,
    member: &mut GroupMember,
    parts: &BTreeMap<TopicPartition, Assigned>,
) {
    let offsets: Vec<(&str, i32, i64)> = parts
        .iter()
        .map(|((topic, partition), a)| (&**topic, *partition, a.commit_point()))
        .collect();
    if let Err(e) = member.commit(&offsets).await {
        warn!(group = %group.group_id, error = %e, "cannot commit the share's offsets");
    }
}
