//! MQTT sessions kept in Kafka, so that any sluice process can serve any client.
//!
//! The session topic (`mqtt.sessions_topic`, compacted) holds one record per client
//! identifier: its [`Stored`] state as JSON: generation, owner, subscriptions, the cursor
//! of what it has been delivered and acknowledged, its expiry. A null value ends it.
//!
//! **Ownership and fencing.** Every CONNECT claims its client identifier by writing the
//! state with the next generation and itself as owner, then reads the topic until its claim
//! (or a later one) has been applied. Every process applies the topic in the same (log)
//! order with one rule: a record with a higher generation than the current one replaces it
//! (a new owner); a record with the same generation counts only if it comes from the
//! current owner (a state save); anything else is stale and ignored. So of two processes
//! that claim the same generation at once, the one whose record comes first wins, the same
//! everywhere; the other refuses its CONNECT. A process serving a client whose session is
//! claimed by another connection after its own claim closes that connection ("session
//! taken over", 0x8E), and its later saves are stale, so two processes never both serve or
//! write the session. Clean sessions without a will claim in the background and are not
//! cached (there is nothing to resume); their claims still take over and end stored ones.
//!
//! Each shard that serves an MQTT client reads the whole topic once (from the beginning)
//! and keeps tailing it; the cache holds every live session's state.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_wire::record::Record;
use kafka_wire::{Client, PartitionReader, Producer, ProducerRecord};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::runtime;

/// How long a CONNECT waits to see its claim applied before giving up.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claim waits for the final state of the connection it supersedes, when that
/// connection was still marked connected (it may have just ended, its last save still on
/// its way; or it is being taken over and writes it now). Past it, the claim resumes the
/// last state it saw: the previous owner died, and what it delivered since is delivered
/// again.
const FINAL_STATE_GRACE: Duration = Duration::from_secs(2);

/// A session's state as stored in Kafka.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// Incremented by every CONNECT that claims the session.
    pub gen: u64,
    /// Which connection serves it: `{process}/{shard}/{connection}`.
    pub owner: String,
    /// Subscriptions.
    #[serde(default)]
    pub subs: Vec<StoredSub>,
    /// Per Kafka topic, per partition: the offset from which the session still needs
    /// records (everything before it was delivered and, for QoS 1/2, acknowledged).
    #[serde(default)]
    pub cursor: BTreeMap<String, BTreeMap<i32, i64>>,
    /// Seconds the session outlives its connection (MQTT 5 session expiry; 3.1.1 with
    /// clean session 0: `u32::MAX`, never).
    #[serde(default)]
    pub expiry_s: u32,
    /// Whether a connection serves it now.
    #[serde(default)]
    pub connected: bool,
    /// When it was written, in milliseconds since the epoch.
    #[serde(default)]
    pub at_ms: u64,
    /// The will of the connection serving it, while it is connected: published by
    /// another process if this one dies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub will: Option<Box<StoredWill>>,
    /// QoS 1/2 deliveries sent and not acknowledged: resent with DUP and the same packet
    /// identifier when the session resumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_flight: Vec<InFlight>,
    /// Set on a claim that resumes the session (not a clean start): readers keep the
    /// superseded state's subscriptions, cursor and in-flight deliveries under the new
    /// generation. So a claim whose connection never got to save (its CONNECT failed
    /// after the claim was written) does not wipe the session for the next claimant.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumes: bool,
}

impl Stored {
    /// What the session is once `claim` is applied on top of `current`: the claim itself,
    /// carrying over `current`'s content when it resumes an unexpired session.
    fn claimed(mut claim: Stored, current: Option<&Stored>) -> Stored {
        if let Some(current) = current.filter(|c| claim.resumes && !c.expired(claim.at_ms)) {
            claim.subs = current.subs.clone();
            claim.cursor = current.cursor.clone();
            claim.in_flight = current.in_flight.clone();
        }
        claim
    }
}

/// A delivery in flight: which record, under which packet identifier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// The record's topic, partition and offset.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The PUBLISH's packet identifier.
    pub packet_id: u16,
}

