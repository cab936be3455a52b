//! The HTTP driver: the only code that touches an HTTP client's socket.
//!
//! `POST /topics/{topic}` writes the body as one record (key from `Sluice-Key`, headers from
//! `Sluice-Header-*`), or a batch: `application/json` (an array of `{"key", "value",
//! "headers"}`) or `application/x-ndjson`. The `200` with each record's partition and offset
//! is written only once Kafka acknowledged every record of the request; responses leave in
//! request order on keep-alive, pipelined connections.
//!
//! Reads go into the shard's scratch buffer and are decoded as slices of the shard's arena
//! (an idle connection holds no read buffer). A request that would make the shard's
//! producer wait for `buffer.memory` is refused with `503` and `Retry-After` instead of
//! queueing; a connection with many responses outstanding stops reading (TCP backpressure).
//!
//! Some requests take the connection over once the responses before them are written: a
//! WebSocket upgrade to `/topics/{topic}` (a raw-message producer, [`socket`]), and the
//! subscribers ([`subscribe`]): `GET /topics/{topic}/events` (Server-Sent Events, [`sse`])
//! and a WebSocket upgrade to `/topics/{topic}/ws` ([`socket_subscriber`]).

mod access;
mod feed;
mod position;
mod records;
mod socket;
mod socket_subscriber;
mod sse;
mod subscribe;
mod topics;

use std::collections::VecDeque;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use codecs::http::{
    write_json_string, HttpLimits, ProduceRequest, Request, RequestDecoder, Response,
    ResponseEncoder,
};
use codecs::{Decoder, Encoder};
use futures::future::{select, Either};
use futures_lite::AsyncWriteExt;
use kafka_wire::record::Header;
use kafka_wire::{DeliveryFuture, KafkaCode, ProducerRecord, RecordMetadata};
use tracing::debug;

use crate::auth::ShardAuth;
use crate::config::ListenerConfig;
use crate::driver::{self, Input};
use crate::metrics::ErrorKind;
use crate::runtime::{self, TcpStream};
use crate::shard::Shard;
use crate::transport::Stream;
use access::{Access, PRINCIPAL_HEADER};
use records::{parse_batch, BodyFormat, Record};
use subscribe::{Endpoint, Subscribe, Subscriber};
pub use topics::TopicPatterns;

/// Produce endpoints are `{PATH_PREFIX}{topic}`.
const PATH_PREFIX: &str = "/topics/";
/// Responses a connection may have outstanding before it stops reading.
const MAX_PIPELINED: usize = 16;
/// `Retry-After` seconds of a 503.
const RETRY_AFTER_SECS: u32 = 1;
/// After refusing a request whose body may still be arriving, how long and how much to read
/// and discard before closing, so the client sees the answer rather than a reset.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 4 << 20;

/// One HTTP listener of a shard.
#[derive(Debug)]
pub struct HttpListener {
    /// Index in the config (and in the metrics).
    pub index: usize,
    /// Settings.
    pub config: ListenerConfig,
    /// The topics it may write.
    pub topics: TopicPatterns,
    /// Its authentication and ACL, with this shard's cache.
    pub auth: Option<ShardAuth>,
}

impl HttpListener {
    /// The listener for config entry `index` (validated).
    pub fn new(index: usize, config: ListenerConfig) -> HttpListener {
        HttpListener {
            index,
            topics: TopicPatterns::parse(&config.topics).expect("validated topic patterns"),
            auth: config.authenticator.clone().map(ShardAuth::new),
            config,
        }
    }
}

/// A response in the making, in request order.
enum Entry {
    /// `100 Continue` for a request announcing `Expect: 100-continue`.
    Continue,
    /// A request that takes the connection over once the responses before it are written.
    Takeover(Box<Takeover>),
    Ready(Response),
    Waiting(Waiting),
}

/// What a connection becomes after a [`Entry::Takeover`].
enum Takeover {
    /// A raw-message WebSocket producer on this topic, with its principal.
    Producer(String, Option<String>, codecs::ws::UpgradeRequest),
    /// A Server-Sent Events stream.
    Events(Subscribe),
    /// A WebSocket subscriber.
    Subscriber(Subscribe, codecs::ws::UpgradeRequest),
}

