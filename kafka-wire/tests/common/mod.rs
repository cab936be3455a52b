//! Shared by kafka-wire's integration tests: run a test body on a glommio shard, build
//! clients, and the records the tests write and expect back.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::future::Future;
use std::time::Duration;

use kafka_wire::record::{Header, Record};
use kafka_wire::{Client, ClientConfig, ProducerRecord};
use sluice_tests::ConsumedRecord;

/// Runs `body` on a fresh single-threaded glommio executor, as a sluice shard would.
pub fn on_shard<F, Fut, T>(body: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .name("test-shard")
        .spawn(body)
        .expect("a glommio executor starts")
        .join()
        .expect("the shard's task does not panic")
}

/// Client settings for tests: short timeouts so a broken test fails fast.
pub fn config(bootstrap: &str) -> ClientConfig {
    ClientConfig {
        bootstrap_servers: vec![bootstrap.to_owned()],
        client_id: "kafka-wire-test".into(),
        request_timeout: Duration::from_secs(10),
        retry_backoff: Duration::from_millis(50),
        ..ClientConfig::default()
    }
}

pub async fn client(bootstrap: &str) -> Client {
    Client::connect(config(bootstrap))
        .await
        .expect("the client reaches the broker")
}

/// The `i`-th test record of a run tagged `tag`: a key, a value of varying length (every
/// 997th is a tombstone), and headers, one of them with a null value on every third record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Expected {
    /// The headers in the form the producer takes.
    pub fn header_refs(&self) -> Vec<Header<'_>> {
        self.headers
            .iter()
            .map(|(k, v)| Header {
                key: k,
                value: v.as_deref(),
            })
            .collect()
    }

    /// This record, to `topic`, with `headers` from [`Expected::header_refs`].
    pub fn record<'a>(&'a self, topic: &'a str, headers: &'a [Header<'a>]) -> ProducerRecord<'a> {
        ProducerRecord {
            topic,
            partition: None,
            key: Some(&self.key),
            value: self.value.as_deref(),
            headers,
            timestamp: None,
            partitioning: None,
        }
    }
}

/// A record kafka-wire fetched, in the form the independent clients report, for comparing.
pub fn consumed(partition: i32, r: Record) -> ConsumedRecord {
    ConsumedRecord {
        partition,
        offset: r.offset,
        key: r.key.map(|k| k.to_vec()),
        value: r.value.map(|v| v.to_vec()),
        headers: r
            .headers
            .iter()
            .map(|h| {
                let (k, v) = h.expect("header decodes");
                (
                    String::from_utf8(k.to_vec()).expect("utf-8 header key"),
                    v.map(|v| v.to_vec()),
                )
            })
            .collect(),
        timestamp: Some(r.timestamp),
    }
}

pub fn expected(tag: &str, i: usize) -> Expected {
    let key = format!("{tag}-key-{i}").into_bytes();
    let value = (i % 997 != 0).then(|| {
        let stem = format!("{tag}-value-{i}-");
        stem.bytes().cycle().take(20 + (i * 7) % 200).collect()
    });
    let mut headers = vec![
        ("idx".to_owned(), Some(i.to_string().into_bytes())),
        ("tag".to_owned(), Some(tag.as_bytes().to_vec())),
    ];
    if i % 3 == 0 {
        headers.push(("nothing".to_owned(), None));
    }
    Expected {
        key,
        value,
        headers,
    }
}

/// Checks that `got` holds exactly the records `0..count` of `tag`, each once.
pub fn assert_exactly(tag: &str, count: usize, got: &[ConsumedRecord]) {
    assert_eq!(got.len(), count, "record count read back");
    let mut seen = vec![false; count];
    for r in got {
        let key = r.key.as_deref().expect("every test record has a key");
        let key = std::str::from_utf8(key).expect("utf-8 key");
        let i: usize = key
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected key {key}"));
        assert!(i < count, "key {key} out of range");
        assert!(!seen[i], "record {i} read twice (duplicate)");
        seen[i] = true;
        let want = expected(tag, i);
        assert_eq!(r.key.as_deref(), Some(&want.key[..]), "key of record {i}");
        assert_eq!(r.value, want.value, "value of record {i}");
        assert_eq!(r.headers, want.headers, "headers of record {i}");
    }
}

/// Waits until every thread of process `pid` is stopped (SIGSTOP is asynchronous).
pub fn wait_stopped(pid: u32) {
    let stopped = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| {
                tasks.flatten().all(|t| {
                    std::fs::read_to_string(t.path().join("stat"))
                        .ok()
                        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('T')))
                        .unwrap_or(false)
                })
            })
            .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !stopped() {
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} did not stop"
        );
        std::thread::yield_now();
    }
}
