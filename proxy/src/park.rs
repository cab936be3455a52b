//! Parking idle connections, so that a million of them fit in memory.
//!
//! A connection served by a task costs the task (its future holds every await point's
//! state, a few KB) and glommio's pending readiness poll on its socket (~0.5 KB). Most
//! connections of a large fleet are idle nearly all the time, so once a connection has had
//! nothing to do for a while its driver hands it to the shard's [`ParkingLot`]: the task
//! ends, glommio lets go of the socket ([`runtime::detach`]), and what is left is the
//! connection's own state and a file descriptor in a slot. One epoll set per shard
//! ([`Readiness`]) watches every parked socket; anything else that concerns a parked
//! connection (a delivery, a session takeover) wakes it through a [`Waker`] for its slot;
//! its deadline (keepalive, a pending save) is kept in an ordered set; shutdown resumes
//! them all ([`ParkingLot::resume_all`]). Whichever comes first, the lot gives the
//! connection a task and a glommio stream again ([`Resume`]), and its driver carries on as
//! if it had never stopped. What a connection keeps while parked is up to its driver
//! (MQTT keeps its `Core`, at most 128 bytes); the lot adds a 32-byte slot. The waker
//! allocates nothing: its data word is the slot's [`Key`], which also names the lot
//! (an `Arc` per parked connection was another 32 bytes).
//!
//! Waking a parked connection costs a hop through the shard's blocking thread (the epoll
//! wait), tens of microseconds, which is why only connections idle for
//! `park_after_ms` are parked: an active one never pays it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Poll, RawWaker, RawWakerVTable, Waker};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use tracing::{debug, warn};

use crate::runtime::{self, Readiness, TcpStream};

/// How long one epoll wait lasts at most before the lot looks again (it also bounds how
/// long a stopping shard waits for its blocking thread).
const WAIT_AT_MOST: Duration = Duration::from_millis(250);

/// Quiet time after the last park before the shard's free memory goes back to the system.
const TRIM_AFTER: Duration = Duration::from_millis(500);

/// More of a listener's connections than this not parked on one shard make it busy: a new
/// connection there parks after at most [`BUSY_PARK_AFTER`] ([`delay`]).
const BUSY_ACTIVE: u64 = 1_000;
/// How long a new connection waits idle before parking on a busy shard (when the
/// listener's `park_after_ms` is not shorter).
const BUSY_PARK_AFTER: Duration = Duration::from_millis(250);

/// How long an idle connection waits before parking: the listener's `configured` time, or
/// at most [`BUSY_PARK_AFTER`] for a `fresh` connection (one that has sent nothing since
/// its handshake) while more than [`BUSY_ACTIVE`] of the listener's `open` connections on
/// the shard are not `parked`. In a connect burst the new connections, each with a task of
/// a few KB, are then not all alive at once, and the burst leaves less memory behind. Only
/// new ones: a connection that publishes every second would otherwise park and wake for
/// every message while the shard is busy (4,000 clients publishing once a second cost 75–81
/// µs of sluice CPU per message that way instead of 47).
pub fn delay(configured: Duration, fresh: bool, open: u64, parked: u64) -> Duration {
    if fresh && open.saturating_sub(parked) > BUSY_ACTIVE {
        configured.min(BUSY_PARK_AFTER)
    } else {
        configured
    }
}

/// A parked connection's state: given a socket back, it resumes its own task.
pub trait Resume {
    /// Spawns the connection's task again with `stream`.
    fn resume(self: Box<Self>, stream: TcpStream);
}

/// A slot's key: its index (low 32 bits), its generation (16 bits), so a wake-up meant for
/// a connection that has since left the slot does not resume the next one, and the lot's
/// number (high 16 bits), so that a waker is the key alone. A generation wraps after
/// 65,536 parks in one slot: a waker that old, firing, resumes the slot's connection for
/// nothing (it parks again when idle), which is all a stale wake-up can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key(u64);