/// A request whose records are with Kafka.
struct Waiting {
    topic: String,
    received: Instant,
    keep_alive: bool,
    slots: Vec<Slot>,
    /// Slots before this one have an outcome.
    next: usize,
    /// Records after a refused `send` were not sent: how many, and why.
    unsent: Option<(usize, kafka_wire::Error)>,
}

enum Slot {
    Sent(DeliveryFuture),
    Done(Result<RecordMetadata, kafka_wire::Error>),
}

impl Waiting {
    /// Collects outcomes that are in, in order; true when every record has one.
    fn advance(&mut self) -> bool {
        while let Some(slot) = self.slots.get_mut(self.next) {
            if let Slot::Sent(f) = slot {
                match f.try_result() {
                    Some(r) => *slot = Slot::Done(r),
                    None => return false,
                }
            }
            self.next += 1;
        }
        true
    }

    /// Registers for the next outcome; ready when there is progress to collect.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.advance() {
            return Poll::Ready(());
        }
        match &mut self.slots[self.next] {
            Slot::Sent(f) => Pin::new(f).poll(cx).map(drop),
            Slot::Done(_) => Poll::Ready(()),
        }
    }
}

enum Event {
    Read(io::Result<usize>),
    Progress,
    Idle,
    Shutdown,
}

struct Conn {
    shard: Rc<Shard>,
    listener: Rc<HttpListener>,
    decoder: RequestDecoder,
    /// The tail of an incomplete request (empty, holding no memory, between requests).
    pending: BytesMut,
    out: BytesMut,
    entries: VecDeque<Entry>,
    /// No more requests are read; close once every response is written.
    closing: bool,
    /// The request stream was cut mid-request (an error): read and discard before closing.
    linger: bool,
    last_read: Instant,
    id: u64,
    /// A request that takes the connection over was read: nothing more is read as HTTP.
    upgrading: bool,
    /// On a `client_cert` listener, the principal of the client's certificate.
    certificate: Option<String>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shard.shutdown.unregister(self.id);
    }
}

/// Serves one client connection until it ends.
pub async fn serve(tcp: TcpStream, shard: Rc<Shard>, listener: Rc<HttpListener>) {
    let span = driver::conn_span!(listener, tcp);
    let driver = async {
        let stream = driver::secure(&listener.config, tcp).await?;
        let mut conn = Conn::new(shard.clone(), listener.clone());
        conn.certificate = driver::certificate(listener.auth.as_ref(), &stream);
        conn.run(stream).await
    };
    driver::track(&shard, listener.index, span, driver).await;
}

impl Conn {
    fn new(shard: Rc<Shard>, listener: Rc<HttpListener>) -> Conn {
        let limits = HttpLimits {
            max_body_bytes: listener.config.max_body_bytes,
            ..HttpLimits::default()
        };
        Conn {
            decoder: RequestDecoder::new(limits),
            pending: BytesMut::new(),
            out: BytesMut::new(),
            entries: VecDeque::new(),
            closing: false,
            linger: false,
            last_read: Instant::now(),
            id: shard.next_conn_id(),
            upgrading: false,
            certificate: None,
            shard,
            listener,
        }
    }

    async fn run(&mut self, mut stream: Stream) -> Result<(), (ErrorKind, String)> {
        let io_err = |e: io::Error| (ErrorKind::Io, e.to_string());
        let mut failure = None;
        loop {
            if let Some(takeover) = self.write_ready() {
                self.flush(&mut stream).await.map_err(io_err)?;
                return self.take_over(*takeover, &mut stream).await;
            }
            self.flush(&mut stream).await.map_err(io_err)?;
            if self.closing && self.entries.is_empty() {
                if self.linger {
                    self.linger(&mut stream).await;
                }
                let _ = stream.close().await;
                return failure.map_or(Ok(()), Err);
            }
            let reading = !self.closing && !self.upgrading && self.entries.len() < MAX_PIPELINED;
            match self.next_event(&mut stream, reading).await {
                Event::Read(Ok(0)) => self.closing = true,
                Event::Read(Ok(n)) => {
                    self.last_read = Instant::now();
                    if let Err(e) = self.on_data(n).await {
                        failure = Some((ErrorKind::Protocol, e));
                    }
                }
                Event::Read(Err(e)) => return Err(io_err(e)),
                Event::Progress => {}
                Event::Idle => {
                    self.closing = true;
                    if !self.pending.is_empty() {
                        // A request began but did not finish in time.
                        let msg = "The request did not arrive in full within the idle timeout.";
                        self.entries
                            .push_back(Entry::Ready(Response::error(408, msg, false)));
                        self.linger = true;
                        failure = Some((ErrorKind::Timeout, msg.into()));
                    }
                }
                Event::Shutdown => self.closing = true,
            }
        }
    }

