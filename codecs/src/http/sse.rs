//! The Server-Sent Events encoder (WHATWG HTML §9.2), for Kafka-to-client streams.
//!
//! Each event is `id`, `event`, `retry` and `data` fields followed by an empty line. Data
//! with line breaks becomes one `data:` line per line, which the client joins with LF, so
//! CR and CRLF in the data arrive as LF. A space always follows the colon, because the
//! client strips exactly one and the value's own leading spaces must survive.

use std::fmt::Write as _;

use bytes::BytesMut;

use crate::Encoder;

/// One event to send. Fields borrow from the Kafka record being delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SseEvent<'a> {
    /// The event id, which the client echoes in `Last-Event-ID` on reconnect (we use the
    /// Kafka offset so a reconnect resumes where it left off).
    pub id: Option<&'a str>,
    /// The event type; absent means `message`.
    pub event: Option<&'a str>,
    /// The payload; must be UTF-8.
    pub data: &'a [u8],
    /// The client's reconnect delay, in milliseconds.
    pub retry: Option<u32>,
}

/// Why an event cannot be sent.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseError {
    /// The id or event name contains a line break, which would end the field early.
    #[error("The SSE {field} contains a line break.")]
    LineBreakInField {
        /// `id` or `event`.
        field: &'static str,
    },
    /// The id contains NUL, which makes clients ignore it.
    #[error("The SSE id contains a NUL character.")]
    NulInId,
    /// The data is not UTF-8; event streams are text.
    #[error("The SSE data is not valid UTF-8.")]
    NotUtf8,
}

/// Encodes events onto an open event stream.
#[derive(Debug, Clone, Default)]
pub struct SseEncoder;

impl SseEncoder {
    /// Appends the response head that opens an event stream.
    pub fn write_stream_head(dst: &mut BytesMut) {
        dst.extend_from_slice(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\n\r\n",
        );
    }

    /// Appends a comment line, which keeps idle intermediaries from timing the stream out.
    pub fn write_keepalive(dst: &mut BytesMut) {
        dst.extend_from_slice(b":\n\n");
    }
}

impl Encoder<&SseEvent<'_>> for SseEncoder {
    type Error = SseError;

    fn encode(&mut self, ev: &SseEvent<'_>, dst: &mut BytesMut) -> Result<(), SseError> {
        let data = std::str::from_utf8(ev.data).map_err(|_| SseError::NotUtf8)?;
        for (field, value) in [("id", ev.id), ("event", ev.event)] {
            if value.is_some_and(|v| v.contains(['\n', '\r'])) {
                return Err(SseError::LineBreakInField { field });
            }
        }
        if ev.id.is_some_and(|v| v.contains('\0')) {
            return Err(SseError::NulInId);
        }
        if let Some(id) = ev.id {
            field(dst, "id", id);
        }
        if let Some(event) = ev.event {
            field(dst, "event", event);
        }
        if let Some(ms) = ev.retry {
            let mut s = String::with_capacity(16);
            // Writing to a String cannot fail.
            let _ = writeln!(s, "retry: {ms}");
            dst.extend_from_slice(s.as_bytes());
        }
        for line in split_lines(data) {
            field(dst, "data", line);
        }
        dst.extend_from_slice(b"\n");
        Ok(())
    }
}

impl Encoder<SseEvent<'_>> for SseEncoder {
    type Error = SseError;

    fn encode(&mut self, ev: SseEvent<'_>, dst: &mut BytesMut) -> Result<(), SseError> {
        self.encode(&ev, dst)
    }
}

fn field(dst: &mut BytesMut, name: &str, value: &str) {
    dst.reserve(name.len() + value.len() + 3);
    dst.extend_from_slice(name.as_bytes());
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(value.as_bytes());
    dst.extend_from_slice(b"\n");
}

/// Splits on CRLF, CR and LF, as the SSE parser does; empty data is one empty line.
fn split_lines(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(r)
            }
            Some(i) => {
                let skip = if r[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&r[i + skip..]);
                Some(&r[..i])
            }
        }
    })
}
