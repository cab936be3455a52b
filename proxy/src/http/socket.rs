//! Raw WebSocket producers: after `GET /topics/{topic}` upgraded the connection, every text
//! or binary message becomes one record in `{topic}` (no key; the message is the value).
//!
//! With `websocket.acks` (the default) each message is answered, in order, with a text
//! message once Kafka has the record: `{"partition":P,"offset":O}`, or
//! `{"error":"...","status":S}` when Kafka refused it (S is the HTTP status the same failure
//! gets on `POST`). While the shard's producer buffer is full, `send` waits and the
//! connection stops reading; so does a connection with `MAX_OUTSTANDING` messages unanswered.
//! On shutdown the connection stops reading, answers what it accepted, and closes with 1001.

use std::collections::VecDeque;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use codecs::http::write_json_string;
use codecs::ws::{close_code, Message, MessageAssembler, UpgradeRequest};
use futures_lite::AsyncWriteExt;
use kafka_wire::record::Header;
use kafka_wire::{DeliveryFuture, ProducerRecord, RecordMetadata};
use tracing::debug;

use super::{message_for, status_for, HttpListener};
use crate::driver::{self, Input};
use crate::metrics::ErrorKind;
use crate::shard::Shard;
use crate::transport::Stream;
use crate::ws::WsLayer;

/// Messages a connection may have waiting on Kafka before it stops reading.
const MAX_OUTSTANDING: usize = 1024;

enum Event {
    Read(io::Result<usize>),
    Acked(Instant, Result<RecordMetadata, kafka_wire::Error>),
    Shutdown,
}

/// One raw WebSocket producer connection.
pub(super) struct Socket<'a> {
    shard: &'a Rc<Shard>,
    listener: &'a HttpListener,
    topic: String,
    /// Who the client authenticated as, stamped on every record.
    principal: Option<String>,
    id: u64,
    layer: WsLayer,
    assembler: MessageAssembler,
    acks: bool,
    pending: BytesMut,
    out: BytesMut,
    outstanding: VecDeque<(Instant, DeliveryFuture)>,
    /// Messages decoded but not yet handed to the producer.
    messages: Vec<Bytes>,
}