    /// Waits for data from the client, Kafka's answer for the oldest response, the idle
    /// timeout (only while nothing is outstanding), or shutdown.
    async fn next_event(&mut self, stream: &mut Stream, reading: bool) -> Event {
        let shard = self.shard.clone();
        let id = self.id;
        let idle = self.entries.is_empty() && !self.closing;
        let entries = &mut self.entries;
        let io = futures::future::poll_fn(|cx| {
            if let Some(Entry::Waiting(w)) = entries.front_mut() {
                if w.poll(cx).is_ready() {
                    return Poll::Ready(Event::Progress);
                }
            }
            if !shard.shutdown.is_set() {
                shard.shutdown.register(id, cx);
            } else if reading {
                return Poll::Ready(Event::Shutdown);
            }
            if reading {
                if let Poll::Ready(r) = driver::poll_read(&shard, stream, cx) {
                    return Poll::Ready(Event::Read(r));
                }
            }
            Poll::Pending
        });
        if !idle {
            return io.await;
        }
        let timeout = Duration::from_millis(self.listener.config.idle_timeout_ms);
        let wait = (self.last_read + timeout).saturating_duration_since(Instant::now());
        let timer = std::pin::pin!(runtime::sleep(wait));
        let io = std::pin::pin!(io);
        match select(io, timer).await {
            Either::Left((event, _)) => event,
            Either::Right(_) => Event::Idle,
        }
    }

    /// Decodes and handles every whole request among `n` new bytes in the shard's scratch.
    async fn on_data(&mut self, n: usize) -> Result<(), String> {
        let lm = &self.shard.metrics.listeners[self.listener.index];
        lm.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        let mut input = Input::take(&self.shard, &mut self.pending, n);
        let result = self.decode_all(&mut input).await;
        self.pending = input.into_tail();
        result
    }

    async fn decode_all(&mut self, data: &mut BytesMut) -> Result<(), String> {
        while !self.closing {
            match self.decoder.decode(data) {
                Ok(Some(req)) => {
                    self.shard.metrics.listeners[self.listener.index]
                        .frames_in
                        .fetch_add(1, Ordering::Relaxed);
                    let subscribe = match is_upgrade(&req) {
                        false => subscribe::endpoint(req.path()),
                        true => None,
                    };
                    if let Some((endpoint, topic)) = subscribe {
                        let entry = self.subscribe(&req, endpoint, topic);
                        // The stream is the last response on this connection.
                        self.upgrading = matches!(entry, Entry::Takeover(_));
                        self.closing |= !req.keep_alive();
                        self.entries.push_back(entry);
                        if self.upgrading {
                            return Ok(());
                        }
                        continue;
                    }
                    if is_upgrade(&req) {
                        let entry = self.upgrade(&req);
                        // What follows an accepted upgrade is WebSocket frames: leave them.
                        self.upgrading = matches!(entry, Entry::Takeover(_));
                        self.closing |= !self.upgrading;
                        self.entries.push_back(entry);
                        if self.upgrading {
                            return Ok(());
                        }
                        continue;
                    }
                    if !req.keep_alive() {
                        self.closing = true;
                    }
                    let entry = self.handle(&req).await;
                    self.entries.push_back(entry);
                }
                Ok(None) => {
                    if self.decoder.take_continue() {
                        self.entries.push_back(Entry::Continue);
                    }
                    return Ok(());
                }
                Err(e) => {
                    // The rest of the stream no longer starts at a request boundary.
                    self.entries.push_back(Entry::Ready(Response::from(&e)));
                    self.closing = true;
                    self.linger = true;
                    data.clear();
                    return Err(e.to_string());
                }
            }
        }
        data.clear();
        Ok(())
    }

