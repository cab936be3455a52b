//! The MQTT connection driver: the only code that touches an MQTT client's socket.
//!
//! It reads into the shard's scratch buffer when data arrives (an idle connection holds no
//! read buffer, only the tail of an incomplete packet), decodes packets with the MQTT
//! codec, feeds them to the session state machine and executes its effects: replies are
//! encoded into the write buffer; PUBLISHes are routed and handed to the shard's Kafka
//! producer. A QoS 1/2 PUBLISH is acknowledged (PUBACK / PUBREC) only when Kafka has
//! acknowledged its record, and acknowledgements go out in the order the PUBLISHes came
//! in. While the producer's memory budget is used up, `send` waits, so the connection stops
//! reading: TCP backpressure, not an unbounded queue.
//!
//! The connection's session in Kafka (claims, resume, saves, wills) is in
//! [`kafka_session`]; its subscriptions and deliveries in [`subscriber`]; routing a
//! PUBLISH to Kafka and answering it once Kafka has it in [`publish`].

use std::collections::VecDeque;
use std::io;
use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use codecs::mqtt::{
    Effect, MqttCodec, MqttError, Packet, ProtocolVersion, QoS, Session, SessionConfig,
};
use codecs::{Decoder, Encoder};
use futures::future::{select, Either};
use futures_lite::AsyncWriteExt;
use kafka_wire::DeliveryFuture;
use tracing::{debug, Instrument};

use crate::auth::{Acl, ShardAuth};
use crate::config::ListenerConfig;
use crate::driver::{self, Input};
use crate::metrics::ErrorKind;
use crate::park::{self, Key};
use crate::route::{ConnInfo, Routes};
use crate::runtime::{self, TcpStream};
use crate::shard::Shard;
use crate::transport::Stream;
use crate::ws::{self, MqttOverWs};
use publish::Origin;

mod connect;
mod expiry;
mod kafka_session;
mod publish;
mod shared;
mod subscriber;

pub use kafka_session::publish_stored_will;
use kafka_session::Owned;
use publish::poll_front;
use subscriber::{Subscriber, DEFAULT_DELIVERY_WINDOW};

/// MQTT 5 reason codes the driver itself decides.
mod reason {
    pub const SERVER_UNAVAILABLE: u8 = 0x88;
    pub const SESSION_TAKEN_OVER: u8 = 0x8E;
    pub const UNSPECIFIED_ERROR: u8 = 0x80;
    pub const IMPLEMENTATION_SPECIFIC: u8 = 0x83;
    pub const NOT_AUTHORIZED: u8 = 0x87;
    pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
    pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
    pub const PACKET_TOO_LARGE: u8 = 0x95;
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    pub const MALFORMED_PACKET: u8 = 0x81;
    pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    pub const MAXIMUM_CONNECT_TIME: u8 = 0xA0;
}

/// One MQTT listener of a shard: its settings and routes.
#[derive(Debug)]
pub struct MqttListener {
    /// Index in the config (and in the metrics).
    pub index: usize,
    /// Settings.
    pub config: ListenerConfig,
    /// Routes of this listener.
    pub routes: Routes,
    /// Authentication and publish ACL, when the listener has them.
    pub auth: Option<ShardAuth>,
    /// The MQTT session's limits, shared by the listener's connections.
    pub session: Arc<SessionConfig>,
}

impl MqttListener {
    /// The MQTT session limits of a listener with `config`.
    pub fn session_config(config: &ListenerConfig) -> Arc<SessionConfig> {
        Arc::new(SessionConfig {
            receive_maximum: config.receive_maximum,
            topic_alias_maximum: config.topic_alias_maximum,
            max_packet_size: config.max_packet_size,
            server_keep_alive: None,
            connect_timeout_ms: u32::try_from(config.connect_timeout_ms).unwrap_or(u32::MAX),
        })
    }
}

/// A PUBLISH whose record is with Kafka.
struct PendingAck {
    /// 0 for QoS 0 (nothing to acknowledge to the client).
    packet_id: u16,
    qos: QoS,
    received: Instant,
    delivery: DeliveryFuture,
    /// A retained PUBLISH's write to the retained topic: acknowledged only once both
    /// records are in Kafka.
    retained: Option<DeliveryFuture>,
}

