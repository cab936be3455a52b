//! The sender task: closes lingering batches, groups ready batches into one Produce request
//! per leader, and applies the answers (complete, retry in order, or fail).

use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    InitProducerIdRequest, ProduceRequest, ProduceResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tracing::{debug, info, warn};

use super::accumulator::{ReadyBatch, SequenceSource};
use super::delivery::BatchAck;
use super::{Acks, Inner, State};
use crate::client::retry;
use crate::error::{check, Context, Error, KafkaCode, Result};
use crate::rt;

/// A batch on its way to a broker.
struct Sent {
    topic: Arc<str>,
    partition: i32,
    batch: ReadyBatch,
}

/// Gets a producer id and epoch (idempotent producer, no transactions).
pub(super) async fn init_producer_id(inner: &Inner) -> Result<()> {
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = None;
    request.transaction_timeout_ms = i32::MAX;
    request.producer_id = ProducerId(-1);
    request.producer_epoch = -1;
    let deadline = Instant::now() + inner.config.delivery_timeout;
    let client = &inner.client;
    let response = retry(client.config().retry_backoff, deadline, || async {
        let conn = client.any_connection().await?;
        let r = conn.request(&request).await?;
        check(r.error_code, None, || Context::broker(conn.broker()))?;
        Ok(r)
    })
    .await?;
    let mut state = inner.state.borrow_mut();
    state.producer_id = response.producer_id.0;
    state.producer_epoch = response.producer_epoch;
    info!(
        producer_id = response.producer_id.0,
        epoch = response.producer_epoch,
        "idempotent producer ready"
    );
    Ok(())
}

/// Runs until the producer is dropped or closed with nothing left to send.
pub(super) async fn run(weak: Weak<Inner>) {
    loop {
        let next = {
            let Some(inner) = weak.upgrade() else { return };
            match step(&inner, Instant::now()) {
                Step::Exit => return,
                Step::Wait(next) => next,
            }
        };
        let woken = futures::future::poll_fn(|cx| {
            let Some(inner) = weak.upgrade() else {
                return Poll::Ready(());
            };
            let mut state = inner.state.borrow_mut();
            if state.sender_poked {
                state.sender_poked = false;
                return Poll::Ready(());
            }
            state.sender_waker = Some(cx.waker().clone());
            Poll::Pending
        });
        match next {
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                let _ = rt::timeout(wait.max(Duration::from_micros(50)), woken).await;
            }
            None => woken.await,
        }
    }
}

enum Step {
    Exit,
    Wait(Option<Instant>),
}

fn step(inner: &Rc<Inner>, now: Instant) -> Step {
    let config = &inner.config;
    let mut guard = inner.state.borrow_mut();
    let state = &mut *guard;
    state.sender_poked = false;
    let per_partition = if config.idempotent {
        config.max_in_flight
    } else {
        1
    };
    let mut next: Option<Instant> = None;
    let mut earliest = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
    let mut finished = Vec::new();
    let mut stale = Vec::new();
    let mut in_flight_total = 0;
    let flush = std::mem::take(&mut state.flush_requested);

    for (name, topic) in state.topics.iter_mut() {
        if topic.stale {
            stale.push(name.clone());
        }
        for (p, q) in topic.partitions.iter_mut().enumerate() {
            finished.extend(q.failed.drain(..).map(|(id, bytes)| (id, bytes, true)));
            in_flight_total += q.in_flight;
            for expired in q.expire(now, config.delivery_timeout) {
                if config.idempotent {
                    // Its sequence numbers will never reach the broker: later batches would
                    // be refused as out of order, so start over under a new producer id.
                    state.needs_new_id = true;
                }
                let err = Error::DeliveryTimeout(config.delivery_timeout);
                expired.completion.complete(Err(err));
                finished.push((expired.id, expired.accounted, true));
            }
            if let Some(created) = q.open_since() {
                let due = created + config.linger;
                // A lingered batch closes only when it can leave at once. While the
                // partition (or its leader) waits for answers, records keep joining it, as
                // in librdkafka: a busy broker then gets fewer, larger batches instead of a
                // queue of small ones, each a request of its own (linger 0 collapsed under
                // load). The answer that frees the partition pokes the sender.
                let leader = topic.info.partitions.get(p).map_or(-1, |i| i.leader);
                let broker_busy = state
                    .broker_in_flight
                    .get(&leader)
                    .is_some_and(|&n| n >= config.max_in_flight);
                let can_leave = q.ready.is_empty()
                    && !q.retrying
                    && q.in_flight < per_partition
                    && !broker_busy;
                if flush || state.closed || (due <= now && can_leave) {
                    let mut source = SequenceSource {
                        idempotent: config.idempotent,
                        producer_id: state.producer_id,
                        producer_epoch: state.producer_epoch,
                        next_batch_id: &mut state.next_batch_id,
                    };
                    q.close(&mut source);
                    let count = topic.info.partition_count();
                    topic.partitioner.on_new_batch(count, p as u32);
                } else if due > now {
                    earliest(due);
                }
            }
            if let Some(front) = q.ready.front() {
                earliest(front.created + config.delivery_timeout);
                if let Some(t) = front.retry_at {
                    if t > now {
                        earliest(t);
                    }
                }
            }
        }
    }
    for (id, bytes, failed) in finished {
        account_finished(state, id, bytes, failed);
    }

    if state.needs_new_id {
        if in_flight_total == 0 && !state.renewing_id {
            state.renewing_id = true;
            rt::spawn(renew_producer_id(inner.clone()));
        }
        return Step::Wait(next);
    }

    for name in stale {
        if let Some(t) = state.topics.get_mut(&name) {
            t.stale = false;
        }
        rt::spawn(refresh_topic(inner.clone(), name));
    }

    // Group sendable batches by leader, one request per broker, within the size limit.
    let mut requests: HashMap<i32, (usize, Vec<Sent>)> = HashMap::new();
    for (name, topic) in state.topics.iter_mut() {
        for (p, q) in topic.partitions.iter_mut().enumerate() {
            if !q.can_send(per_partition, now) {
                continue;
            }
            let leader = topic.info.partitions.get(p).map_or(-1, |i| i.leader);
            if leader < 0 {
                topic.stale = true;
                earliest(now + inner.client.config().retry_backoff);
                continue;
            }
            let busy = state.broker_in_flight.get(&leader).copied().unwrap_or(0);
            let entry = requests.entry(leader).or_insert((0, Vec::new()));
            if busy >= config.max_in_flight && entry.1.is_empty() {
                continue;
            }
            if busy >= config.max_in_flight {
                continue;
            }
            let size = q.ready.front().map_or(0, |b| b.data.len());
            if !entry.1.is_empty() && entry.0 + size > config.max_request_size {
                earliest(now);
                continue;
            }
            let batch = q.take_next().expect("can_send saw a batch");
            if batch.attempts == 0 {
                state.stats.batches += 1;
            } else {
                state.stats.retries += 1;
            }
            entry.0 += size;
            entry.1.push(Sent {
                topic: name.clone(),
                partition: p as i32,
                batch,
            });
        }
    }
    for (broker, (_, batches)) in requests {
        if batches.is_empty() {
            continue;
        }
        *state.broker_in_flight.entry(broker).or_insert(0) += 1;
        state.stats.requests += 1;
        rt::spawn(produce(inner.clone(), broker, batches));
    }

    if state.closed
        && state
            .topics
            .values()
            .all(|t| t.partitions.iter().all(|q| q.is_idle()))
    {
        return Step::Exit;
    }
    Step::Wait(next)
}