    /// Checks a request to `/topics/{topic}/events` or (not upgrading) `/ws`.
    fn subscribe(&self, req: &Request, endpoint: Endpoint, topic: &str) -> Entry {
        let keep_alive = req.keep_alive() && !self.shard.shutdown.is_set();
        let refuse =
            |status, message: &str| Entry::Ready(Response::error(status, message, keep_alive));
        if endpoint == Endpoint::Socket {
            return match self.listener.config.websocket {
                None => refuse(404, "This listener does not accept WebSocket connections."),
                Some(_) => refuse(426, "WebSocket subscribers must ask to upgrade."),
            };
        }
        let (listener, shard) = (&self.listener, &self.shard);
        let cert = self.certificate.as_deref();
        let (principal, until) = match listener.authenticate(shard, req, true, keep_alive, cert) {
            Ok(p) => p,
            Err(r) => return Entry::Ready(r),
        };
        let sub = match Subscribe::from_request(req, endpoint, topic, listener) {
            Ok(sub) => Subscribe { until, ..sub },
            Err((status, message)) => return refuse(status, &message),
        };
        match listener.authorize(shard, principal.as_deref(), topic, Access::Read, keep_alive) {
            Ok(()) => Entry::Takeover(Box::new(Takeover::Events(sub))),
            Err(r) => Entry::Ready(r),
        }
    }

    /// Checks a WebSocket upgrade to `/topics/{topic}` (a raw-message producer) or
    /// `/topics/{topic}/ws` (a subscriber).
    fn upgrade(&mut self, req: &Request) -> Entry {
        let refuse = |status, message: &str| Entry::Ready(Response::error(status, message, false));
        if self.listener.config.websocket.is_none() {
            return refuse(404, "This listener does not accept WebSocket connections.");
        }
        let request = match crate::ws::check_upgrade(req.head(), codecs::ws::Subprotocol::Raw) {
            Ok(r) => r,
            Err(e) => return refuse(e.status(), &e.to_string()),
        };
        let (listener, shard) = (&self.listener, &self.shard);
        let cert = self.certificate.as_deref();
        let (principal, until) = match listener.authenticate(shard, req, true, false, cert) {
            Ok(p) => p,
            Err(r) => return Entry::Ready(r),
        };
        if let Some((Endpoint::Socket, topic)) = subscribe::endpoint(req.path()) {
            let sub = match Subscribe::from_request(req, Endpoint::Socket, topic, listener) {
                Ok(sub) => Subscribe { until, ..sub },
                Err((status, message)) => return refuse(status, &message),
            };
            return match listener.authorize(shard, principal.as_deref(), topic, Access::Read, false)
            {
                Ok(()) => Entry::Takeover(Box::new(Takeover::Subscriber(sub, request))),
                Err(r) => Entry::Ready(r),
            };
        }
        let topic = match req.path().strip_prefix(PATH_PREFIX) {
            Some(t) if !t.is_empty() && !t.contains('/') => t.to_owned(),
            _ => {
                let msg = "WebSocket producers connect to /topics/{topic}, subscribers to /topics/{topic}/ws.";
                return refuse(404, msg);
            }
        };
        if !listener.topics.allows(&topic) {
            let msg = format!("Topic {topic} may not be written on this listener.");
            return refuse(403, &msg);
        }
        match listener.authorize(shard, principal.as_deref(), &topic, Access::Write, false) {
            Ok(()) => Entry::Takeover(Box::new(Takeover::Producer(topic, principal, request))),
            Err(r) => Entry::Ready(r),
        }
    }

    /// Hands the connection to what `takeover` asked for, once every response before it
    /// was written. Boxed: those drivers' state would otherwise make every connection's task
    /// larger for its whole life.
    async fn take_over(
        &mut self,
        takeover: Takeover,
        stream: &mut Stream,
    ) -> Result<(), (ErrorKind, String)> {
        // Bytes behind an upgrade request are its first frames; behind an event stream
        // request, requests that will not be answered.
        let frames = std::mem::take(&mut self.pending);
        let sub = Subscriber {
            shard: &self.shard,
            listener: &self.listener,
            id: self.id,
        };
        match takeover {
            Takeover::Producer(topic, principal, request) => {
                let socket =
                    socket::Socket::new(&self.shard, &self.listener, topic, principal, self.id);
                Box::pin(socket.run(stream, &request, frames)).await
            }
            Takeover::Events(request) => Box::pin(sse::run(sub, stream, request)).await,
            Takeover::Subscriber(request, upgrade) => {
                Box::pin(socket_subscriber::run(
                    sub, stream, request, &upgrade, frames,
                ))
                .await
            }
        }
    }

