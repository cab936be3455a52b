//! One session client: CONNECT (and SUBSCRIBE to its own topic), then hold the connection,
//! acknowledging and counting deliveries; when the server goes away, reconnect after the
//! configured delay (and jitter) until a CONNACK comes back; on the `storm` command,
//! DISCONNECT and reconnect at once. Every transition is stamped (wall-clock ns) into the
//! connection's [`Record`], which the process reports at the end.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use codecs::mqtt::{
    Connect, ConnectProperties, Disconnect, MqttCodec, MqttString, Packet, ProtocolVersion, PubAck,
    QoS, Subscribe, Subscription, SubscriptionOptions, TopicFilter,
};
use codecs::{Decoder, Encoder};
use futures::future::{select, Either};
use futures::AsyncWriteExt;
use glommio::net::TcpStream;
use serde::{Deserialize, Serialize};

use super::{SessionArgs, Shared};
use crate::loadgen::{next_packet, read_some, start_tcp, wall_ns, Gate, CONNACK_TIMEOUT};

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 4096;
/// Pause between two failed reconnect attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// What happened to one connection (wall-clock nanoseconds; 0 = never).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Record {
    pub index: u64,
    /// First connect() → CONNACK (→ SUBACK), ns.
    pub first_connect_ns: u64,
    /// When the server's end went away (first time).
    pub lost_at: u64,
    /// When the first reconnect attempt after `lost_at` began (after the delay).
    pub retry_at: u64,
    /// When the CONNACK of the reconnect arrived.
    pub resumed_at: u64,
    /// Whether that CONNACK said session present.
    pub present: bool,
    /// Reconnect attempts that failed before the one that worked.
    pub failed_attempts: u32,
    /// Storm: DISCONNECT sent (start of the reconnect).
    pub storm_at: u64,
    /// Storm: CONNACK of the new connection.
    pub storm_connack_at: u64,
    pub storm_present: bool,
    /// PUBLISHes received.
    pub received: u32,
}

/// What a shard's connections share (single-threaded).
#[derive(Debug)]
pub struct ShardCtx {
    pub args: SessionArgs,
    pub shared: Arc<Shared>,
    pub storm: Gate,
    pub stop: Gate,
    pub records: RefCell<Vec<Record>>,
}

enum Ending {
    Stop,
    Storm,
    Lost,
}

/// A connection that completed its handshake.
struct Session {
    stream: TcpStream,
    codec: MqttCodec,
    rbuf: BytesMut,
    present: bool,
}

