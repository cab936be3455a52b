//! Test support for sluice's integration tests: a real Kafka-compatible broker and real,
//! independent Kafka clients, so no test checks sluice against sluice's own understanding.
//!
//! # Layout
//!
//! - [`Broker`]: a tansu process on a free loopback port, started in memory, with SASL SCRAM
//!   (sqlite engine), or behind a stunnel4 TLS terminator; stopped and reaped on drop. Its
//!   log is printed when the test panics.
//! - [`PyClient`] and the free functions [`create_topic`], [`delete_topic`], [`produce`],
//!   [`consume_all`]: run the scripts in `tools/kafka/` with the venv's Python, using
//!   confluent-kafka (librdkafka) or kafka-python ([`ClientLib`]).
//! - [`ChaosProxy`]: a TCP relay in front of the broker whose connections a test can cut,
//!   and that can read the Kafka requests going through it ([`ObservedProduce`]).
//! - [`wait_until`]: poll a condition until a deadline instead of sleeping.
//!
//! Nothing here is skipped when a tool is missing: the error says to run
//! `tools/install-deps.sh`. See docs/testing.md for tansu's quirks and how they are handled.
//!
//! ```no_run
//! use std::time::Duration;
//! use sluice_tests::{Broker, ProduceRecord};
//!
//! let broker = Broker::start()?;
//! let kafka = broker.kafka();
//! kafka.create_topic("t", 3, &[])?;
//! kafka.produce("t", &[ProduceRecord::value("hello")])?;
//! let records = kafka.consume_all("t", 1, Duration::from_secs(30))?;
//! assert_eq!(records[0].value.as_deref(), Some(&b"hello"[..]));
//! # anyhow::Ok(())
//! ```

mod broker;
mod chaos;
mod clients;
mod process;
mod requests;
mod tls;
mod wait;

pub use broker::{tansu_bin, Broker, BrokerBuilder, ScramUser};
pub use chaos::ChaosProxy;
pub use clients::{
    consume_all, create_topic, delete_topic, produce, python, ClientLib, ConsumedRecord, Delivery,
    ProduceRecord, PyClient, Sasl,
};
pub use requests::ObservedProduce;
pub use tls::{ClientAuth, TlsFiles};
pub use wait::{poll_until, wait_until};

/// The repository's `tools/` directory (scripts and requirements).
pub fn tools_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tools")
}
