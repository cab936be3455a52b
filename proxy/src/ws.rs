//! The WebSocket layer of a connection: the upgrade handshake, frame decoding, the
//! ping/close session and framing of what the driver writes. MQTT listeners use it to carry
//! MQTT over WebSocket (`[listeners.websocket]`); HTTP listeners to accept raw-message
//! producers on `/topics/{topic}` ([`crate::http::ws`]).
//!
//! The layer is sans-IO apart from [`handshake`]: the driver reads into the shard's
//! scratch buffer as usual, hands the input to [`WsLayer::decode`], and wraps its output
//! with [`WsLayer::frame`] before writing.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use codecs::ws::{
    self, ByteStream, Effect, FrameDecoder, FrameEncoder, FrameMut, HandshakeDecoder, Message,
    Role, SessionConfig, Subprotocol, UpgradeRequest, WsError, WsSession,
};
use codecs::{Decoder, Encoder};
use futures::future::{select, Either};
use serde::Deserialize;

use crate::driver::{self, Input};
use crate::metrics::ErrorKind;
use crate::runtime;
use crate::shard::Shard;
use crate::transport::Stream;

/// Largest upgrade request head accepted (431 beyond).
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most header lines in an upgrade request.
const MAX_HEADERS: usize = 64;
/// Bytes a frame header adds to a payload at most.
const FRAME_OVERHEAD: usize = 14;

/// `[listeners.websocket]`: speak WebSocket on this listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerWebSocket {
    /// MQTT listeners: the path clients connect to (MQTT over WebSocket).
    #[serde(default)]
    pub path: Option<String>,
    /// Send a ping after this long without hearing from the client, and close the
    /// connection if it stays silent as long again; absent: liveness is left to the protocol
    /// on top (MQTT keepalive).
    #[serde(default)]
    pub ping_interval_ms: Option<u64>,
    /// HTTP listeners: answer each raw message with a text message once Kafka has its
    /// record (`{"partition":P,"offset":O}`) or refused it (`{"error":..,"status":S}`).
    #[serde(default = "default_acks")]
    pub acks: bool,
}

fn default_acks() -> bool {
    true
}

/// Reads and answers the client's upgrade request, within `timeout`. Bytes after the request
/// (the first frames) are left in `pending`.
pub async fn handshake(
    stream: &mut Stream,
    shard: &Shard,
    mode: Subprotocol,
    path: &str,
    timeout: Duration,
    pending: &mut BytesMut,
) -> Result<UpgradeRequest, (ErrorKind, String)> {
    let mut decoder = HandshakeDecoder::new(mode, MAX_HEAD_BYTES, MAX_HEADERS);
    let read = async {
        loop {
            let n = futures::future::poll_fn(|cx| driver::poll_read(shard, stream, cx))
                .await
                .map_err(|e| (ErrorKind::Io, e.to_string()))?;
            if n == 0 {
                return Err((
                    ErrorKind::Io,
                    "closed during the WebSocket handshake".into(),
                ));
            }
            let mut input = Input::take(shard, pending, n);
            let decoded = decoder.decode(&mut input);
            *pending = input.into_tail();
            match decoded {
                Ok(Some(request)) => return Ok(Ok(request)),
                Ok(None) => {}
                Err(e) => return Ok(Err(e)),
            }
        }
    };
    let read = std::pin::pin!(read);
    let timer = std::pin::pin!(runtime::sleep(timeout));
    let decoded = match select(read, timer).await {
        Either::Left((result, _)) => result?,
        Either::Right(_) => {
            return Err((
                ErrorKind::Timeout,
                "no WebSocket upgrade request in time".into(),
            ))
        }
    };
    let mut out = BytesMut::new();
    let outcome = match decoded {
        Ok(request) if request.path.split('?').next() == Some(path) => {
            request.write_accept(&mut out);
            Ok(request)
        }
        Ok(request) => {
            not_found(&request.path, &mut out);
            Err((
                ErrorKind::Protocol,
                format!("no WebSocket endpoint at {}", request.path),
            ))
        }
        Err(e) => {
            e.write_response(&mut out);
            Err((ErrorKind::Protocol, e.to_string()))
        }
    };
    stream
        .write_flushed(&out)
        .await
        .map_err(|e| (ErrorKind::Io, e.to_string()))?;
    outcome
}

/// Checks an upgrade request the HTTP decoder already read (its head, as received).
pub fn check_upgrade(head: &[u8], mode: Subprotocol) -> Result<UpgradeRequest, ws::HandshakeError> {
    let mut head = BytesMut::from(head);
    let mut decoder = HandshakeDecoder::new(mode, MAX_HEAD_BYTES, MAX_HEADERS);
    decoder
        .decode(&mut head)?
        .ok_or(ws::HandshakeError::Malformed("incomplete request head"))
}