/// Runs connection `local` (number `args.first_index + local`) of this process.
pub async fn run(ctx: Rc<ShardCtx>, local: usize) {
    let shared = ctx.shared.clone();
    let index = ctx.args.first_index + local as u64;
    let began = Instant::now();
    let Some(mut session) = set_up(&ctx, index).await else {
        shared.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    record(&ctx, local, |r| {
        r.index = index;
        r.first_connect_ns = began.elapsed().as_nanos() as u64;
    });
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let mut stormed = false;
    loop {
        let storm = (!stormed).then_some(&ctx.storm);
        match serve(&ctx, local, &mut session, storm).await {
            Ending::Stop => return,
            Ending::Storm => {
                stormed = true;
                let mut out = BytesMut::new();
                let _ = session
                    .codec
                    .encode(&Packet::Disconnect(Disconnect::default()), &mut out);
                let _ = session.stream.write_all(&out).await;
                drop(session);
                record(&ctx, local, |r| r.storm_at = wall_ns());
                match reconnect(&ctx, index, local).await {
                    Some(s) => session = s,
                    None => return,
                }
                let now = wall_ns();
                record(&ctx, local, |r| {
                    r.storm_connack_at = now;
                    r.storm_present = session.present;
                });
                shared.stormed.fetch_add(1, Ordering::Relaxed);
            }
            Ending::Lost => {
                let lost = wall_ns();
                let first = ctx.records.borrow()[local].lost_at == 0;
                if first {
                    shared.lost.fetch_add(1, Ordering::Relaxed);
                    record(&ctx, local, |r| r.lost_at = lost);
                }
                drop(session);
                glommio::timer::sleep(delay(&ctx.args, index)).await;
                if first {
                    record(&ctx, local, |r| r.retry_at = wall_ns());
                }
                match reconnect(&ctx, index, local).await {
                    Some(s) => session = s,
                    None => return,
                }
                let now = wall_ns();
                record(&ctx, local, |r| {
                    r.resumed_at = now;
                    r.present = session.present;
                });
                if first {
                    shared.resumed.fetch_add(1, Ordering::Relaxed);
                    if !session.present {
                        shared.not_present.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

fn record(ctx: &ShardCtx, local: usize, f: impl FnOnce(&mut Record)) {
    f(&mut ctx.records.borrow_mut()[local]);
}

/// The reconnect delay of connection `index`: the base plus a jitter spread evenly (by a
/// hash of the index) over `0..=jitter`.
fn delay(args: &SessionArgs, index: u64) -> Duration {
    let spread = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    let jitter = if args.reconnect_jitter_ms == 0 {
        0
    } else {
        spread % (args.reconnect_jitter_ms + 1)
    };
    Duration::from_millis(args.reconnect_delay_ms + jitter)
}

/// The first CONNECT (and SUBSCRIBE), tried again after a failure until
/// `--setup-deadline`, with a pause that doubles from 1 s up to 8 s.
async fn set_up(ctx: &ShardCtx, index: u64) -> Option<Session> {
    let deadline = Instant::now() + Duration::from_secs_f64(ctx.args.setup_deadline);
    let mut pause = Duration::from_secs(1);
    loop {
        if let Ok(s) = handshake(&ctx.args, index, ctx.args.subscribe).await {
            return Some(s);
        }
        if ctx.stop.is_open() || Instant::now() + pause > deadline {
            return None;
        }
        ctx.shared.setup_retries.fetch_add(1, Ordering::Relaxed);
        glommio::timer::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(8));
    }
}

/// Reconnects (without subscribing again: the session must bring its subscription back),
/// retrying every [`RETRY_PAUSE`] until `--reconnect-deadline` or the stop command.
async fn reconnect(ctx: &ShardCtx, index: u64, local: usize) -> Option<Session> {
    let deadline = Instant::now() + Duration::from_secs_f64(ctx.args.reconnect_deadline);
    loop {
        if ctx.stop.is_open() {
            return None;
        }
        match handshake(&ctx.args, index, false).await {
            Ok(s) => return Some(s),
            Err(()) => {
                record(ctx, local, |r| r.failed_attempts += 1);
                if Instant::now() > deadline {
                    ctx.shared.gave_up.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                glommio::timer::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// Connects from the connection's source address, CONNECT → CONNACK and, if `subscribe`,
/// SUBSCRIBE to `{prefix}/{index}` → SUBACK, within [`CONNACK_TIMEOUT`].
async fn handshake(args: &SessionArgs, index: u64, subscribe: bool) -> Result<Session, ()> {
    let socket = start_tcp(args.addr, index).map_err(|_| ())?;
    let version = args.mqtt.protocol();
    let mut s = Session {
        stream: socket,
        codec: MqttCodec::with_version(version, MqttCodec::DEFAULT_MAX_PACKET_SIZE),
        rbuf: BytesMut::new(),
        present: false,
    };
    let persistent = !args.clean;
    let mut properties = ConnectProperties::default();
    if persistent && version == ProtocolVersion::V5 {
        properties.session_expiry_interval = Some(u32::MAX);
    }
    let connect = Connect {
        protocol: version,
        clean_start: !persistent,
        keep_alive: args.keepalive,
        client_id: MqttString::try_from(format!("{}{index}", args.prefix)).map_err(|_| ())?,
        will: None,
        username: None,
        password: None,
        properties,
    };
    let mut out = BytesMut::with_capacity(64);
    s.codec
        .encode(&Packet::Connect(Box::new(connect)), &mut out)
        .map_err(|_| ())?;
    let exchange = async {
        s.stream.write_all(&out).await.map_err(|_| ())?;
        match next_packet(&mut s.stream, &mut s.codec, &mut s.rbuf).await {
            Ok(Packet::ConnAck(ack)) if ack.code == 0 => s.present = ack.session_present,
            _ => return Err(()),
        }
        if !subscribe {
            return Ok(());
        }
        out.clear();
        s.codec
            .encode(&Packet::Subscribe(subscribe_to(args, index)), &mut out)
            .map_err(|_| ())?;
        s.stream.write_all(&out).await.map_err(|_| ())?;
        match next_packet(&mut s.stream, &mut s.codec, &mut s.rbuf).await {
            Ok(Packet::SubAck(ack)) if ack.reason_codes.iter().all(|&c| c < 0x80) => Ok(()),
            _ => Err(()),
        }
    };
    let outcome = {
        let exchange = std::pin::pin!(exchange);
        let timer = std::pin::pin!(glommio::timer::sleep(CONNACK_TIMEOUT));
        match select(exchange, timer).await {
            Either::Left((r, _)) => r,
            Either::Right(_) => Err(()),
        }
    };
    outcome?;
    if s.rbuf.is_empty() {
        s.rbuf = BytesMut::new();
    }
    Ok(s)
}

/// The session's one subscription: its own topic, at QoS 1.
fn subscribe_to(args: &SessionArgs, index: u64) -> Subscribe {
    let filter = MqttString::try_from(super::topic(&args.prefix, index))
        .ok()
        .and_then(|f| TopicFilter::new(f).ok())
        .expect("a valid topic filter");
    Subscribe {
        packet_id: 1,
        subscriptions: vec![Subscription {
            filter,
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..SubscriptionOptions::default()
            },
        }],
        properties: Default::default(),
    }
}

/// Holds the connection: counts and acknowledges PUBLISHes until the server goes away
/// (`Lost`), the storm gate opens (`Storm`) or the process stops (`Stop`).
async fn serve(ctx: &ShardCtx, local: usize, s: &mut Session, storm: Option<&Gate>) -> Ending {
    let mut stop = std::pin::pin!(ctx.stop.wait());
    let never = Gate::default();
    let mut storm = std::pin::pin!(storm.unwrap_or(&never).wait());
    let mut acks = BytesMut::new();
    loop {
        loop {
            match s.codec.decode(&mut s.rbuf) {
                Ok(Some(Packet::Publish(p))) => {
                    record(ctx, local, |r| r.received += 1);
                    ctx.shared.received.fetch_add(1, Ordering::Relaxed);
                    if p.qos == QoS::AtLeastOnce {
                        let _ = s
                            .codec
                            .encode(&Packet::PubAck(PubAck::new(p.packet_id)), &mut acks);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return Ending::Lost,
            }
        }
        if !acks.is_empty() {
            if s.stream.write_all(&acks).await.is_err() {
                return Ending::Lost;
            }
            acks.clear();
        }
        if s.rbuf.is_empty() {
            s.rbuf = BytesMut::new();
        }
        let read = std::pin::pin!(read_some(&mut s.stream, &mut s.rbuf, READ_CHUNK));
        let gates = select(stop.as_mut(), storm.as_mut());
        match select(gates, read).await {
            Either::Left((Either::Left(_), _)) => return Ending::Stop,
            Either::Left((Either::Right(_), _)) => return Ending::Storm,
            Either::Right((Ok(n), _)) if n > 0 => {}
            Either::Right(_) => return Ending::Lost,
        }
    }
}
