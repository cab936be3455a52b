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
//! Every session record is written through the shard's session producer, not its main
//! one: with `mqtt.sessions_linger_ms` and one request in flight, a shard's claims and
//! saves reach the broker as few batches in few concurrent requests (`shard.rs`). Through
//! the main producer (up to five requests in flight), tansu left some of 100k CONNECTs
//! without a CONNACK and the setup's p99 was 17 s; through this one, 4.2–4.9 s.
//!
//! One task per process reads the whole topic (from the beginning) and keeps tailing it,
//! with one Fetch for all its partitions (`feed.rs`); every shard applies what it read to
//! its own cache, which holds every live session's state. A claim waits for records of its
//! own client identifier only.
//!
//! # Layout
//!
//! - `stored.rs`: the stored state and the rules every reader applies to it.
//! - `feed.rs`: the process's reader of the topic and its hand-off to the shards.
//! - `watch.rs`: heartbeats, the wills of dead processes, expiry.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_wire::record::Record;
use kafka_wire::{Producer, ProducerRecord};
use tracing::{debug, warn};

use crate::runtime;

mod clean;
mod feed;
mod stored;
#[cfg(test)]
mod tests;
mod watch;

use clean::{CleanClaim, CleanClaims};
pub use feed::{SessionFeed, Update};
pub use stored::{InFlight, Stored, StoredSub, StoredWill};

/// How long a CONNECT waits to see its claim applied before giving up.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claim waits for the final state of the connection it supersedes, when that
/// connection was still marked connected (it may have just ended, its last save still on
/// its way; or it is being taken over and writes it now). Past it, the claim resumes the
/// last state it saw: the previous owner died, and what it delivered since is delivered
/// again.
const FINAL_STATE_GRACE: Duration = Duration::from_secs(2);

/// The session-topic key prefix of process heartbeats. MQTT strings cannot contain U+0000,
/// so no client identifier starts with it.
const HEARTBEAT_PREFIX: &str = "\u{0}process/";
/// How often each process writes its heartbeat, and after how long without one another
/// process counts it dead and publishes the wills of the sessions it served.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
const DEAD_AFTER: Duration = Duration::from_secs(5);
/// A claim stops waiting for the final state of a connection whose process has written no
/// heartbeat for this long (two missed beats, as far as the records read since tell):
/// that process is most likely dead, and its final state will not come.
const SILENT_AFTER: Duration = Duration::from_secs(1);

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

/// A handle a connection polls to learn that its session was taken over; the shard's
/// `serving` table holds the other one, as the connection serving the session here.
#[derive(Debug, Clone)]
pub struct TakeoverSignal(Rc<TakeoverState>);

struct TakeoverState {
    /// The connection's number on the shard: its owner string is
    /// [`SessionStore::owner`] of it (a number here saves two strings per connection).
    /// Here rather than beside the signal in the `serving` table, whose entries are 24
    /// bytes so (the `Rc` is in mimalloc's 48-byte class either way).
    conn: u64,
    taken_over: Cell<bool>,
    /// The connection's own claim has been applied: a claim by another owner from here on
    /// is later in the log, so it takes this connection over.
    applied: Cell<bool>,
    /// A `Cell`, not a `RefCell`: 8 bytes less, so the whole `Rc` is 48 bytes.
    waker: Cell<Option<Waker>>,
}

// The `Rc` (two counts and this) stays within mimalloc's 48-byte class.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<TakeoverState>() <= 32);

impl std::fmt::Debug for TakeoverState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TakeoverState")
            .field("conn", &self.conn)
            .field("taken_over", &self.taken_over.get())
            .field("applied", &self.applied.get())
            .finish_non_exhaustive()
    }
}

impl TakeoverSignal {
    /// The signal of connection `conn`.
    fn new(conn: u64) -> TakeoverSignal {
        TakeoverSignal(Rc::new(TakeoverState {
            conn,
            taken_over: Cell::new(false),
            applied: Cell::new(false),
            waker: Cell::new(None),
        }))
    }

    fn conn(&self) -> u64 {
        self.0.conn
    }

    /// Ready once another connection claimed the session.
    pub fn poll(&self, cx: &std::task::Context<'_>) -> Poll<()> {
        if self.0.taken_over.get() {
            return Poll::Ready(());
        }
        self.0.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }

    /// Marks the connection's own claim as applied.
    fn applied(&self) -> TakeoverSignal {
        self.0.applied.set(true);
        self.clone()
    }

    fn fire(&self) {
        self.0.taken_over.set(true);
        if let Some(w) = self.0.waker.take() {
            w.wake();
        }
    }
}

#[derive(Debug)]
enum Load {
    Loading(Vec<Waker>),
    Loaded,
}

