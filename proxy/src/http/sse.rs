//! Server-Sent Events: `GET /topics/{topic}/events` streams the topic's records as events
//! whose `id` is the stream position after the record (docs/operations.md, "HTTP").
//!
//! The stream opens with an id-only block carrying the start position, so that a browser
//! that reconnects before any event arrived resumes from there rather than from a new
//! "latest". Each record is then one event: `data` is the value as text; a value that is not
//! UTF-8 comes base64-encoded with `event: binary`, a null value as `event: tombstone` with
//! empty data; with `format=json` the data is the JSON record of [`write_json`]. While
//! nothing is sent for [`KEEPALIVE`], a comment line (or, when a key filter skipped records
//! since the last event, an id-only block with the newer position) keeps intermediaries from
//! closing the stream.
//!
//! Records are fetched only as fast as the client reads them ([`super::feed`]). On shutdown,
//! and when the subscriber's token expires, the stream ends after the last whole event; the
//! client reconnects with its last id (and a fresh token).

use std::future::Future as _;
use std::io;
use std::task::Poll;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::BytesMut;
use codecs::http::{SseEncoder, SseEvent};
use codecs::Encoder;
use futures_lite::AsyncWriteExt;
use kafka_wire::record::Record;

use super::feed::Batch;
use super::subscribe::{write_json, Format, Subscribe, Subscriber, WRITE_CHUNK};
use crate::driver;
use crate::metrics::ErrorKind;
use crate::runtime;
use crate::transport::Stream;

/// How long a stream may stay silent before a keep-alive is sent.
const KEEPALIVE: Duration = Duration::from_secs(15);

enum Event {
    Read(io::Result<usize>),
    Batch(kafka_wire::Result<Batch>),
    Tick,
    Shutdown,
    /// The subscriber's token expired.
    Expired,
}

/// Streams `request`'s records to the client until it leaves, Kafka fails, or shutdown.
pub(super) async fn run(
    sub: Subscriber<'_>,
    stream: &mut Stream,
    request: Subscribe,
) -> Result<(), (ErrorKind, String)> {
    let Some(mut feed) = sub.open(stream, &request).await? else {
        return Ok(());
    };
    let mut out = BytesMut::new();
    SseEncoder::write_stream_head(&mut out);
    let mut id = feed.position().text();
    write_id(&mut out, &id);
    sub.send(stream, &mut out).await?;
    // The position the client saw last, and when it last got anything.
    let mut sent = id.clone();
    let mut last_write = Instant::now();
    let mut tick = Box::pin(runtime::sleep(KEEPALIVE));
    let mut expiry = request
        .until
        .map(|at| Box::pin(runtime::sleep(at.saturating_duration_since(Instant::now()))));
    let mut data = BytesMut::new();
    let shard = sub.shard;
    loop {
        let event = futures::future::poll_fn(|cx| {
            if shard.shutdown.is_set() {
                return Poll::Ready(Event::Shutdown);
            }
            shard.shutdown.register(sub.id, cx);
            if let Poll::Ready(r) = driver::poll_read(shard, stream, cx) {
                return Poll::Ready(Event::Read(r));
            }
            if let Poll::Ready(b) = feed.poll_batch(cx) {
                return Poll::Ready(Event::Batch(b));
            }
            if expiry
                .as_mut()
                .is_some_and(|e| e.as_mut().poll(cx).is_ready())
            {
                return Poll::Ready(Event::Expired);
            }
            tick.as_mut().poll(cx).map(|()| Event::Tick)
        })
        .await;
        match event {
            Event::Shutdown | Event::Read(Ok(0)) => break,
            // The stream ends; a reconnecting EventSource needs a fresh token.
            Event::Expired => {
                tracing::debug!("the subscriber's token expired");
                break;
            }
            // A client has nothing to say on an event stream; what it sends is dropped.
            Event::Read(Ok(n)) => sub.received(n),
            Event::Read(Err(e)) => return Err((ErrorKind::Io, e.to_string())),
            Event::Batch(Err(e)) => {
                let msg = format!("reading topic {} failed: {e}", request.topic);
                return Err((ErrorKind::Kafka, msg));
            }
            Event::Batch(Ok(batch)) => {
                let (mut events, mut any) = (0, false);
                for record in &batch.records {
                    if !feed.pass(batch.partition, record) {
                        continue;
                    }
                    id.clear();
                    feed.position().write(&mut id);
                    encode(
                        &mut out,
                        &mut data,
                        record,
                        batch.partition,
                        &id,
                        request.format,
                    );
                    (events, any) = (events + 1, true);
                    if out.len() >= WRITE_CHUNK {
                        sub.send(stream, &mut out).await?;
                        sub.delivered(std::mem::take(&mut events));
                    }
                }
                feed.done(&batch);
                if any {
                    sub.send(stream, &mut out).await?;
                    sub.delivered(events);
                    sent.clone_from(&id);
                    last_write = Instant::now();
                }
            }
            Event::Tick => {
                let quiet = last_write.elapsed();
                if quiet < KEEPALIVE {
                    tick = Box::pin(runtime::sleep(KEEPALIVE - quiet));
                    continue;
                }
                id.clear();
                feed.position().write(&mut id);
                if id != sent {
                    write_id(&mut out, &id);
                    sent.clone_from(&id);
                } else {
                    SseEncoder::write_keepalive(&mut out);
                }
                sub.send(stream, &mut out).await?;
                last_write = Instant::now();
                tick = Box::pin(runtime::sleep(KEEPALIVE));
            }
        }
    }
    sub.send(stream, &mut out).await?;
    let _ = stream.close().await;
    Ok(())
}