impl Key {
    fn new(index: usize, generation: u16, lot: u16) -> Key {
        Key(u64::from(lot) << 48 | u64::from(generation) << 32 | index as u64)
    }

    fn index(self) -> usize {
        (self.0 & u64::from(u32::MAX)) as usize
    }

    fn generation(self) -> u16 {
        (self.0 >> 32) as u16
    }

    fn lot(self) -> usize {
        (self.0 >> 48) as usize
    }

    /// A waker that resumes this slot's connection: the key is its data word.
    fn waker(self) -> Waker {
        const _: () = assert!(usize::BITS == 64, "a key must fit a waker's data word");
        let data = std::ptr::without_provenance(self.0 as usize);
        // SAFETY: the vtable's functions only read the data word as an integer: cloning
        // copies it, dropping does nothing, and waking looks the lot up in the registry
        // (behind a lock), so the waker may be used and woken from any thread.
        unsafe { Waker::from_raw(RawWaker::new(data, &KEY_WAKER)) }
    }
}

static KEY_WAKER: RawWakerVTable = RawWakerVTable::new(
    |data| RawWaker::new(data, &KEY_WAKER),
    wake_key,
    wake_key,
    |_| {},
);

/// Every lot's wake-up list, by lot number (a dead lot's number is given to the next).
static LOTS: RwLock<Vec<Weak<Woken>>> = RwLock::new(Vec::new());

/// Wakes the slot whose key is `data`, if its lot is still there.
fn wake_key(data: *const ()) {
    let key = Key(data.addr() as u64);
    let woken = LOTS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(key.lot())
        .and_then(Weak::upgrade);
    if let Some(woken) = woken {
        woken.push(key);
    }
}

/// A number for a new lot whose wake-ups go to `woken`.
fn register(woken: &Arc<Woken>) -> std::io::Result<u16> {
    let mut lots = LOTS.write().unwrap_or_else(|e| e.into_inner());
    let number = match lots.iter().position(|l| l.strong_count() == 0) {
        Some(free) => free,
        None => {
            lots.push(Weak::new());
            lots.len() - 1
        }
    };
    let Ok(n) = u16::try_from(number) else {
        lots.pop();
        return Err(std::io::Error::other(
            "more than 65,536 parking lots at once",
        ));
    };
    lots[number] = Arc::downgrade(woken);
    Ok(n)
}

/// 32 bytes, since every connection that ever parked on the shard at once keeps a slot
/// in the `Vec`: the deadline in milliseconds of the lot's clock rather than an
/// `Option<Instant>` (16 bytes), and two variants (the box's niche is the tag).
enum Slot {
    /// Free (the next connection parked here gets this generation), or `reserved`: handed
    /// out by [`ParkingLot::reserve`], not parked yet.
    Vacant { generation: u16, reserved: bool },
    Parked {
        generation: u16,
        conn: Box<dyn Resume>,
        fd: OwnedFd,
        /// [`NO_DEADLINE`] or milliseconds since [`ParkingLot::epoch`].
        deadline_ms: u64,
    },
}

/// Slots come in chunks of this many (8 KiB): a `Vec` of slots that doubled as the lot
/// filled kept up to as many spare slots as parked ones (52 bytes per connection measured
/// at 10,000 where the slots themselves are 32); chunks keep at most one chunk spare.
const CHUNK: usize = 256;

/// Every slot the lot has had, in chunks of [`CHUNK`] that never move or shrink.
#[derive(Default)]
struct Slots {
    chunks: Vec<Vec<Slot>>,
}

impl Slots {
    fn get_mut(&mut self, index: usize) -> Option<&mut Slot> {
        self.chunks.get_mut(index / CHUNK)?.get_mut(index % CHUNK)
    }

    /// Adds a vacant slot; returns its index.
    fn push(&mut self) -> usize {
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let chunks = self.chunks.len();
        let last = self.chunks.last_mut().expect("just made sure of one");
        last.push(Slot::Vacant {
            generation: 0,
            reserved: false,
        });
        (chunks - 1) * CHUNK + last.len() - 1
    }

    fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.chunks.iter().flatten()
    }
}

/// A parked connection's `deadline_ms` when it has none.
const NO_DEADLINE: u64 = u64::MAX;

impl Slot {
    fn generation(&self) -> u16 {
        match self {
            Slot::Vacant { generation, .. } | Slot::Parked { generation, .. } => *generation,
        }
    }
}

/// Keys whose wakers fired, and the lot task to tell.
#[derive(Debug, Default)]
struct Woken {
    keys: Mutex<Vec<Key>>,
    lot: AtomicWaker,
}

impl Woken {
    fn push(&self, key: Key) {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(key);
        self.lot.wake();
    }
}

/// A shard's parked connections.
pub struct ParkingLot {
    readiness: Readiness,
    slots: RefCell<Slots>,
    free: RefCell<Vec<usize>>,
    /// Parked connections' deadlines, in milliseconds since `epoch`.
    deadlines: RefCell<BTreeSet<(u64, Key)>>,
    /// The start of the lot's clock.
    epoch: Instant,
    woken: Arc<Woken>,
    /// This lot's number in its keys.
    number: u16,
    /// When a connection last parked, until the memory it freed was released.
    last_park: Cell<Option<Instant>>,
    /// Parked connections, for the metrics.
    gauge: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for ParkingLot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParkingLot")
            .field("parked", &self.parked())
            .finish_non_exhaustive()
    }
}

impl ParkingLot {
    /// A lot whose size is published in `gauge`; its task must be spawned with [`run`].
    ///
    /// [`run`]: ParkingLot::run
    pub fn new(gauge: Arc<std::sync::atomic::AtomicU64>) -> std::io::Result<ParkingLot> {
        let woken = Arc::default();
        Ok(ParkingLot {
            readiness: Readiness::new()?,
            slots: RefCell::default(),
            free: RefCell::new(Vec::new()),
            deadlines: RefCell::new(BTreeSet::new()),
            epoch: Instant::now(),
            number: register(&woken)?,
            woken,
            last_park: Cell::new(None),
            gauge,
        })
    }