// An entry of the `serving` table (one per connection; hashbrown keeps up to as many
// spare).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<(Box<str>, TakeoverSignal)>() == 24);

/// One shard's view of the session topic.
#[derive(Debug)]
pub struct SessionStore {
    producer: Producer,
    topic: String,
    /// `{process}/{shard}`: the prefix of this shard's owner strings.
    owner_prefix: String,
    cache: RefCell<HashMap<String, Stored>>,
    /// The connections serving sessions on this shard, by client identifier (a boxed
    /// `str`: 8 bytes less per entry than a `String`), to be told when they are taken over.
    serving: RefCell<HashMap<Box<str>, TakeoverSignal>>,
    /// Connections of this shard that a newer connection of this shard with the same
    /// client id replaced in `serving`, until they are taken over and end (rare: a client
    /// reconnecting to the same shard before its old connection is gone).
    displaced: RefCell<Vec<(String, TakeoverSignal)>>,
    load: RefCell<Load>,
    /// Tasks waiting for a record of a client identifier to be applied (claims, clean
    /// ends), by client identifier: a record wakes only its own client's waiters.
    waiting: RefCell<HashMap<String, Vec<Waker>>>,
    /// For the claims of this shard in progress, by client identifier and then owner: the
    /// state each superseded in log order, and that owner's final state when it arrives
    /// after the claim.
    superseded: RefCell<HashMap<String, Vec<(String, Superseded)>>>,
    /// When each process's last heartbeat was read.
    heartbeats: RefCell<HashMap<String, Instant>>,
    /// When the feed last brought records: a process whose last heartbeat was read
    /// `SILENT_AFTER` before that has missed two beats.
    fresh_at: Cell<Option<Instant>>,
    /// When this store finished loading (a process never heard from since counts dead
    /// once this is `DEAD_AFTER` old).
    loaded_at: Cell<Option<Instant>>,
    /// Clean-session claims waiting to be written, and their writer.
    clean: CleanClaims,
}

impl SessionStore {
    /// The store of shard `shard`, writing `topic` through `producer` (the shard's session
    /// producer); it reads it through [`Self::follow`].
    pub fn new(producer: Producer, topic: String, shard: usize) -> SessionStore {
        let process = process_id();
        SessionStore {
            producer,
            topic,
            owner_prefix: format!("{process}/{shard}"),
            cache: RefCell::new(HashMap::new()),
            serving: RefCell::new(HashMap::new()),
            displaced: RefCell::new(Vec::new()),
            load: RefCell::new(Load::Loading(Vec::new())),
            waiting: RefCell::new(HashMap::new()),
            superseded: RefCell::new(HashMap::new()),
            heartbeats: RefCell::new(HashMap::new()),
            fresh_at: Cell::new(None),
            loaded_at: Cell::new(None),
            clean: CleanClaims::default(),
        }
    }

    /// The counters of this shard's session-topic producer.
    pub fn producer_stats(&self) -> kafka_wire::producer::ProducerStats {
        self.producer.stats()
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
        let owner = self.owner(conn);
        let mut retried = false;
        let gen = loop {
            let gen = self.cache.borrow().get(client_id).map_or(0, |s| s.gen) + 1;
            // The claim itself carries no subscriptions: the state it supersedes is only
            // known once it is applied; the connection saves the resumed state right after.
            let state = Stored {
                gen,
                owner: owner.clone(),
                expiry_s,
                connected: true,
                at_ms: now,
                will: will.clone().map(Box::new),
                resumes: !clean_start,
                ..Stored::default()
            };
            self.superseded
                .borrow_mut()
                .entry(client_id.to_owned())
                .or_default()
                .push((owner.clone(), Superseded::default()));
            match self.await_claim(client_id, &owner, gen, &state).await {
                Ok(()) => break gen,
                // A claim loses to one of the same generation that came first in the log:
                // another connection's, or one this shard had not read yet when it chose
                // the generation (its view was behind). Either way the session's latest
                // claim is known now, so this connection, the newer one, claims the next
                // generation once more.
                Err(ClaimError::Lost) if !retried => {
                    retried = true;
                    self.take_superseded(client_id, &owner);
                    debug!(
                        client_id,
                        gen, "claim lost to one of the same generation; claiming again"
                    );
                }
                Err(e) => {
                    self.take_superseded(client_id, &owner);
                    return Err(e);
                }
            }
        };
        if !clean_start {
            self.await_final_state(client_id, &owner).await;
        }
        let slot = self.take_superseded(client_id, &owner);
        let superseded = slot.last.or(slot.previous);
        debug!(client_id, gen, ?superseded, "session claimed");
        let resumed = superseded.filter(|s| !clean_start && !s.expired(now));
        let signal = TakeoverSignal::new(conn);
        self.serve(client_id, signal.applied());
        Ok((Claim { gen, resumed }, signal))
    }