enum Event {
    Read(io::Result<usize>),
    Acked(
        PendingAck,
        Result<kafka_wire::RecordMetadata, kafka_wire::Error>,
    ),
    Deadline,
    Shutdown,
    /// Messages from Kafka are waiting in the connection's mailbox.
    Deliver,
    /// Another connection claimed this client's session.
    TakenOver,
    /// Idle for the listener's `park_after_ms`: time to park.
    Park,
}

/// A connection served by its task: its [`Core`] and what only handling packets needs.
struct Conn {
    core: Core,
    effects: Vec<Effect>,
    /// The tail of an incomplete packet (empty, holding no memory, between packets).
    pending: BytesMut,
    out: BytesMut,
    acks: VecDeque<PendingAck>,
    closing: Option<u8>,
    key: Vec<u8>,
    /// The WebSocket layer, on an MQTT-over-WebSocket listener.
    ws: Option<Box<MqttOverWs>>,
    /// A new connection that has sent nothing since its session was connected (a resumed
    /// parked one is not new): on a busy shard it parks sooner ([`Conn::park_after`]).
    fresh: bool,
}

/// What a connection is between packets, and all a parked one keeps (`Box<Core>` is the
/// parked form, one allocation): the MQTT session and the connection's registrations.
/// Buffers, pending acknowledgements and the WebSocket layer stay with [`Conn`], so a
/// connection that parks leaves them behind (it parks only with all of them empty).
struct Core {
    shard: Rc<Shard>,
    listener: Rc<MqttListener>,
    codec: MqttCodec,
    session: Session,
    info: ConnInfo,
    /// What an authenticating listener granted (`None`: everything, for ever). Boxed, so
    /// that `Core` stays within mimalloc's 128-byte size class.
    granted: Option<Box<Authorization>>,
    /// This connection's number on the shard (for the shutdown signal).
    id: u64,
    /// Delivery state, once the client subscribed.
    subscriber: Option<Box<Subscriber>>,
    /// The client's Receive Maximum (MQTT 5 CONNECT), for deliveries.
    client_receive_maximum: u16,
    /// The session this connection claimed in Kafka (after CONNECT).
    owned: Option<Box<Owned>>,
}

/// What the listener's authentication granted a client.
struct Authorization {
    /// Topics this client may publish and subscribe to (`None`: all).
    acl: Option<Acl>,
    /// When the client's token expires ([`expiry`]): seconds on the shard's clock.
    expires_s: Option<NonZeroU32>,
}

// Every parked connection keeps its `Core`: the next mimalloc size class up is 160 bytes.
// A `Conn` lives only while its connection has a task.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Core>() <= 128);
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Conn>() <= 448);

impl Drop for Core {
    fn drop(&mut self) {
        self.shard.metrics.listeners[self.listener.index]
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
        self.shard.shutdown.unregister(self.id);
        if self.subscriber.is_some() {
            self.shard.shares.disconnect(self.id);
            self.shard.delivery.disconnect(self.id);
        }
        if let Some(owned) = self.owned.take() {
            self.release(*owned);
        }
    }
}

/// Serves one client connection until it ends or parks (see [`crate::park`]).
pub async fn serve(tcp: TcpStream, shard: Rc<Shard>, listener: Rc<MqttListener>) {
    shard.metrics.listeners[listener.index]
        .connections_total
        .fetch_add(1, Ordering::Relaxed);
    let span = driver::conn_span!(listener, tcp, client_id = tracing::field::Empty);
    let start = async {
        let mut stream = driver::secure(&listener.config, tcp).await?;
        let mut conn = Box::new(Conn::new(shard.clone(), listener.clone()));
        // A client certificate's principal, until CONNECT makes it the session's.
        conn.core
            .info
            .set_principal(driver::certificate(listener.auth.as_ref(), &stream));
        if let Some(config) = &listener.config.websocket {
            Box::pin(conn.upgrade(&mut stream, config)).await?;
        }
        Ok((conn, stream))
    };
    match start.instrument(span.clone()).await {
        Ok((conn, stream)) => drive(conn, stream, span).await,
        Err((kind, e)) => driver::ended(&shard, &span, kind, &e),
    }
}