/// Bookkeeping when a batch leaves the producer: memory, flush, counters.
pub(super) fn account_finished(state: &mut State, id: u64, bytes: usize, failed: bool) {
    state.outstanding.remove(&id);
    state.buffered_bytes = state.buffered_bytes.saturating_sub(bytes);
    if failed {
        state.stats.failed_batches += 1;
    }
    for w in state.memory_waiters.drain(..) {
        w.wake();
    }
    for (_, w) in state.flush_waiters.drain(..) {
        w.wake();
    }
}

pub(super) fn poke(state: &mut State) {
    state.sender_poked = true;
    if let Some(w) = state.sender_waker.take() {
        w.wake();
    }
}

async fn refresh_topic(inner: Rc<Inner>, topic: Arc<str>) {
    inner.client.invalidate(&topic);
    match inner.client.topic(&topic).await {
        Ok(info) => {
            let mut state = inner.state.borrow_mut();
            if let Some(t) = state.topics.get_mut(&topic) {
                while t.partitions.len() < info.partitions.len() {
                    t.partitions.push(Default::default());
                }
                t.info = info;
            }
            poke(&mut state);
        }
        Err(e) => {
            warn!(topic = %topic, error = %e, "metadata refresh failed");
            rt::sleep(inner.client.config().retry_backoff).await;
            let mut state = inner.state.borrow_mut();
            if let Some(t) = state.topics.get_mut(&topic) {
                t.stale = true;
            }
            poke(&mut state);
        }
    }
}

async fn renew_producer_id(inner: Rc<Inner>) {
    let result = init_producer_id(&inner).await;
    let mut guard = inner.state.borrow_mut();
    let state = &mut *guard;
    state.renewing_id = false;
    match result {
        Ok(()) => {
            state.needs_new_id = false;
            let mut source = SequenceSource {
                idempotent: true,
                producer_id: state.producer_id,
                producer_epoch: state.producer_epoch,
                next_batch_id: &mut state.next_batch_id,
            };
            for topic in state.topics.values_mut() {
                for q in &mut topic.partitions {
                    q.resequence(&mut source);
                }
            }
            info!("producer id renewed; queued batches renumbered");
        }
        Err(e) => warn!(error = %e, "could not renew the producer id; will retry"),
    }
    poke(state);
}

