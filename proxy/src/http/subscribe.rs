//! HTTP subscribers: what `GET /topics/{topic}/events` (Server-Sent Events, [`super::sse`])
//! and WebSocket upgrades to `/topics/{topic}/ws` ([`super::socket_subscriber`]) ask for, and
//! the JSON form of a record they both send.
//!
//! The query says where to start and what to send: `from=latest` (the default) or
//! `from=earliest`, `position=0:15,1:22` to resume (an SSE `Last-Event-ID` header wins over
//! both, as that is how browsers resume), `key=...` (repeatable) to deliver only records with
//! one of these keys, `format=value` or `format=json`, and `access_token` (checked by
//! [`super::access`]). Unknown parameters are refused, so a typo does not silently change
//! what is delivered.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::BytesMut;
use codecs::http::{write_json_string, Request, Response, ResponseEncoder};
use codecs::Encoder;
use futures::future::{select, Either};
use futures_lite::AsyncWriteExt;
use kafka_wire::record::Record;
use tracing::debug;

use super::feed::{Feed, OpenError};
use super::position::PositionText;
use super::{message_for, retry_after, status_for, HttpListener};
use crate::driver;
use crate::metrics::ErrorKind;
use crate::runtime;
use crate::shard::Shard;
use crate::transport::Stream;

/// Subscribe endpoints are `{PATH_PREFIX}{topic}/{events|ws}`.
const PATH_PREFIX: &str = "/topics/";
/// How long a write may still take once shutdown began.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Bytes of encoded records a subscriber collects before writing them out.
pub(super) const WRITE_CHUNK: usize = 64 * 1024;

/// Which subscribe endpoint a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// `/topics/{topic}/events`: Server-Sent Events.
    Events,
    /// `/topics/{topic}/ws`: a WebSocket subscriber.
    Socket,
}

/// The endpoint and topic of a subscribe path, `None` for any other path.
pub(super) fn endpoint(path: &str) -> Option<(Endpoint, &str)> {
    let (topic, leaf) = path.strip_prefix(PATH_PREFIX)?.split_once('/')?;
    match leaf {
        "events" => Some((Endpoint::Events, topic)),
        "ws" => Some((Endpoint::Socket, topic)),
        _ => None,
    }
}

/// Where a subscriber starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Start {
    /// Each partition's end: only what is produced from now on.
    Latest,
    /// Each partition's log start.
    Earliest,
    /// A position a previous stream gave out.
    At(PositionText),
}

/// How records are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// The value alone (SSE: as the event's data; WebSocket: as a text or binary message).
    Value,
    /// The record as a JSON object ([`write_json`]).
    Json,
}

/// A checked subscribe request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Subscribe {
    pub topic: String,
    pub start: Start,
    /// Deliver only records with one of these keys; empty: every record.
    pub keys: Vec<Vec<u8>>,
    pub format: Format,
    /// When the subscriber's token expires, ending the stream.
    pub until: Option<Instant>,
}

/// A request refused before anything was streamed: the status and a sentence.
pub(super) type Refusal = (u16, String);

