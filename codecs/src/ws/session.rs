//! The WebSocket session: ping/pong, keepalive and the close handshake (RFC 6455 §5.5, §7).
//!
//! A plain state machine: messages and `now` in, [`Effect`]s out. The connection driver
//! writes [`Effect::Send`] frames with a [`FrameEncoder`](super::FrameEncoder), closes the
//! socket on [`Effect::CloseTransport`], and calls [`WsSession::handle_timeout`] when the
//! instant from [`WsSession::poll_timeout`] passes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::error::{close_code, WsError};
use super::frame::{Frame, Opcode};
use super::message::Message;

/// Session timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Send a ping after this long without hearing from the peer, and close with 1001 if the
    /// peer stays silent for as long again. `None` leaves liveness to the upper protocol
    /// (MQTT keepalive).
    pub ping_interval: Option<Duration>,
    /// How long to wait for the peer's close frame after sending ours.
    pub close_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            ping_interval: None,
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Encode and send this frame.
    Send(Frame),
    /// Close the TCP connection (after flushing what was queued before).
    CloseTransport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// We sent a close frame and wait for the peer's until the deadline.
    Closing {
        deadline: Instant,
    },
    Closed,
}

/// One WebSocket connection's control state.
#[derive(Debug)]
pub struct WsSession {
    config: SessionConfig,
    state: State,
    last_heard: Instant,
    ping_sent: Option<Instant>,
    effects: VecDeque<Effect>,
}

impl WsSession {
    /// A session whose handshake completed at `now`.
    pub fn new(config: SessionConfig, now: Instant) -> WsSession {
        WsSession {
            config,
            state: State::Open,
            last_heard: now,
            ping_sent: None,
            effects: VecDeque::new(),
        }
    }

    /// Handles a message from the peer; returns text or binary messages for delivery.
    ///
    /// Pings are answered with a pong carrying the same data. A close frame is echoed (same
    /// status code) and the transport closed; if we started the close, it completes it.
    /// Data arriving after we sent our close frame is dropped, as RFC 6455 §5.5.1 allows.
    pub fn on_message(&mut self, msg: Message, now: Instant) -> Option<Message> {
        self.last_heard = now;
        if self.state == State::Closed {
            return None;
        }
        match msg {
            Message::Ping(data) => {
                if self.state == State::Open {
                    self.effects
                        .push_back(Effect::Send(Frame::new(Opcode::Pong, data)));
                }
                None
            }
            Message::Pong(_) => {
                self.ping_sent = None;
                None
            }
            Message::Close(close) => {
                if self.state == State::Open {
                    let echo = match close {
                        Some(c) => Frame::close(c.code, ""),
                        None => Frame::new(Opcode::Close, bytes::Bytes::new()),
                    };
                    self.effects.push_back(Effect::Send(echo));
                }
                self.effects.push_back(Effect::CloseTransport);
                self.state = State::Closed;
                None
            }
            data @ (Message::Text(_) | Message::Binary(_)) => match self.state {
                State::Open => Some(data),
                _ => None,
            },
        }
    }

    /// Starts the close handshake with `code` and `reason`; no-op once closing.
    pub fn close(&mut self, code: u16, reason: &str, now: Instant) {
        if self.state != State::Open {
            return;
        }
        self.effects
            .push_back(Effect::Send(Frame::close(code, reason)));
        self.state = State::Closing {
            deadline: now + self.config.close_timeout,
        };
    }

    /// Answers a decode error with its close code, then waits for the peer's close.
    pub fn on_error(&mut self, err: &WsError, now: Instant) {
        self.close(err.close_code(), &err.to_string(), now);
    }

    /// Fires the keepalive and close timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Closing { deadline } if now >= deadline => {
                self.effects.push_back(Effect::CloseTransport);
                self.state = State::Closed;
            }
            State::Open => {
                let Some(interval) = self.config.ping_interval else {
                    return;
                };
                match self.ping_sent {
                    Some(sent) if now >= sent + interval => {
                        self.close(close_code::GOING_AWAY, "no pong", now);
                    }
                    None if now >= self.last_heard + interval => {
                        self.effects
                            .push_back(Effect::Send(Frame::new(Opcode::Ping, bytes::Bytes::new())));
                        self.ping_sent = Some(now);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closing { deadline } => Some(deadline),
            State::Open => {
                let interval = self.config.ping_interval?;
                Some(match self.ping_sent {
                    Some(sent) => sent + interval,
                    None => self.last_heard + interval,
                })
            }
            State::Closed => None,
        }
    }

    /// The next effect for the driver, in order.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Whether the session has finished and the transport should be (or was) closed.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }
}
