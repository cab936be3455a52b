//! Security to the broker: SASL SCRAM-SHA-256/512 against tansu's sqlite engine, and TLS
//! (server-authenticated and mutual) through a stunnel4 terminator in front of tansu, since
//! tansu cannot terminate TLS itself (docs/kafka-wire.md). What kafka-wire writes over each
//! is read back by confluent-kafka over the same security.

mod common;

use std::time::Duration;

use common::on_shard;
use kafka_wire::sasl::{SaslConfig, SaslMechanism};
use kafka_wire::tls::TlsConfig;
use kafka_wire::{Client, ClientConfig, Error, Producer, ProducerConfig, ProducerRecord};
use sluice_tests::{Broker, ClientAuth};

fn produce_one(
    config: ClientConfig,
    topic: &'static str,
    value: &'static [u8],
) -> Result<i64, Error> {
    on_shard(move || async move {
        let client = Client::connect(config).await?;
        let producer = Producer::new(client, ProducerConfig::default()).await?;
        let m = producer
            .send(ProducerRecord::new(topic, value))
            .await?
            .await?;
        producer.close(Duration::from_secs(5)).await;
        Ok(m.offset)
    })
}

#[test]
fn scram_sha_256_and_512_authenticate_and_produce() {
    let broker = Broker::start_sqlite_scram(&[("alice", "alice-secret")]).expect("SCRAM broker");
    let kafka = broker.kafka().timeout(Duration::from_secs(60));
    kafka
        .create_topic("secure", 1, &[])
        .expect("create topic as alice");
    for (mechanism, value) in [
        (SaslMechanism::ScramSha256, &b"via-sha-256"[..]),
        (SaslMechanism::ScramSha512, &b"via-sha-512"[..]),
    ] {
        let config = ClientConfig {
            sasl: Some(SaslConfig {
                mechanism,
                username: "alice".into(),
                password: "alice-secret".into(),
            }),
            ..common::config(&broker.bootstrap())
        };
        produce_one(config, "secure", value).unwrap_or_else(|e| panic!("{mechanism}: {e}"));
    }
    let records = kafka
        .consume_all("secure", 2, Duration::from_secs(60))
        .expect("alice reads back");
    let values: Vec<_> = records.iter().map(|r| r.value.clone().unwrap()).collect();
    assert_eq!(
        values,
        vec![b"via-sha-256".to_vec(), b"via-sha-512".to_vec()]
    );

    // A wrong password is refused with a clear error, not a hang.
    let config = ClientConfig {
        sasl: Some(SaslConfig {
            mechanism: SaslMechanism::ScramSha256,
            username: "alice".into(),
            password: "wrong".into(),
        }),
        ..common::config(&broker.bootstrap())
    };
    let err = produce_one(config, "secure", b"nope").expect_err("wrong password");
    let text = err.to_string();
    assert!(
        matches!(
            err,
            Error::Kafka { .. } | Error::Sasl { .. } | Error::NoBroker(_)
        ),
        "{text}"
    );
    assert!(
        text.to_lowercase().contains("sasl") || text.contains("Authentication"),
        "{text}"
    );
}

fn tls_round_trip(client_auth: ClientAuth) {
    let broker = Broker::start_behind_tls(client_auth).expect("TLS-fronted broker");
    let files = broker.tls().expect("TLS files").clone();
    let kafka = broker.kafka();
    kafka.create_topic("tls", 1, &[]).expect("create over TLS");
    let tls = TlsConfig {
        ca_file: Some(files.ca_cert.clone()),
        cert_file: files.client_cert.clone(),
        key_file: files.client_key.clone(),
        server_name: None,
    };
    let config = ClientConfig {
        tls: Some(tls),
        ..common::config(&broker.bootstrap())
    };
    produce_one(config, "tls", b"over-tls").expect("produce over TLS");
    let records = kafka
        .consume_all("tls", 1, Duration::from_secs(30))
        .unwrap();
    assert_eq!(records[0].value.as_deref(), Some(&b"over-tls"[..]));

    // Without trusting the test CA, the handshake fails with a TLS error naming the broker.
    let config = ClientConfig {
        tls: Some(TlsConfig {
            ca_file: None,
            cert_file: None,
            key_file: None,
            server_name: None,
        }),
        connect_timeout: Duration::from_secs(5),
        ..common::config(&broker.bootstrap())
    };
    let err = produce_one(config, "tls", b"untrusted").expect_err("unknown CA");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
}

#[test]
fn tls_with_a_private_ca() {
    tls_round_trip(ClientAuth::None);
}

#[test]
fn mutual_tls_presents_the_client_certificate() {
    tls_round_trip(ClientAuth::Required);
}
