//! The server side of the WebSocket opening handshake (RFC 6455 §4.2).
//!
//! [`HandshakeDecoder`] reads the client's HTTP/1.1 upgrade request from the read buffer
//! and checks it; [`UpgradeRequest::write_accept`] writes the `101 Switching Protocols`
//! answer and [`HandshakeError::write_response`] the refusal. Bytes after the request stay in
//! the buffer: they are the first WebSocket frames.

use base64::Engine as _;
use bytes::{Buf, BytesMut};
use sha1::{Digest, Sha1};

use crate::http::reason_phrase;
use crate::{Decoder, ErrorAnswer, ProtocolError};

/// The GUID RFC 6455 appends to the client's key before hashing.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Headers parsed at most; the array lives on the stack, so this also caps the limit.
const HEADER_SLOTS: usize = 64;

/// What a WebSocket listener carries, which decides the subprotocol it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subprotocol {
    /// MQTT over WebSocket: the client must offer `mqtt` (or the MQTT 3.1 name `mqttv3.1`),
    /// and the server echoes it.
    Mqtt,
    /// Raw messages, one message per record: no subprotocol is selected.
    Raw,
}

/// A checked upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The request target, e.g. `/mqtt`.
    pub path: String,
    /// The `Host` header.
    pub host: String,
    /// The `Origin` header, sent by browsers.
    pub origin: Option<String>,
    /// The `Sec-WebSocket-Key` header as sent (base64 of 16 bytes).
    pub key: String,
    /// Every subprotocol the client offered, in order.
    pub offered_protocols: Vec<String>,
    /// The subprotocol the server selects, echoed in the answer.
    pub selected_protocol: Option<String>,
}

impl UpgradeRequest {
    /// The `Sec-WebSocket-Accept` value for this request.
    pub fn accept_key(&self) -> String {
        accept_key(&self.key)
    }

    /// Appends the `101 Switching Protocols` answer.
    pub fn write_accept(&self, dst: &mut BytesMut) {
        dst.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n");
        dst.extend_from_slice(b"Connection: Upgrade\r\nSec-WebSocket-Accept: ");
        dst.extend_from_slice(self.accept_key().as_bytes());
        dst.extend_from_slice(b"\r\n");
        if let Some(p) = &self.selected_protocol {
            dst.extend_from_slice(b"Sec-WebSocket-Protocol: ");
            dst.extend_from_slice(p.as_bytes());
            dst.extend_from_slice(b"\r\n");
        }
        dst.extend_from_slice(b"\r\n");
    }
}