    /// Writes the claim `state` and waits until it, or a later claim, has been applied in
    /// log order.
    async fn await_claim(
        &self,
        client_id: &str,
        owner: &str,
        gen: u64,
        state: &Stored,
    ) -> Result<(), ClaimError> {
        let started = Instant::now();
        self.write(client_id, Some(state)).await?.await?;
        let written = started.elapsed();
        let deadline = std::pin::pin!(runtime::sleep(CLAIM_TIMEOUT));
        let applied = futures::future::poll_fn(|cx| {
            match self.cache.borrow().get(client_id) {
                Some(s) if s.gen > gen || (s.gen == gen && s.owner != owner) => {
                    return Poll::Ready(Err(ClaimError::Lost))
                }
                Some(s) if s.gen == gen => return Poll::Ready(Ok(())),
                _ => {}
            }
            self.wait_for(client_id, cx);
            Poll::Pending
        });
        let outcome = match futures::future::select(std::pin::pin!(applied), deadline).await {
            futures::future::Either::Left((result, _)) => result,
            futures::future::Either::Right(_) => Err(ClaimError::Timeout),
        };
        debug!(client_id, gen, ?written, read_back = ?(started.elapsed() - written), ok = outcome.is_ok(), "claim applied");
        outcome
    }

    /// When the claim of `owner` superseded a state still marked connected, waits for that
    /// connection's final state: until it arrives, its process stays silent for
    /// `SILENT_AFTER` (dead: it will not come), or `FINAL_STATE_GRACE` passes.
    async fn await_final_state(&self, client_id: &str, owner: &str) {
        let previous_process = self
            .superseded
            .borrow()
            .get(client_id)
            .and_then(|slots| slots.iter().find(|(o, _)| o == owner))
            .and_then(|(_, slot)| slot.previous.as_ref())
            .filter(|p| p.connected)
            .map(|p| p.owner.split('/').next().unwrap_or_default().to_owned());
        let Some(process) = previous_process else {
            return;
        };
        let started = Instant::now();
        // Heartbeats are checked at each tick; the final state wakes the wait at once.
        const TICK: Duration = Duration::from_millis(100);
        loop {
            let arrived = self
                .superseded
                .borrow()
                .get(client_id)
                .and_then(|slots| slots.iter().find(|(o, _)| o == owner))
                .is_some_and(|(_, slot)| slot.last.is_some());
            // Measured against the feed's progress, not the clock: a reader paced to one
            // fetch every second or two reads a live process's beats that far apart too.
            let silent = match (self.heartbeats.borrow().get(&process), self.fresh_at.get()) {
                (Some(beat), Some(fresh)) => fresh.saturating_duration_since(*beat) >= SILENT_AFTER,
                _ => false,
            };
            if arrived || silent || started.elapsed() >= FINAL_STATE_GRACE {
                debug!(client_id, arrived, silent, waited = ?started.elapsed(), "final state wait over");
                return;
            }
            let tick = std::pin::pin!(runtime::sleep(TICK));
            futures::future::select(std::pin::pin!(self.next_record(client_id)), tick).await;
        }
    }

    /// The slot of `owner`'s claim of `client_id`, removed.
    fn take_superseded(&self, client_id: &str, owner: &str) -> Superseded {
        let mut all = self.superseded.borrow_mut();
        let Some(slots) = all.get_mut(client_id) else {
            return Superseded::default();
        };
        let slot = slots
            .iter()
            .position(|(o, _)| o == owner)
            .map(|i| slots.swap_remove(i).1)
            .unwrap_or_default();
        if slots.is_empty() {
            all.remove(client_id);
        }
        slot
    }

    /// Wakes `cx` once the next record of `client_id` has been applied.
    fn wait_for(&self, client_id: &str, cx: &std::task::Context<'_>) {
        let mut waiting = self.waiting.borrow_mut();
        let wakers = match waiting.get_mut(client_id) {
            Some(w) => w,
            None => waiting.entry(client_id.to_owned()).or_default(),
        };
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
    }

    /// Ready once a record of `client_id` has been applied after its first poll.
    fn next_record<'a>(&'a self, client_id: &'a str) -> impl std::future::Future<Output = ()> + 'a {
        let mut registered = false;
        futures::future::poll_fn(move |cx| {
            if registered {
                return Poll::Ready(());
            }
            registered = true;
            self.wait_for(client_id, cx);
            Poll::Pending
        })
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
    ) -> TakeoverSignal {
        let signal = TakeoverSignal::new(conn);
        self.clean.push(
            self,
            CleanClaim {
                client_id: client_id.to_owned(),
                signal: signal.clone(),
                will,
            },
        );
        signal
    }