fn not_found(path: &str, out: &mut BytesMut) {
    let body = format!("There is no WebSocket endpoint at {path}.");
    out.extend_from_slice(
        format!(
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
}

/// What came out of the frames just decoded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// The peer closed (or the session gave up on it): flush and close the socket.
    pub close_transport: bool,
}

/// One connection's WebSocket state after the handshake.
#[derive(Debug)]
pub struct WsLayer {
    frames: FrameDecoder,
    session: WsSession,
    encoder: FrameEncoder,
}

impl WsLayer {
    /// The layer for a connection whose handshake completed, accepting frames up to
    /// `max_payload` bytes.
    pub fn new(config: &ListenerWebSocket, max_payload: usize) -> WsLayer {
        let session = SessionConfig {
            ping_interval: config.ping_interval_ms.map(Duration::from_millis),
            ..SessionConfig::default()
        };
        WsLayer {
            frames: FrameDecoder::new(Role::Server, max_payload + FRAME_OVERHEAD),
            session: WsSession::new(session, Instant::now()),
            encoder: FrameEncoder::server(),
        }
    }

    /// Decodes every whole frame in `input`. Data frames go to `on_data`; control frames
    /// (ping, pong, close) to the session, whose answers [`WsLayer::drain`] writes. On a
    /// protocol error the close frame with its code is queued and the error returned.
    pub fn decode(
        &mut self,
        input: &mut BytesMut,
        mut on_data: impl FnMut(FrameMut) -> Result<(), WsError>,
    ) -> Result<Decoded, WsError> {
        let now = Instant::now();
        let result = (|| loop {
            let Some(frame) = self.frames.decode_mut(input)? else {
                return Ok(());
            };
            if frame.opcode.is_control() {
                let msg = Message::from_control(frame.freeze())?;
                self.session.on_message(msg, now);
            } else {
                on_data(frame)?;
            }
            if self.session.is_closed() {
                return Ok(());
            }
        })();
        if let Err(e) = &result {
            self.session.on_error(e, now);
        }
        result.map(|()| Decoded {
            close_transport: self.session.is_closed(),
        })
    }

    /// Appends `payload` as one binary frame.
    pub fn binary(&mut self, payload: &[u8], dst: &mut BytesMut) {
        self.frame(ws::Opcode::Binary, payload, dst);
    }

    /// Appends `payload` as one text frame (the caller guarantees UTF-8).
    pub fn text(&mut self, payload: &[u8], dst: &mut BytesMut) {
        self.frame(ws::Opcode::Text, payload, dst);
    }

    fn frame(&mut self, opcode: ws::Opcode, payload: &[u8], dst: &mut BytesMut) {
        let header = ws::FrameHeader {
            fin: true,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        header.write(dst);
        dst.extend_from_slice(payload);
    }

    /// Starts the close handshake with `code` (RFC 6455 §7.4).
    pub fn close(&mut self, code: u16, reason: &str) {
        self.session.close(code, reason, Instant::now());
    }

    /// Writes the session's control frames; true when the transport should close.
    pub fn drain(&mut self, dst: &mut BytesMut) -> bool {
        let mut close = false;
        while let Some(effect) = self.session.poll_effect() {
            match effect {
                Effect::Send(frame) => {
                    let _ = self.encoder.encode(&frame, dst);
                }
                Effect::CloseTransport => close = true,
            }
        }
        close
    }

    /// When the session next needs [`WsLayer::on_timeout`] (a ping due, a close overdue).
    pub fn deadline(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    /// Runs the session's timers.
    pub fn on_timeout(&mut self) {
        self.session.handle_timeout(Instant::now());
    }
}

/// MQTT's view of a WebSocket connection: binary payloads joined into one byte stream.
#[derive(Debug)]
pub struct MqttOverWs {
    /// Frames and session.
    pub layer: WsLayer,
    /// The MQTT byte stream.
    pub stream: ByteStream,
}

impl MqttOverWs {
    /// For an MQTT listener accepting packets up to `max_packet` bytes.
    pub fn new(config: &ListenerWebSocket, max_packet: usize) -> MqttOverWs {
        MqttOverWs {
            layer: WsLayer::new(config, max_packet),
            stream: ByteStream::new(max_packet + 5),
        }
    }

    /// Decodes frames from `input` into the MQTT byte stream.
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<Decoded, WsError> {
        let stream = &mut self.stream;
        self.layer
            .decode(input, |frame| stream.push(frame).map(drop))
    }

    /// After the MQTT decoder took its packets: an incomplete packet left in the byte
    /// stream is moved out of the shard's arena into a buffer of its own (so a slow client
    /// does not pin the arena block), and an empty stream holds no memory.
    pub fn settle(&mut self) {
        let buf = self.stream.buffer_mut();
        if buf.is_empty() {
            self.stream.release_if_empty();
        } else {
            *buf = BytesMut::from(&buf[..]);
        }
    }
}