/// `base64(SHA-1(key + GUID))`, the value proving the server read this handshake.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Why an upgrade request was refused, and with which HTTP status.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The request head did not end within the size limit (431).
    #[error("The upgrade request's head is longer than {max} bytes.")]
    HeadTooLarge {
        /// The limit in bytes.
        max: usize,
    },
    /// More header lines than the limit (431).
    #[error("The upgrade request has more than {max} headers.")]
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// Not parseable as HTTP/1.x (400).
    #[error("The upgrade request is not valid HTTP: {0}.")]
    Malformed(&'static str),
    /// The request was not HTTP/1.1 (505).
    #[error("The upgrade request must use HTTP/1.1.")]
    HttpVersion,
    /// The method was not GET (405).
    #[error("The upgrade request must use GET.")]
    MethodNotAllowed,
    /// No `Upgrade: websocket`: a plain HTTP request to a WebSocket endpoint (426).
    #[error("This endpoint only speaks WebSocket; the request did not ask to upgrade.")]
    NotWebSocket,
    /// `Connection` did not list `Upgrade` (400).
    #[error("The request's Connection header does not contain \"Upgrade\".")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Version` was missing or not 13 (426, advertising 13).
    #[error("Only WebSocket version 13 is supported.")]
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` was missing, repeated, or not base64 of 16 bytes (400).
    #[error("The Sec-WebSocket-Key header is missing or is not base64 of 16 bytes.")]
    BadKey,
    /// No `Host` header (400).
    #[error("The upgrade request has no Host header.")]
    MissingHost,
    /// An MQTT listener got a client that did not offer the `mqtt` subprotocol (400).
    #[error("This endpoint carries MQTT; the client must offer the \"mqtt\" subprotocol.")]
    SubprotocolRequired,
}

impl HandshakeError {
    /// The HTTP status this refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::HeadTooLarge { .. } | HandshakeError::TooManyHeaders { .. } => 431,
            HandshakeError::HttpVersion => 505,
            HandshakeError::MethodNotAllowed => 405,
            HandshakeError::NotWebSocket | HandshakeError::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    /// Appends the refusal: status line, the headers the status calls for, and the reason
    /// as a plain-text body. The connection is closed after it.
    pub fn write_response(&self, dst: &mut BytesMut) {
        let status = self.status();
        let body = self.to_string();
        let extra: &[u8] = match self {
            HandshakeError::MethodNotAllowed => b"Allow: GET\r\n",
            HandshakeError::NotWebSocket => b"Upgrade: websocket\r\nConnection: Upgrade\r\n",
            HandshakeError::UnsupportedVersion => b"Sec-WebSocket-Version: 13\r\n",
            _ => b"",
        };
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
            reason_phrase(status),
            body.len()
        );
        dst.extend_from_slice(head.as_bytes());
        dst.extend_from_slice(extra);
        dst.extend_from_slice(b"\r\n");
        dst.extend_from_slice(body.as_bytes());
    }
}

impl ProtocolError for HandshakeError {
    fn answer(&self) -> ErrorAnswer {
        ErrorAnswer::HttpStatus(self.status())
    }
}

/// Reads and checks the upgrade request.
#[derive(Debug, Clone)]
pub struct HandshakeDecoder {
    mode: Subprotocol,
    max_head_bytes: usize,
    max_headers: usize,
}

impl HandshakeDecoder {
    /// A decoder for a listener carrying `mode`, with head-size and header-count limits
    /// (the header count is capped at 64).
    pub fn new(mode: Subprotocol, max_head_bytes: usize, max_headers: usize) -> HandshakeDecoder {
        HandshakeDecoder {
            mode,
            max_head_bytes,
            max_headers: max_headers.min(HEADER_SLOTS),
        }
    }
}

impl Decoder for HandshakeDecoder {
    type Frame = UpgradeRequest;
    type Error = HandshakeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<UpgradeRequest>, HandshakeError> {
        let mut slots = [httparse::EMPTY_HEADER; HEADER_SLOTS];
        let mut req = httparse::Request::new(&mut slots[..self.max_headers]);
        let window = &src[..src.len().min(self.max_head_bytes)];
        let head_len = match req.parse(window) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if src.len() >= self.max_head_bytes => {
                return Err(HandshakeError::HeadTooLarge {
                    max: self.max_head_bytes,
                })
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HandshakeError::TooManyHeaders {
                    max: self.max_headers,
                })
            }
            Err(httparse::Error::Version) => return Err(HandshakeError::HttpVersion),
            Err(_) => {
                return Err(HandshakeError::Malformed(
                    "the request line or a header is invalid",
                ))
            }
        };
        let upgrade = check(&req, self.mode)?;
        src.advance(head_len);
        Ok(Some(upgrade))
    }
}

fn check(
    req: &httparse::Request<'_, '_>,
    mode: Subprotocol,
) -> Result<UpgradeRequest, HandshakeError> {
    if req.version != Some(1) {
        return Err(HandshakeError::HttpVersion);
    }
    if req.method != Some("GET") {
        return Err(HandshakeError::MethodNotAllowed);
    }
    let mut host = None;
    let mut origin = None;
    let mut key = None;
    let (mut upgrade, mut connection, mut version) = (false, false, None);
    let mut offered = Vec::new();
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HandshakeError::Malformed("a header value is not UTF-8"))?
            .trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            host = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("origin") {
            origin = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            // A repeated version header is as bad as a wrong one.
            version = Some(version.is_none() && value == "13");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            if key.is_some() {
                return Err(HandshakeError::BadKey);
            }
            key = Some(value);
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            offered.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    if !upgrade {
        return Err(HandshakeError::NotWebSocket);
    }
    if !connection {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    if version != Some(true) {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = key
        .filter(|k| is_valid_key(k))
        .ok_or(HandshakeError::BadKey)?;
    let host = host.ok_or(HandshakeError::MissingHost)?;
    let selected_protocol = match mode {
        Subprotocol::Raw => None,
        Subprotocol::Mqtt => Some(
            ["mqtt", "mqttv3.1"]
                .into_iter()
                .find(|want| offered.iter().any(|p| p == want))
                .ok_or(HandshakeError::SubprotocolRequired)?
                .to_owned(),
        ),
    };
    Ok(UpgradeRequest {
        path: req.path.unwrap_or("/").to_owned(),
        host,
        origin,
        key: key.to_owned(),
        offered_protocols: offered,
        selected_protocol,
    })
}

/// Whether a comma-separated header value contains `token`, ignoring ASCII case.
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A key must be base64 of exactly 16 bytes (RFC 6455 §4.1, item 7).
fn is_valid_key(key: &str) -> bool {
    let mut out = [0u8; 18];
    matches!(
        base64::engine::general_purpose::STANDARD.decode_slice(key, &mut out),
        Ok(16)
    )
}
