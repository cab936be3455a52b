//! WebSocket subscribers: after an upgrade to `/topics/{topic}/ws`, each record of the topic
//! is pushed as one message (docs/operations.md, "HTTP").
//!
//! With `format=json` (the default) a record is one text message, the JSON record of
//! [`write_json`], whose `position` a client passes back as `?position=` to resume right
//! after it (browsers cannot set headers on a WebSocket). With `format=value` a record is its
//! value alone, a text message when it is UTF-8 and a binary one otherwise (a null value is
//! an empty binary message): the cheapest form, without positions.
//!
//! The upgrade is answered only once the start position is known, so everything produced
//! after the client saw the `101` is delivered; a topic that does not exist is refused with
//! the JSON `404` instead. Messages from the client are ignored; pings are answered, and
//! `websocket.ping_interval_ms` pings a silent client. Records are fetched only as fast as
//! the client reads them ([`super::feed`]). On shutdown, or when Kafka fails, the server
//! closes (1001, 1011) after the last whole message.

use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;

use bytes::BytesMut;
use codecs::ws::{close_code, UpgradeRequest};
use futures_lite::AsyncWriteExt;
use kafka_wire::record::Record;
use std::future::Future;

use super::feed::Batch;
use super::subscribe::{write_json, Format, Subscribe, Subscriber, WRITE_CHUNK};
use crate::driver::{self, Input};
use crate::metrics::ErrorKind;
use crate::runtime;
use crate::transport::Stream;
use crate::ws::WsLayer;

enum Event {
    Read(io::Result<usize>),
    Batch(kafka_wire::Result<Batch>),
    Timer,
    Shutdown,
    /// The subscriber's token expired.
    Expired,
}

/// The session timer: when it fires, and the sleep until then.
type Timer = (Instant, Pin<Box<dyn Future<Output = ()>>>);