/// An id-only block: browsers take the id as the last event id without dispatching an event.
fn write_id(out: &mut BytesMut, id: &str) {
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Appends `record` as one event with `id`; `scratch` holds data that is not the value as is.
fn encode(
    out: &mut BytesMut,
    scratch: &mut BytesMut,
    record: &Record,
    partition: i32,
    id: &str,
    format: Format,
) {
    scratch.clear();
    let (event, data): (Option<&str>, &[u8]) = match (format, record.value.as_deref()) {
        (Format::Json, _) => {
            write_json(scratch, record, partition, id);
            (None, scratch)
        }
        (Format::Value, None) => (Some("tombstone"), b""),
        (Format::Value, Some(v)) if std::str::from_utf8(v).is_ok() => (None, v),
        (Format::Value, Some(v)) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(v);
            scratch.extend_from_slice(encoded.as_bytes());
            (Some("binary"), scratch)
        }
    };
    let event = SseEvent {
        id: Some(id),
        event,
        data,
        retry: None,
    };
    // Cannot fail: the id is digits, ':' and ',', the event names are fixed, the data UTF-8.
    let _ = SseEncoder.encode(&event, out);
}

#[cfg(test)]
mod tests {
    use kafka_wire::record::{decode_batches, BatchBuilder, Compression, ProducerFields};

    use super::*;

    fn record(value: Option<&[u8]>) -> Record {
        let mut b = BatchBuilder::new(Compression::None, 1 << 20);
        b.try_push(7, Some(b"k"), value, &[]).unwrap();
        let batch = decode_batches(b.finish(ProducerFields::NONE).unwrap())
            .next()
            .unwrap()
            .unwrap();
        batch.records().next().unwrap().unwrap()
    }

    fn event(value: Option<&[u8]>, format: Format) -> String {
        let mut out = BytesMut::new();
        encode(
            &mut out,
            &mut BytesMut::new(),
            &record(value),
            1,
            "0:3,1:1",
            format,
        );
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn values_are_text_base64_or_tombstones() {
        assert_eq!(
            event(Some(b"two\nlines"), Format::Value),
            "id: 0:3,1:1\ndata: two\ndata: lines\n\n"
        );
        assert_eq!(
            event(Some(&[0xff, 0xfe]), Format::Value),
            "id: 0:3,1:1\nevent: binary\ndata: //4=\n\n"
        );
        assert_eq!(
            event(None, Format::Value),
            "id: 0:3,1:1\nevent: tombstone\ndata: \n\n"
        );
        assert_eq!(
            event(Some(b"v"), Format::Json),
            "id: 0:3,1:1\ndata: {\"position\":\"0:3,1:1\",\"partition\":1,\"offset\":0,\"timestamp\":7,\"key\":\"k\",\"value\":\"v\",\"headers\":{}}\n\n"
        );
    }

    #[test]
    fn id_only_blocks_carry_the_position() {
        let mut out = BytesMut::new();
        write_id(&mut out, "0:1,1:2");
        assert_eq!(&out[..], b"id: 0:1,1:2\n\n");
    }
}