    /// Connections parked now (the metric's gauge is the count).
    fn parked(&self) -> u64 {
        self.gauge.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reserves a slot for a connection about to park, and the waker that resumes it. The
    /// connection registers that waker wherever it waits for news, then calls [`park`], or
    /// [`cancel`] if news came meanwhile.
    ///
    /// [`park`]: ParkingLot::park
    /// [`cancel`]: ParkingLot::cancel
    pub fn reserve(&self) -> (Key, Waker) {
        let mut slots = self.slots.borrow_mut();
        let index = match self.free.borrow_mut().pop() {
            Some(i) => i,
            None => slots.push(),
        };
        let slot = slots.get_mut(index).expect("a free or new slot");
        let generation = slot.generation();
        *slot = Slot::Vacant {
            generation,
            reserved: true,
        };
        let key = Key::new(index, generation, self.number);
        (key, key.waker())
    }

    /// Gives back a reserved slot unused.
    pub fn cancel(&self, key: Key) {
        self.vacate(key);
    }

    /// Parks `conn` in its reserved slot until `stream` has input, its waker fires, or
    /// `deadline` passes. If the socket cannot be watched, the connection resumes at once.
    pub fn park(
        &self,
        key: Key,
        conn: Box<dyn Resume>,
        stream: TcpStream,
        deadline: Option<Instant>,
    ) {
        let fd = match runtime::detach(&stream) {
            Ok(fd) => {
                drop(stream);
                fd
            }
            Err(e) => {
                // Usually the open-files limit: the connection simply stays unparked (and
                // tries again after its next quiet spell), so this is no warning per try.
                debug!(error = %e, "cannot park a connection (no file descriptor to spare?)");
                self.vacate(key);
                conn.resume(stream);
                return;
            }
        };
        if let Err(e) = self.readiness.watch(&fd, key.0) {
            warn!(error = %e, "cannot watch a parked connection's socket");
            self.vacate(key);
            conn.resume(runtime::attach(fd));
            return;
        }
        let deadline_ms = deadline.map_or(NO_DEADLINE, |at| self.ms(at));
        if deadline_ms != NO_DEADLINE {
            self.deadlines.borrow_mut().insert((deadline_ms, key));
        }
        *self
            .slots
            .borrow_mut()
            .get_mut(key.index())
            .expect("a reserved slot") = Slot::Parked {
            generation: key.generation(),
            conn,
            fd,
            deadline_ms,
        };
        self.last_park.set(Some(Instant::now()));
        self.gauge
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The lot task may need a sooner timer, or to start waiting on epoll.
        self.woken.lot.wake();
    }

    /// `at` on the lot's clock, rounded up to a millisecond (a connection resumed a little
    /// early for its deadline would just wait again).
    fn ms(&self, at: Instant) -> u64 {
        let micros = at.saturating_duration_since(self.epoch).as_micros();
        u64::try_from(micros.div_ceil(1000)).unwrap_or(NO_DEADLINE - 1)
    }

    /// The instant of `ms` on the lot's clock.
    fn instant(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// Frees `key`'s slot for the next generation and returns what was parked there.
    fn vacate(&self, key: Key) -> Option<(Box<dyn Resume>, OwnedFd, u64)> {
        let mut slots = self.slots.borrow_mut();
        let slot = slots.get_mut(key.index())?;
        if slot.generation() != key.generation()
            || matches!(
                slot,
                Slot::Vacant {
                    reserved: false,
                    ..
                }
            )
        {
            return None;
        }
        let next = Slot::Vacant {
            generation: key.generation().wrapping_add(1),
            reserved: false,
        };
        self.free.borrow_mut().push(key.index());
        match std::mem::replace(slot, next) {
            Slot::Parked {
                conn,
                fd,
                deadline_ms,
                ..
            } => {
                self.gauge
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                Some((conn, fd, deadline_ms))
            }
            _ => None,
        }
    }

    /// Resumes every parked connection (at shutdown: parked connections are not among
    /// the shutdown signal's waiters, so that the signal's table holds only active ones).
    pub fn resume_all(&self) {
        let keys: Vec<Key> = self
            .slots
            .borrow()
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| match slot {
                Slot::Parked { generation, .. } => Some(Key::new(i, *generation, self.number)),
                _ => None,
            })
            .collect();
        keys.into_iter().for_each(|key| self.resume(key));
    }

    /// Resumes the connection parked under `key`, if it still is.
    fn resume(&self, key: Key) {
        let Some((conn, fd, deadline_ms)) = self.vacate(key) else {
            return;
        };
        self.readiness.unwatch(&fd);
        if deadline_ms != NO_DEADLINE {
            self.deadlines.borrow_mut().remove(&(deadline_ms, key));
        }
        conn.resume(runtime::attach(fd));
    }

    /// The lot's task: resumes parked connections as their sockets get input, their wakers
    /// fire or their deadlines pass. Runs for the life of the shard.
    pub async fn run(self: Rc<Self>) {
        let mut epoll: Option<Pin<Box<dyn Future<Output = Vec<u64>>>>> = None;
        let mut due: Vec<Key> = Vec::new();
        loop {
            let next_deadline = self.deadlines.borrow().first().map(|(ms, _)| *ms);
            let mut timer = next_deadline.map(|ms| {
                let left = self.instant(ms).saturating_duration_since(Instant::now());
                Box::pin(runtime::sleep(left))
            });
            futures::future::poll_fn(|cx| {
                self.woken.lot.register(cx.waker());
                due.extend(
                    self.woken
                        .keys
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .drain(..),
                );
                // Another turn of the loop after each of these: a wait to start again, a
                // timer to set for a new first deadline.
                let mut again = false;
                if epoll.is_none() && self.parked() > 0 {
                    epoll = Some(Box::pin(self.readiness.wait(WAIT_AT_MOST)));
                }
                if let Some(wait) = &mut epoll {
                    if let Poll::Ready(keys) = wait.as_mut().poll(cx) {
                        epoll = None;
                        due.extend(keys.into_iter().map(Key));
                        again = true;
                    }
                }
                if let Some(t) = &mut timer {
                    if t.as_mut().poll(cx).is_ready() {
                        let now = Instant::now();
                        let mut deadlines = self.deadlines.borrow_mut();
                        while let Some(&(ms, key)) = deadlines.first() {
                            if self.instant(ms) > now {
                                break;
                            }
                            deadlines.pop_first();
                            due.push(key);
                        }
                        again = true;
                    }
                }
                let first = self.deadlines.borrow().first().map(|(ms, _)| *ms);
                if first != next_deadline {
                    again = true;
                }
                if again || !due.is_empty() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            for key in due.drain(..) {
                self.resume(key);
            }
            // Parked tasks freed their memory, which the allocator keeps until told.
            if self
                .last_park
                .get()
                .is_some_and(|at| at.elapsed() >= TRIM_AFTER)
            {
                self.last_park.set(None);
                crate::alloc::collect_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a new connection on a busy shard parks sooner, never later than configured;
    /// `parked` may briefly exceed `open` (other listeners' parked connections).
    #[test]
    fn new_connections_park_sooner_only_while_the_shard_is_busy() {
        let two_s = Duration::from_secs(2);
        let busy = BUSY_ACTIVE + 1;
        assert_eq!(delay(two_s, true, busy, 0), BUSY_PARK_AFTER);
        assert_eq!(delay(two_s, true, busy + 500, 500), BUSY_PARK_AFTER);
        assert_eq!(delay(two_s, true, BUSY_ACTIVE, 0), two_s, "not busy");
        assert_eq!(delay(two_s, true, BUSY_ACTIVE + 10, 10), two_s, "not busy");
        assert_eq!(delay(two_s, false, busy, 0), two_s, "not new");
        let short = Duration::from_millis(100);
        assert_eq!(delay(short, true, busy, 0), short, "never later");
        assert_eq!(delay(two_s, true, 0, 50), two_s);
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_slot_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
    }

    #[test]
    fn slots_grow_by_whole_chunks() {
        let mut slots = Slots::default();
        for i in 0..CHUNK + 3 {
            assert_eq!(slots.push(), i);
        }
        assert_eq!(slots.chunks.len(), 2);
        assert!(slots.chunks.iter().all(|c| c.capacity() == CHUNK));
        assert!(slots.get_mut(CHUNK + 2).is_some());
        assert!(slots.get_mut(CHUNK + 3).is_none());
        assert_eq!(slots.iter().count(), CHUNK + 3);
    }

    #[test]
    fn keys_carry_index_generation_and_lot() {
        let key = Key::new(7, 3, 5);
        assert_eq!((key.index(), key.generation(), key.lot()), (7, 3, 5));
        let key = Key::new(u32::MAX as usize, u16::MAX, u16::MAX);
        assert_eq!(key.index(), u32::MAX as usize);
        assert_eq!(key.generation(), u16::MAX);
        assert_eq!(key.lot(), usize::from(u16::MAX));
    }

    #[test]
    fn a_key_waker_reaches_its_own_lot_from_any_thread() {
        let (a, b) = (Arc::<Woken>::default(), Arc::<Woken>::default());
        let (na, nb) = (register(&a).unwrap(), register(&b).unwrap());
        assert_ne!(na, nb);
        let key = Key::new(9, 2, nb);
        let waker = key.waker();
        assert!(waker.will_wake(&key.waker().clone()));
        std::thread::spawn(move || waker.wake()).join().unwrap();
        assert!(a.keys.lock().unwrap().is_empty());
        assert_eq!(*b.keys.lock().unwrap(), vec![key]);
        // A dead lot's keys wake nothing.
        drop(b);
        Key::new(9, 2, nb).waker().wake();
    }
}