/// Answers the upgrade and pushes `request`'s records until the client closes, Kafka fails,
/// or shutdown. `frames` are bytes that arrived behind the upgrade request.
pub(super) async fn run(
    sub: Subscriber<'_>,
    stream: &mut Stream,
    request: Subscribe,
    upgrade: &UpgradeRequest,
    frames: BytesMut,
) -> Result<(), (ErrorKind, String)> {
    let Some(mut feed) = sub.open(stream, &request).await? else {
        return Ok(());
    };
    let mut out = BytesMut::new();
    let config = sub
        .listener
        .config
        .websocket
        .as_ref()
        .expect("upgrades are accepted only with [listeners.websocket]");
    upgrade.write_accept(&mut out);
    let mut layer = WsLayer::new(config, sub.listener.config.max_body_bytes);
    let mut pending = BytesMut::new();
    let mut failure = None;
    // The client's side is over (closed, or broke the protocol): flush and close.
    let mut done = decode(&mut layer, Input::owned(frames), &mut pending, &mut failure);
    // We started the close handshake: no more records, wait for the client's close.
    let mut stopping = false;
    let mut timer: Option<Timer> = None;
    let mut expiry = request
        .until
        .map(|at| Box::pin(runtime::sleep(at.saturating_duration_since(Instant::now()))));
    let mut json = BytesMut::new();
    let mut position = String::new();
    let shard = sub.shard;
    loop {
        done |= layer.drain(&mut out);
        sub.send(stream, &mut out).await?;
        if done {
            let _ = stream.close().await;
            return failure.map_or(Ok(()), Err);
        }
        let deadline = layer.deadline();
        if timer.as_ref().map(|t| t.0) != deadline {
            timer = deadline.map(|at| {
                let wait = at.saturating_duration_since(Instant::now());
                let sleep: Pin<Box<dyn Future<Output = ()>>> = Box::pin(runtime::sleep(wait));
                (at, sleep)
            });
        }
        let event = futures::future::poll_fn(|cx| {
            if !stopping {
                if shard.shutdown.is_set() {
                    return Poll::Ready(Event::Shutdown);
                }
                shard.shutdown.register(sub.id, cx);
            }
            if let Poll::Ready(r) = driver::poll_read(shard, stream, cx) {
                return Poll::Ready(Event::Read(r));
            }
            if !stopping {
                if let Poll::Ready(b) = feed.poll_batch(cx) {
                    return Poll::Ready(Event::Batch(b));
                }
                if expiry
                    .as_mut()
                    .is_some_and(|e| e.as_mut().poll(cx).is_ready())
                {
                    return Poll::Ready(Event::Expired);
                }
            }
            match &mut timer {
                Some((_, sleep)) => sleep.as_mut().poll(cx).map(|()| Event::Timer),
                None => Poll::Pending,
            }
        })
        .await;
        match event {
            Event::Shutdown => {
                stopping = true;
                layer.close(close_code::GOING_AWAY, "server shutting down");
            }
            Event::Expired => {
                tracing::debug!("the subscriber's token expired");
                stopping = true;
                layer.close(close_code::POLICY_VIOLATION, "token expired");
            }
            Event::Read(Ok(0)) => done = true,
            Event::Read(Ok(n)) => {
                sub.received(n);
                let input = Input::take(shard, &mut pending, n);
                done |= decode(&mut layer, input, &mut pending, &mut failure);
            }
            Event::Read(Err(e)) => return Err((ErrorKind::Io, e.to_string())),
            Event::Timer => {
                timer = None;
                layer.on_timeout();
            }
            Event::Batch(Err(e)) => {
                let msg = format!("reading topic {} failed: {e}", request.topic);
                failure = Some((ErrorKind::Kafka, msg));
                stopping = true;
                layer.close(close_code::INTERNAL_ERROR, "reading Kafka failed");
            }
            Event::Batch(Ok(batch)) => {
                let mut messages = 0;
                for record in &batch.records {
                    if !feed.pass(batch.partition, record) {
                        continue;
                    }
                    if request.format == Format::Json {
                        position.clear();
                        feed.position().write(&mut position);
                    }
                    let format = request.format;
                    push(
                        &mut layer,
                        &mut out,
                        &mut json,
                        record,
                        batch.partition,
                        &position,
                        format,
                    );
                    messages += 1;
                    if out.len() >= WRITE_CHUNK {
                        sub.send(stream, &mut out).await?;
                        sub.delivered(std::mem::take(&mut messages));
                    }
                }
                feed.done(&batch);
                sub.send(stream, &mut out).await?;
                sub.delivered(messages);
            }
        }
    }
}

/// Decodes the client's frames (control frames go to the session, data is dropped) and
/// keeps an incomplete frame in `pending`; true when the transport is to close.
fn decode(
    layer: &mut WsLayer,
    mut input: Input,
    pending: &mut BytesMut,
    failure: &mut Option<(ErrorKind, String)>,
) -> bool {
    let decoded = layer.decode(&mut input, |_data| Ok(()));
    *pending = input.into_tail();
    match decoded {
        Ok(d) => d.close_transport,
        Err(e) => {
            // The session queued the close frame with the error's code.
            *failure = Some((ErrorKind::Protocol, e.to_string()));
            true
        }
    }
}

/// Appends `record` as one message.
fn push(
    layer: &mut WsLayer,
    out: &mut BytesMut,
    json: &mut BytesMut,
    record: &Record,
    partition: i32,
    position: &str,
    format: Format,
) {
    match (format, record.value.as_deref()) {
        (Format::Json, _) => {
            json.clear();
            write_json(json, record, partition, position);
            layer.text(json, out);
        }
        (Format::Value, None) => layer.binary(&[], out),
        (Format::Value, Some(v)) if std::str::from_utf8(v).is_ok() => layer.text(v, out),
        (Format::Value, Some(v)) => layer.binary(v, out),
    }
}
