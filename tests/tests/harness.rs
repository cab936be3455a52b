//! Tests of the harness itself, and of the tansu behaviour the other suites rely on: a broker
//! starts, independent clients write and read through it, SCRAM is enforced, TLS works.

use std::time::Duration;

use sluice_tests::{Broker, ChaosProxy, ClientAuth, ClientLib, ProduceRecord, PyClient, Sasl};

const DEADLINE: Duration = Duration::from_secs(30);
/// Operations expected to fail get this long to do so.
const REFUSAL: Duration = Duration::from_secs(5);

fn numbered(n: usize) -> Vec<ProduceRecord> {
    (0..n)
        .map(|i| {
            ProduceRecord::value(format!("value-{i}"))
                .key(format!("key-{i}"))
                .header("n", Some(i.to_string().as_bytes()))
                .header("empty", None)
        })
        .collect()
}

/// Every record the producer got acknowledged, and nothing else, read back by `reader`.
fn assert_reads_back(
    reader: &PyClient,
    topic: &str,
    sent: &[ProduceRecord],
    delivered: &[sluice_tests::Delivery],
) {
    let got = reader.consume_all(topic, sent.len(), DEADLINE).unwrap();
    assert_eq!(
        got.len(),
        sent.len(),
        "exactly the produced records, no duplicates: {got:#?}"
    );
    for (record, at) in sent.iter().zip(delivered) {
        let seen = got
            .iter()
            .find(|c| c.partition == at.partition && c.offset == at.offset)
            .unwrap_or_else(|| panic!("nothing read at {at:?}; read {got:#?}"));
        assert_eq!(seen.key, record.key);
        assert_eq!(seen.value, record.value);
        assert_eq!(seen.headers, record.headers);
        assert!(seen.timestamp.is_some_and(|ts| ts > 0), "{seen:?}");
    }
}

/// `client` cannot even list topics; its error (with librdkafka's log) mentions `why`.
fn assert_refused(client: PyClient, what: &str, why: &str) {
    let err = format!("{:#}", client.timeout(REFUSAL).topics().expect_err(what));
    assert!(err.contains(why), "{what}: expected {why:?} in: {err}");
}

#[test]
fn records_round_trip_through_both_python_clients() {
    let broker = Broker::start().unwrap();
    let confluent = broker.kafka();
    let kafka_python = broker.kafka().using(ClientLib::KafkaPython);
    confluent.create_topic("harness", 3, &[]).unwrap();
    assert_eq!(confluent.topics().unwrap().get("harness"), Some(&3));

    let sent = numbered(10);
    let delivered = confluent.produce("harness", &sent).unwrap();
    assert_reads_back(&confluent, "harness", &sent, &delivered);
    assert_reads_back(&kafka_python, "harness", &sent, &delivered);

    // And the other way round, with an explicit partition and timestamp (kafka-python
    // cannot write a header with a null value).
    kafka_python
        .create_topic("from-kafka-python", 2, &[])
        .unwrap();
    let sent: Vec<_> = (0..4)
        .map(|i| {
            ProduceRecord::value(format!("v{i}"))
                .header("n", Some(b"1"))
                .partition(1)
                .timestamp(1_700_000_000_000)
        })
        .collect();
    let delivered = kafka_python.produce("from-kafka-python", &sent).unwrap();
    assert!(delivered.iter().all(|d| d.partition == 1), "{delivered:?}");
    let got = confluent
        .consume_all("from-kafka-python", 4, DEADLINE)
        .unwrap();
    assert!(
        got.iter().all(|c| c.timestamp == Some(1_700_000_000_000)),
        "{got:#?}"
    );
    assert_eq!(
        got.iter().map(|c| c.offset).collect::<Vec<_>>(),
        [0, 1, 2, 3],
        "{got:#?}"
    );
}

