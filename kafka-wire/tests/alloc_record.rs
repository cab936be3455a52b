//! Allocation behaviour of the record layer's hot paths, measured with a counting global
//! allocator. Counters are per thread, so tests running in parallel do not disturb each other.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_wire::record::{
    decode_batches, decode_batches_with_limit, BatchBuilder, Compression, Header, ProducerFields,
    RecordError,
};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grow(by: usize) {
    let live = LIVE.with(|l| {
        l.set(l.get() + by);
        l.get()
    });
    PEAK.with(|p| p.set(p.get().max(live)));
}

fn shrink(by: usize) {
    LIVE.with(|l| l.set(l.get().saturating_sub(by)));
}

// SAFETY: every call is forwarded to `System` unchanged; the thread-local counters are
// const-initialised `Cell`s without destructors, so touching them never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        grow(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrink(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        shrink(layout.size());
        grow(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (and reallocations) made by `f` on this thread.
fn count<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCS.with(Cell::get);
    let r = f();
    (r, ALLOCS.with(Cell::get) - before)
}

/// Peak live bytes above the starting point while `f` runs on this thread.
fn peak<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    (r, PEAK.with(Cell::get) - base)
}

const VALUE: [u8; 100] = [b'x'; 100];

fn push_n(b: &mut BatchBuilder, n: usize) {
    let headers = [Header {
        key: "client-id",
        value: Some(b"device-42"),
    }];
    for i in 0..n {
        b.try_push(
            1_700_000_000_000 + i as i64,
            Some(b"key-0123"),
            Some(&VALUE),
            &headers,
        )
        .expect("fits");
    }
}

#[test]
fn pushing_records_allocates_only_for_buffer_growth() {
    let mut small = BatchBuilder::new(Compression::None, usize::MAX);
    let ((), allocs_1k) = count(|| push_n(&mut small, 1_000));
    let mut big = BatchBuilder::new(Compression::None, usize::MAX);
    let ((), allocs_10k) = count(|| push_n(&mut big, 10_000));
    // ~1.5 MB from a 1 KiB start takes about 11 doublings; per-record allocation would be 10,000.
    assert!(
        allocs_10k <= 16,
        "10,000 pushes made {allocs_10k} allocations"
    );
    assert!(
        allocs_10k - allocs_1k <= 5,
        "10x the records should cost about log2(10) more allocations: {allocs_1k} -> {allocs_10k}"
    );
    let (batch, finish_allocs) = count(|| big.finish(ProducerFields::NONE).unwrap());
    assert!(
        finish_allocs <= 1,
        "finishing an uncompressed batch made {finish_allocs}"
    );
    assert!(batch.len() > 10_000 * 100);
}

#[test]
fn decoding_an_uncompressed_batch_allocates_nothing_per_record() {
    let mut b = BatchBuilder::new(Compression::None, usize::MAX);
    push_n(&mut b, 10_000);
    let data = b.finish(ProducerFields::NONE).unwrap();
    let (seen, allocs) = count(|| {
        let mut seen = 0usize;
        for batch in decode_batches(data.clone()) {
            for record in batch.unwrap().records() {
                let record = record.unwrap();
                seen += record.value.map_or(0, |v| v.len()) + record.key.map_or(0, |k| k.len());
                for header in &record.headers {
                    seen += header.unwrap().0.len();
                }
            }
        }
        seen
    });
    assert_eq!(seen, 10_000 * (100 + 8 + 9));
    assert!(
        allocs <= 2,
        "decoding 10,000 records made {allocs} allocations"
    );
}

#[test]
fn decompression_bomb_stays_within_its_limit() {
    let mut b = BatchBuilder::new(Compression::Zstd, usize::MAX);
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..32 {
        b.try_push(0, None, Some(&zeros), &[]).unwrap();
    }
    let bomb: Bytes = b.finish(ProducerFields::NONE).unwrap();
    drop(zeros);
    assert!(
        bomb.len() < 64 * 1024,
        "32 MiB of zeros compressed to {}",
        bomb.len()
    );
    let limit = 1 << 20;
    let (result, peak) = peak(|| decode_batches_with_limit(bomb, limit).next().unwrap());
    assert!(matches!(result, Err(RecordError::TooLarge { .. })));
    assert!(
        peak < 4 * limit,
        "decoding a bomb peaked at {peak} bytes for a {limit} limit"
    );
}

/// Rough cost of `try_push` for a 100-byte value; run with
/// `cargo test --release -p kafka-wire --test alloc_record -- --ignored --nocapture`.
#[test]
#[ignore = "timing; meaningful only in release mode"]
fn try_push_speed() {
    let rounds = 200;
    let per = 10_000;
    let (mut push, mut finish) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let mut b = BatchBuilder::with_capacity(Compression::None, usize::MAX, 2 << 20);
        let start = Instant::now();
        for i in 0..per {
            b.try_push(i as i64, None, Some(&VALUE), &[]).unwrap();
        }
        let pushed = Instant::now();
        std::hint::black_box(b.finish(ProducerFields::NONE).unwrap());
        push += pushed - start;
        finish += pushed.elapsed();
    }
    let total = (rounds * per) as f64;
    let (push_ns, finish_ns) = (
        push.as_nanos() as f64 / total,
        finish.as_nanos() as f64 / total,
    );
    println!("try_push, 100-byte value, no key/headers: {push_ns:.1} ns/record");
    println!("finish (header + CRC-32C), per record: {finish_ns:.1} ns/record");
    // Kafka's default batch.size: 16 KiB batches stay in cache, as they do in the proxy.
    let start = Instant::now();
    let mut pushed = 0;
    for _ in 0..20_000 {
        let mut b = BatchBuilder::with_capacity(Compression::None, 16 << 10, 16 << 10);
        let mut i = 0;
        while b.try_push(i, None, Some(&VALUE), &[]).is_ok() {
            i += 1;
        }
        pushed += i;
        std::hint::black_box(b.finish(ProducerFields::NONE).unwrap());
    }
    let ns = start.elapsed().as_nanos() as f64 / pushed as f64;
    println!("16 KiB batches, try_push + finish: {ns:.1} ns/record");
    let start = Instant::now();
    let mut b = BatchBuilder::new(Compression::None, usize::MAX);
    push_n(&mut b, per);
    let data = b.finish(ProducerFields::NONE).unwrap();
    let t_decode = Instant::now();
    let mut n = 0;
    for _ in 0..rounds {
        for batch in decode_batches(data.clone()) {
            for r in batch.unwrap().records() {
                n += std::hint::black_box(r.unwrap()).headers.len();
            }
        }
    }
    let build_ns = (t_decode - start).as_nanos() as f64 / per as f64;
    let ns = t_decode.elapsed().as_nanos() as f64 / (rounds * per) as f64;
    println!("try_push with key and header, growing buffer: {build_ns:.1} ns/record");
    println!("decode + iterate (CRC included): {ns:.1} ns/record ({n} headers)");
}
