//! One generation of a share's consumer group on this shard: the assigned partitions read
//! from the group's committed offsets, records handed to the local members, their
//! acknowledgements turned into commits, and the revocation when the generation ends.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kafka_wire::fetch::OffsetReset;
use kafka_wire::{
    Client, FetchOptions, Generation, GroupMember, Heartbeat, OffsetSpec, PartitionReader,
};
use tracing::{debug, info, warn};

use super::{
    Event, Group, Message, Shares, Ticket, TicketInner, COMMIT_INTERVAL, MAX_WAIT, RETRY,
    STATE_CHECK_EVERY,
};
use crate::delivery::{
    from_headers, DeliveryTopics, Message as DeliveryMessage, Outgoing, TopicPartition,
};
use crate::runtime;

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
pub(super) async fn serve(
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
            dirty |= fetch(group, &shares.topics, &mut parts, &mut queue).await;
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
        gap_retries: crate::delivery::GAP_RETRIES,
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
            message: Rc::new(DeliveryMessage::new(
                message.topic,
                message.payload,
                message.properties,
                message.expires_at,
            )),
            qos: granted.qos.min(message.qos),
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
    topics: &DeliveryTopics,
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
        let Some(template) = topics.template(&tp.0) else {
            continue;
        };
        for record in fetched.records {
            let Some(topic) = template.topic(record.key.as_ref(), &record.headers) else {
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
                expires_at: meta.expires_at(record.timestamp),
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
