//! One load-generator connection: connect from a chosen source address, CONNECT/CONNACK
//! (and SUBSCRIBE/SUBACK for subscribers), then hold idle, publish on a schedule and time
//! each PUBACK, or receive deliveries (`subscriber.rs`). A framed connection skips the
//! handshake and publishes length-prefixed records, timing their in-order acknowledgements.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use codecs::mqtt::{
    Connect, ConnectProperties, MqttCodec, MqttString, Packet, ProtocolVersion, Publish, QoS,
    Subscribe,
};
use codecs::{Decoder, Encoder};
use futures::future::{select, Either};
use futures::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use hdrhistogram::Histogram;
use socket2::{Domain, Protocol, Socket, Type};

use super::gate::Gate;
use super::records::{self, RecordClient};
use super::report::Stats;
use super::subscriber::{self, Stamp, Tally};
use super::{
    histogram, source_ip, LoadgenArgs, Mode, Rate, Shared, Wire, CONNACK_TIMEOUT, DRAIN_TIMEOUT,
};

/// Before the n-th attempt again of a failed handshake: n times this.
pub(crate) const RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// What every connection of a shard shares (single-threaded).
#[derive(Debug)]
pub struct ShardCtx {
    pub stats: RefCell<Stats>,
    /// PUBLISH → PUBACK, nanoseconds (from the scheduled send time when open loop).
    pub latency: RefCell<Histogram<u64>>,
    /// connect() → CONNACK (→ SUBACK for subscribers), nanoseconds.
    pub connack: RefCell<Histogram<u64>>,
    /// Subscribers: send time stamped in the payload → receipt, nanoseconds.
    pub delivery: RefCell<Histogram<u64>>,
    pub(super) shared: Arc<Shared>,
    addr: SocketAddr,
    wire: Wire,
    /// `--wire ws`: the upgrade's path; `--wire http`: the requests'.
    path: String,
    version: ProtocolVersion,
    keepalive: u16,
    /// `--connect-retries`.
    connect_retries: u32,
    mode: Mode,
    qos: QoS,
    size: usize,
    inflight: usize,
    /// Time between two PUBLISHes of one connection; None = closed loop.
    period: Option<Duration>,
    duration: Duration,
    connections: u64,
    topic_prefix: String,
    /// Subscribers: the SUBSCRIBE they send.
    subscribe: Option<Subscribe>,
}

impl ShardCtx {
    pub fn new(args: &LoadgenArgs, shared: Arc<Shared>) -> ShardCtx {
        ShardCtx {
            stats: RefCell::default(),
            latency: RefCell::new(histogram()),
            connack: RefCell::new(histogram()),
            delivery: RefCell::new(histogram()),
            shared,
            addr: args.addr,
            wire: args.wire,
            path: args.path.clone(),
            version: args.mqtt.protocol(),
            keepalive: args.keepalive,
            connect_retries: args.connect_retries,
            mode: args.mode,
            qos: if args.qos == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            },
            size: args.size,
            inflight: args.inflight.clamp(1, 65_000),
            period: match args.rate {
                Rate::PerSecond(r) => Some(Duration::from_secs_f64(args.connections as f64 / r)),
                Rate::Max => None,
            },
            duration: Duration::from_secs_f64(args.duration),
            connections: args.connections,
            topic_prefix: "bench".into(),
            subscribe: (args.mode == Mode::Subscribe).then(|| subscriber::subscribe_packet(args)),
        }
    }

    pub(super) fn count(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.stats.borrow_mut());
    }

    /// A message sent (or scheduled) at `from` was acknowledged at `now`.
    fn acked(&self, from: Instant, now: Instant) {
        let _ = self
            .latency
            .borrow_mut()
            .record(now.saturating_duration_since(from).as_nanos() as u64);
        self.count(|s| s.acked += 1);
        self.shared.acked.fetch_add(1, Ordering::Relaxed);
    }
}

/// One connection's state.
#[derive(Debug)]
pub struct Conn {
    ctx: Rc<ShardCtx>,
    /// Process-wide number (client id, source address).
    index: u64,
    /// Number within this process (phase of its schedule).
    local: u64,
    go: Gate,
    stop: Gate,
}

