//! HTTP responses with JSON bodies.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::HttpError;
use super::reason_phrase;
use crate::Encoder;

/// A response: status, JSON body, and the connection's fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, already JSON (see [`Response::error`] for building one safely).
    pub body: Bytes,
    /// Whether the connection stays open; `false` adds `Connection: close`.
    pub keep_alive: bool,
    /// Seconds for a `Retry-After` header, sent with 503 when Kafka is slow or down.
    pub retry_after: Option<u32>,
    /// A `WWW-Authenticate` challenge, sent with 401 (e.g. `Basic realm="sluice"`).
    pub www_authenticate: Option<&'static str>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, body: impl Into<Bytes>, keep_alive: bool) -> Response {
        Response {
            status,
            body: body.into(),
            keep_alive,
            retry_after: None,
            www_authenticate: None,
        }
    }

    /// `{"error":{"status":S,"message":"..."}}`, the body of every refusal.
    pub fn error(status: u16, message: &str, keep_alive: bool) -> Response {
        let mut body = BytesMut::with_capacity(48 + message.len());
        body.extend_from_slice(b"{\"error\":{\"status\":");
        body.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
        body.extend_from_slice(b",\"message\":");
        write_json_string(&mut body, message);
        body.extend_from_slice(b"}}");
        Response::json(status, body.freeze(), keep_alive)
    }
}

impl From<&HttpError> for Response {
    /// The answer to a refused request; the connection is closed after it, because the
    /// rest of the buffer can no longer be trusted to start at a request boundary.
    fn from(err: &HttpError) -> Response {
        Response::error(err.status(), &err.to_string(), false)
    }
}

/// Writes JSON string literals (with quotes), escaping per RFC 8259.
pub fn write_json_string(dst: &mut BytesMut, s: &str) {
    dst.put_u8(b'"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1F => b"",
            _ => continue,
        };
        dst.extend_from_slice(&s.as_bytes()[plain..i]);
        if esc.is_empty() {
            let mut u = String::with_capacity(6);
            // Writing to a String cannot fail.
            let _ = write!(u, "\\u{b:04x}");
            dst.extend_from_slice(u.as_bytes());
        } else {
            dst.extend_from_slice(esc);
        }
        plain = i + 1;
    }
    dst.extend_from_slice(&s.as_bytes()[plain..]);
    dst.put_u8(b'"');
}

/// Encodes responses.
#[derive(Debug, Clone, Default)]
pub struct ResponseEncoder;

impl Encoder<&Response> for ResponseEncoder {
    type Error = std::convert::Infallible;

    fn encode(&mut self, r: &Response, dst: &mut BytesMut) -> Result<(), Self::Error> {
        // Written piece by piece, integers through `itoa`: `core::fmt` and an intermediate
        // `String` cost more than the rest of a produce call's answer.
        let mut n = itoa::Buffer::new();
        let reason = reason_phrase(r.status);
        dst.reserve(96 + reason.len() + r.body.len());
        dst.extend_from_slice(b"HTTP/1.1 ");
        dst.extend_from_slice(n.format(r.status).as_bytes());
        dst.put_u8(b' ');
        dst.extend_from_slice(reason.as_bytes());
        dst.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
        dst.extend_from_slice(n.format(r.body.len()).as_bytes());
        dst.extend_from_slice(b"\r\n");
        if let Some(secs) = r.retry_after {
            dst.extend_from_slice(b"Retry-After: ");
            dst.extend_from_slice(n.format(secs).as_bytes());
            dst.extend_from_slice(b"\r\n");
        }
        if let Some(challenge) = r.www_authenticate {
            dst.extend_from_slice(b"WWW-Authenticate: ");
            dst.extend_from_slice(challenge.as_bytes());
            dst.extend_from_slice(b"\r\n");
        }
        if !r.keep_alive {
            dst.extend_from_slice(b"Connection: close\r\n");
        }
        dst.extend_from_slice(b"\r\n");
        dst.extend_from_slice(&r.body);
        Ok(())
    }
}

impl Encoder<Response> for ResponseEncoder {
    type Error = std::convert::Infallible;

    fn encode(&mut self, r: Response, dst: &mut BytesMut) -> Result<(), Self::Error> {
        self.encode(&r, dst)
    }
}
