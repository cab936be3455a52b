//! Subscription index micro-benchmark: matching topics against 100,000 subscriptions, and
//! what inserting and removing costs.
//!
//! `cargo bench -p sluice-bench --bench subscriptions` measures for one second per row
//! (`-- --seconds 3` for longer); without `--bench` (as `cargo test --benches` runs it) every
//! row runs for a few milliseconds, to keep the file from rotting.
//!
//! # Method
//!
//! The index holds 100,000 subscriptions of 25,000 keys (four each, as connections would),
//! `V` a one-byte QoS, in this mix of filters:
//!
//! | share | filter | distinct filters |
//! | ---: | --- | ---: |
//! | 55 % | `devices/{i}/cmd` | 55,000 |
//! | 10 % | `sites/{s}/+/alarm` | 1,000, 10 keys each |
//! | 10 % | `+/devices/{i}/state` | 10,000 |
//! | 10 % | `devices/{i}/#` | 10,000 |
//! | 10 % | `sites/{s}/#` | 1,000, 10 keys each |
//! | 5 % | `$share/workers{g}/sites/{s}/+/alarm` | 1,000, 4 groups each |
//!
//! where `i` is the subscription's number, key `i / 4`, site `s` = `(i / 20 + i % 20) % 1000`
//! and group `g` = `i / 20000 % 4`.
//!
//! Each match row cycles through 4,096 topics of one kind, chosen by a fixed-seed generator
//! so that some hit and some miss, calls `matches` and `matches_shared`, and counts the
//! callbacks ("deliveries", shared groups count once). The `mixed` row takes a fifth of each
//! kind's topics, and `mixed_hot16` repeats 16 of those so their paths stay in cache. Time
//! and allocations cover only the matching; allocations are counted by a wrapper around
//! mimalloc, the bench binary's allocator.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use codecs::mqtt::SubscriptionIndex;
use mimalloc::MiMalloc;

/// mimalloc, counting allocations and the bytes in use.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to mimalloc; the counters are relaxed atomics
// with no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { MiMalloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator with this layout.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator with `layout`.
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SUBSCRIPTIONS: u64 = 100_000;
const SUBSCRIPTIONS_PER_KEY: u64 = 4;
const SITES: u64 = 1000;
const TOPICS_PER_ROW: usize = 4096;

type Index = SubscriptionIndex<u64, u8>;

/// The filter of subscription `i` (see the module docs for the mix).
fn filter(i: u64) -> String {
    // `+ i % 20` keeps a key's two filters of one kind on different sites.
    let site = (i / 20 + i % 20) % SITES;
    match i % 20 {
        0..=10 => format!("devices/{i}/cmd"),
        11 | 12 => format!("sites/{site}/+/alarm"),
        13 | 14 => format!("+/devices/{i}/state"),
        15 | 16 => format!("devices/{i}/#"),
        17 | 18 => format!("sites/{site}/#"),
        _ => format!("$share/workers{}/sites/{site}/+/alarm", i / 20 / SITES % 4),
    }
}

fn key(i: u64) -> u64 {
    i / SUBSCRIPTIONS_PER_KEY
}

fn build(filters: &[String]) -> Index {
    let mut index = Index::new();
    for (i, filter) in (0..).zip(filters) {
        index.insert(filter, key(i), (i % 3) as u8);
    }
    index
}

/// xorshift64*: a fixed sequence of numbers, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[derive(Clone, Copy)]
enum Kind {
    /// `devices/{i}/cmd`: one exact filter, and `devices/{i}/#` for some `i`.
    Device,
    /// `sites/{s}/dev{i}/alarm`: `sites/{s}/+/alarm` (10 keys), `sites/{s}/#` (10 keys) and
    /// four shared groups, 24 deliveries.
    Site,
    /// `tenant/devices/{i}/state`: `+/devices/{i}/state` for some `i`.
    PlusFirst,
    /// `unknown/{i}/x`: nothing.
    Miss,
    /// `$SYS/broker/{i}`: nothing; the `$` rule at the root.
    Dollar,
}

fn topic(kind: Kind, rng: &mut Rng) -> String {
    let i = rng.below(SUBSCRIPTIONS);
    match kind {
        Kind::Device => format!("devices/{i}/cmd"),
        Kind::Site => format!("sites/{}/dev{i}/alarm", i % SITES),
        Kind::PlusFirst => format!("tenant/devices/{i}/state"),
        Kind::Miss => format!("unknown/{i}/x"),
        Kind::Dollar => format!("$SYS/broker/{i}"),
    }
}

struct Row {
    name: String,
    ns_per_op: f64,
    ops_per_sec: f64,
    /// Callbacks per operation, for match rows.
    deliveries_per_op: Option<f64>,
    allocs_per_op: f64,
}

/// Runs `round` (which reports how many operations it did) until `budget` is spent.
fn measure(name: &str, budget: Duration, mut round: impl FnMut() -> (u64, u64)) -> Row {
    round();
    let a0 = ALLOCATIONS.load(Ordering::Relaxed);
    let start = Instant::now();
    let (mut ops, mut deliveries) = (0, 0);
    while start.elapsed() < budget {
        let (o, d) = round();
        ops += o;
        deliveries += d;
    }
    let secs = start.elapsed().as_secs_f64();
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - a0;
    Row {
        name: name.to_owned(),
        ns_per_op: secs * 1e9 / ops as f64,
        ops_per_sec: ops as f64 / secs,
        deliveries_per_op: (deliveries > 0).then(|| deliveries as f64 / ops as f64),
        allocs_per_op: allocs as f64 / ops as f64,
    }
}