/// A subscription as a session record carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSub {
    /// The topic filter.
    pub filter: String,
    /// Granted QoS.
    pub qos: u8,
    /// MQTT 5 options: no local, retain as published, subscription identifier.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_local: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retain_as_published: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
}

/// A will message as a session record carries it, routed already (the Kafka record it
/// becomes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWill {
    /// The MQTT topic.
    pub topic: String,
    /// The payload, base64.
    pub payload: String,
    /// QoS and retain flag of the will.
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5 will delay, seconds.
    pub delay_s: u32,
    /// The Kafka topic and key its route gives it.
    pub kafka_topic: String,
    pub key: Option<String>,
}

/// The session-topic key prefix of process heartbeats. MQTT strings cannot contain U+0000,
/// so no client identifier starts with it.
const HEARTBEAT_PREFIX: &str = "\u{0}process/";
/// How often each process writes its heartbeat, and after how long without one another
/// process counts it dead and publishes the wills of the sessions it served.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const DEAD_AFTER: Duration = Duration::from_secs(5);

impl Stored {
    /// Whether a disconnected session has outlived its expiry at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        !self.connected
            && self.expiry_s != u32::MAX
            && self.at_ms.saturating_add(u64::from(self.expiry_s) * 1000) <= now_ms
    }
}

/// This process's identifier in owner strings and heartbeats: its pid and start time, the
/// same on every shard.
fn process_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| format!("{}-{}", std::process::id(), now_ms()))
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Why a CONNECT could not claim its session.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Kafka did not take the claim.
    #[error("cannot write the session claim: {0}")]
    Kafka(#[from] kafka_wire::Error),
    /// Another connection claimed the same generation first.
    #[error("another connection claimed the session at the same time")]
    Lost,
    /// The claim was not seen in the session topic in time.
    #[error("the session claim was not read back in time")]
    Timeout,
}

/// A won claim.
#[derive(Debug)]
pub struct Claim {
    /// The generation this connection serves.
    pub gen: u64,
    /// Its owner string.
    pub owner: String,
    /// The state it resumes (`None`: a new session).
    pub resumed: Option<Stored>,
}

/// What one of this shard's claims superseded.
#[derive(Debug, Default)]
struct Superseded {
    /// The state before the claim in log order.
    previous: Option<Stored>,
    /// The previous owner's final state (disconnected), written after the claim.
    last: Option<Stored>,
}

/// A connection serving a session on this shard, to be told when it is taken over.
#[derive(Debug)]
struct Serving {
    owner: String,
    /// Its own claim has been applied: a claim by another owner from here on is later in
    /// the log, so it takes this connection over.
    applied: Cell<bool>,
    signal: TakeoverSignal,
}

/// A handle a connection polls to learn that its session was taken over.
#[derive(Debug, Clone, Default)]
pub struct TakeoverSignal(Rc<TakeoverState>);

