//! Messages: fragments joined, control frames checked, text validated as UTF-8.

use bytes::{Bytes, BytesMut};

use super::error::{close_code, WsError};
use super::frame::{Frame, Opcode};

/// A close frame's status code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code, one that may be sent on the wire.
    pub code: u16,
    /// The reason, validated as UTF-8.
    pub reason: Bytes,
}

impl CloseFrame {
    /// Parses a close payload: empty (no status), or a sendable code and a UTF-8 reason.
    pub fn parse(payload: &Bytes) -> Result<Option<CloseFrame>, WsError> {
        match payload.len() {
            0 => Ok(None),
            1 => Err(WsError::BadClose(
                "a one-byte payload cannot hold a status code",
            )),
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if !close_code::is_sendable(code) {
                    return Err(WsError::BadClose(
                        "the status code is reserved or unassigned",
                    ));
                }
                let reason = payload.slice(2..);
                std::str::from_utf8(&reason).map_err(|_| WsError::InvalidUtf8)?;
                Ok(Some(CloseFrame { code, reason }))
            }
        }
    }

    /// The reason as text (validated when parsed).
    pub fn reason(&self) -> &str {
        std::str::from_utf8(&self.reason).unwrap_or_default()
    }
}

/// A complete message, or a control frame that arrived between fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A UTF-8 text message.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping with its application data.
    Ping(Bytes),
    /// A pong with its application data.
    Pong(Bytes),
    /// A close frame, with its status when it had one.
    Close(Option<CloseFrame>),
}

impl Message {
    /// Interprets a control frame. Data frames are refused as a protocol error.
    pub fn from_control(frame: Frame) -> Result<Message, WsError> {
        match frame.opcode {
            Opcode::Ping => Ok(Message::Ping(frame.payload)),
            Opcode::Pong => Ok(Message::Pong(frame.payload)),
            Opcode::Close => Ok(Message::Close(CloseFrame::parse(&frame.payload)?)),
            _ => Err(WsError::UnexpectedContinuation),
        }
    }
}

/// Tracks fragmentation: which message a continuation frame belongs to.
#[derive(Debug, Clone, Default)]
pub struct FragmentTracker {
    in_progress: Option<Opcode>,
}

impl FragmentTracker {
    /// Records a data frame and returns the opcode of the message it belongs to.
    pub fn track(&mut self, opcode: Opcode, fin: bool) -> Result<Opcode, WsError> {
        match (opcode, self.in_progress) {
            (Opcode::Continuation, None) => Err(WsError::UnexpectedContinuation),
            (Opcode::Continuation, Some(op)) => {
                if fin {
                    self.in_progress = None;
                }
                Ok(op)
            }
            (_, Some(_)) => Err(WsError::UnfinishedMessage),
            (op, None) => {
                if !fin {
                    self.in_progress = Some(op);
                }
                Ok(op)
            }
        }
    }

    /// Whether a fragmented message is waiting for its final frame.
    pub fn in_progress(&self) -> bool {
        self.in_progress.is_some()
    }
}

/// Joins fragments into messages, bounded by a message size limit (1009 beyond it).
#[derive(Debug)]
pub struct MessageAssembler {
    max_message_size: usize,
    fragments: FragmentTracker,
    buf: BytesMut,
    // How far the partial text message is known to be valid UTF-8, so each fragment is
    // checked once and a bad byte is refused as soon as it arrives (1007 fails fast).
    utf8_valid: usize,
}

impl MessageAssembler {
    /// An assembler refusing messages over `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> MessageAssembler {
        MessageAssembler {
            max_message_size,
            fragments: FragmentTracker::default(),
            buf: BytesMut::new(),
            utf8_valid: 0,
        }
    }

    /// Takes the next frame; returns a message when one is complete.
    ///
    /// A single-frame message is the frame's payload itself (no copy). Fragments are copied
    /// into one buffer, checked against the limit before each copy.
    pub fn push(&mut self, frame: Frame) -> Result<Option<Message>, WsError> {
        if frame.opcode.is_control() {
            return Message::from_control(frame).map(Some);
        }
        let op = self.fragments.track(frame.opcode, frame.fin)?;
        let text = op == Opcode::Text;
        if frame.fin && frame.opcode != Opcode::Continuation {
            if frame.payload.len() > self.max_message_size {
                return Err(self.too_large(frame.payload.len()));
            }
            if text && std::str::from_utf8(&frame.payload).is_err() {
                return Err(WsError::InvalidUtf8);
            }
            return Ok(Some(wrap(text, frame.payload)));
        }
        let len = self.buf.len() + frame.payload.len();
        if len > self.max_message_size {
            return Err(self.too_large(len));
        }
        self.buf.extend_from_slice(&frame.payload);
        if text {
            self.utf8_valid = check_utf8(&self.buf, self.utf8_valid, frame.fin)?;
        }
        if !frame.fin {
            return Ok(None);
        }
        self.utf8_valid = 0;
        Ok(Some(wrap(text, self.buf.split().freeze())))
    }

    /// Whether a fragmented message is waiting for more frames.
    pub fn in_progress(&self) -> bool {
        self.fragments.in_progress()
    }

    fn too_large(&self, len: usize) -> WsError {
        WsError::MessageTooLarge {
            len,
            max: self.max_message_size,
        }
    }
}

fn wrap(text: bool, payload: Bytes) -> Message {
    if text {
        Message::Text(payload)
    } else {
        Message::Binary(payload)
    }
}

/// Validates `buf[from..]`, allowing an incomplete character at the end unless `fin`.
/// Returns how far the buffer is now known to be valid.
fn check_utf8(buf: &[u8], from: usize, fin: bool) -> Result<usize, WsError> {
    match std::str::from_utf8(&buf[from..]) {
        Ok(_) => Ok(buf.len()),
        Err(e) if e.error_len().is_none() && !fin => Ok(from + e.valid_up_to()),
        Err(_) => Err(WsError::InvalidUtf8),
    }
}