fn match_row(index: &Index, name: &str, topics: &[String], budget: Duration) -> Row {
    measure(name, budget, || {
        let mut deliveries = 0;
        for topic in topics {
            index.matches(black_box(topic), |key, qos, _| {
                black_box((key, qos));
                deliveries += 1;
            });
            index.matches_shared(topic, |group| {
                black_box(group.pick(deliveries));
                deliveries += 1;
            });
        }
        (topics.len() as u64, deliveries as u64)
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(1.0);
    let budget = if args.iter().any(|a| a == "--bench") {
        Duration::from_secs_f64(seconds)
    } else {
        Duration::from_millis(5)
    };

    // Filter strings are made outside every timed region.
    let filters: Vec<String> = (0..SUBSCRIPTIONS).map(filter).collect();
    let mut rows = Vec::new();
    // One build is a single cold run (fresh memory, growing hash maps), so it varies a lot
    // from run to run: keep the fastest of three.
    let mut build_time = Duration::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        drop(black_box(build(&filters)));
        build_time = build_time.min(start.elapsed());
    }
    let bytes_before = LIVE_BYTES.load(Ordering::Relaxed);
    let mut index = build(&filters);
    let bytes = LIVE_BYTES.load(Ordering::Relaxed) - bytes_before;
    assert_eq!(index.len(), SUBSCRIPTIONS as usize);

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let kinds = [
        ("device", Kind::Device),
        ("site", Kind::Site),
        ("plus_first", Kind::PlusFirst),
        ("miss", Kind::Miss),
        ("dollar", Kind::Dollar),
    ];
    let mut mixed = Vec::new();
    for (name, kind) in kinds {
        let topics: Vec<String> = (0..TOPICS_PER_ROW).map(|_| topic(kind, &mut rng)).collect();
        mixed.extend(topics.iter().take(TOPICS_PER_ROW / kinds.len()).cloned());
        rows.push(match_row(&index, &format!("match/{name}"), &topics, budget));
    }
    rows.push(match_row(&index, "match/mixed", &mixed, budget));
    // The same 16 topics over and over: their paths stay in cache, so this is the walk's own
    // cost, without the memory latency the rows above pay.
    let hot: Vec<String> = mixed.iter().step_by(mixed.len() / 16).cloned().collect();
    rows.push(match_row(&index, "match/mixed_hot16", &hot, budget));

    // A new filter (two new nodes) in and out again: the pruned nodes are rebuilt each time.
    let new: Vec<String> = (0..1000)
        .map(|n| format!("devices/{}/cmd", SUBSCRIPTIONS + n))
        .collect();
    rows.push(measure("insert+remove/new_filter", budget, || {
        for filter in &new {
            index.insert(filter, u64::MAX, 1);
            black_box(index.remove(filter, u64::MAX));
        }
        (new.len() as u64, 0)
    }));
    // A new subscriber on a filter that has ten (a hash map's worth).
    let existing: Vec<String> = (0..SITES).map(|site| format!("sites/{site}/#")).collect();
    rows.push(measure("insert+remove/existing_filter", budget, || {
        for filter in &existing {
            index.insert(filter, u64::MAX, 1);
            black_box(index.remove(filter, u64::MAX));
        }
        (existing.len() as u64, 0)
    }));
    // A connection with four subscriptions ends and another takes its place.
    let mut k = 0;
    rows.push(measure("remove_all+insert/4_filters", budget, || {
        for _ in 0..1000 {
            k = (k + 1) % (SUBSCRIPTIONS / SUBSCRIPTIONS_PER_KEY);
            assert_eq!(index.remove_all(k), 4);
            for i in k * SUBSCRIPTIONS_PER_KEY..(k + 1) * SUBSCRIPTIONS_PER_KEY {
                index.insert(&filters[i as usize], k, 0);
            }
        }
        (1000, 0)
    }));
    assert_eq!(index.len(), SUBSCRIPTIONS as usize);

    println!(
        "index of {SUBSCRIPTIONS} subscriptions: built in {:.1} ms, best of 3 ({:.0} ns per \
         insert), {:.1} MB allocated ({:.0} bytes per subscription)",
        build_time.as_secs_f64() * 1e3,
        build_time.as_secs_f64() * 1e9 / SUBSCRIPTIONS as f64,
        bytes as f64 / 1e6,
        bytes as f64 / SUBSCRIPTIONS as f64,
    );
    println!();
    println!("| benchmark | ns/op | ops/s | deliveries/op | allocs/op |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for r in rows {
        let deliveries = r
            .deliveries_per_op
            .map_or_else(|| "-".to_owned(), |d| format!("{d:.2}"));
        println!(
            "| {} | {:.1} | {:.0} | {} | {:.4} |",
            r.name, r.ns_per_op, r.ops_per_sec, deliveries, r.allocs_per_op
        );
    }
}