/// Runs a connection until it ends (logging why once, here) or parks.
async fn drive(mut conn: Box<Conn>, stream: Stream, span: tracing::Span) {
    match conn.run(stream).instrument(span.clone()).await {
        Ok(None) => {}
        Ok(Some((Stream::Tcp(tcp), key))) => {
            let deadline = conn.deadline().map(|d| Instant::now() + d);
            // The parked form is allocated now, so that connections parking together
            // share allocator pages (the active ones they leave behind can be returned).
            let Conn { mut core, .. } = *conn;
            core.session.shrink();
            let lot = core.shard.lot.clone().expect("parks only with a lot");
            lot.park(key, Box::new(core), tcp, deadline);
        }
        Ok(Some((_, _))) => unreachable!("only plain TCP connections park"),
        Err((kind, e)) => driver::ended(&conn.core.shard, &span, kind, &e),
    }
}

impl Core {
    /// The topics the client may use (`None`: all).
    fn acl(&self) -> Option<&Acl> {
        self.granted.as_ref()?.acl.as_ref()
    }
}

impl crate::park::Resume for Core {
    fn resume(self: Box<Self>, stream: TcpStream) {
        let span = driver::conn_span!(self.listener, stream, client_id = %self.info.client_id);
        runtime::spawn(drive(
            Box::new(Conn::with(*self, false)),
            Stream::Tcp(stream),
            span,
        ));
    }
}

impl Conn {
    fn new(shard: Rc<Shard>, listener: Rc<MqttListener>) -> Conn {
        let session = Session::new(listener.session.clone(), shard.now_ms());
        shard.metrics.listeners[listener.index]
            .connections_open
            .fetch_add(1, Ordering::Relaxed);
        Conn::with(
            Core {
                codec: MqttCodec::server(listener.config.max_packet_size),
                session,
                info: ConnInfo::default(),
                granted: None,
                id: shard.next_conn_id(),
                subscriber: None,
                client_receive_maximum: DEFAULT_DELIVERY_WINDOW,
                owned: None,
                shard,
                listener,
            },
            true,
        )
    }

    /// `core` with empty buffers: a new connection (`fresh`), or a parked one resuming.
    fn with(core: Core, fresh: bool) -> Conn {
        Conn {
            core,
            effects: Vec::new(),
            pending: BytesMut::new(),
            out: BytesMut::new(),
            acks: VecDeque::new(),
            closing: None,
            key: Vec::new(),
            ws: None,
            fresh,
        }
    }

    /// MQTT over WebSocket: answers the upgrade request; what follows it is frames.
    async fn upgrade(
        &mut self,
        stream: &mut Stream,
        config: &ws::ListenerWebSocket,
    ) -> Result<(), (ErrorKind, String)> {
        let path = config
            .path
            .as_deref()
            .expect("validated: MQTT WebSocket path");
        let timeout = Duration::from_millis(self.core.listener.config.connect_timeout_ms);
        ws::handshake(
            stream,
            &self.core.shard,
            codecs::ws::Subprotocol::Mqtt,
            path,
            timeout,
            &mut self.pending,
        )
        .await?;
        let max_packet = self.core.listener.config.max_packet_size as usize;
        self.ws = Some(Box::new(MqttOverWs::new(config, max_packet)));
        if !self.pending.is_empty() {
            // Frames that came with the upgrade request.
            let first = std::mem::take(&mut self.pending);
            self.on_input(first)
                .await
                .map_err(|e| (ErrorKind::Protocol, e))?;
        }
        Ok(())
    }