    /// Answers one request: at once when it is refused, else once Kafka answered.
    async fn handle(&mut self, req: &Request) -> Entry {
        // When the bytes were read: one clock reading for every request of a read.
        let received = self.last_read;
        let keep_alive = req.keep_alive() && !self.shard.shutdown.is_set();
        let refuse =
            |status, message: &str| Entry::Ready(Response::error(status, message, keep_alive));
        let produce = match ProduceRequest::from_request(req, PATH_PREFIX) {
            Ok(p) => p,
            Err(e) => return refuse(e.status(), &e.to_string()),
        };
        let (listener, shard) = (&self.listener, &self.shard);
        let cert = self.certificate.as_deref();
        let principal = match listener.authenticate(shard, req, false, keep_alive, cert) {
            Ok((p, _)) => p,
            Err(r) => return Entry::Ready(r),
        };
        if !listener.topics.allows(&produce.topic) {
            let msg = format!(
                "Topic {} may not be written on this listener.",
                produce.topic
            );
            return refuse(403, &msg);
        }
        let topic = &produce.topic;
        let access = listener.authorize(
            shard,
            principal.as_deref(),
            topic,
            Access::Write,
            keep_alive,
        );
        if let Err(r) = access {
            return Entry::Ready(r);
        }
        let format = BodyFormat::from_content_type(req.header("content-type"));
        // One record (the usual call) needs no vector.
        let (single, batch);
        let records: &[Record<'_>] = match format {
            BodyFormat::Single => {
                single = [Record {
                    key: None,
                    value: Some(produce.value[..].into()),
                    headers: Vec::new(),
                }];
                &single
            }
            _ => match parse_batch(&produce.value, format, self.listener.config.max_records) {
                Ok(r) => {
                    batch = r;
                    &batch
                }
                Err(e) => return refuse(e.status(), &e.to_string()),
            },
        };
        let spoofed = |name: &str| name.eq_ignore_ascii_case(PRINCIPAL_HEADER);
        if principal.is_some()
            && (produce.headers.iter().any(|(k, _)| spoofed(k))
                || records
                    .iter()
                    .any(|r| r.headers.iter().any(|(k, _)| spoofed(k))))
        {
            let msg =
                format!("The record header {PRINCIPAL_HEADER} is set by sluice, not by clients.");
            return refuse(400, &msg);
        }
        // Refuse rather than wait: the request goes only if the producer's buffer can take
        // it now (or is empty, as kafka-wire lets one oversized request through alone).
        let size: usize = records.iter().map(|r| record_size(r, &produce)).sum();
        let buffered = self.shard.producer.stats().buffered_bytes as usize;
        if buffered > 0 && buffered + size > self.shard.producer.config().buffer_memory {
            let mut r = Response::error(
                503,
                "Kafka is not keeping up; the shard's producer buffer is full. Retry later.",
                keep_alive,
            );
            r.retry_after = Some(RETRY_AFTER_SECS);
            return Entry::Ready(r);
        }
        let mut waiting = Waiting {
            topic: String::new(),
            received,
            keep_alive,
            slots: Vec::with_capacity(records.len()),
            next: 0,
            unsent: None,
        };
        let mut headers: Vec<Header<'_>> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            headers.clear();
            let request_headers = produce.headers.iter().map(|(k, v)| Header {
                key: k,
                value: Some(v),
            });
            headers.extend(request_headers);
            headers.extend(r.headers.iter().map(|(k, v)| Header {
                key: k,
                value: v.as_deref(),
            }));
            if let Some(p) = &principal {
                headers.push(Header {
                    key: PRINCIPAL_HEADER,
                    value: Some(p.as_bytes()),
                });
            }
            let record = ProducerRecord {
                topic: &produce.topic,
                partition: None,
                key: r.key.as_deref().or(produce.key.as_deref()),
                value: r.value.as_deref(),
                headers: &headers,
                timestamp: None,
                partitioning: None,
            };
            match self.shard.producer.send(record).await {
                Ok(delivery) => waiting.slots.push(Slot::Sent(delivery)),
                Err(e) if i == 0 => {
                    debug!(error = %e, topic = %produce.topic, "request refused before sending");
                    self.shard
                        .metrics
                        .records_failed
                        .fetch_add(records.len() as u64, Ordering::Relaxed);
                    let mut resp = Response::error(status_for(&e), &message_for(&e), keep_alive);
                    resp.retry_after = retry_after(&e);
                    return Entry::Ready(resp);
                }
                Err(e) => {
                    waiting.unsent = Some((records.len() - i, e));
                    break;
                }
            }
        }
        waiting.topic = produce.topic;
        Entry::Waiting(waiting)
    }

    /// Moves finished responses at the front of the queue into the write buffer; returns
    /// the takeover once everything before it is written.
    fn write_ready(&mut self) -> Option<Box<Takeover>> {
        // One clock reading for every answer written now (for the latency metric).
        let mut answered = None;
        while let Some(front) = self.entries.front_mut() {
            match front {
                Entry::Takeover(_) => match self.entries.pop_front() {
                    Some(Entry::Takeover(t)) => return Some(t),
                    _ => unreachable!("the front is a takeover"),
                },
                Entry::Continue => self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n"),
                Entry::Ready(r) => {
                    let _ = ResponseEncoder.encode(&*r, &mut self.out);
                }
                Entry::Waiting(w) => {
                    if !w.advance() {
                        return None;
                    }
                    let shutting_down = self.shard.shutdown.is_set();
                    let now = *answered.get_or_insert_with(Instant::now);
                    let r = finish(w, now, &self.shard, !shutting_down);
                    let _ = ResponseEncoder.encode(&r, &mut self.out);
                }
            }
            self.entries.pop_front();
        }
        None
    }

    async fn flush(&mut self, stream: &mut Stream) -> io::Result<()> {
        driver::flush(&self.shard, self.listener.index, stream, &mut self.out).await
    }

    /// Half-closes, then reads and discards what the client still sends (a refused body)
    /// for a while, so that closing does not reset the connection before the client has read
    /// the answer.
    async fn linger(&mut self, stream: &mut Stream) {
        if stream.shutdown_write().await.is_err() {
            return;
        }
        let shard = self.shard.clone();
        let drain = async {
            let mut total = 0;
            while total < LINGER_BYTES {
                let n = futures::future::poll_fn(|cx| driver::poll_read(&shard, stream, cx)).await;
                match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => total += n,
                }
            }
        };
        let drain = std::pin::pin!(drain);
        let timer = std::pin::pin!(runtime::sleep(LINGER));
        select(drain, timer).await;
    }
}

