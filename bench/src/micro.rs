//! Micro-benchmarks that need no network: RecordBatch encoding and decoding, the
//! partitioner, and the codecs (`micro_codecs`). Each reports time and allocations per
//! operation; `--smoke` runs them briefly so the test command keeps them from rotting.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_wire::partitioner::partition_for_key;
use kafka_wire::record::{decode_batches, BatchBuilder, Compression, Header, ProducerFields};
use serde::Serialize;

use crate::alloc::allocations;

/// One micro-benchmark's result.
#[derive(Debug, Serialize)]
pub struct MicroResult {
    pub name: String,
    pub ops: u64,
    pub ns_per_op: f64,
    pub ops_per_sec: f64,
    pub mb_per_sec: f64,
    pub allocs_per_op: f64,
}

#[derive(Default)]
pub(crate) struct Measure {
    pub(crate) ops: u64,
    pub(crate) bytes: u64,
    pub(crate) elapsed: Duration,
    pub(crate) allocs: u64,
}

pub(crate) fn measure(budget: Duration, mut round: impl FnMut() -> (u64, u64)) -> Measure {
    // Warm up once so lazy initialisation is not counted.
    round();
    let start = Instant::now();
    let a0 = allocations();
    let (mut ops, mut bytes) = (0, 0);
    while start.elapsed() < budget {
        let (o, b) = round();
        ops += o;
        bytes += b;
    }
    Measure {
        ops,
        bytes,
        elapsed: start.elapsed(),
        allocs: allocations() - a0,
    }
}

pub(crate) fn result(name: &str, m: Measure) -> MicroResult {
    let secs = m.elapsed.as_secs_f64();
    MicroResult {
        name: name.to_owned(),
        ops: m.ops,
        ns_per_op: secs * 1e9 / m.ops as f64,
        ops_per_sec: m.ops as f64 / secs,
        mb_per_sec: m.bytes as f64 / secs / 1e6,
        allocs_per_op: m.allocs as f64 / m.ops as f64,
    }
}

const VALUE: [u8; 100] = [b'v'; 100];

fn keys() -> Vec<Vec<u8>> {
    (0..1024)
        .map(|i| format!("key-{i:08}").into_bytes())
        .collect()
}

/// Fills one batch of up to `batch_bytes` with 100-byte records and finishes it.
fn encode_batch(
    keys: &[Vec<u8>],
    compression: Compression,
    batch_bytes: usize,
    headers: &[Header<'_>],
) -> (u64, Bytes) {
    let mut b = BatchBuilder::new(compression, batch_bytes);
    let mut n = 0u64;
    loop {
        let key = &keys[(n as usize) % keys.len()];
        if b.try_push(
            1_700_000_000_000 + n as i64,
            Some(key),
            Some(&VALUE),
            headers,
        )
        .is_err()
        {
            break;
        }
        n += 1;
    }
    let fields = ProducerFields {
        producer_id: 1,
        producer_epoch: 0,
        base_sequence: 0,
        transactional: false,
    };
    (n, b.finish(fields).expect("batch encodes"))
}

/// Runs every micro-benchmark, each for `budget`.
pub fn run(budget: Duration) -> Vec<MicroResult> {
    let keys = keys();
    let mut out = Vec::new();
    let headers = [Header {
        key: "client-id",
        value: Some(b"device-0042"),
    }];
    for (name, compression, hdrs) in [
        ("record_batch_encode/none", Compression::None, &[][..]),
        (
            "record_batch_encode/none+header",
            Compression::None,
            &headers[..],
        ),
        ("record_batch_encode/lz4", Compression::Lz4, &[][..]),
        ("record_batch_encode/zstd", Compression::Zstd, &[][..]),
    ] {
        let m = measure(budget, || {
            let (n, bytes) = encode_batch(&keys, compression, 1024 * 1024, hdrs);
            let len = bytes.len() as u64;
            black_box(bytes);
            (n, len.max(n * 116))
        });
        out.push(result(name, m));
    }
    for (name, compression) in [
        ("record_batch_decode/none", Compression::None),
        ("record_batch_decode/lz4", Compression::Lz4),
    ] {
        let (_, batch) = encode_batch(&keys, compression, 1024 * 1024, &[]);
        let m = measure(budget, || {
            let mut n = 0;
            for b in decode_batches(batch.clone()) {
                for r in b.expect("decodes").records() {
                    black_box(r.expect("record"));
                    n += 1;
                }
            }
            (n, batch.len() as u64)
        });
        out.push(result(name, m));
    }
    let m = measure(budget, || {
        let mut acc = 0u32;
        for k in &keys {
            acc = acc.wrapping_add(partition_for_key(k, 12));
        }
        black_box(acc);
        (keys.len() as u64, keys.iter().map(|k| k.len() as u64).sum())
    });
    out.push(result("partitioner/murmur2", m));
    out.extend(crate::micro_codecs::run(budget));
    out
}

/// Prints results as a Markdown table.
pub fn print(results: &[MicroResult]) {
    println!("| benchmark | ns/op | ops/s | MB/s | allocs/op |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for r in results {
        println!(
            "| {} | {:.1} | {:.0} | {:.0} | {:.4} |",
            r.name, r.ns_per_op, r.ops_per_sec, r.mb_per_sec, r.allocs_per_op
        );
    }
}