#[derive(Debug, Default)]
struct TakeoverState {
    taken_over: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl TakeoverSignal {
    /// Ready once another connection claimed the session.
    pub fn poll(&self, cx: &std::task::Context<'_>) -> Poll<()> {
        if self.0.taken_over.get() {
            return Poll::Ready(());
        }
        *self.0.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }

    fn fire(&self) {
        self.0.taken_over.set(true);
        if let Some(w) = self.0.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

#[derive(Debug)]
enum Load {
    Idle,
    Loading(Vec<Waker>),
    Loaded,
}

/// One shard's view of the session topic.
#[derive(Debug)]
pub struct SessionStore {
    client: Client,
    producer: Producer,
    topic: String,
    /// `{process}/{shard}`: the prefix of this shard's owner strings.
    owner_prefix: String,
    cache: RefCell<HashMap<String, Stored>>,
    serving: RefCell<HashMap<String, Serving>>,
    /// Connections of this shard that a newer connection of this shard with the same
    /// client id replaced in `serving`, until they are taken over and end (rare: a client
    /// reconnecting to the same shard before its old connection is gone).
    displaced: RefCell<Vec<(String, Serving)>>,
    load: RefCell<Load>,
    /// Woken whenever records were applied (claims wait on it).
    applied: RefCell<Vec<Waker>>,
    /// For a claim of this shard's, by owner: the state it superseded in log order, and
    /// that owner's final state when it arrives after the claim.
    superseded: RefCell<HashMap<String, Superseded>>,
    /// When each process's last heartbeat was read.
    heartbeats: RefCell<HashMap<String, std::time::Instant>>,
    /// When this store finished loading (a process never heard from since counts dead
    /// once this is `DEAD_AFTER` old).
    loaded_at: Cell<Option<std::time::Instant>>,
}

impl SessionStore {
    /// The store of shard `shard`, reading and writing `topic`.
    pub fn new(client: Client, producer: Producer, topic: String, shard: usize) -> SessionStore {
        let process = process_id();
        SessionStore {
            client,
            producer,
            topic,
            owner_prefix: format!("{process}/{shard}"),
            cache: RefCell::new(HashMap::new()),
            serving: RefCell::new(HashMap::new()),
            displaced: RefCell::new(Vec::new()),
            load: RefCell::new(Load::Idle),
            applied: RefCell::new(Vec::new()),
            superseded: RefCell::new(HashMap::new()),
            heartbeats: RefCell::new(HashMap::new()),
            loaded_at: Cell::new(None),
        }
    }

    /// Claims `client_id` for connection `conn`: the next generation, resuming the state it
    /// supersedes in log order (unless `clean_start`, or it expired). Returns once the
    /// claim is applied.
    pub async fn claim(
        self: &Rc<Self>,
        client_id: &str,
        conn: u64,
        clean_start: bool,
        expiry_s: u32,
        will: Option<StoredWill>,
    ) -> Result<(Claim, TakeoverSignal), ClaimError> {
        self.ensure_loaded().await;
        let now = now_ms();
        let gen = self.cache.borrow().get(client_id).map_or(0, |s| s.gen) + 1;
        let owner = format!("{}/{conn}", self.owner_prefix);
        // The claim itself carries no subscriptions: the state it supersedes is only known
        // once it is applied; the connection saves the resumed state right after.
        let state = Stored {
            gen,
            owner: owner.clone(),
            expiry_s,
            connected: true,
            at_ms: now,
            will: will.map(Box::new),
            resumes: !clean_start,
            ..Stored::default()
        };
        self.superseded
            .borrow_mut()
            .insert(owner.clone(), Superseded::default());
        self.write(client_id, Some(&state)).await?.await?;
        // Wait until the claim, or a later one, has been applied in log order.
        let deadline = std::pin::pin!(runtime::sleep(CLAIM_TIMEOUT));
        let applied = futures::future::poll_fn(|cx| {
            match self.cache.borrow().get(client_id) {
                Some(s) if s.gen > gen || (s.gen == gen && s.owner != owner) => {
                    return Poll::Ready(Err(ClaimError::Lost))
                }
                Some(s) if s.gen == gen => return Poll::Ready(Ok(())),
                _ => {}
            }
            self.applied.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        });
        let outcome = match futures::future::select(std::pin::pin!(applied), deadline).await {
            futures::future::Either::Left((result, _)) => result,
            futures::future::Either::Right(_) => Err(ClaimError::Timeout),
        };
        if let Err(e) = outcome {
            self.superseded.borrow_mut().remove(&owner);
            return Err(e);
        }
        let waiting_final = self.superseded.borrow()[&owner]
            .previous
            .as_ref()
            .is_some_and(|p| p.connected);
        if waiting_final {
            let grace = std::pin::pin!(runtime::sleep(FINAL_STATE_GRACE));
            let arrived = futures::future::poll_fn(|cx| {
                if self.superseded.borrow()[&owner].last.is_some() {
                    return Poll::Ready(());
                }
                self.applied.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            });
            futures::future::select(std::pin::pin!(arrived), grace).await;
        }
        let slot = self
            .superseded
            .borrow_mut()
            .remove(&owner)
            .unwrap_or_default();
        let superseded = slot.last.or(slot.previous);
        debug!(client_id, gen, ?superseded, "session claimed");
        let resumed = superseded.filter(|s| !clean_start && !s.expired(now));
        let signal = TakeoverSignal::default();
        self.serve(
            client_id,
            Serving {
                owner: owner.clone(),
                applied: Cell::new(true),
                signal: signal.clone(),
            },
        );
        Ok((
            Claim {
                gen,
                owner,
                resumed,
            },
            signal,
        ))
    }

    /// Claims `client_id` for a clean session (nothing to resume, nothing kept): the
    /// CONNECT does not wait, so clients connect while Kafka is unreachable. The claim is
    /// written in the background; once it is applied, a later claim elsewhere takes this
    /// connection over as usual, and this claim takes over any earlier connection.
    pub fn claim_clean(
        self: &Rc<Self>,
        client_id: &str,
        conn: u64,
        will: Option<StoredWill>,
    ) -> (String, TakeoverSignal) {
        let owner = format!("{}/{conn}", self.owner_prefix);
        let signal = TakeoverSignal::default();
        let store = self.clone();
        let (id, task_owner, task_signal) = (client_id.to_owned(), owner.clone(), signal.clone());
        runtime::spawn(async move {
            store.ensure_loaded().await;
            let gen = store.cache.borrow().get(&id).map_or(0, |s| s.gen) + 1;
            let state = Stored {
                gen,
                owner: task_owner,
                connected: true,
                at_ms: now_ms(),
                will: will.map(Box::new),
                ..Stored::default()
            };
            // Registered first, so the claim finds it when it is applied.
            store.serve(
                &id,
                Serving {
                    owner: state.owner.clone(),
                    applied: Cell::new(false),
                    signal: task_signal,
                },
            );
            match store.write(&id, Some(&state)).await {
                Ok(delivery) => {
                    if let Err(e) = delivery.await {
                        debug!(client_id = %id, error = %e, "clean session claim not written");
                    }
                }
                Err(e) => debug!(client_id = %id, error = %e, "clean session claim not written"),
            }
        });
        (owner, signal)
    }

    /// Saves the state of a session this shard serves (`None` ends the session). Returns
    /// once Kafka has it. A save by a connection whose claim was taken over is stale: every
    /// reader ignores it.
    pub async fn save(&self, client_id: &str, state: Option<&Stored>) -> kafka_wire::Result<()> {
        debug!(client_id, ?state, "saving the session");
        self.write(client_id, state).await?.await.map(drop)
    }

    /// Records `serving` as the connection serving `client_id` on this shard. One it
    /// replaces is kept aside: it is still to be taken over by the later claim.
    fn serve(&self, client_id: &str, serving: Serving) {
        let replaced = self
            .serving
            .borrow_mut()
            .insert(client_id.to_owned(), serving);
        if let Some(old) = replaced {
            self.displaced
                .borrow_mut()
                .push((client_id.to_owned(), old));
        }
    }

    /// Forgets `owner` as the serving connection of `client_id` (it ended).
    pub fn release(&self, client_id: &str, owner: &str) {
        let mut serving = self.serving.borrow_mut();
        if serving.get(client_id).is_some_and(|s| s.owner == owner) {
            serving.remove(client_id);
        }
        let mut displaced = self.displaced.borrow_mut();
        if !displaced.is_empty() {
            displaced.retain(|(id, s)| !(id == client_id && s.owner == owner));
        }
    }

    /// Ends a clean session of `owner` (a null record), once its background claim has been
    /// applied, and only if no later claim superseded it (that would delete the newer
    /// owner's state). Gives up after the claim timeout.
    pub async fn end_clean(&self, client_id: &str, owner: &str) -> kafka_wire::Result<()> {
        let deadline = std::pin::pin!(runtime::sleep(CLAIM_TIMEOUT));
        let applied = futures::future::poll_fn(|cx| {
            if self.is_current(client_id, owner) {
                return Poll::Ready(());
            }
            self.applied.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        });
        match futures::future::select(std::pin::pin!(applied), deadline).await {
            futures::future::Either::Left(_) => self.save(client_id, None).await,
            futures::future::Either::Right(_) => Ok(()),
        }
    }

    /// Whether `owner` is the session's current owner as far as this shard has read.
    pub fn is_current(&self, client_id: &str, owner: &str) -> bool {
        self.cache
            .borrow()
            .get(client_id)
            .is_some_and(|s| s.owner == owner)
    }

    async fn write(
        &self,
        client_id: &str,
        state: Option<&Stored>,
    ) -> kafka_wire::Result<kafka_wire::DeliveryFuture> {
        let value = state.map(|s| serde_json::to_vec(s).expect("session state serializes"));
        self.producer
            .send(ProducerRecord {
                topic: &self.topic,
                partition: None,
                key: Some(client_id.as_bytes()),
                value: value.as_deref(),
                headers: &[],
                timestamp: None,
            })
            .await
    }

    /// Applies one record of the session topic (see the module docs for the rule).
    fn apply(&self, record: &Record) {
        let Some(key) = &record.key else { return };
        let Ok(client_id) = std::str::from_utf8(key) else {
            return;
        };
        if let Some(process) = client_id.strip_prefix(HEARTBEAT_PREFIX) {
            self.heartbeats
                .borrow_mut()
                .insert(process.to_owned(), std::time::Instant::now());
            return;
        }
        let mut cache = self.cache.borrow_mut();
        let Some(value) = &record.value else {
            cache.remove(client_id);
            return;
        };
        let Ok(state) = serde_json::from_slice::<Stored>(value) else {
            warn!(client_id, "unreadable session state in Kafka; ignored");
            return;
        };
        // A clean session without a will has nothing to keep: its claim only takes over
        // (and ends any stored session), so it is not cached; that keeps a shard's memory
        // per clean connection small.
        let clean = state.expiry_s == 0 && state.will.is_none() && state.subs.is_empty();
        if clean {
            self.take_over(client_id, &state.owner);
            cache.remove(client_id);
            return;
        }
        let accept = match cache.get(client_id) {
            None => true,
            Some(current) => {
                state.gen > current.gen
                    || (state.gen == current.gen && state.owner == current.owner)
            }
        };
        tracing::trace!(shard = %self.owner_prefix, client_id, offset = record.offset, gen = state.gen, owner = %state.owner, accept, cursor = ?state.cursor, "session record");
        if !accept {
            // The superseded owner's final state, written after a claim of ours.
            for slot in self.superseded.borrow_mut().values_mut() {
                let of_previous = slot
                    .previous
                    .as_ref()
                    .is_some_and(|p| p.gen == state.gen && p.owner == state.owner && p.connected);
                if of_previous && !state.connected {
                    slot.last = Some(state.clone());
                }
            }
            return;
        }
        if let Some(slot) = self.superseded.borrow_mut().get_mut(&state.owner) {
            // One of this shard's claims: remember what it supersedes.
            slot.previous = cache.get(client_id).cloned();
        }
        self.take_over(client_id, &state.owner);
        let state = Stored::claimed(state, cache.get(client_id));
        cache.insert(client_id.to_owned(), state);
    }

    /// A claim by `owner` was applied: it takes over the connection this shard serves the
    /// client with, if that connection's own claim came earlier.
    fn take_over(&self, client_id: &str, owner: &str) {
        let apply = |serving: &Serving| {
            if serving.owner == owner {
                serving.applied.set(true);
            } else if serving.applied.get() {
                serving.signal.fire();
            }
        };
        if let Some(serving) = self.serving.borrow().get(client_id) {
            apply(serving);
        }
        for (_, serving) in self
            .displaced
            .borrow()
            .iter()
            .filter(|(id, _)| id == client_id)
        {
            apply(serving);
        }
    }

    async fn ensure_loaded(self: &Rc<Self>) {
        let start = match &mut *self.load.borrow_mut() {
            Load::Loaded => return,
            l @ Load::Idle => {
                *l = Load::Loading(Vec::new());
                true
            }
            Load::Loading(_) => false,
        };
        if start {
            // Boxed: every caller's future (one per CONNECT) would otherwise be as large as
            // the whole load, though only the first caller runs it.
            let readers = Box::pin(self.load_all()).await;
            for reader in readers {
                runtime::spawn(tail(self.clone(), reader));
            }
            self.loaded_at.set(Some(std::time::Instant::now()));
            if let Load::Loading(wakers) =
                std::mem::replace(&mut *self.load.borrow_mut(), Load::Loaded)
            {
                wakers.into_iter().for_each(Waker::wake);
            }
            return;
        }
        futures::future::poll_fn(|cx| match &mut *self.load.borrow_mut() {
            Load::Loading(wakers) => {
                wakers.push(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        })
        .await;
    }

    /// This process's identifier (the first part of its owner strings).
    fn process(&self) -> &str {
        process_id()
    }

    /// Runs on one shard per process for its whole life: writes this process's heartbeat
    /// every second, and, when this is the live process with the smallest identifier,
    /// publishes the wills of sessions whose process stopped beating (`publish` writes the
    /// will's records and returns once Kafka has them), then marks those sessions
    /// disconnected on the dead owner's behalf, so no other process publishes them again.
    pub async fn watch_processes<F, Fut>(self: Rc<Self>, publish: F)
    where
        F: Fn(String, StoredWill) -> Fut,
        Fut: std::future::Future<Output = kafka_wire::Result<()>>,
    {
        self.ensure_loaded().await;
        let heartbeat_key = format!("{HEARTBEAT_PREFIX}{}", self.process());
        loop {
            let beat = serde_json::json!({ "heartbeat_ms": now_ms() }).to_string();
            let sent = self
                .producer
                .send(ProducerRecord {
                    topic: &self.topic,
                    partition: None,
                    key: Some(heartbeat_key.as_bytes()),
                    value: Some(beat.as_bytes()),
                    headers: &[],
                    timestamp: None,
                })
                .await;
            if let Err(e) = sent {
                debug!(error = %e, "heartbeat not sent");
            }
            for (client_id, state) in self.orphans() {
                if let Some(will) = state.will.clone() {
                    let due = state.at_ms + u64::from(will.delay_s) * 1000;
                    if now_ms() < due {
                        continue;
                    }
                    tracing::info!(client_id, owner = %state.owner, "publishing the will of a session whose process died");
                    if let Err(e) = publish(client_id.clone(), *will).await {
                        warn!(client_id, error = %e, "cannot publish an orphaned will; retrying");
                        continue;
                    }
                }
                let ended = Stored {
                    connected: false,
                    will: None,
                    at_ms: now_ms(),
                    ..state
                };
                let write = if ended.expiry_s > 0 {
                    self.save(&client_id, Some(&ended)).await
                } else {
                    self.save(&client_id, None).await
                };
                if let Err(e) = write {
                    warn!(client_id, error = %e, "cannot end an orphaned session");
                }
            }
            for (client_id, state) in self.expired() {
                // Emptied rather than deleted: the record is a save by the session's own
                // generation and owner, so a claim that got in first makes it stale, where
                // a null record would delete the new owner's state.
                let ended = Stored {
                    subs: Vec::new(),
                    cursor: BTreeMap::new(),
                    ..state
                };
                debug!(client_id, "session expired");
                if let Err(e) = self.save(&client_id, Some(&ended)).await {
                    warn!(client_id, error = %e, "cannot end an expired session");
                }
            }
            runtime::sleep(HEARTBEAT_EVERY).await;
        }
    }

    /// Whether this process acts for the others (the live process with the smallest
    /// identifier), once it has known the topic for long enough to tell who is alive.
    fn designated(&self) -> bool {
        let Some(loaded_at) = self.loaded_at.get() else {
            return false;
        };
        let beats = self.heartbeats.borrow();
        let me = self.process();
        let smallest_live = beats
            .iter()
            .filter(|(_, t)| t.elapsed() < DEAD_AFTER)
            .map(|(p, _)| p.as_str())
            .chain(std::iter::once(me))
            .min()
            .unwrap_or(me);
        smallest_live == me && loaded_at.elapsed() >= DEAD_AFTER
    }

    /// Disconnected sessions past their expiry that still hold subscriptions or a cursor,
    /// when this process is the one to end them.
    fn expired(&self) -> Vec<(String, Stored)> {
        if !self.designated() {
            return Vec::new();
        }
        let now = now_ms();
        self.cache
            .borrow()
            .iter()
            .filter(|(_, s)| s.expired(now) && !(s.subs.is_empty() && s.cursor.is_empty()))
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect()
    }

    /// Connected sessions whose process is dead, when this process is the one to act on
    /// them.
    fn orphans(&self) -> Vec<(String, Stored)> {
        if !self.designated() {
            return Vec::new();
        }
        let beats = self.heartbeats.borrow();
        let me = self.process();
        let alive = |p: &str| p == me || beats.get(p).is_some_and(|t| t.elapsed() < DEAD_AFTER);
        self.cache
            .borrow()
            .iter()
            .filter(|(_, s)| s.connected)
            .filter(|(_, s)| !alive(s.owner.split('/').next().unwrap_or_default()))
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect()
    }

    /// Reads the whole topic as of now; returns its readers for tailing.
    async fn load_all(&self) -> Vec<PartitionReader> {
        crate::table::load(&self.client, &self.topic, |r| self.apply(r)).await
    }
}

async fn tail(store: Rc<SessionStore>, mut reader: PartitionReader) {
    loop {
        match reader.poll().await {
            Ok(fetched) => {
                for record in &fetched.records {
                    store.apply(record);
                }
                if !fetched.records.is_empty() {
                    for w in store.applied.borrow_mut().drain(..) {
                        w.wake();
                    }
                }
            }
            Err(e) => {
                debug!(error = %e, "session topic fetch failed; retrying");
                runtime::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Stored, StoredSub};

    #[test]
    fn a_resuming_claim_keeps_the_session_it_supersedes_a_clean_one_does_not() {
        let saved = Stored {
            gen: 1,
            owner: "a/0/1".into(),
            subs: vec![StoredSub {
                filter: "t/#".into(),
                qos: 1,
                ..StoredSub::default()
            }],
            cursor: [("mqtt-messages".to_owned(), [(0, 42)].into())].into(),
            expiry_s: 60,
            connected: true,
            at_ms: 1_000,
            ..Stored::default()
        };
        let claim = |gen, resumes, at_ms| Stored {
            gen,
            owner: format!("b/0/{gen}"),
            expiry_s: 60,
            connected: true,
            at_ms,
            resumes,
            ..Stored::default()
        };
        // A claim whose connection never saved, then the next one: the subscriptions and
        // cursor are still there for it.
        let abandoned = Stored::claimed(claim(2, true, 2_000), Some(&saved));
        assert_eq!(abandoned.subs, saved.subs);
        assert_eq!(abandoned.cursor, saved.cursor);
        assert_eq!(abandoned.gen, 2);
        let next = Stored::claimed(claim(3, true, 3_000), Some(&abandoned));
        assert_eq!(next.subs, saved.subs);
        // A clean start, or a session that had expired, starts empty.
        assert!(Stored::claimed(claim(2, false, 2_000), Some(&saved))
            .subs
            .is_empty());
        let gone = Stored {
            connected: false,
            ..saved.clone()
        };
        assert!(Stored::claimed(claim(2, true, 62_000), Some(&gone))
            .subs
            .is_empty());
        assert!(Stored::claimed(claim(2, true, 2_000), None).subs.is_empty());
    }

    #[test]
    fn sessions_expire_only_when_disconnected_past_their_interval() {
        let s = Stored {
            expiry_s: 10,
            at_ms: 1_000,
            ..Stored::default()
        };
        assert!(!s.expired(10_999));
        assert!(s.expired(11_000));
        let connected = Stored {
            connected: true,
            ..s.clone()
        };
        assert!(!connected.expired(u64::MAX));
        let forever = Stored {
            expiry_s: u32::MAX,
            ..s
        };
        assert!(!forever.expired(u64::MAX));
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut s = Stored {
            gen: 3,
            owner: "p/0/7".into(),
            subs: vec![super::StoredSub {
                filter: "a/+".into(),
                qos: 1,
                id: Some(7),
                ..Default::default()
            }],
            expiry_s: 60,
            connected: true,
            at_ms: 5,
            ..Stored::default()
        };
        s.cursor
            .entry("mqtt-messages".into())
            .or_default()
            .insert(2, 41);
        let json = serde_json::to_vec(&s).unwrap();
        assert_eq!(serde_json::from_slice::<Stored>(&json).unwrap(), s);
    }
}