impl Subscribe {
    /// Reads the subscribe request `req` to `topic` on `endpoint` (from [`endpoint`]).
    pub(super) fn from_request(
        req: &Request,
        endpoint: Endpoint,
        topic: &str,
        listener: &HttpListener,
    ) -> Result<Subscribe, Refusal> {
        if !is_topic_name(topic) {
            return Err((400, format!("{topic:?} is not a valid Kafka topic name.")));
        }
        if !listener.topics.allows(topic) {
            return Err((
                403,
                format!("Topic {topic} may not be read on this listener."),
            ));
        }
        if req.method() != "GET" {
            let msg = format!("Subscribers use GET, not {}.", req.method());
            return Err((405, msg));
        }
        let mut sub = Subscribe {
            topic: topic.to_owned(),
            start: Start::Latest,
            keys: Vec::new(),
            until: None,
            format: match endpoint {
                Endpoint::Events => Format::Value,
                Endpoint::Socket => Format::Json,
            },
        };
        let query = req.target().split_once('?').map_or("", |(_, q)| q);
        let (mut from, mut position) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = || {
                (
                    400,
                    format!("The query parameter {name:?} has a bad value."),
                )
            };
            let value = percent_decode(value).ok_or_else(bad)?;
            match name {
                "from" => from = Some(value),
                "position" => position = Some(String::from_utf8(value).map_err(|_| bad())?),
                "key" => sub.keys.push(value),
                "format" => {
                    sub.format = match &value[..] {
                        b"value" => Format::Value,
                        b"json" => Format::Json,
                        _ => return Err((400, "format is value or json.".into())),
                    }
                }
                // The credentials, checked before ([`super::access`]).
                "access_token" => {}
                _ => {
                    let msg = format!(
                        "Unknown query parameter {name:?}; subscribers take from, position, key, format and access_token."
                    );
                    return Err((400, msg));
                }
            }
        }
        sub.start = match (from.as_deref(), position) {
            (Some(_), Some(_)) => {
                return Err((400, "Give either from or position, not both.".into()))
            }
            (None | Some(b"latest"), None) => Start::Latest,
            (Some(b"earliest"), None) => Start::Earliest,
            (Some(_), None) => return Err((400, "from is earliest or latest.".into())),
            (None, Some(text)) => Start::At(parse_position(&text)?),
        };
        // Browsers resume an event stream by sending the last id they saw.
        let last_event_id = req.header("last-event-id").filter(|v| !v.is_empty());
        if let (Endpoint::Events, Some(id)) = (endpoint, last_event_id) {
            let text = std::str::from_utf8(id)
                .map_err(|_| (400, "Last-Event-ID is not a sluice position.".to_owned()))?;
            sub.start = Start::At(parse_position(text)?);
        }
        Ok(sub)
    }
}

fn parse_position(text: &str) -> Result<PositionText, Refusal> {
    PositionText::parse(text).map_err(|e| (400, e.to_string()))
}

/// Kafka's topic name rule: 1 to 249 of `[a-zA-Z0-9._-]`, and not `.` or `..`.
fn is_topic_name(t: &str) -> bool {
    (1..=249).contains(&t.len())
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Decodes a query value as `application/x-www-form-urlencoded`: `%XX` escapes and `+` for
/// a space (so a literal `+` is `%2B`). `None` for a broken escape.
pub(super) fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hex = |b: Option<u8>| (b? as char).to_digit(16);
                let hi = hex(bytes.next())?;
                let lo = hex(bytes.next())?;
                (hi * 16 + lo) as u8
            }
            b => b,
        });
    }
    Some(out)
}

/// Appends `record` (from `partition`) as the JSON object both subscriber kinds send:
///
/// `{"position":"0:16,1:22","partition":0,"offset":15,"timestamp":1732240000000,
/// "key":"k","value":"v","headers":{"name":"value"}}`
///
/// `position` is where to resume after this record. Key, value and header values are JSON
/// strings when they are UTF-8, `{"base64":"..."}` when they are not, `null` when null.
pub(super) fn write_json(dst: &mut BytesMut, record: &Record, partition: i32, position: &str) {
    dst.extend_from_slice(b"{\"position\":");
    write_json_string(dst, position);
    let numbers = format!(
        ",\"partition\":{partition},\"offset\":{},\"timestamp\":{},\"key\":",
        record.offset, record.timestamp
    );
    dst.extend_from_slice(numbers.as_bytes());
    write_json_bytes(dst, record.key.as_deref());
    dst.extend_from_slice(b",\"value\":");
    write_json_bytes(dst, record.value.as_deref());
    dst.extend_from_slice(b",\"headers\":{");
    // A header that does not decode ends the list: the record itself is still delivered.
    for (i, (name, value)) in record.headers.iter().map_while(Result::ok).enumerate() {
        if i > 0 {
            dst.extend_from_slice(b",");
        }
        write_json_string(dst, &String::from_utf8_lossy(&name));
        dst.extend_from_slice(b":");
        write_json_bytes(dst, value.as_deref());
    }
    dst.extend_from_slice(b"}}");
}