    /// The owner string of this shard's connection number `conn` (in session records).
    pub fn owner(&self, conn: u64) -> String {
        format!("{}/{conn}", self.owner_prefix)
    }

    /// The connection number of `owner`, if it is one of this shard's owner strings.
    fn conn_of(&self, owner: &str) -> Option<u64> {
        owner
            .strip_prefix(self.owner_prefix.as_str())?
            .strip_prefix('/')?
            .parse()
            .ok()
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
    fn serve(&self, client_id: &str, serving: TakeoverSignal) {
        // Isolated: this table lives as long as the shard, at the size of its connections;
        // in pages of their own its blocks cannot keep a connect burst's freed ones
        // resident (`alloc`'s docs).
        let replaced =
            crate::alloc::isolated(|| self.serving.borrow_mut().insert(client_id.into(), serving));
        if let Some(old) = replaced {
            self.displaced
                .borrow_mut()
                .push((client_id.to_owned(), old));
        }
    }

    /// Forgets connection `conn` as the one serving `client_id` (it ended).
    pub fn release(&self, client_id: &str, conn: u64) {
        let mut serving = self.serving.borrow_mut();
        if serving.get(client_id).is_some_and(|s| s.conn() == conn) {
            serving.remove(client_id);
        }
        let mut displaced = self.displaced.borrow_mut();
        if !displaced.is_empty() {
            displaced.retain(|(id, s)| !(id == client_id && s.conn() == conn));
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
            self.wait_for(client_id, cx);
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
                partitioning: None,
            })
            .await
    }

    /// Applies one record of the session topic (see the module docs for the rule), and
    /// wakes the tasks waiting for a record of its client.
    fn apply(&self, record: &Record) {
        let Some(key) = &record.key else { return };
        let Ok(client_id) = std::str::from_utf8(key) else {
            return;
        };
        if let Some(process) = client_id.strip_prefix(HEARTBEAT_PREFIX) {
            self.heartbeats
                .borrow_mut()
                .insert(process.to_owned(), Instant::now());
            return;
        }
        self.apply_state(client_id, record);
        let woken = self.waiting.borrow_mut().remove(client_id);
        woken.into_iter().flatten().for_each(Waker::wake);
    }

    fn apply_state(&self, client_id: &str, record: &Record) {
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
        let mut superseded = self.superseded.borrow_mut();
        let claims = superseded.get_mut(client_id);
        if !accept {
            // The superseded owner's final state, written after a claim of ours.
            for (_, slot) in claims.into_iter().flatten() {
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
        let ours = claims.and_then(|slots| slots.iter_mut().find(|(o, _)| *o == state.owner));
        if let Some((_, slot)) = ours {
            // One of this shard's claims: remember what it supersedes.
            slot.previous = cache.get(client_id).cloned();
        }
        drop(superseded);
        self.take_over(client_id, &state.owner);
        let state = Stored::claimed(state, cache.get(client_id));
        cache.insert(client_id.to_owned(), state);
    }

    /// A claim by `owner` was applied: it takes over the connection this shard serves the
    /// client with, if that connection's own claim came earlier.
    fn take_over(&self, client_id: &str, owner: &str) {
        let conn = self.conn_of(owner);
        let apply = |serving: &TakeoverSignal| {
            if conn == Some(serving.conn()) {
                serving.0.applied.set(true);
            } else if serving.0.applied.get() {
                serving.fire();
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

    /// Applies the process feed's records to this shard's cache, for the shard's life
    /// (run it as a task once, at the shard's start).
    pub async fn follow(self: Rc<Self>, mut updates: feed::Receiver) {
        use futures::StreamExt as _;
        while let Some(update) = updates.next().await {
            match update {
                Update::Records(records) => {
                    self.fresh_at.set(Some(Instant::now()));
                    records.iter().for_each(|r| self.apply(r));
                }
                Update::Loaded => {
                    self.loaded_at.set(Some(Instant::now()));
                    if let Load::Loading(wakers) =
                        std::mem::replace(&mut *self.load.borrow_mut(), Load::Loaded)
                    {
                        wakers.into_iter().for_each(Waker::wake);
                    }
                }
            }
        }
    }

    /// Returns once this shard has applied the whole topic as it was when the process
    /// started reading it.
    async fn ensure_loaded(&self) {
        futures::future::poll_fn(|cx| match &mut *self.load.borrow_mut() {
            Load::Loading(wakers) => {
                wakers.push(cx.waker().clone());
                Poll::Pending
            }
            Load::Loaded => Poll::Ready(()),
        })
        .await;
    }
}
