//! Where a scenario's records go: a real broker (tansu in memory), or the discard sink, a
//! measurement tool that acknowledges Produce without storing anything
//! ([`crate::discard_sink`]).

use anyhow::{Context as _, Result};
use clap::ValueEnum;
use serde::Serialize;

use crate::discard_sink::{DiscardSinkProc, SinkSummary};

/// The `--sink` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// tansu 0.6.0 in memory: a real Kafka-compatible broker.
    Tansu,
    /// The discard sink: acknowledges Produce and stores nothing (measurement only).
    Discard,
}

/// A running sink; stopped on drop.
#[derive(Debug)]
pub enum Sink {
    Tansu(Box<sluice_tests::Broker>),
    Discard(DiscardSinkProc),
}

impl Sink {
    /// Starts one; discard-sink topics default to `partitions` partitions.
    pub fn start(kind: SinkKind, partitions: i32) -> Result<Sink> {
        Ok(match kind {
            SinkKind::Tansu => Sink::Tansu(Box::new(
                sluice_tests::Broker::start().context("starting tansu")?,
            )),
            SinkKind::Discard => Sink::Discard(DiscardSinkProc::start(partitions)?),
        })
    }

    /// `host:port` for clients.
    pub fn bootstrap(&self) -> String {
        match self {
            Sink::Tansu(b) => b.bootstrap(),
            Sink::Discard(s) => s.bootstrap(),
        }
    }

    pub fn pid(&self) -> u32 {
        match self {
            Sink::Tansu(b) => b.pid(),
            Sink::Discard(s) => s.pid(),
        }
    }

    /// Stops the sink; the discard sink reports what it counted.
    pub fn finish(self) -> Result<Option<SinkSummary>> {
        match self {
            Sink::Tansu(_) => Ok(None),
            Sink::Discard(s) => s.stop().map(Some),
        }
    }
}