/// Whether a request asks to switch to WebSocket (`Upgrade: websocket`).
fn is_upgrade(req: &Request) -> bool {
    req.header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"))
}

/// The bytes kafka-wire counts against `buffer.memory` for a record (its `approx_size`).
fn record_size(r: &Record<'_>, p: &ProduceRequest) -> usize {
    let len = |v: &Option<std::borrow::Cow<'_, [u8]>>| v.as_ref().map_or(0, |v| v.len());
    let request_headers: usize = p.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    let headers: usize = r.headers.iter().map(|(k, v)| k.len() + len(v) + 4).sum();
    let key = r
        .key
        .as_ref()
        .map_or(p.key.as_ref().map_or(0, |k| k.len()), |k| k.len());
    key + len(&r.value) + request_headers + headers + 16
}

/// The response to a request whose every record has an outcome: `{"topic", "offsets"}`,
/// after an `"error"` member when a record failed. Written into one buffer, integers through
/// `itoa` (per record, `format!` cost more than the rest of the answer).
fn finish(w: &mut Waiting, now: Instant, shard: &Shard, keep_alive: bool) -> Response {
    let keep_alive = keep_alive && w.keep_alive;
    let m = &shard.metrics;
    let latency = now.saturating_duration_since(w.received);
    let failed = w.slots.iter().find_map(|slot| match slot {
        Slot::Done(Err(e)) => Some(e),
        _ => None,
    });
    let first_error = failed.or(w.unsent.as_ref().map(|(_, e)| e));
    let unsent = w.unsent.as_ref().map_or(0, |(count, _)| *count);
    let mut n = itoa::Buffer::new();
    let mut body = BytesMut::with_capacity(64 + w.topic.len() + (w.slots.len() + unsent) * 36);
    let status = match first_error {
        None => {
            body.extend_from_slice(b"{");
            200
        }
        Some(e) => {
            debug!(error = %e, topic = %w.topic, "Kafka refused records of a request");
            let status = status_for(e);
            body.extend_from_slice(b"{\"error\":{\"status\":");
            body.extend_from_slice(n.format(status).as_bytes());
            body.extend_from_slice(b",\"message\":");
            write_json_string(&mut body, &message_for(e));
            body.extend_from_slice(b"},");
            status
        }
    };
    body.extend_from_slice(b"\"topic\":");
    write_json_string(&mut body, &w.topic);
    body.extend_from_slice(b",\"offsets\":[");
    for (i, slot) in w.slots.iter().enumerate() {
        if i > 0 {
            body.extend_from_slice(b",");
        }
        match slot {
            Slot::Done(Ok(meta)) => {
                m.records_produced.fetch_add(1, Ordering::Relaxed);
                m.produce_latency(latency);
                body.extend_from_slice(b"{\"partition\":");
                body.extend_from_slice(n.format(meta.partition).as_bytes());
                body.extend_from_slice(b",\"offset\":");
                body.extend_from_slice(n.format(meta.offset).as_bytes());
                body.extend_from_slice(b"}");
            }
            Slot::Done(Err(e)) => {
                m.records_failed.fetch_add(1, Ordering::Relaxed);
                body.extend_from_slice(b"{\"error\":");
                write_json_string(&mut body, &e.to_string());
                body.extend_from_slice(b"}");
            }
            Slot::Sent(_) => unreachable!("finish runs once every record has an outcome"),
        }
    }
    if let Some((count, e)) = &w.unsent {
        m.records_failed.fetch_add(*count as u64, Ordering::Relaxed);
        let note = format!("not sent: {e}");
        for i in 0..*count {
            if i > 0 || !w.slots.is_empty() {
                body.extend_from_slice(b",");
            }
            body.extend_from_slice(b"{\"error\":");
            write_json_string(&mut body, &note);
            body.extend_from_slice(b"}");
        }
    }
    body.extend_from_slice(b"]}");
    let mut r = Response::json(status, body.freeze(), keep_alive);
    r.retry_after = first_error.and_then(retry_after);
    r
}