fn build_request(acks: Acks, timeout: Duration, batches: &[Sent]) -> ProduceRequest {
    let mut request = ProduceRequest::default();
    request.acks = acks.wire();
    request.timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let mut by_topic: Vec<TopicProduceData> = Vec::new();
    for sent in batches {
        let mut data = PartitionProduceData::default();
        data.index = sent.partition;
        data.records = Some(sent.batch.data.clone());
        match by_topic
            .iter_mut()
            .find(|t| t.name.0.as_str() == &*sent.topic)
        {
            Some(t) => t.partition_data.push(data),
            None => {
                let mut t = TopicProduceData::default();
                t.name = TopicName(StrBytes::from_string(sent.topic.to_string()));
                t.partition_data.push(data);
                by_topic.push(t);
            }
        }
    }
    request.topic_data = by_topic;
    request
}

async fn produce(inner: Rc<Inner>, broker: i32, batches: Vec<Sent>) {
    let config = &inner.config;
    let request = build_request(config.acks, inner.client.config().request_timeout, &batches);
    let result: Result<Option<ProduceResponse>> = async {
        let conn = inner.client.broker(broker).await?;
        if config.acks == Acks::None {
            conn.send_only(&request)?;
            return Ok(None);
        }
        conn.request(&request).await.map(Some)
    }
    .await;
    let now = Instant::now();
    let mut guard = inner.state.borrow_mut();
    let state = &mut *guard;
    if let Some(n) = state.broker_in_flight.get_mut(&broker) {
        *n = n.saturating_sub(1);
    }
    match result {
        Ok(None) => {
            for sent in batches {
                settle(
                    &inner,
                    state,
                    sent,
                    Ok(BatchAck {
                        base_offset: -1,
                        log_append_time: -1,
                    }),
                    now,
                );
            }
        }
        Ok(Some(response)) => {
            for sent in batches {
                let outcome = partition_outcome(&response, &sent, broker);
                settle(&inner, state, sent, outcome, now);
            }
        }
        Err(e) => {
            debug!(broker, error = %e, "produce request failed");
            for sent in batches {
                settle(&inner, state, sent, Err(e.clone()), now);
            }
        }
    }
    poke(state);
}

fn partition_outcome(response: &ProduceResponse, sent: &Sent, broker: i32) -> Result<BatchAck> {
    let ctx = || {
        let mut c = Context::default().with_partition(&sent.topic, sent.partition);
        c.broker = Some(Arc::from(format!("broker {broker}")));
        c
    };
    let p = response
        .responses
        .iter()
        .filter(|t| t.name.0.as_str() == &*sent.topic)
        .flat_map(|t| t.partition_responses.iter())
        .find(|p| p.index == sent.partition)
        .ok_or_else(|| {
            Error::protocol(
                "the Produce response does not mention a partition we sent",
                ctx(),
            )
        })?;
    if p.error_code == KafkaCode::DuplicateSequenceNumber.code() {
        // The broker already has this batch from an earlier attempt: delivered, once.
        return Ok(BatchAck {
            base_offset: p.base_offset,
            log_append_time: p.log_append_time_ms,
        });
    }
    check(p.error_code, p.error_message.as_deref(), ctx)?;
    Ok(BatchAck {
        base_offset: p.base_offset,
        log_append_time: p.log_append_time_ms,
    })
}

/// Applies one batch's outcome: complete it, put it back for a retry, or fail it.
fn settle(inner: &Inner, state: &mut State, sent: Sent, outcome: Result<BatchAck>, now: Instant) {
    let config = &inner.config;
    let Some(topic) = state.topics.get_mut(&sent.topic) else {
        return;
    };
    let Some(q) = topic.partitions.get_mut(sent.partition as usize) else {
        return;
    };
    q.in_flight = q.in_flight.saturating_sub(1);
    let batch = sent.batch;
    let error = match outcome {
        Ok(ack) => {
            batch.completion.complete(Ok(ack));
            account_finished(state, batch.id, batch.accounted, false);
            return;
        }
        Err(e) => e,
    };
    if error.invalidates_metadata() {
        topic.stale = true;
    }
    let code = error.kafka_code();
    let sequence_lost = matches!(code, Some(KafkaCode::UnknownProducerId))
        || (matches!(code, Some(KafkaCode::OutOfOrderSequenceNumber)) && !q.retrying);
    let retriable = error.is_retriable()
        || sequence_lost
        || matches!(code, Some(KafkaCode::OutOfOrderSequenceNumber));
    let deadline = batch.created + config.delivery_timeout;
    let backoff = inner.client.config().retry_backoff;
    if retriable && now + backoff < deadline && !state.closed {
        if sequence_lost && config.idempotent {
            state.needs_new_id = true;
        }
        debug!(topic = %sent.topic, partition = sent.partition, attempt = batch.attempts + 1, error = %error, "retrying batch");
        q.requeue(batch, now + backoff);
        return;
    }
    warn!(topic = %sent.topic, partition = sent.partition, records = batch.records, error = %error, "batch failed");
    if config.idempotent && batch.attempts > 0 {
        // A batch given up after retries may or may not be in the log; later sequence
        // numbers would be judged against it, so start a fresh sequence space.
        state.needs_new_id = true;
    }
    batch.completion.complete(Err(error));
    account_finished(state, batch.id, batch.accounted, true);
}