#[test]
fn compressed_batches_and_free_functions() {
    let broker = Broker::start().unwrap();
    let bootstrap = broker.bootstrap();
    sluice_tests::create_topic(&bootstrap, "compacted", 1, &[("cleanup.policy", "compact")])
        .unwrap();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let sent = numbered(3);
        PyClient::new(&bootstrap)
            .compression(codec)
            .produce("compacted", &sent)
            .unwrap();
    }
    for lib in [ClientLib::ConfluentKafka, ClientLib::KafkaPython] {
        let got = PyClient::new(&bootstrap)
            .using(lib)
            .consume_all("compacted", 12, DEADLINE)
            .unwrap();
        assert_eq!(got.len(), 12, "{lib:?}: {got:#?}");
    }
    assert_eq!(
        sluice_tests::consume_all(&bootstrap, "compacted", 12, DEADLINE)
            .unwrap()
            .len(),
        12
    );

    // Fewer records than expected is an error that says how many arrived.
    let short = PyClient::new(&bootstrap)
        .consume_all("compacted", 13, Duration::from_secs(3))
        .unwrap_err();
    assert!(format!("{short:#}").contains("saw 12 of 13"), "{short:#}");

    // An empty topic reads as empty, with either client.
    sluice_tests::create_topic(&bootstrap, "empty", 2, &[]).unwrap();
    for lib in [ClientLib::ConfluentKafka, ClientLib::KafkaPython] {
        let got = PyClient::new(&bootstrap)
            .using(lib)
            .consume_all("empty", 0, DEADLINE)
            .unwrap();
        assert!(got.is_empty(), "{lib:?}: {got:#?}");
    }

    sluice_tests::produce(&bootstrap, "compacted", &[ProduceRecord::value("x")]).unwrap();
    sluice_tests::delete_topic(&bootstrap, "compacted").unwrap();
    let topics = PyClient::new(&bootstrap).topics().unwrap();
    assert!(!topics.contains_key("compacted"), "{topics:?}");
}

#[test]
fn a_paused_broker_answers_nothing_until_resumed() {
    let mut broker = Broker::start().unwrap();
    let quick = broker.kafka().timeout(REFUSAL);
    broker.pause().unwrap();
    let err = quick.topics().unwrap_err();
    eprintln!("while paused: {err:#}");
    broker.resume().unwrap();
    quick.topics().unwrap();

    broker.restart().unwrap();
    assert!(broker.is_running());
    quick.create_topic("after-restart", 1, &[]).unwrap();
    broker.stop().unwrap();
    assert!(!broker.is_running());
}

#[test]
fn scram_broker_refuses_unauthenticated_and_wrong_clients() {
    let broker = Broker::start_sqlite_scram(&[("alice", "alice-secret"), ("bob", "b0b")]).unwrap();
    let bootstrap = broker.bootstrap();

    // The right credentials work with both SCRAM mechanisms and both clients.
    let alice = broker.kafka();
    alice.create_topic("secured", 1, &[]).unwrap();
    let sent = numbered(3);
    let delivered = alice.produce("secured", &sent).unwrap();
    let bob_256 = PyClient::new(&bootstrap).sasl(Some(Sasl::new("SCRAM-SHA-256", "bob", "b0b")));
    assert_reads_back(&bob_256, "secured", &sent, &delivered);
    assert_reads_back(
        &bob_256.clone().using(ClientLib::KafkaPython),
        "secured",
        &sent,
        &delivered,
    );

    // librdkafka's log (printed by the script) says why: tansu answers only ApiVersions
    // before authentication and resets the connection on anything else; it closes the
    // connection on a PLAIN handshake; a bad proof or unknown user fails SaslAuthenticate.
    assert_refused(PyClient::new(&bootstrap), "no SASL", "Disconnected");
    assert_refused(
        PyClient::new(&bootstrap).sasl(Some(Sasl::new("SCRAM-SHA-512", "alice", "wrong"))),
        "wrong password",
        "SASL authentication error",
    );
    assert_refused(
        PyClient::new(&bootstrap).sasl(Some(Sasl::new("SCRAM-SHA-256", "mallory", "alice-secret"))),
        "unknown user",
        "SASL authentication error",
    );
    assert_refused(
        PyClient::new(&bootstrap).sasl(Some(Sasl::new("PLAIN", "alice", "alice-secret"))),
        "SASL PLAIN",
        "SASL PLAIN mechanism handshake failed",
    );
    assert_refused(
        bob_256
            .using(ClientLib::KafkaPython)
            .sasl(Some(Sasl::new("SCRAM-SHA-256", "bob", "bad"))),
        "kafka-python with a wrong password",
        "kafka-python",
    );
}

