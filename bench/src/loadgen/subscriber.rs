//! A subscribing connection: receives PUBLISHes, acknowledges QoS 1 ones (all PUBACKs of a
//! read in one write), times each from the send time stamped in its payload, and checks
//! that every stream arrives complete, in order and once.
//!
//! The fan-out producer (`scenario_fanout.rs`) writes S streams, one MQTT topic (Kafka key)
//! each, so each stream lives in one Kafka partition and keeps its order all the way to the
//! subscriber. A payload starts with a [`Stamp`]: send time, stream, sequence number in
//! the stream. A subscriber keeps, per stream, the next sequence number it expects: a
//! higher one means messages were lost, a lower one a duplicate (or a reordering, which
//! one partition cannot produce). That makes the loss check exact with a few words of state
//! per connection, whatever the message count.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use codecs::mqtt::{
    MqttCodec, MqttString, Packet, PubAck, QoS, Subscribe, Subscription, SubscriptionOptions,
    TopicFilter,
};
use codecs::{Decoder, Encoder};
use futures::future::{select, Either};
use futures::AsyncWriteExt;
use glommio::net::TcpStream;

use super::conn::{read_some, ShardCtx};
use super::gate::Gate;
use super::LoadgenArgs;

/// Bytes asked of the kernel per read: deliveries arrive back to back.
const READ_CHUNK: usize = 64 * 1024;
/// Streams a subscriber tracks; a stamp naming a higher one counts as malformed.
const MAX_STREAMS: u32 = 4096;

/// The head of every fan-out payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// When the message was due to be produced, nanoseconds since the Unix epoch.
    pub sent_ns: u64,
    /// The stream (MQTT topic) it belongs to.
    pub stream: u32,
    /// Its number within the stream, from 0.
    pub seq: u64,
}

impl Stamp {
    /// Bytes a stamp takes at the start of a payload.
    pub const LEN: usize = 20;

    /// Writes the stamp over the start of `payload`: all of it when the payload has
    /// [`Stamp::LEN`] bytes, else only the send time (the payload has at least 8 bytes), which
    /// is all a latency reader needs.
    pub fn write(&self, payload: &mut [u8]) {
        payload[..8].copy_from_slice(&self.sent_ns.to_le_bytes());
        if payload.len() >= Stamp::LEN {
            payload[8..16].copy_from_slice(&self.seq.to_le_bytes());
            payload[16..20].copy_from_slice(&self.stream.to_le_bytes());
        }
    }

    /// Reads the stamp at the start of `payload`.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let field = |r: std::ops::Range<usize>| payload.get(r);
        Some(Stamp {
            sent_ns: u64::from_le_bytes(field(0..8)?.try_into().ok()?),
            seq: u64::from_le_bytes(field(8..16)?.try_into().ok()?),
            stream: u32::from_le_bytes(field(16..20)?.try_into().ok()?),
        })
    }
}

/// Nanoseconds since the Unix epoch.
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

/// One subscriber's order and loss check.
#[derive(Debug, Default)]
pub struct Tally {
    /// Per stream, the next sequence number expected.
    next: Vec<u64>,
    received: u64,
    gaps: u64,
    duplicates: u64,
    malformed: u64,
}

impl Tally {
    fn record(&mut self, payload: &[u8]) -> Option<Stamp> {
        self.received += 1;
        let Some(stamp) = Stamp::read(payload).filter(|s| s.stream < MAX_STREAMS) else {
            self.malformed += 1;
            return None;
        };
        let stream = stamp.stream as usize;
        if self.next.len() <= stream {
            self.next.resize(stream + 1, 0);
        }
        let next = &mut self.next[stream];
        if stamp.seq >= *next {
            self.gaps += stamp.seq - *next;
            *next = stamp.seq + 1;
        } else {
            self.duplicates += 1;
        }
        Some(stamp)
    }

    /// Messages missing, given how many each stream was sent (`expected[stream]`).
    pub fn lost(&self, expected: &[u64]) -> u64 {
        let missing_tails: u64 = expected
            .iter()
            .enumerate()
            .map(|(s, &n)| n.saturating_sub(self.next.get(s).copied().unwrap_or(0)))
            .sum();
        self.gaps + missing_tails
    }