    /// Serves the connection until it ends (`None`) or parks: then its socket and the slot
    /// reserved for it in the shard's parking lot come back.
    async fn run(
        &mut self,
        mut stream: Stream,
    ) -> Result<Option<(Stream, Key)>, (ErrorKind, String)> {
        let io_err = |e: io::Error| (ErrorKind::Io, e.to_string());
        let mut reading = true;
        let mut shutdown_seen = false;
        loop {
            self.flush(&mut stream).await.map_err(io_err)?;
            if self.closing.is_some() {
                let _ = stream.close().await;
                return Ok(None);
            }
            if self
                .core
                .owned
                .as_ref()
                .is_some_and(|o| o.save_due(self.core.shard.now_ms()))
            {
                Box::pin(self.save_session()).await;
            }
            if shutdown_seen && self.acks.is_empty() {
                // Everything accepted is acknowledged: say goodbye (MQTT 5) and close.
                self.session_close(reason::SERVER_SHUTTING_DOWN);
                continue;
            }
            // The handlers below are boxed: an async fn's state is as large as its largest
            // await point, and inlined they made every idle connection's task ~6 KB.
            let park = reading && !shutdown_seen && self.parkable(&stream);
            match self
                .next_event(&mut stream, reading && !shutdown_seen, park)
                .await
            {
                Event::Read(Ok(0)) => {
                    self.core
                        .session
                        .connection_lost(reason::UNSPECIFIED_ERROR, &mut self.effects);
                    Box::pin(self.execute()).await;
                    self.closing = Some(0);
                }
                Event::Read(Ok(n)) => {
                    let connected = self.core.session.is_connected();
                    if let Err(e) = Box::pin(self.on_data(n)).await {
                        self.closing = Some(e.reason_code());
                        let kind = ErrorKind::Protocol;
                        self.flush(&mut stream).await.map_err(io_err)?;
                        return Err((kind, e.to_string()));
                    }
                    // Bytes after the CONNECT's answer: no longer a new connection.
                    self.fresh &= !connected;
                }
                Event::Read(Err(e)) => {
                    self.core
                        .session
                        .connection_lost(reason::UNSPECIFIED_ERROR, &mut self.effects);
                    Box::pin(self.execute()).await;
                    return Err(io_err(e));
                }
                Event::Acked(ack, result) => {
                    // Kafka answers a whole batch at once: take every acknowledgement that
                    // is already in, so their PUBACKs go out in one write.
                    let now = Instant::now();
                    let mut next = Some((ack, result));
                    while let Some((ack, result)) = next.take() {
                        self.on_ack(ack, result, now);
                        if !self.execute_replies() {
                            Box::pin(self.execute()).await;
                        }
                        let more = futures::future::poll_fn(|cx| {
                            Poll::Ready(poll_front(&mut self.acks, cx))
                        })
                        .await;
                        if let Poll::Ready(Event::Acked(ack, result)) = more {
                            next = Some((ack, result));
                        }
                    }
                }
                Event::Deliver => self.deliver(),
                Event::TakenOver => {
                    debug!("session taken over by another connection");
                    // Hand the new owner this connection's final cursor (it waits for it
                    // briefly); every other reader ignores it as stale. Then never write
                    // the session again.
                    if let Some(state) = self.core.stored(false).filter(|s| s.expiry_s > 0) {
                        let client_id = self.core.info.client_id.clone();
                        let sessions = self.core.shard.sessions.clone();
                        let save =
                            Box::pin(async move { sessions.save(&client_id, Some(&state)).await });
                        if let Err(e) = save.await {
                            debug!(error = %e, "cannot hand over the session state");
                        }
                    }
                    if self.core.owned.take().is_some() {
                        let core = &self.core;
                        core.shard.sessions.release(&core.info.client_id, core.id);
                    }
                    self.session_close(reason::SESSION_TAKEN_OVER);
                }
                Event::Deadline if self.token_left().is_some_and(|left| left.is_zero()) => {
                    // MQTT 5 §3.14.2.1: the connection time its token authorized is over.
                    // The will goes out, as for any close without the client's DISCONNECT.
                    debug!("the client's token expired");
                    self.session_close(reason::MAXIMUM_CONNECT_TIME);
                    self.core
                        .session
                        .connection_lost(reason::MAXIMUM_CONNECT_TIME, &mut self.effects);
                    Box::pin(self.execute()).await;
                }
                Event::Deadline => {
                    if let Some(ws) = &mut self.ws {
                        // A ping due, or a close the client never answered.
                        ws.layer.on_timeout();
                    }
                    let now = self.core.shard.now_ms();
                    self.core.session.on_timeout(now, &mut self.effects);
                    Box::pin(self.execute()).await;
                    if self.closing.is_some() {
                        self.flush(&mut stream).await.map_err(io_err)?;
                        return Err((
                            ErrorKind::Timeout,
                            "keepalive or CONNECT deadline passed".into(),
                        ));
                    }
                }
                Event::Shutdown => {
                    shutdown_seen = true;
                    reading = false;
                }
                Event::Park => {
                    let Some(lot) = self.core.shard.lot.clone() else {
                        continue;
                    };
                    if self.core.shard.shutdown.is_set() {
                        // Shutdown began since the last look: the next turn handles it
                        // (polled without reading, it would not be reported).
                        continue;
                    }
                    let (key, waker) = lot.reserve();
                    // Whatever else can wake the connection now wakes its slot. Any news
                    // that is already here stays (mailbox, flags): look at it instead.
                    let mut cx = Context::from_waker(&waker);
                    if self.poll_event(&mut stream, false, &mut cx).is_pending() {
                        // Shutdown resumes every parked connection (`ParkingLot::resume_all`).
                        self.core.shard.shutdown.unregister(self.core.id);
                        return Ok(Some((stream, key)));
                    }
                    lot.cancel(key);
                }
            }
        }
    }