#[test]
fn tls_front_serves_clients_that_trust_its_ca() {
    let broker = Broker::start_behind_tls(ClientAuth::None).unwrap();
    let tls = broker.tls().unwrap();
    assert_ne!(broker.addr(), broker.tansu_addr());

    let kafka = broker.kafka();
    kafka.create_topic("over-tls", 2, &[]).unwrap();
    let sent = numbered(5);
    let delivered = kafka.produce("over-tls", &sent).unwrap();
    assert_reads_back(&kafka, "over-tls", &sent, &delivered);
    assert_reads_back(
        &kafka.clone().using(ClientLib::KafkaPython),
        "over-tls",
        &sent,
        &delivered,
    );

    // Plaintext to the TLS port, or TLS trusting another CA (the server's own leaf
    // certificate is not a CA), gets nowhere.
    assert_refused(
        PyClient::new(&broker.bootstrap()),
        "plaintext to the TLS port",
        "Disconnected",
    );
    assert_refused(
        PyClient::new(&broker.bootstrap()).tls(&tls.server_cert, None),
        "TLS with an untrusted CA",
        "certificate verify failed",
    );
}

#[test]
fn mutual_tls_front_requires_a_client_certificate() {
    let broker = Broker::start_behind_tls(ClientAuth::Required).unwrap();
    let tls = broker.tls().unwrap();
    assert!(tls.client_identity().is_some());

    let kafka = broker.kafka();
    kafka.create_topic("mtls", 1, &[]).unwrap();
    let delivered = kafka.produce("mtls", &numbered(2)).unwrap();
    assert_eq!(delivered.len(), 2);

    assert_refused(
        PyClient::new(&broker.bootstrap()).tls(&tls.ca_cert, None),
        "TLS without a client certificate",
        "certificate required",
    );
}

#[test]
fn clients_reach_a_broker_behind_a_chaos_proxy_and_survive_cuts() {
    let proxy = ChaosProxy::start().unwrap();
    let broker = Broker::builder().behind(&proxy).start().unwrap();
    assert_eq!(broker.addr(), proxy.addr());
    let kafka = broker.kafka();
    kafka.create_topic("relayed", 1, &[]).unwrap();
    kafka.produce("relayed", &numbered(3)).unwrap();
    let before = proxy.connections();
    assert!(before > 0, "metadata pointed the client at the relay");
    proxy.cut();
    kafka.produce("relayed", &numbered(3)).unwrap();
    assert_eq!(kafka.consume_all("relayed", 6, DEADLINE).unwrap().len(), 6);
    assert!(proxy.connections() > before);
}

#[test]
fn scram_over_tls_combines_both() {
    let broker = Broker::builder()
        .scram_users(&[("carol", "c4rol")])
        .tls(ClientAuth::None)
        .start()
        .unwrap();
    let kafka = broker.kafka(); // SASL_SSL
    kafka.create_topic("sasl-ssl", 1, &[]).unwrap();
    let sent = numbered(2);
    let delivered = kafka.produce("sasl-ssl", &sent).unwrap();
    assert_reads_back(&kafka, "sasl-ssl", &sent, &delivered);
    assert_refused(
        PyClient::new(&broker.bootstrap()).tls(&broker.tls().unwrap().ca_cert, None),
        "TLS without SASL",
        "Disconnected",
    );
}