impl<'a> Socket<'a> {
    pub(super) fn new(
        shard: &'a Rc<Shard>,
        listener: &'a HttpListener,
        topic: String,
        principal: Option<String>,
        id: u64,
    ) -> Socket<'a> {
        let config = listener
            .config
            .websocket
            .as_ref()
            .expect("upgrades are accepted only with [listeners.websocket]");
        let max = listener.config.max_body_bytes;
        Socket {
            shard,
            listener,
            topic,
            principal,
            id,
            layer: WsLayer::new(config, max),
            assembler: MessageAssembler::new(max),
            acks: config.acks,
            pending: BytesMut::new(),
            out: BytesMut::new(),
            outstanding: VecDeque::new(),
            messages: Vec::new(),
        }
    }

    /// Answers the upgrade, then produces messages until the client or shutdown ends it.
    /// `frames` are bytes that arrived behind the upgrade request.
    pub(super) async fn run(
        mut self,
        stream: &mut Stream,
        request: &UpgradeRequest,
        frames: BytesMut,
    ) -> Result<(), (ErrorKind, String)> {
        let io_err = |e: io::Error| (ErrorKind::Io, e.to_string());
        request.write_accept(&mut self.out);
        let mut failure = None;
        let mut reading = true;
        let mut closing = false;
        if !frames.is_empty() {
            closing |= self.on_input(Input::owned(frames), &mut failure).await;
        }
        loop {
            closing |= self.layer.drain(&mut self.out);
            driver::flush(self.shard, self.listener.index, stream, &mut self.out)
                .await
                .map_err(io_err)?;
            if closing && self.outstanding.is_empty() {
                let _ = stream.close().await;
                return failure.map_or(Ok(()), Err);
            }
            let read_now = reading && !closing && self.outstanding.len() < MAX_OUTSTANDING;
            match self.next_event(stream, read_now).await {
                Event::Read(Ok(0)) => {
                    reading = false;
                    closing = true;
                }
                Event::Read(Ok(n)) => {
                    let lm = &self.shard.metrics.listeners[self.listener.index];
                    lm.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                    let input = Input::take(self.shard, &mut self.pending, n);
                    closing |= self.on_input(input, &mut failure).await;
                }
                Event::Read(Err(e)) => return Err(io_err(e)),
                Event::Acked(received, result) => {
                    self.on_ack(received, result);
                    // And every other message already acknowledged (`driver::next_acked`).
                    while let Some((received, result)) = driver::next_acked(&mut self.outstanding) {
                        self.on_ack(received, result);
                    }
                }
                Event::Shutdown => {
                    reading = false;
                    closing = true;
                    self.layer
                        .close(close_code::GOING_AWAY, "server shutting down");
                }
            }
        }
    }

    async fn next_event(&mut self, stream: &mut Stream, reading: bool) -> Event {
        let shard = self.shard;
        let id = self.id;
        let outstanding = &mut self.outstanding;
        futures::future::poll_fn(|cx| {
            if let Some((received, front)) = outstanding.front_mut() {
                if let Poll::Ready(r) = Pin::new(front).poll(cx) {
                    let received = *received;
                    outstanding.pop_front();
                    return Poll::Ready(Event::Acked(received, r));
                }
            }
            if reading && shard.shutdown.is_set() {
                return Poll::Ready(Event::Shutdown);
            }
            shard.shutdown.register(id, cx);
            if reading {
                return driver::poll_read(shard, stream, cx).map(Event::Read);
            }
            Poll::Pending
        })
        .await
    }

    /// Decodes the frames in `input` and produces their messages; true when the
    /// connection is closing (the client closed, or broke the protocol).
    async fn on_input(
        &mut self,
        mut input: Input,
        failure: &mut Option<(ErrorKind, String)>,
    ) -> bool {
        let assembler = &mut self.assembler;
        let messages = &mut self.messages;
        let decoded = self.layer.decode(&mut input, |frame| {
            if let Some(Message::Text(m) | Message::Binary(m)) = assembler.push(frame.freeze())? {
                messages.push(m);
            }
            Ok(())
        });
        self.pending = input.into_tail();
        for value in std::mem::take(&mut self.messages) {
            self.produce(value).await;
        }
        match decoded {
            Ok(d) => d.close_transport,
            Err(e) => {
                // The session queued the close frame with the error's code.
                *failure = Some((ErrorKind::Protocol, e.to_string()));
                true
            }
        }
    }

    async fn produce(&mut self, value: Bytes) {
        let lm = &self.shard.metrics.listeners[self.listener.index];
        lm.frames_in.fetch_add(1, Ordering::Relaxed);
        let principal = self.principal.as_ref().map(|p| Header {
            key: super::access::PRINCIPAL_HEADER,
            value: Some(p.as_bytes()),
        });
        let record = ProducerRecord {
            topic: &self.topic,
            partition: None,
            key: None,
            value: Some(&value),
            headers: principal.as_slice(),
            timestamp: None,
            partitioning: None,
        };
        let received = Instant::now();
        match self.shard.producer.send(record).await {
            Ok(delivery) => self.outstanding.push_back((received, delivery)),
            Err(e) => self.on_ack(received, Err(e)),
        }
    }

    fn on_ack(&mut self, received: Instant, result: Result<RecordMetadata, kafka_wire::Error>) {
        let m = &self.shard.metrics;
        let mut answer = BytesMut::new();
        match result {
            Ok(meta) => {
                m.records_produced.fetch_add(1, Ordering::Relaxed);
                m.produce_latency(received.elapsed());
                let text = format!(
                    "{{\"partition\":{},\"offset\":{}}}",
                    meta.partition, meta.offset
                );
                answer.extend_from_slice(text.as_bytes());
            }
            Err(e) => {
                m.records_failed.fetch_add(1, Ordering::Relaxed);
                m.error(ErrorKind::Kafka);
                debug!(error = %e, topic = %self.topic, "Kafka refused a WebSocket message");
                answer.extend_from_slice(b"{\"error\":");
                write_json_string(&mut answer, &message_for(&e));
                let status = format!(",\"status\":{}}}", status_for(&e));
                answer.extend_from_slice(status.as_bytes());
            }
        }
        if self.acks {
            self.layer.text(&answer, &mut self.out);
        }
    }
}
