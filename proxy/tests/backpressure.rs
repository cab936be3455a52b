//! Backpressure: with the broker stopped, a client keeps publishing far more than the
//! shard's budget. sluice stops reading (TCP backpressure) instead of buffering: its memory
//! stays bounded, the client is throttled, and after the broker resumes every message
//! arrives, exactly once.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::Sluice;
use sluice_tests::{wait_until, Broker};

const MESSAGES: usize = 20_000;
const SIZE: usize = 2_000; // 40 MB offered against a 1 MiB budget
const BUDGET: u64 = 1 << 20;

#[test]
fn a_stopped_broker_throttles_clients_within_the_budget_and_loses_nothing() {
    let mut broker = Broker::start().expect("broker");
    let config = common::config(
        &broker.bootstrap(),
        &format!("\"buffer.memory\" = {BUDGET}"),
    )
    .replace("shards = 2", "shards = 1");
    let sluice = Sluice::start(&config).expect("sluice starts");
    common::publish(sluice.mqtt, &["-q", "1", "-t", "warm", "-m", "up"], None).unwrap();
    let baseline = sluice.rss().unwrap();

    broker.pause().unwrap();
    let mut client = common::mosquitto_pub(sluice.mqtt, &["-q", "0", "-t", "flood", "-l"]).unwrap();
    let mut stdin = client.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let line = "x".repeat(SIZE - 8);
        for i in 0..MESSAGES {
            writeln!(stdin, "{i:07}{line}").unwrap();
        }
    });
    // The producer's budget fills up ...
    wait_until(
        Duration::from_secs(60),
        "the shard's budget is in use",
        || sluice.metric("sluice_budget_bytes_in_use").unwrap_or(0) >= BUDGET / 2,
    );
    // ... and stays bounded while the client keeps trying: sluice is not reading.
    let mut peak = 0;
    let watch = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch {
        peak = peak.max(sluice.rss().unwrap());
        // mosquitto_pub queues what it read from stdin; it cannot finish while sluice
        // does not read its socket.
        assert!(
            client.try_wait().unwrap().is_none(),
            "the client was not throttled"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "sluice RSS grew by {} KiB while 40 MB were offered",
        growth >> 10
    );
    assert!(
        growth < 32 << 20,
        "RSS grew by {} MiB with a {} MiB budget",
        growth >> 20,
        BUDGET >> 20
    );
    let frames = sluice.metric("sluice_frames_in_total").unwrap();
    assert!(
        (frames as usize) < MESSAGES,
        "sluice stopped reading ({frames} frames in)"
    );

    broker.resume().unwrap();
    writer.join().unwrap();
    assert!(client.wait().unwrap().success());
    let records = broker
        .kafka()
        .timeout(Duration::from_secs(120))
        .consume_all("mqtt-messages", MESSAGES + 1, Duration::from_secs(120))
        .unwrap();
    assert_eq!(
        records.len(),
        MESSAGES + 1,
        "every message once (plus the warm-up)"
    );
    let mut seen = vec![false; MESSAGES];
    for r in records
        .iter()
        .filter(|r| r.key.as_deref() == Some(b"flood"))
    {
        let v = r.value.as_deref().unwrap();
        let i: usize = std::str::from_utf8(&v[..7]).unwrap().parse().unwrap();
        assert!(!seen[i], "message {i} twice");
        seen[i] = true;
    }
    assert!(seen.iter().all(|s| *s), "every message arrived");
}