    /// Adds this subscriber's counts to its shard's. Without `expected` (nobody said what
    /// was sent) only what arrived is counted.
    pub fn count_into(&self, ctx: &ShardCtx, expected: Option<&[u64]>) {
        let lost = expected.map_or(self.gaps, |e| self.lost(e));
        let complete = expected.is_some() && lost == 0 && self.duplicates == 0;
        ctx.count(|s| {
            s.received += self.received;
            s.lost += lost;
            s.duplicates += self.duplicates;
            s.malformed += self.malformed;
            s.complete += u64::from(complete && self.malformed == 0);
        });
    }
}

/// The SUBSCRIBE of a subscriber: `--filter` at `--qos`.
pub fn subscribe_packet(args: &LoadgenArgs) -> Subscribe {
    let filter = MqttString::try_from(args.filter.as_str())
        .ok()
        .and_then(|f| TopicFilter::new(f).ok())
        .expect("validated by loadgen::run");
    Subscribe {
        packet_id: 1,
        subscriptions: vec![Subscription {
            filter,
            options: SubscriptionOptions {
                qos: if args.qos == 0 {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                },
                ..SubscriptionOptions::default()
            },
        }],
        properties: Default::default(),
    }
}

/// Receives until `stop` opens; false if the connection broke or the server ended it
/// (a slow consumer is disconnected).
pub async fn receive(
    ctx: &ShardCtx,
    stop: &Gate,
    stream: &mut TcpStream,
    codec: &mut MqttCodec,
    rbuf: &mut BytesMut,
    tally: &mut Tally,
) -> bool {
    let mut acks = BytesMut::new();
    let mut stopped = std::pin::pin!(stop.wait());
    loop {
        // What is buffered first: the SUBACK's read may have brought deliveries too.
        let now = wall_ns();
        let mut received = 0;
        {
            let mut latency = ctx.delivery.borrow_mut();
            loop {
                match codec.decode(rbuf) {
                    Ok(Some(Packet::Publish(p))) => {
                        received += 1;
                        if let Some(stamp) = tally.record(&p.payload) {
                            let _ = latency.record(now.saturating_sub(stamp.sent_ns).max(1));
                        }
                        if p.qos == QoS::AtLeastOnce {
                            codec
                                .encode(&Packet::PubAck(PubAck::new(p.packet_id)), &mut acks)
                                .expect("PUBACK encodes");
                        }
                    }
                    Ok(Some(Packet::PingResp)) => {}
                    // DISCONNECT (e.g. quota exceeded: too slow) or anything unexpected.
                    Ok(Some(_)) | Err(_) => return false,
                    Ok(None) => break,
                }
            }
        }
        ctx.shared.received.fetch_add(received, Ordering::Relaxed);
        if !acks.is_empty() {
            if stream.write_all(&acks).await.is_err() {
                return false;
            }
            acks.clear();
        }
        let read = std::pin::pin!(read_some(stream, rbuf, READ_CHUNK));
        match select(stopped.as_mut(), read).await {
            Either::Left(_) => return true,
            Either::Right((Ok(n), _)) if n > 0 => {}
            Either::Right(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(stream: u32, seq: u64) -> Vec<u8> {
        let mut p = vec![b'x'; 32];
        Stamp {
            sent_ns: 7,
            stream,
            seq,
        }
        .write(&mut p);
        p
    }

    #[test]
    fn stamp_round_trips() {
        let s = Stamp {
            sent_ns: u64::MAX - 1,
            stream: 3,
            seq: 1 << 40,
        };
        let mut p = [0u8; Stamp::LEN];
        s.write(&mut p);
        assert_eq!(Stamp::read(&p), Some(s));
        assert_eq!(Stamp::read(&p[..Stamp::LEN - 1]), None);
        let mut short = [b'x'; 8];
        s.write(&mut short);
        assert_eq!(short, s.sent_ns.to_le_bytes(), "only the send time fits");
    }

    #[test]
    fn tally_counts_losses_duplicates_and_missing_tails() {
        let mut t = Tally::default();
        for (stream, seq) in [(0, 0), (0, 1), (1, 0), (0, 3), (0, 3), (1, 1)] {
            t.record(&payload(stream, seq));
        }
        t.record(b"short");
        assert_eq!(t.received, 7);
        assert_eq!(t.malformed, 1);
        assert_eq!(t.duplicates, 1);
        // Stream 0 misses 2 (a gap) and 4 (its tail); stream 1 has all 2; stream 2 none of 1.
        assert_eq!(t.lost(&[5, 2, 1]), 3);
        assert_eq!(t.lost(&[4, 2]), 1);
    }
}
