//! The idempotent producer under broken connections: every connection to the broker is cut
//! again and again while Produce requests are in flight. After the retries, an independent
//! consumer must find every record exactly once, and each partition in send order.
//!
//! Each cut happens while the broker is stopped (SIGSTOP) with requests written to it and
//! unanswered, so every cut forces retries; the broker may still process those requests
//! when it resumes, which is exactly the duplicate the idempotent producer must prevent.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{assert_exactly, expected, on_shard};
use kafka_wire::{Producer, ProducerConfig};
use sluice_tests::{Broker, ChaosProxy};

const RECORDS: usize = 60_000;
const CUT_EVERY: usize = 5_000;

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {sig} {pid}");
}

#[test]
fn records_survive_cut_connections_exactly_once_and_in_order() {
    let proxy = Arc::new(ChaosProxy::start().expect("relay starts"));
    let broker = Broker::builder()
        .behind(&proxy)
        .start()
        .expect("broker starts behind the relay");
    let kafka = broker.kafka().timeout(Duration::from_secs(120));
    kafka.create_topic("idem", 3, &[]).expect("topic created");

    let bootstrap = broker.bootstrap();
    let broker_pid = broker.pid();
    let relay = proxy.clone();
    let (retries, cuts) = on_shard(move || async move {
        let client = common::client(&bootstrap).await;
        let config = ProducerConfig {
            // Small batches and a short linger keep several requests in flight at each cut.
            batch_size: 8 * 1024,
            linger: Duration::from_millis(1),
            max_in_flight: 5,
            ..ProducerConfig::default()
        };
        let producer = Producer::new(client, config)
            .await
            .expect("producer starts");
        let mut pending = Vec::with_capacity(RECORDS);
        let mut cuts = 0;
        for i in 0..RECORDS {
            let e = expected("idem", i);
            let headers = e.header_refs();
            let record = e.record("idem", &headers);
            pending.push(producer.send(record).await.expect("send accepted"));
            if i % CUT_EVERY == 0 {
                // Stop the broker before this chunk goes out, so its requests stay in flight.
                signal(broker_pid, "-STOP");
                common::wait_stopped(broker_pid);
            }
            if i % CUT_EVERY == CUT_EVERY - 1 {
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while producer.stats().in_flight_requests == 0 {
                    assert!(std::time::Instant::now() < deadline, "no request went out");
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                cuts += relay.cut();
                signal(broker_pid, "-CONT");
            }
        }
        for (i, d) in pending.into_iter().enumerate() {
            d.await
                .unwrap_or_else(|e| panic!("record {i} not delivered: {e}"));
        }
        let stats = producer.stats();
        producer.close(Duration::from_secs(5)).await;
        (stats.retries, cuts)
    });
    assert!(cuts > 0, "connections were cut while producing");
    assert!(
        retries > 0,
        "cuts hit requests in flight, forcing retries (got none)"
    );
    assert!(proxy.connections() > 1, "the producer reconnected");

    let consumed = kafka
        .consume_all("idem", RECORDS, Duration::from_secs(180))
        .expect("independent consumer reads the topic");
    assert_exactly("idem", RECORDS, &consumed);
    // In order: within each partition, offsets follow the order records were sent.
    let mut last: [Option<usize>; 3] = [None; 3];
    for r in &consumed {
        let idx: usize = std::str::from_utf8(&r.headers[0].1.clone().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        let slot = &mut last[r.partition as usize];
        if let Some(prev) = *slot {
            assert!(
                idx > prev,
                "partition {} has record {idx} after {prev}",
                r.partition
            );
        }
        *slot = Some(idx);
    }
}