    /// Waits for the next thing to do: data from the client, Kafka's answer for the oldest
    /// pending PUBLISH, the session's deadline, or shutdown; with `park`, nothing at all
    /// for the listener's `park_after_ms`.
    async fn next_event(&mut self, stream: &mut Stream, reading: bool, park: bool) -> Event {
        let deadline = self.deadline();
        let park_after = park.then(|| self.park_after());
        // (how long, whether it is the parking time rather than the deadline)
        let wait = match (deadline, park_after) {
            (Some(d), Some(p)) if p < d => Some((p, true)),
            (Some(d), _) => Some((d, false)),
            (None, Some(p)) => Some((p, true)),
            (None, None) => None,
        };
        let io = futures::future::poll_fn(|cx| self.poll_event(stream, reading, cx));
        let Some((wait, parks)) = wait else {
            return io.await;
        };
        let timer = std::pin::pin!(runtime::sleep(wait));
        let io = std::pin::pin!(io);
        match select(io, timer).await {
            Either::Left((event, _)) => event,
            Either::Right(_) if parks => Event::Park,
            Either::Right(_) => Event::Deadline,
        }
    }

    /// Polls everything but the deadline: acks, deliveries, takeover, shutdown and (when
    /// `reading`) the socket.
    fn poll_event(
        &mut self,
        stream: &mut Stream,
        reading: bool,
        cx: &mut Context<'_>,
    ) -> Poll<Event> {
        if let Poll::Ready(ack) = poll_front(&mut self.acks, cx) {
            return Poll::Ready(ack);
        }
        let deliveries = self
            .core
            .subscriber
            .as_ref()
            .filter(|s| s.in_flight.len() < s.window && self.closing.is_none());
        if let Some(s) = deliveries {
            if s.mailbox.poll_ready(cx).is_ready() {
                return Poll::Ready(Event::Deliver);
            }
        }
        if let Some(o) = &self.core.owned {
            if o.takeover.poll(cx).is_ready() {
                return Poll::Ready(Event::TakenOver);
            }
        }
        // Reported once: after it the driver stops reading and only waits for acks, so
        // reporting it again would spin without yielding to the tasks that bring them.
        if reading && self.core.shard.shutdown.is_set() {
            return Poll::Ready(Event::Shutdown);
        }
        self.core.shard.shutdown.register(self.core.id, cx);
        if reading {
            if let Poll::Ready(r) = driver::poll_read(&self.core.shard, stream, cx) {
                return Poll::Ready(Event::Read(r));
            }
        }
        Poll::Pending
    }

    /// How long this connection waits idle before parking: the listener's `park_after_ms`,
    /// shortened for a new connection in a connect burst ([`park::delay`]).
    fn park_after(&self) -> Duration {
        let metrics = &self.core.shard.metrics;
        park::delay(
            Duration::from_millis(self.core.listener.config.park_after_ms),
            self.fresh,
            metrics.listeners[self.core.listener.index]
                .connections_open
                .load(Ordering::Relaxed),
            metrics.parked.load(Ordering::Relaxed),
        )
    }