fn write_json_bytes(dst: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes.map(std::str::from_utf8) {
        None => dst.extend_from_slice(b"null"),
        Some(Ok(text)) => write_json_string(dst, text),
        Some(Err(_)) => {
            dst.extend_from_slice(b"{\"base64\":\"");
            let encoded = base64::engine::general_purpose::STANDARD.encode(bytes.unwrap_or(&[]));
            dst.extend_from_slice(encoded.as_bytes());
            dst.extend_from_slice(b"\"}");
        }
    }
}

/// What both subscriber drivers share: opening the feed and writing to a client that may
/// be slow.
#[derive(Debug, Clone, Copy)]
pub(super) struct Subscriber<'a> {
    pub shard: &'a Rc<Shard>,
    pub listener: &'a HttpListener,
    /// The connection's number (for the shutdown signal).
    pub id: u64,
}

impl Subscriber<'_> {
    /// Opens the subscription's feed. A refusal is answered with its JSON response instead
    /// of the stream, and the connection closed: then `None`.
    pub(super) async fn open(
        &self,
        stream: &mut Stream,
        sub: &Subscribe,
    ) -> Result<Option<Feed>, (ErrorKind, String)> {
        match self.feed(sub).await {
            Ok(feed) => Ok(Some(feed)),
            Err(refusal) => {
                let mut out = BytesMut::new();
                let _ = ResponseEncoder.encode(&refusal, &mut out);
                self.send(stream, &mut out).await?;
                let _ = stream.close().await;
                Ok(None)
            }
        }
    }

    async fn feed(&self, sub: &Subscribe) -> Result<Feed, Response> {
        Feed::open(&self.shard.client, sub)
            .await
            .map_err(|e| match e {
                OpenError::Position(e) => Response::error(400, &e.to_string(), false),
                OpenError::Kafka(e) => {
                    debug!(error = %e, topic = %sub.topic, "cannot start a subscription");
                    let mut r = Response::error(status_for(&e), &message_for(&e), false);
                    r.retry_after = retry_after(&e);
                    r
                }
            })
    }

    /// Writes `out` to the client. A client that takes none of it for `idle_timeout_ms`
    /// (or for [`SHUTDOWN_GRACE`] once shutdown began) is dropped: what it has not read stays
    /// in Kafka, and it resumes from its last position.
    pub(super) async fn send(
        &self,
        stream: &mut Stream,
        out: &mut BytesMut,
    ) -> Result<(), (ErrorKind, String)> {
        let shard = self.shard;
        let id = self.id;
        let idle = Duration::from_millis(self.listener.config.idle_timeout_ms);
        let limit = async move {
            if !shard.shutdown.is_set() {
                let timer = std::pin::pin!(runtime::sleep(idle));
                let stop = std::pin::pin!(futures::future::poll_fn(|cx| {
                    if shard.shutdown.is_set() {
                        return Poll::Ready(());
                    }
                    shard.shutdown.register(id, cx);
                    Poll::Pending
                }));
                if let Either::Left(_) = select(timer, stop).await {
                    return;
                }
            }
            runtime::sleep(SHUTDOWN_GRACE).await;
        };
        let write = std::pin::pin!(driver::flush(shard, self.listener.index, stream, out));
        match select(write, std::pin::pin!(limit)).await {
            Either::Left((r, _)) => r.map_err(|e| (ErrorKind::Io, e.to_string())),
            Either::Right(_) => {
                if !shard.shutdown.is_set() {
                    shard.metrics.slow_consumers.fetch_add(1, Ordering::Relaxed);
                }
                Err((
                    ErrorKind::Timeout,
                    "the subscriber stopped reading its stream".into(),
                ))
            }
        }
    }

    /// Counts `n` bytes read from the client.
    pub(super) fn received(&self, n: usize) {
        self.shard.metrics.listeners[self.listener.index]
            .bytes_in
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts `n` records delivered.
    pub(super) fn delivered(&self, n: u64) {
        self.shard
            .metrics
            .deliveries
            .fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[path = "subscribe/tests.rs"]
mod tests;