pub enum Failure {
    Connect,
    Closed,
    Timeout,
    Refused,
    /// The run stopped before the handshake finished.
    Abandoned,
}

impl Conn {
    pub fn new(ctx: Rc<ShardCtx>, index: u64, local: u64, go: Gate, stop: Gate) -> Conn {
        Conn {
            ctx,
            index,
            local,
            go,
            stop,
        }
    }

    pub async fn run(self) {
        let ctx = self.ctx.clone();
        let shared = ctx.shared.clone();
        let began = Instant::now();
        let mut codec = MqttCodec::with_version(ctx.version, MqttCodec::DEFAULT_MAX_PACKET_SIZE);
        let mut rbuf = BytesMut::new();
        let mut attempt = 0;
        let opened = loop {
            match self.open(&mut codec, &mut rbuf).await {
                Err(Failure::Connect | Failure::Closed | Failure::Timeout)
                    if attempt < ctx.connect_retries && !self.stop.is_open() =>
                {
                    attempt += 1;
                    shared.retries.fetch_add(1, Ordering::Relaxed);
                    codec =
                        MqttCodec::with_version(ctx.version, MqttCodec::DEFAULT_MAX_PACKET_SIZE);
                    rbuf = BytesMut::new();
                    let backoff = std::pin::pin!(glommio::timer::sleep(RETRY_BACKOFF * attempt));
                    let stopped = std::pin::pin!(self.stop.wait());
                    select(backoff, stopped).await;
                }
                other => break other,
            }
        };
        let mut stream = match opened {
            Ok(s) => s,
            Err(f) => {
                ctx.count(|s| match f {
                    Failure::Connect => s.connect_errors += 1,
                    Failure::Closed => s.closed_before_connack += 1,
                    Failure::Timeout => s.connack_timeouts += 1,
                    Failure::Refused => s.refused += 1,
                    Failure::Abandoned => s.abandoned += 1,
                });
                shared.failed.fetch_add(1, Ordering::Relaxed);
                shared.finished.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if matches!(ctx.wire, Wire::Mqtt | Wire::Ws) {
            let _ = ctx
                .connack
                .borrow_mut()
                .record(began.elapsed().as_nanos() as u64);
        }
        ctx.count(|s| s.connected += 1);
        shared.connected.fetch_add(1, Ordering::Relaxed);

        let mut alive = true;
        if ctx.mode == Mode::Publish {
            self.go.wait().await;
            if !self.stop.is_open() {
                // Boxed so that idle connections' tasks are not sized for publishing.
                alive = Box::pin(self.publish(&mut stream, &mut codec, &mut rbuf)).await;
            }
        }
        if ctx.mode == Mode::Subscribe {
            let mut tally = Tally::default();
            alive = Box::pin(subscriber::receive(
                &ctx,
                &self.stop,
                &mut stream,
                &mut codec,
                &mut rbuf,
                &mut tally,
            ))
            .await;
            // What was sent is known only at the end, also for a subscriber dropped early.
            self.stop.wait().await;
            let expected = shared.expected.lock().expect("lock").clone();
            tally.count_into(&ctx, expected.as_deref());
        }
        shared.finished.fetch_add(1, Ordering::Relaxed);
        if alive && ctx.mode != Mode::Subscribe && !self.hold(&mut stream).await {
            alive = false;
        }
        if !alive {
            ctx.count(|s| s.dropped += 1);
        }
        drop(stream);
    }

    /// Connects from this connection's source address and completes CONNECT/CONNACK.
    async fn open(&self, codec: &mut MqttCodec, rbuf: &mut BytesMut) -> Result<TcpStream, Failure> {
        let ctx = &self.ctx;
        let mut stream = start_tcp(ctx.addr, self.index).map_err(|_| Failure::Connect)?;
        match ctx.wire {
            // No handshake: the first write waits for the TCP connection.
            Wire::Framed | Wire::Http => return Ok(stream),
            Wire::Ws => {
                let outcome = {
                    let upgrade = std::pin::pin!(records::upgrade(&mut stream, rbuf, &ctx.path));
                    let timer = std::pin::pin!(glommio::timer::sleep(CONNACK_TIMEOUT));
                    match select(upgrade, timer).await {
                        Either::Left((result, _)) => result,
                        Either::Right(_) => Err(Failure::Timeout),
                    }
                };
                return outcome.map(|()| stream);
            }
            Wire::Mqtt => {}
        }
        let connect = Connect {
            protocol: ctx.version,
            clean_start: true,
            keep_alive: ctx.keepalive,
            client_id: MqttString::try_from(format!("lg{}", self.index))
                .expect("a valid client id"),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        };
        let mut out = BytesMut::with_capacity(64);
        codec
            .encode(&Packet::Connect(Box::new(connect)), &mut out)
            .expect("CONNECT encodes");
        let handshake = async {
            // The first write waits for the non-blocking connect to complete.
            stream.write_all(&out).await.map_err(|_| Failure::Closed)?;
            match next_packet(&mut stream, codec, rbuf).await? {
                Packet::ConnAck(ack) if ack.code == 0 => {}
                Packet::ConnAck(_) => return Err(Failure::Refused),
                _ => return Err(Failure::Closed),
            }
            let Some(subscribe) = &ctx.subscribe else {
                return Ok(());
            };
            out.clear();
            codec
                .encode(&Packet::Subscribe(subscribe.clone()), &mut out)
                .expect("SUBSCRIBE encodes");
            stream.write_all(&out).await.map_err(|_| Failure::Closed)?;
            match next_packet(&mut stream, codec, rbuf).await? {
                Packet::SubAck(ack) if ack.reason_codes.iter().all(|&c| c < 0x80) => Ok(()),
                Packet::SubAck(_) => Err(Failure::Refused),
                _ => Err(Failure::Closed),
            }
        };
        let outcome = {
            let handshake = std::pin::pin!(handshake);
            let timer = std::pin::pin!(glommio::timer::sleep(CONNACK_TIMEOUT));
            // A run that stops (its hold ended, or it was interrupted) does not wait for
            // handshakes still in progress: on an overloaded machine those can take the
            // whole CONNACK timeout, and a stopping load generator must close promptly.
            let stopped = std::pin::pin!(self.stop.wait());
            match select(handshake, select(timer, stopped)).await {
                Either::Left((result, _)) => result,
                Either::Right((Either::Left(_), _)) => Err(Failure::Timeout),
                Either::Right((Either::Right(_), _)) => Err(Failure::Abandoned),
            }
        };
        outcome?;
        // Idle connections keep no read buffer.
        if rbuf.is_empty() {
            *rbuf = BytesMut::new();
        }
        Ok(stream)
    }

    /// Holds the connection until the process stops; false if the server closed it.
    /// With a keepalive, sends PINGREQ every half keepalive.
    async fn hold(&self, stream: &mut TcpStream) -> bool {
        let stop = std::pin::pin!(self.stop.wait());
        let mut stop = stop;
        let ping = {
            let mut b = BytesMut::new();
            codecs::mqtt::encode_packet(&Packet::PingReq, self.ctx.version, u32::MAX, &mut b)
                .expect("PINGREQ encodes");
            b
        };
        let mut buf = [0u8; 64];
        loop {
            let outcome = {
                let read = std::pin::pin!(stream.read(&mut buf));
                let waited = select(stop.as_mut(), read);
                if self.ctx.keepalive == 0 {
                    match waited.await {
                        Either::Left(_) => return true,
                        Either::Right((r, _)) => Some(r),
                    }
                } else {
                    let every = Duration::from_millis(u64::from(self.ctx.keepalive) * 500);
                    let timer = std::pin::pin!(glommio::timer::sleep(every));
                    match select(waited, timer).await {
                        Either::Left((Either::Left(_), _)) => return true,
                        Either::Left((Either::Right((r, _)), _)) => Some(r),
                        Either::Right(_) => None,
                    }
                }
            };
            match outcome {
                // A PINGRESP; anything else (DISCONNECT) ends with the read of 0 that follows.
                Some(Ok(n)) if n > 0 => {}
                Some(_) => return false,
                None => {
                    if stream.write_all(&ping).await.is_err() {
                        return false;
                    }
                }
            }
        }
    }

    /// Publishes on the schedule; false if the connection broke.
    async fn publish(
        &self,
        stream: &mut TcpStream,
        codec: &mut MqttCodec,
        rbuf: &mut BytesMut,
    ) -> bool {
        let ctx = &self.ctx;
        let start = Instant::now();
        let wall_start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // Spread the connections' schedules evenly over one period.
        let mut next = match ctx.period {
            Some(p) => start + p.mul_f64(self.local as f64 / ctx.connections as f64),
            None => start,
        };
        let end = start + ctx.duration;
        let topic = MqttString::try_from(format!("{}/{}", ctx.topic_prefix, self.index))
            .expect("a valid topic");
        let mut payload = vec![b'x'; ctx.size];
        // Framed and WebSocket: how records go out and their answers come back.
        let mut records = RecordClient::new(ctx.wire, self.index, &ctx.path);
        let key = Bytes::copy_from_slice(topic.as_str().as_bytes());
        let mut out = BytesMut::with_capacity(ctx.size * 4 + 64);
        // (packet id, time the latency is measured from)
        let mut inflight: VecDeque<(u16, Instant)> = VecDeque::with_capacity(ctx.inflight);
        let mut packet_id: u16 = 0;
        let mut sent: u64 = 0;
        let mut last_event = start;
        let mut broken = false;
        loop {
            let now = Instant::now();
            // Send everything due (catching up after a stall: each keeps its own
            // scheduled time, so the stall counts in the latency).
            while next < end && next <= now && inflight.len() < ctx.inflight {
                // This connection's messages are one stream, in order in one partition (its
                // topic is the key): subscribers can check it complete.
                Stamp {
                    sent_ns: (wall_start + (next - start)).as_nanos() as u64,
                    stream: self.index as u32,
                    seq: sent,
                }
                .write(&mut payload);
                sent += 1;
                let qos = ctx.qos;
                let id = if qos == QoS::AtMostOnce {
                    0
                } else {
                    packet_id = packet_id.checked_add(1).unwrap_or(1);
                    packet_id
                };
                match &mut records {
                    None => {
                        let publish = Publish {
                            qos,
                            topic: topic.clone(),
                            packet_id: id,
                            payload: Bytes::copy_from_slice(&payload),
                            ..Publish::default()
                        };
                        codec
                            .encode(&Packet::Publish(publish), &mut out)
                            .expect("PUBLISH encodes");
                    }
                    Some(records) => records.encode(&key, &payload, &mut out),
                }
                let measured_from = if ctx.period.is_some() { next } else { now };
                if qos != QoS::AtMostOnce {
                    inflight.push_back((id, measured_from));
                }
                ctx.count(|s| s.sent += 1);
                ctx.shared.sent.fetch_add(1, Ordering::Relaxed);
                last_event = now;
                next = match ctx.period {
                    Some(p) => next + p,
                    None => now,
                };
            }
            if !out.is_empty() {
                if stream.write_all(&out).await.is_err() {
                    broken = true;
                    break;
                }
                out.clear();
            }
            let now = Instant::now();
            if next >= end && inflight.is_empty() {
                break;
            }
            if next >= end && now > end + DRAIN_TIMEOUT {
                break;
            }
            // Wait for PUBACKs, or for the next scheduled send.
            let wake_at = if next < end && inflight.len() < ctx.inflight {
                next
            } else {
                end.max(now) + DRAIN_TIMEOUT
            };
            let woke = {
                let read = std::pin::pin!(read_some(stream, rbuf, READ_CHUNK));
                let wait = wake_at.saturating_duration_since(now);
                let timer = std::pin::pin!(glommio::timer::sleep(wait));
                match select(read, timer).await {
                    Either::Left((Ok(n), _)) => Some(n > 0),
                    Either::Left((Err(_), _)) => Some(false),
                    Either::Right(_) => None,
                }
            };
            match woke {
                Some(true) => {}
                Some(false) => {
                    broken = true;
                    break;
                }
                None => continue,
            }
            let now = Instant::now();
            loop {
                match take_ack(rbuf, codec, records.as_mut(), &mut inflight) {
                    Ok(Some(Some(from))) => {
                        ctx.acked(from, now);
                        last_event = now;
                    }
                    Ok(Some(None)) => {}
                    Ok(None) => break,
                    Err(()) => {
                        broken = true;
                        break;
                    }
                }
            }
            if broken {
                break;
            }
        }
        let unacked = inflight.len() as u64;
        let span = (last_event - start).as_secs_f64();
        ctx.count(|s| {
            s.unacked += unacked;
            s.publish_seconds = s.publish_seconds.max(span);
            s.sent_by_connection.push((self.index, sent));
        });
        !broken
    }
}

/// Decodes the next answer in `rbuf`: `Some(Some(from))` for an acknowledged message
/// (taken out of `inflight`; `from` is when its latency started), `Some(None)` for an
/// answer that acknowledges nothing here (a PINGRESP), `None` when more bytes are needed,
/// and an error when the connection cannot go on (a refused record, anything else).
/// Records' answers come in order, PUBACKs by packet id.
fn take_ack(
    rbuf: &mut BytesMut,
    codec: &mut MqttCodec,
    records: Option<&mut RecordClient>,
    inflight: &mut VecDeque<(u16, Instant)>,
) -> Result<Option<Option<Instant>>, ()> {
    if let Some(records) = records {
        return match records.next_answer(rbuf)? {
            Some(()) => {
                let (_, from) = inflight.pop_front().ok_or(())?;
                Ok(Some(Some(from)))
            }
            None => Ok(None),
        };
    }
    match codec.decode(rbuf) {
        Ok(Some(Packet::PubAck(ack))) => {
            let pos = inflight.iter().position(|(id, _)| *id == ack.packet_id);
            Ok(Some(
                pos.and_then(|p| inflight.remove(p)).map(|(_, from)| from),
            ))
        }
        Ok(Some(Packet::PingResp)) => Ok(Some(None)),
        Ok(Some(_)) | Err(_) => Err(()),
        Ok(None) => Ok(None),
    }
}

/// Reads the next whole packet (for the handshakes).
pub async fn next_packet(
    stream: &mut TcpStream,
    codec: &mut MqttCodec,
    rbuf: &mut BytesMut,
) -> Result<Packet, Failure> {
    loop {
        match codec.decode(rbuf) {
            Ok(Some(packet)) => return Ok(packet),
            Err(_) => return Err(Failure::Closed),
            Ok(None) => {}
        }
        if read_some(stream, rbuf, READ_CHUNK).await.unwrap_or(0) == 0 {
            return Err(Failure::Closed);
        }
    }
}

/// Bytes asked of the kernel per read by publishers and handshakes.
const READ_CHUNK: usize = 4096;

/// Reads what the socket has (up to `chunk` bytes) onto the end of `buf`.
/// Cancellation-safe: `buf` only ever holds bytes that were read, whenever the future is
/// dropped.
pub fn read_some<'a>(
    stream: &'a mut TcpStream,
    buf: &'a mut BytesMut,
    chunk: usize,
) -> impl std::future::Future<Output = io::Result<usize>> + 'a {
    futures::future::poll_fn(move |cx| {
        let len = buf.len();
        buf.resize(len + chunk, 0);
        let polled = std::pin::Pin::new(&mut *stream).poll_read(cx, &mut buf[len..]);
        let n = match &polled {
            std::task::Poll::Ready(Ok(n)) => *n,
            _ => 0,
        };
        buf.truncate(len + n);
        polled
    })
}

/// A TCP stream from connection `index`'s source address, connecting to `addr` (the first
/// write on it waits for the connection).
pub fn start_tcp(addr: SocketAddr, index: u64) -> io::Result<TcpStream> {
    let socket = start_connect(addr, index)?;
    // SAFETY: `into_raw_fd` hands over a connecting TCP socket that nothing else owns.
    Ok(unsafe { TcpStream::from_raw_fd(socket.into_raw_fd()) })
}

/// A non-blocking TCP socket bound to connection `index`'s source address and connecting
/// to `addr` (glommio's first write on it waits for the connection).
fn start_connect(addr: SocketAddr, index: u64) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    socket.bind(&SocketAddr::new(source_ip(index).into(), 0).into())?;
    match socket.connect(&addr.into()) {
        Ok(()) => Ok(socket),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(socket),
        Err(e) => Err(e),
    }
}