    /// Whether the connection may park when idle: a plain TCP MQTT connection that is
    /// connected and owes nothing (no acks pending, nothing to write, no partial packet).
    fn parkable(&self, stream: &Stream) -> bool {
        self.core.shard.lot.is_some()
            && self.core.listener.config.park_after_ms > 0
            && matches!(stream, Stream::Tcp(_))
            && self.ws.is_none()
            && self.core.session.is_connected()
            && self.closing.is_none()
            && self.acks.is_empty()
            && self.pending.is_empty()
            && self.out.is_empty()
    }

    /// How long until the MQTT session (keepalive, CONNECT) or the WebSocket session (ping,
    /// close) needs attention.
    fn deadline(&self) -> Option<Duration> {
        let mqtt = self
            .core
            .session
            .deadline()
            .map(|at| Duration::from_millis(at.saturating_sub(self.core.shard.now_ms())));
        let ws = self
            .ws
            .as_ref()
            .and_then(|w| w.layer.deadline())
            .map(|at| at.saturating_duration_since(Instant::now()));
        let save = self
            .core
            .owned
            .as_ref()
            .filter(|o| o.since_save > 0 && o.expiry_s > 0)
            .map(|o| o.save_after(self.core.shard.now_ms()));
        let expires = self.token_left();
        // A tick more: the session's clock is the coarse one (`Shard::now_ms`), which can
        // still read less than the deadline when a timer of exactly the difference fires.
        [mqtt, ws, save, expires]
            .into_iter()
            .flatten()
            .min()
            .map(|d| d + crate::shard::coarse_tick())
    }

    /// Decodes and handles every whole packet among `n` new bytes in the shard's scratch.
    async fn on_data(&mut self, n: usize) -> Result<(), MqttError> {
        self.core.shard.metrics.listeners[self.core.listener.index]
            .bytes_in
            .fetch_add(n as u64, Ordering::Relaxed);
        if self.ws.is_some() {
            let input = Input::take(&self.core.shard, &mut self.pending, n);
            return self.on_frames(input).await;
        }
        // Packets are decoded as slices of the shard's arena block (zero copy).
        let mut input = Input::take(&self.core.shard, &mut self.pending, n);
        let result = self.decode_all(&mut input).await;
        self.pending = input.into_tail();
        result
    }

    /// MQTT over WebSocket: unwraps the frames in `input`, then decodes the packets in the
    /// byte stream they carry. A WebSocket protocol error closes with its close code (the
    /// MQTT session is lost like a dropped connection).
    async fn on_frames(&mut self, mut input: Input) -> Result<(), MqttError> {
        let mut ws = self.ws.take().expect("on a WebSocket connection");
        let decoded = ws.decode(&mut input);
        self.pending = input.into_tail();
        let result = match decoded {
            Ok(d) => {
                let result = self.decode_all(ws.stream.buffer_mut()).await;
                ws.settle();
                if d.close_transport && self.closing.is_none() {
                    self.core
                        .session
                        .connection_lost(reason::UNSPECIFIED_ERROR, &mut self.effects);
                    self.execute().await;
                    self.closing = Some(0);
                }
                result
            }
            Err(e) => {
                debug!(error = %e, "WebSocket protocol error");
                self.core.shard.metrics.error(ErrorKind::Protocol);
                self.core
                    .session
                    .connection_lost(reason::MALFORMED_PACKET, &mut self.effects);
                self.execute().await;
                self.closing = Some(reason::MALFORMED_PACKET);
                Ok(())
            }
        };
        self.ws = Some(ws);
        result
    }

    /// Frames that arrived with the upgrade request.
    async fn on_input(&mut self, data: BytesMut) -> Result<(), String> {
        let input = Input::owned(data);
        self.on_frames(input).await.map_err(|e| e.to_string())
    }

    async fn decode_all(&mut self, data: &mut BytesMut) -> Result<(), MqttError> {
        loop {
            if self.closing.is_some() {
                return Ok(());
            }
            let packet = match self.core.codec.decode(data) {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(()),
                Err(e) => {
                    if let Some((version, reply)) = self.core.codec.error_reply(&e) {
                        let _ =
                            codecs::mqtt::encode_packet(&reply, version, u32::MAX, &mut self.out);
                    }
                    return Err(e);
                }
            };
            self.core.shard.metrics.listeners[self.core.listener.index]
                .frames_in
                .fetch_add(1, Ordering::Relaxed);
            let now = self.core.shard.now_ms();
            self.lend_effects();
            self.core.session.handle(now, packet, &mut self.effects);
            self.execute().await;
        }
    }