/// The status for a record Kafka (or the producer) did not take; docs/operations.md lists
/// them.
fn status_for(e: &kafka_wire::Error) -> u16 {
    use kafka_wire::Error as E;
    match e {
        E::UnknownTopic { .. } => 404,
        E::Closed => 503,
        E::DeliveryTimeout(_)
        | E::Io { .. }
        | E::Disconnected { .. }
        | E::Timeout { .. }
        | E::NoBroker(_) => 504,
        E::Kafka { code, .. } => match code {
            KafkaCode::TopicAuthorizationFailed | KafkaCode::ClusterAuthorizationFailed => 403,
            KafkaCode::MessageTooLarge | KafkaCode::RecordListTooLarge => 413,
            KafkaCode::InvalidTopicException => 400,
            c if c.is_retriable() => 504,
            _ => 502,
        },
        E::Protocol { .. } | E::UnsupportedVersion { .. } | E::Sasl { .. } | E::Tls { .. } => 502,
        _ => 500,
    }
}

fn message_for(e: &kafka_wire::Error) -> String {
    match e {
        kafka_wire::Error::UnknownTopic { topic } => {
            format!("Topic {topic} does not exist; sluice does not create topics for HTTP clients.")
        }
        kafka_wire::Error::Closed => "sluice is shutting down; retry on another instance.".into(),
        e => {
            let mut m = e.to_string();
            if let Some(first) = m.get(..1) {
                let upper = first.to_ascii_uppercase();
                m.replace_range(..1, &upper);
            }
            m.push('.');
            m
        }
    }
}

fn retry_after(e: &kafka_wire::Error) -> Option<u32> {
    matches!(e, kafka_wire::Error::Closed).then_some(RETRY_AFTER_SECS)
}