    /// Runs the session's effects in order (effects may add more).
    async fn execute(&mut self) {
        let mut i = 0;
        while i < self.effects.len() {
            let effect = std::mem::replace(&mut self.effects[i], Effect::Close { reason_code: 0 });
            i += 1;
            match effect {
                Effect::Send(packet) => self.send(&packet),
                Effect::Authenticate(connect) => Box::pin(self.connect(connect)).await,
                Effect::Publish(publish) => self.publish(publish, Origin::Client).await,
                Effect::PublishWill(will) => Box::pin(self.publish_will(will)).await,
                Effect::Subscribe(sub) => Box::pin(self.subscribe(sub)).await,
                Effect::Unsubscribe(unsub) => Box::pin(self.unsubscribe(unsub)).await,
                Effect::Auth(_) => self.session_close(reason::BAD_AUTHENTICATION_METHOD),
                Effect::Delivered { packet_id, .. } => self.delivered(packet_id),
                Effect::Close { reason_code } => self.closing = Some(reason_code),
            }
        }
        self.return_effects();
    }

    /// Borrows the shard's effects buffer for the packet about to be handled, so handling
    /// a packet allocates nothing.
    fn lend_effects(&mut self) {
        if self.effects.capacity() == 0 {
            std::mem::swap(
                &mut self.effects,
                &mut self.core.shard.spare_effects.borrow_mut(),
            );
        }
    }

    /// Hands the effects buffer back to the shard (keeping the larger of the two when
    /// another connection borrowed meanwhile): an idle connection holds no buffer.
    fn return_effects(&mut self) {
        let mut effects = std::mem::take(&mut self.effects);
        effects.clear();
        let mut spare = self.core.shard.spare_effects.borrow_mut();
        if effects.capacity() > spare.capacity() {
            *spare = effects;
        }
    }

    /// Ends the session from the server side (a DISCONNECT on MQTT 5).
    fn session_close(&mut self, reason_code: u8) {
        if self.core.codec.version() == Some(ProtocolVersion::V5) {
            let disconnect = codecs::mqtt::Disconnect {
                reason_code,
                ..Default::default()
            };
            self.send(&Packet::Disconnect(disconnect));
        }
        self.closing = Some(reason_code);
    }

    fn send(&mut self, packet: &Packet) {
        if let Err(e) = self.core.codec.encode(packet, &mut self.out) {
            debug!(error = %e, "reply not encodable");
        }
    }

    /// Writes what the session queued; on a WebSocket connection, as one binary frame, and
    /// followed by a close frame when the connection is ending.
    async fn flush(&mut self, stream: &mut Stream) -> io::Result<()> {
        let Some(ws) = &mut self.ws else {
            return driver::flush(
                &self.core.shard,
                self.core.listener.index,
                stream,
                &mut self.out,
            )
            .await;
        };
        let mut framed = BytesMut::new();
        if !self.out.is_empty() {
            ws.layer.binary(&self.out, &mut framed);
            self.out = BytesMut::new();
        }
        if let Some(reason_code) = self.closing {
            ws.layer.close(ws_close_code(reason_code), "");
        }
        if ws.layer.drain(&mut framed) && self.closing.is_none() {
            self.closing = Some(0);
        }
        driver::flush(
            &self.core.shard,
            self.core.listener.index,
            stream,
            &mut framed,
        )
        .await
    }
}

/// The WebSocket close code for ending an MQTT session with `reason_code`.
fn ws_close_code(reason_code: u8) -> u16 {
    use codecs::ws::close_code;
    match reason_code {
        0..=0x7F => close_code::NORMAL,
        reason::MALFORMED_PACKET | 0x82 => close_code::PROTOCOL_ERROR,
        reason::SERVER_SHUTTING_DOWN => close_code::GOING_AWAY,
        _ => close_code::POLICY_VIOLATION,
    }
}
